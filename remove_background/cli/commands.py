"""``remove-background [COMMAND] ...``: picks the command, and turns every expected error into one line.

Commands, one module each: files.py (the default: ``remove-background IN... -o OUTDIR``), download.py, doctor.py and
batch_command.py (Ray Data). Whatever a command did not handle itself (our errors, OS errors, Ctrl-C, a closed
pipe) ends here as one line on stderr and an exit code (messages.py); a traceback means a bug.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from ..errors import RemoveBackgroundError
from .batch_command import batch_main, batch_parser
from .files import files_main
from .messages import FAILED, INTERRUPTED, describe, fail

__all__ = ["main", "batch_main", "batch_parser"]  # batch_main and batch_parser: as before the split
NAMED = ("doctor", "download", "batch")


def _command(name: Optional[str]):
    """The function of command ``name`` (None: the files command), looked up when called."""
    if name == "doctor":
        from .doctor import doctor_main

        return doctor_main
    if name == "download":
        from .download import download_main

        return download_main
    return batch_main if name == "batch" else files_main


def _stdout_gone() -> int:
    """The reader of our output went away (``doctor | head``): stop quietly, and let Python's exit not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return FAILED


def main(argv: Optional[list] = None) -> int:
    """The console entry point: ``remove-background [doctor | download | batch] ARGS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv[:1] and argv[0] in NAMED else None
    prog = "remove-background" + (f" {name}" if name else "")
    try:
        return _command(name)(argv[1:] if name else argv)
    except KeyboardInterrupt:
        return fail(prog, "interrupted", INTERRUPTED)
    except BrokenPipeError:
        return _stdout_gone()
    except (RemoveBackgroundError, OSError) as e:
        return fail(prog, describe(e))


if __name__ == "__main__":
    sys.exit(main())
