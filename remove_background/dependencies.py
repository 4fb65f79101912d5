"""Check at run time that the Python packages we need are installed, and say how to install them.

InvokeAI's Custom Node Manager clones node packs but does not install their
dependencies. The node still registers (nothing here runs at import); the first
run then fails with the exact command to fix it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .errors import DependencyMissingError

REQUIRED = ("onnxruntime", "rembg", "cv2")
_checked = False


def install_command() -> str:
    """The exact command that installs this package with its dependencies into the running Python."""
    repo = Path(__file__).resolve().parent.parent
    target = f'"{repo}"' if (repo / "pyproject.toml").is_file() else "remove-background"
    return f'"{sys.executable}" -m pip install {target}'


def missing() -> list[str]:
    out = []
    for name in REQUIRED:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):
            out.append(name)
    return out


def require() -> None:
    """Raise DependencyMissingError naming what is missing and the install command (checked once when fine)."""
    global _checked
    if _checked:
        return
    absent = missing()
    if absent:
        names = ", ".join("opencv" if n == "cv2" else n for n in absent)
        raise DependencyMissingError(
            f"remove-background needs {names}, which {'is' if len(absent) == 1 else 'are'} not installed in "
            f"InvokeAI's Python environment (the Custom Node Manager does not install dependencies). "
            f"Install them with: {install_command()}  — then restart InvokeAI."
        )
    _checked = True
