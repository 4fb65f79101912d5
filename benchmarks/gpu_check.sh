#!/usr/bin/env bash
# The GPU check, for a lent GPU machine (the device tool); finishes in about 5 minutes (8 at most).
# Prepare first, here: bash benchmarks/prepare_gpu_check.sh (it says how to call the device tool).
#
#   bash benchmarks/gpu_check.sh                     # with .gpu carried: the check, results into $OUT
#   bash benchmarks/gpu_check.sh --receive DIR       # with DIR carried: keep a piece of u2net.onnx for the check
#
# What it measures (benchmarks/bench_torch.py --device cuda --half): torch on CUDA in fp32 and fp16 against ONNX
# Runtime on the CPU, for u2netp and u2net at 1024² and 4096²: time (raw model and whole remove()), mask parity
# (fp32 and fp16 against ONNX Runtime, fp16 against fp32), where torch's remove() spends its time, peak VRAM, and
# VRAM given back when the model leaves the cache. DEVICE=cpu tries the script out on a machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PIECES=/tmp/remove-background-weights
mkdir -p "$PIECES"
if [ "${1:-}" = "--receive" ]; then
  cp "$2"/u2net.onnx.part* "$2"/u2net.md5 "$PIECES"/
  ls -la "$PIECES"
  exit 0
fi
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
MODELS_DIR=/tmp/remove-background-models
mkdir -p "$MODELS_DIR"
cp .gpu/u2netp.onnx "$MODELS_DIR/"
MODELS=u2netp
if ls "$PIECES"/u2net.onnx.part0 "$PIECES"/u2net.onnx.part1 "$PIECES"/u2net.onnx.part2 >/dev/null 2>&1; then
  cat "$PIECES"/u2net.onnx.part0 "$PIECES"/u2net.onnx.part1 "$PIECES"/u2net.onnx.part2 > "$MODELS_DIR/u2net.onnx"
  if [ "$(md5sum "$MODELS_DIR/u2net.onnx" | cut -d' ' -f1)" = "$(cat "$PIECES/u2net.md5")" ]; then
    MODELS=u2netp,u2net
  else
    echo "u2net.onnx pieces do not add up to the real file: measuring u2netp only" | tee -a "$OUT/gpu-check.txt"
  fi
else
  echo "u2net.onnx was not carried (see benchmarks/prepare_gpu_check.sh): measuring u2netp only" | tee -a "$OUT/gpu-check.txt"
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch, onnxruntime, onnx2torch; print('torch', torch.__version__, 'onnxruntime', onnxruntime.__version__)"
  timeout 420 python3 benchmarks/bench_torch.py --device "${DEVICE:-cuda}" --half --models "$MODELS" --sizes 1024,4096 \
    --rounds "${ROUNDS:-5}" --models-dir "$MODELS_DIR" --json "$OUT/gpu-check.json"
} 2>&1 | grep -v "Warning" | tee -a "$OUT/gpu-check.txt"
