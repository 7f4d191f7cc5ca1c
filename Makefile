# Developer entry points. `make test` works on a fresh machine: it makes its own venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first, on its own, so that pip never resolves it through another package
# (which can pull a multi-GB CUDA build). Override TORCH for another build, e.g. a CUDA wheel.
TORCH ?= torch==2.13.0

.PHONY: install test lint format clean demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# the HEAR validator declares Python < 3.9 and pins TensorFlow; its checks need neither
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python hearvalidator==2021.0.6
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

# The main job: pretrain a small AxLSTM and SSAST on CPU, evaluate them with a random-weights
# AxLSTM and the log-mel baseline on the built-in tasks; report in runs/demo/report/.
demo: $(VENV)/.installed
	$(PY) -m axlstm.recipes.demo --out runs/demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
