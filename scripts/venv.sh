#!/usr/bin/env bash
# Create (or reuse) the cached test/demo venv and print its path.
# The venv lives outside the clone, keyed by the dependency spec, so repeated
# runs are fast and a fresh machine still builds it from scratch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
KEY="$(cat "$ROOT/.ci/requirements-test.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
CACHE="${REMOVE_BACKGROUND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remove-background}"
VENV="$CACHE/venv-$KEY"
if [ ! -f "$VENV/.complete" ]; then
  echo "[venv] building $VENV (InvokeAI is large: a few minutes the first time)" >&2
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r "$ROOT/.ci/requirements-test.txt" >&2
  touch "$VENV/.complete"
fi
# Our package, editable and without dependencies: cheap, so done on every run.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
echo "$VENV"
