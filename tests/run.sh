#!/usr/bin/env bash
# The test command (README and CI): build or reuse the cached venv, then run pytest; it ends with the slowest tests.
# Extra arguments go to pytest, e.g.  bash tests/run.sh -k pipeline
# The quick run, without the tests that start a real invokeai-web (the browser and pristine-install ones among them):
#   bash tests/run.sh -m "not server"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/tests/support/venv.sh")"
bash "$ROOT/tests/browser/deps.sh"
cd "$ROOT"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning,ignore::FutureWarning}"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -ra --durations=15 "$@"
