#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu_check.sh needs on a lent GPU machine (which reaches no network):
#   .gpu/          the wheels it lacks (onnx2torch, pymatting: pure Python) and rembg's real u2netp (4.6 MB)
#   .gpu-part1..3  rembg's real u2net (176 MB) in three pieces: one call of the device tool carries 64 MiB at most
# Both folders are git-ignored. Then, with the device tool (each call within the machine's 30 s warm time):
#   run(carry=[".gpu-part1"], command="bash benchmarks/gpu_check.sh --receive .gpu-part1")   # and part2, part3
#   run(carry=[".gpu"], command="bash benchmarks/gpu_check.sh", timeout_s=540)
# Without the parts, gpu_check.sh measures u2netp only and says so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(bash scripts/venv.sh)"
rm -rf .gpu .gpu-part1 .gpu-part2 .gpu-part3
mkdir -p .gpu
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .gpu "onnx2torch==1.5.15" "pymatting==1.1.16"
W="$("$VENV/bin/python" -c "import sys; sys.path.insert(0, 'scripts'); import fetch_weights; print(fetch_weights.cached('u2netp'))")"
cp "$W" .gpu/u2netp.onnx
U="$("$VENV/bin/python" -c "import sys; sys.path.insert(0, 'scripts'); import fetch_weights; print(fetch_weights.cached('u2net'))")"
md5sum "$U" | cut -d' ' -f1 > .gpu/u2net.md5
for i in 1 2 3; do mkdir -p ".gpu-part$i"; done
split -n 3 -d -a 1 "$U" .gpu-split-
for i in 0 1 2; do mv ".gpu-split-$i" ".gpu-part$((i + 1))/u2net.onnx.part$i"; cp .gpu/u2net.md5 ".gpu-part$((i + 1))/"; done
du -sh .gpu .gpu-part*
