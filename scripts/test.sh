#!/usr/bin/env bash
# The test command (README and CI): build or reuse the cached venv, then run pytest.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k pipeline
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/venv.sh")"
bash "$ROOT/scripts/browser-deps.sh"
cd "$ROOT"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning,ignore::FutureWarning}"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@"
