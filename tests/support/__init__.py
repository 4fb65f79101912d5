"""Helpers shared by the tests (fixtures stay in tests/conftest.py), the demo and the benchmarks.

Imported as ``support.NAME`` with ``tests/`` on the path: pytest puts it there (``pythonpath`` in pyproject.toml);
the commands that use these helpers outside pytest (``tests/demo.sh``, ``benchmarks/run.sh``) set
``PYTHONPATH=tests``. Not ``tests.support``: InvokeAI's environment holds another top-level ``tests`` package
(fastapi-events ships one), which would win over this folder, a namespace package.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
