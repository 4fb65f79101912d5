"""What every command prints when something expected goes wrong: one line on stderr, and an exit code.

Exit codes, for every command: 0 done; 1 it ran and something failed (a file, a download: the line says what);
2 it could not start (a bad option, no inputs, an output folder that cannot be written); 130 interrupted (Ctrl-C).
A traceback means a bug.
"""

from __future__ import annotations

import sys
from typing import Optional

FAILED, CANNOT_START, INTERRUPTED = 1, 2, 130


def describe(error: BaseException) -> str:
    """An error as one line for a person: its kind (the README's troubleshooting table lists ours) and its message;
    an OS error's reason and path without the errno."""
    reason = str(error)
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror + (f": {error.filename}" if error.filename else "")
    return f"{type(error).__name__}: {reason}"


def fail(prog: str, message: str, code: int = FAILED) -> int:
    """Print ``prog: message`` on stderr and return ``code``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code


class ProgressLine:
    """``NAME: 1.2 / 4.6 MB`` rewritten in place on stderr while a file downloads; ended by ``end()``."""

    def __init__(self) -> None:
        self.started = False

    def update(self, filename: str, done: int, total: Optional[int]) -> None:
        self.started = True
        of = f" / {total / 1e6:.1f}" if total else ""
        print(f"\r{filename}: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.started:
            print(file=sys.stderr)
            self.started = False
