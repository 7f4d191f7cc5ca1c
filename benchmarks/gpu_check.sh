#!/usr/bin/env bash
# Everything a short GPU session measures, in one run of under 8 minutes on one H100/H200:
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
# Each phase has its own time limit, so one slow phase cannot eat the others' time.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
AX="$PY -m axlstm.cli.main"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/phases.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$OUT/gpu.txt"
$PY -c "import triton; print('triton', triton.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"

# 2. the loss curves, in the background (the GPU has room for both beside the tests)
curve() {  # name precision
  timeout 270 $AX pretrain --config axlstm_tiny --out "$OUT/curve_$1" --max-steps 2000 \
    --no-progress --set engine.precision="$2" engine.tf32=false optim.global_batch=32 \
    schedule.epochs=10 schedule.steps_per_epoch=200 schedule.warmup_epochs=1 \
    data.num_workers=5 logging.log_every=5 logging.tensorboard=false logging.plots=false \
    engine.ckpt_every=1000 > "$OUT/curve_$1.log" 2>&1
}
stamp "curves start"
curve fp32 fp32 & P1=$!
curve bf16 bf16 & P2=$!

# 1. the tests
stamp "pytest start"
timeout 240 $PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_mlstm_triton.py \
    tests/test_compile.py tests/test_official_parity.py tests/test_ssamba.py \
    tests/test_ssast_original.py tests/test_mamba.py tests/test_embedding.py \
    2>&1 | tail -40 > "$OUT/pytest.txt"
tail -5 "$OUT/pytest.txt"
stamp "pytest done; waiting for the curves"
wait $P1 $P2
tail -2 "$OUT/curve_fp32.log" "$OUT/curve_bf16.log"
$PY benchmarks/precision_curves.py "$OUT/curve_fp32" "$OUT/curve_bf16" --window 20 \
    --json "$OUT/curves.json" --plot "$OUT/curves.png" | tail -4
rm -rf "$OUT"/curve_*/checkpoints
stamp "curves compared"

# 3. the form table
for prec in fp32 bf16; do
  timeout 45 $AX benchmark --forms --device cuda --precision $prec --reps 5 \
      --json "$OUT/forms_$prec.json" --markdown "$OUT/forms_$prec.md" \
      --forms-table "$OUT/mlstm_forms.json" > /dev/null 2>&1 \
      || echo "forms $prec: failed or timed out" >> "$OUT/phases.txt"
done
cat "$OUT"/forms_*.md
stamp "form table done"
export AXLSTM_MLSTM_FORMS="$OUT/mlstm_forms.json"

# 4. the targets
bench() {  # name limit, then axlstm benchmark arguments
  local name=$1 limit=$2; shift 2
  timeout "$limit" $AX benchmark --device cuda --reps 3 --flops --json "$OUT/$name.json" \
      --markdown "$OUT/$name.md" "$@" > "$OUT/$name.log" 2>&1 \
      || echo "$name: failed or timed out" >> "$OUT/phases.txt"
  cat "$OUT/$name.md" 2>/dev/null
}
for prec in fp32 bf16; do
  bench "train_tiny_$prec" 60 --models axlstm_tiny ssast_tiny --seconds 2 --batch 256 \
      --mode train --precision $prec
  bench "train_base_$prec" 80 --models axlstm_base ssast_base --seconds 2 --batch 128 \
      --mode train --precision $prec
  bench "infer_tiny_$prec" 40 --models axlstm_tiny ssast_tiny --seconds 2 10 --batch 64 \
      --precision $prec
done
stamp "eager targets done"
bench train_tiny_bf16_compiled 90 --models axlstm_tiny ssast_tiny --seconds 2 --batch 256 \
    --mode train --precision bf16 --compile
bench infer_tiny_bf16_compiled 60 --models axlstm_tiny ssast_tiny --seconds 2 10 --batch 64 \
    --precision bf16 --compile
stamp "all done"
ls -la "$OUT"
