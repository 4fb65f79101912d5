#!/usr/bin/env bash
# The main job: a real InvokeAI with this node removes the background of the embedded sample photo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/tests/support/venv.sh")"
export PYTHONPATH="$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}"  # the demo is tests/support/demo.py
exec "$VENV/bin/python" -m support.demo "$@"
