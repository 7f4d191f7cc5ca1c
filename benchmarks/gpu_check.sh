#!/usr/bin/env bash
# Everything a short GPU session measures, in one run on one H100/H200 (aimed at 8 minutes):
#   1. the GPU tests (CUDA vs CPU, autocast training, fixtures on the GPU, the Triton mLSTM
#      kernel against the pure-PyTorch forms, torch.compile), while
#   2. two 2,000-step axlstm_tiny pretraining runs (fp32 and bf16 autocast, same seed) train
#      side by side for the bf16-vs-fp32 loss-curve check;
#   3. the mLSTM form table (parallel / chunkwise / triton, fp32 and bf16, forward and
#      forward+backward, 64-2048 tokens) that mlstm_backend="auto" chooses from;
#   4. issue #15's targets with that table: pretraining steps (AxLSTM-T vs SSAST-T at 2 s,
#      batch 256; AxLSTM-B vs SSAST-B, batch 128), inference (tiny, batch 64, 2 s and 10 s),
#      fp32 and bf16, eager and compiled, with clips/s, GPU memory, TFLOP/s and MFU.
# Run from the repo root on a CUDA machine whose python3 has torch (and triton); the golden
# fixtures are expected at ../shared/fixtures. Results go to ${OUT:-gpu_out}/:
#   gpu.txt pytest.txt curves.{json,png} mlstm_forms.json forms_*.md targets_*.{json,md} ...
# Each phase has its own time limit, so one slow phase cannot eat the others' time; the limits
# add up to 9 minutes (210 + 60 + 200 + 70 s), inside the 10 minutes one command may run.
# SMOKE=1 runs every phase on the CPU with tiny settings (test presets, 40 steps, fp32 only,
# CPU-sized limits): a check of the script itself, so a short GPU session is not lost to a typo.
# Packages the GPU machine lacks (soundfile, soxr, webdataset, ...) can come as wheels in .whl/
# (pip download --no-deps for its Python); they are installed to /tmp/site first.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
AX="$PY -m axlstm.cli.main"
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu PRECS=fp32 STEPS=40 CB=4 WORKERS=0 WINDOW=5 LOGEVERY=2 K=3
  TINY="test_axlstm test_ssast" BASE="test_axlstm test_ssast" BT=2 BB=1 BI=2
  FORMS_ARGS="--models test_axlstm --lengths 32 64 --batch 2" COMPILE=default
  TESTS="tests/test_mlstm_forms.py tests/test_cuda.py"
else
  DEV=cuda PRECS="fp32 bf16" STEPS=2000 CB=32 WORKERS=5 WINDOW=20 LOGEVERY=5 K=1
  TINY="axlstm_tiny ssast_tiny" BASE="axlstm_base ssast_base" BT=256 BB=128 BI=64
  FORMS_ARGS="" COMPILE=auto
  TESTS="tests/test_cuda.py tests/test_mlstm_triton.py tests/test_compile.py
    tests/test_official_parity.py tests/test_ssamba.py tests/test_ssast_original.py
    tests/test_mamba.py tests/test_embedding.py"
fi
limit() { echo $(( $1 * K )); }  # a phase's time limit, scaled up for the CPU smoke run
if [ "$DEV" = cuda ] && ls .whl/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/phases.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and \
    torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
$PY -c "import triton; print('triton', triton.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"

# 2. the loss curves, in the background (the GPU has room for both beside the tests)
curve() {  # precision
  timeout "$(limit 210)" $AX pretrain --config axlstm_tiny --out "$OUT/curve_$1" \
    --max-steps $STEPS --no-progress --set engine.precision="$1" engine.device=$DEV \
    engine.tf32=false optim.global_batch=$CB schedule.epochs=10 \
    schedule.steps_per_epoch=$(( STEPS / 10 )) schedule.warmup_epochs=1 \
    data.num_workers=$WORKERS logging.log_every=$LOGEVERY logging.tensorboard=false \
    logging.plots=false engine.ckpt_every=$(( STEPS / 2 )) > "$OUT/curve_$1.log" 2>&1
}
stamp "curves start"
curve fp32 & P1=$!
if [ "$DEV" = cuda ]; then curve bf16 & P2=$!; else P2=; fi

# 1. the tests
stamp "pytest start"
# shellcheck disable=SC2086
timeout "$(limit 200)" $PY -m pytest -q -p no:cacheprovider -rs $TESTS 2>&1 | tail -40 \
    > "$OUT/pytest.txt"
tail -5 "$OUT/pytest.txt"
stamp "pytest done; waiting for the curves"
wait $P1 $P2
tail -n 2 "$OUT"/curve_*.log
other=bf16; [ "$DEV" = cuda ] || other=fp32  # the smoke run compares fp32 with itself
$PY benchmarks/precision_curves.py "$OUT/curve_fp32" "$OUT/curve_$other" --window $WINDOW \
    --json "$OUT/curves.json" --plot "$OUT/curves.png" | tail -4
rm -rf "$OUT"/curve_*/checkpoints
stamp "curves compared"

# 3. the form table
for prec in $PRECS; do
  # shellcheck disable=SC2086
  timeout "$(limit 30)" $AX benchmark --forms $FORMS_ARGS --device $DEV --precision $prec \
      --reps 5 --json "$OUT/forms_$prec.json" --markdown "$OUT/forms_$prec.md" \
      --forms-table "$OUT/mlstm_forms.json" > /dev/null 2>&1 \
      || echo "forms $prec: failed or timed out" >> "$OUT/phases.txt"
done
cat "$OUT"/forms_*.md
stamp "form table done"
export AXLSTM_MLSTM_FORMS="$OUT/mlstm_forms.json"

# 4. the targets
bench() {  # name limit, then axlstm benchmark arguments
  local name=$1 limit=$2; shift 2
  timeout "$(limit "$limit")" $AX benchmark --device $DEV --reps 3 --flops --json "$OUT/$name.json" \
      --markdown "$OUT/$name.md" "$@" > "$OUT/$name.log" 2>&1 \
      || echo "$name: failed or timed out" >> "$OUT/phases.txt"
  cat "$OUT/$name.md" 2>/dev/null
}
# shellcheck disable=SC2086
for prec in $PRECS; do
  bench "train_tiny_$prec" 35 --models $TINY --seconds 2 --batch $BT --mode train --precision $prec
  bench "train_base_$prec" 45 --models $BASE --seconds 2 --batch $BB --mode train --precision $prec
  bench "infer_tiny_$prec" 20 --models $TINY --seconds 2 10 --batch $BI --precision $prec
done
stamp "eager targets done"
last=${PRECS##* }  # bf16 on the GPU
# shellcheck disable=SC2086
bench "train_tiny_${last}_compiled" 40 --models $TINY --seconds 2 --batch $BT --mode train \
    --precision $last --compile $COMPILE
# shellcheck disable=SC2086
bench "infer_tiny_${last}_compiled" 30 --models $TINY --seconds 2 10 --batch $BI \
    --precision $last --compile $COMPILE
stamp "all done"
ls -la "$OUT"
