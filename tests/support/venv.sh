#!/usr/bin/env bash
# Create (or reuse) the cached test/demo venv and print its path.
# The venv lives outside the clone, keyed by the dependency spec (its comments left out), so repeated
# runs are fast and a fresh machine still builds it from scratch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
KEY="$( (grep -v '^[[:space:]]*#' "$ROOT/.ci/requirements-test.txt"; sed -n "/^dependencies = \[/,/^\]/p" "$ROOT/pyproject.toml") | sha256sum | cut -c1-16)"
CACHE="${REMOVE_BACKGROUND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remove-background}"
VENV="$CACHE/venv-$KEY"
if [ ! -f "$VENV/.complete" ]; then
  echo "[venv] building $VENV (InvokeAI is large: a few minutes the first time)" >&2
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
  # pip's notes about this machine's extra local indexes are noise: keep only real errors.
  "$VENV/bin/python" -m pip install -q -r "$ROOT/.ci/requirements-test.txt" 2>&1 \
    | grep -v "^WARNING: Location .* is ignored" >&2 || true
  # rembg pulled opencv-python-headless, whose cv2 files replace InvokeAI's opencv-contrib-python: put InvokeAI's
  # back, as a user's InvokeAI has it (cv2.ximgproc).
  CONTRIB="$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('opencv-contrib-python'))")"
  "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "opencv-contrib-python==$CONTRIB" 2>&1 \
    | grep -v "^WARNING: Location .* is ignored" >&2 || true
  "$VENV/bin/python" -c "import invokeai, rembg.sessions, onnxruntime, cv2; cv2.ximgproc.thinning" >&2  # fails loudly
  touch "$VENV/.complete"
fi
# Our package, editable and without dependencies: cheap, so done on every run.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" 2>&1 \
  | grep -v "^WARNING: Location .* is ignored" >&2 || true
"$VENV/bin/python" -c "import remove_background" >&2
echo "$VENV"
