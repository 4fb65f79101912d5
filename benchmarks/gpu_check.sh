#!/usr/bin/env bash
# The GPU check, for a lent GPU machine (the device tool); finishes in about 5 minutes (8 at most).
# Prepare first, here: bash benchmarks/prepare_gpu_check.sh (it says how to call the device tool).
#
#   bash benchmarks/gpu_check.sh                     # with .gpu carried: the check, results into $OUT
#   bash benchmarks/gpu_check.sh --receive DIR       # with DIR carried: keep its pieces of the larger files
#
# What it measures (benchmarks/bench_torch.py --device cuda --half): torch on CUDA in fp32 and fp16 against ONNX
# Runtime on the CPU, for u2netp and u2net at 1024² and 4096²: time (raw model and whole remove()), mask parity
# (fp32 and fp16 against ONNX Runtime, fp16 against fp32), where torch's remove() spends its time, peak VRAM, and
# VRAM given back when the model leaves the cache. Then, per model (u2netp, u2net, img.ly's IS-Net fp16), the
# converted module alone: weight bytes held against the file's, host reads per forward, and fp16 against fp32
# (time, mask agreement, faithful or not).
# DEVICE=cpu tries the script out on a machine without a GPU (SIZES=1024 ROUNDS=1 TIMEOUT=1800 suit a CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PIECES=/tmp/remove-background-weights
mkdir -p "$PIECES"
if [ "${1:-}" = "--receive" ]; then
  cp "$2"/*.part* "$2"/*.md5 "$PIECES"/
  ls -la "$PIECES"
  exit 0
fi
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/*.whl
export PYTHONPATH="/tmp/site:$PWD:$PWD/tests" PYTHONUNBUFFERED=1
MODELS_DIR=/tmp/remove-background-models
mkdir -p "$MODELS_DIR"
cp .gpu/u2netp.onnx "$MODELS_DIR/"
assemble() {  # NAME: NAME from its pieces in $PIECES into $MODELS_DIR, if they add up to the real file
  local name=$1
  if ! ls "$PIECES/$name".part* "$PIECES/$name.md5" >/dev/null 2>&1; then
    echo "$name was not carried (see benchmarks/prepare_gpu_check.sh): the check goes without it" \
      | tee -a "$OUT/gpu-check.txt"
    return 1
  fi
  cat $(ls "$PIECES/$name".part* | sort -V) > "$MODELS_DIR/$name"
  if [ "$(md5sum "$MODELS_DIR/$name" | cut -d' ' -f1)" != "$(cat "$PIECES/$name.md5")" ]; then
    echo "$name: its pieces do not add up to the real file: the check goes without it" | tee -a "$OUT/gpu-check.txt"
    return 1
  fi
}
MODELS=u2netp
FILES=
if assemble u2net.onnx; then MODELS=u2netp,u2net; fi
if assemble isnet-imgly-fp16.onnx; then FILES="isnet-imgly-fp16=$MODELS_DIR/isnet-imgly-fp16.onnx:isnet-general-use"; fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch, onnxruntime, onnx2torch; print('torch', torch.__version__, 'onnxruntime', \
    onnxruntime.__version__)"
  timeout "${TIMEOUT:-420}" python3 -m benchmarks.bench_torch --device "${DEVICE:-cuda}" --half --models "$MODELS" \
    --sizes "${SIZES:-1024,4096}" --files "$FILES" --rounds "${ROUNDS:-5}" --models-dir "$MODELS_DIR" \
    --json "$OUT/gpu-check.json"
} 2>&1 | grep -v "Warning" | tee -a "$OUT/gpu-check.txt"
