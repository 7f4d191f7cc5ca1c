#!/usr/bin/env bash
# One GPU session's checks, run from the repo root on a CUDA machine whose Python has torch:
# the CUDA tests (CUDA vs CPU, autocast training, fixtures on the GPU), then cost vs length.
# Results go to ${OUT:-gpu_out}/. Expects the golden fixtures at ../shared/fixtures.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_official_parity.py \
    tests/test_ssamba.py tests/test_ssast_original.py tests/test_mamba.py tests/test_embedding.py \
    2>&1 | tail -15 | tee "$OUT/pytest.txt"
bench() {  # name, then axlstm benchmark arguments
  local name=$1; shift
  timeout 150 $PY -m axlstm.cli.main benchmark --device cuda --reps 3 --json "$OUT/$name.json" \
      --markdown "$OUT/$name.md" "$@" 2>/dev/null | grep -v '^|' || true
}
bench tiny_inf --models axlstm_tiny ssast_tiny --seconds 2 10 60 300 --batch 8
bench base_inf --models axlstm_base ssast_base --seconds 2 10 60 --batch 8
bench tiny_train --models axlstm_tiny ssast_tiny --seconds 2 10 --batch 8 --mode train
ls -la "$OUT"
