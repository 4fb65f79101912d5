"""Benchmarks: scripts that print side-by-side ratio tables. Run one with ``bash benchmarks/run.sh NAME``.

A regular package, so that ``python -m benchmarks.NAME`` finds this folder before any other ``benchmarks``."""
