#!/usr/bin/env bash
# Run a benchmark in the project's cached venv:  bash benchmarks/run.sh [NAME] [its arguments]
# NAME is a module of benchmarks/ (bench_speed when the first argument is not one). The benchmarks import the
# installed package and the tests' helpers (support.fetch_weights, ...): tests/ goes on the path here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/tests/support/venv.sh")"
NAME=bench_speed
if [ $# -gt 0 ] && [ -f "$ROOT/benchmarks/${1%.py}.py" ]; then
  NAME="${1%.py}"
  shift
fi
export PYTHONPATH="$ROOT:$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m "benchmarks.$NAME" "$@"
