#!/usr/bin/env bash
# Run a benchmark in the project's cached venv:  bash benchmarks/run.sh [bench_speed.py arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/venv.sh")"
SCRIPT="${BENCH:-bench_speed.py}"
exec "$VENV/bin/python" "$ROOT/benchmarks/$SCRIPT" "$@"
