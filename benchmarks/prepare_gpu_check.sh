#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu_check.sh needs on a lent GPU machine (which reaches no network):
#   .gpu/          the wheels it lacks (onnx2torch, pymatting: pure Python) and rembg's real u2netp (4.6 MB)
#   .gpu-part1..5  the larger files in pieces of 60 MiB at most (one call of the device tool carries 64 MiB at most):
#                  rembg's real u2net (176 MB: parts 1-3) and img.ly's IS-Net fp16 from npm (88 MB: parts 4-5)
# All are git-ignored. Then, with the device tool (each call within the machine's 30 s warm time):
#   run(carry=[".gpu-part1"], command="bash benchmarks/gpu_check.sh --receive .gpu-part1")   # and part2 ... part5
#   run(carry=[".gpu"], command="bash benchmarks/gpu_check.sh", timeout_s=540)
# A file whose pieces were not all carried is left out of the check, which says so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$(bash tests/support/venv.sh)}"
rm -rf .gpu .gpu-part* .gpu-split-*
mkdir -p .gpu
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .gpu "onnx2torch==1.5.15" "pymatting==1.1.16"
fetch() {  # the cached path of a weights file (tests/support/fetch_weights.py), or nothing
  PYTHONPATH=tests "$VENV/bin/python" -c "from support import fetch_weights; print(fetch_weights.$1)" \
    2>/dev/null || true
}
cp "$(fetch "cached('u2netp')")" .gpu/u2netp.onnx
PART=1
pieces() {  # FILE NAME: FILE in pieces of 60 MiB, each in the next .gpu-partN with NAME.md5
  local file=$1 name=$2 piece
  [ -n "$file" ] && [ -f "$file" ] || { echo "$name: not available here, the check will go without it"; return 0; }
  split -b 60M -d -a 1 "$file" ".gpu-split-$name.part"
  for piece in .gpu-split-"$name".part*; do
    mkdir -p ".gpu-part$PART"
    mv "$piece" ".gpu-part$PART/${piece#.gpu-split-}"
    md5sum "$file" | cut -d' ' -f1 > ".gpu-part$PART/$name.md5"
    PART=$((PART + 1))
  done
}
pieces "$(fetch "cached('u2net')")" u2net.onnx
pieces "$(fetch "cached_imgly('isnet-imgly-fp16')")" isnet-imgly-fp16.onnx
du -sh .gpu .gpu-part*
