"""Check at run time that the Python packages we need are installed, and say exactly how to install them.

InvokeAI's Custom Node Manager clones node packs but does not install their dependencies, and InvokeAI's launcher
rebuilds its environment on updates. The node still registers (nothing here runs at import); its first run then
fails with the one command that fixes it, written for the environment it runs in.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Optional

from ..errors import DependencyMissingError
from ..invokeai_adapter.config import find_root
from .safe_install import package_command, quote

# module -> the distribution that provides it where InvokeAI is not there to provide it
REQUIRED = {"onnxruntime": "onnxruntime", "cv2": "opencv-python-headless", "pymatting": "pymatting"}
_checked = False


def source_checkout() -> Optional[Path]:
    """The clone this package was installed from or is loaded from (it holds install.py), if known."""
    for candidate in (os.environ.get("REMOVE_BACKGROUND_SOURCE"), Path(__file__).resolve().parents[2]):
        if candidate and (Path(candidate) / "install.py").is_file():
            return Path(candidate)
    return None


def invokeai_root() -> Optional[Path]:
    """The InvokeAI root the install command names, only where it is known (never a guess)."""
    return find_root(clone=source_checkout(), assume_home="never")


def install_command(absent: Optional[list[str]] = None) -> str:
    """The exact command that installs what is missing into the running Python.

    With a clone at hand, its install.py (pip or uv, whichever this environment has; nothing installed changes).
    Without one, the missing distributions through pip, or uv where there is no pip."""
    source = source_checkout()
    if source is not None:
        root = invokeai_root()
        return quote([sys.executable, str(source / "install.py"), *(["--root", str(root)] if root else [])])
    names = [REQUIRED[m] for m in (absent or REQUIRED)]
    if "opencv-python-headless" in names and importlib.util.find_spec("invokeai") is not None:
        names.remove("opencv-python-headless")  # never beside InvokeAI's opencv-contrib-python
    return package_command(*names)


TORCH_ROUTE = "onnx2torch>=1.5.15,<1.6"  # the torch provider's converter (pyproject's "torch" extra)


def torch_route_command() -> str:
    """The command that installs the torch provider's converter here (install.py adds it beside InvokeAI's torch)."""
    source = source_checkout()
    if source is not None and importlib.util.find_spec("invokeai") is not None:
        return install_command([])
    return package_command(TORCH_ROUTE)


def torch_route_missing(error: Optional[BaseException] = None) -> DependencyMissingError:
    """The error for the torch provider without torch or onnx2torch installed."""
    detail = f" ({error})" if error else ""
    return DependencyMissingError(
        f"The 'torch' execution provider needs PyTorch and onnx2torch, which are not both installed in this Python "
        f"environment{detail}. Install onnx2torch with this command (in InvokeAI's launcher: its Dev Console), "
        f"which changes nothing already installed: {torch_route_command()}  — or choose the execution provider "
        f"'auto' or 'cpu'."
    )


def missing() -> list[str]:
    importlib.invalidate_caches()  # something may have been installed since the last look
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
        names = ", ".join("OpenCV (cv2)" if n == "cv2" else n for n in absent)
        in_invokeai = importlib.util.find_spec("invokeai") is not None
        where = ("InvokeAI's Python environment (the Custom Node Manager does not install dependencies, and "
                 "InvokeAI's launcher rebuilds the environment on updates)" if in_invokeai else "this Python environment")
        hint = ""
        if "cv2" in absent and in_invokeai:
            hint = " OpenCV comes with InvokeAI (opencv-contrib-python): if it is gone, reinstall InvokeAI first."
        raise DependencyMissingError(
            f"remove-background needs {names}, which {'is' if len(absent) == 1 else 'are'} not installed in {where}. "
            f"Install {'it' if len(absent) == 1 else 'them'} with this command (in InvokeAI's launcher: its Dev "
            f"Console), which changes nothing already installed: {install_command(absent)}  — then run the node "
            f"again.{hint}"
        )
    _checked = True
