"""Pristine InvokeAI environments, made the ways users make them, and what to compare before and after.

- ``uv``: ``uv venv`` + ``uv pip install invokeai`` (InvokeAI's launcher and its manual-install guide): no pip.
- ``pip``: ``python -m venv`` (with pip). InvokeAI goes in with uv too, from uv's cache: the same files in seconds
  instead of pip's minutes, and the environment is a pip one from then on.

uv's cache lives in ``~/.cache/remove-background/uv`` (``$REMOVE_BACKGROUND_CACHE``): files are hard-linked from
it, so a fresh environment costs about 3 s once the cache is warm. Never the test environment itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import ROOT

UV = Path(sys.executable).with_name("uv")
CACHE = Path(os.environ.get("REMOVE_BACKGROUND_CACHE", Path.home() / ".cache" / "remove-background"))
# What an install may add to an InvokeAI (5.15.0 to 6.14.2): our package, pymatting (with numba and llvmlite) and
# onnx2torch, the torch provider's converter (pure Python; its onnx, torch and torchvision are InvokeAI's own).
OURS = {"remove-background", "pymatting", "numba", "llvmlite", "onnx2torch"}

INVOKEAI = next(line.strip() for line in (ROOT / ".ci" / "requirements-test.txt").read_text().splitlines()
                if line.startswith("invokeai=="))


def tool_env(**extra) -> dict:
    """The environment of InvokeAI's Dev Console: uv on PATH, and uv's cache shared with the tests.

    pip's configuration files are not read (``PIP_CONFIG_FILE=os.devnull``): this project's machines cap pip at
    the torch release that lies on their disk (a ``constraint`` in /etc/xdg/pip/pip.conf), which a user's machine
    does not; with the cap, pip would plan to move InvokeAI's newer torch back to it as soon as a package depends
    on torch (onnx2torch does). PyPI and the settings passed as PIP_* variables still apply."""
    return {**os.environ, "PATH": f"{UV.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "UV_CACHE_DIR": str(CACHE / "uv"), "PIP_CONFIG_FILE": os.devnull, **extra}


def make(kind: str, dest: Path, invokeai: str = INVOKEAI) -> Path:
    """A new environment with only InvokeAI in it (``invokeai``: another release's requirement); returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    if kind == "pip":
        subprocess.run([base, "-m", "venv", str(dest)], check=True)
    else:
        subprocess.run([str(UV), "venv", "-q", "--python", base, str(dest)], check=True, env=tool_env())
    python = dest / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(python), invokeai], check=True, env=tool_env())
    return python


def distributions(python: Path) -> dict[str, str]:
    """name -> version of every distribution the environment holds."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    found = json.loads(subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, check=True).stdout)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found.items()}


def tree(env: Path) -> dict[str, tuple[int, int]]:
    """Every file of the environment (bytecode caches aside): path -> (size, modification time in ns)."""
    out = {}
    for folder, dirs, files in os.walk(env):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            out[os.path.relpath(path, env)] = (st.st_size, st.st_mtime_ns)
    return out


def check(python: Path, kind: str) -> subprocess.CompletedProcess:
    """``pip check`` or ``uv pip check`` on the environment."""
    if kind == "pip":
        return subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    return subprocess.run([str(UV), "pip", "check", "--python", str(python)], capture_output=True, text=True,
                          env=tool_env())


CONTROLNET_RESIZE = """
import cv2, numpy as np
from invokeai.app.util.controlnet_utils import heuristic_resize_fast
art = np.zeros((256, 256, 3), np.uint8)
cv2.line(art, (10, 20), (240, 200), (255, 255, 255), 1)
cv2.circle(art, (128, 128), 60, (255, 255, 255), 1)
out = heuristic_resize_fast(art, (512, 512))   # thin line art: uses cv2.ximgproc.thinning (opencv-contrib)
assert out.shape == (512, 512, 3) and out.max() == 255, out.shape
print("ok")
"""


def controlnet_resize_works(python: Path) -> subprocess.CompletedProcess:
    """InvokeAI's own ControlNet resize on line art: breaks when another OpenCV wheel replaced opencv-contrib's cv2."""
    return subprocess.run([str(python), "-I", "-c", CONTROLNET_RESIZE], capture_output=True, text=True)


def working_tree_copy(dest: Path, git: bool = False) -> Path:
    """This working tree's files (tracked and untracked, not ignored) in ``dest``; a git repository if ``git``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    if git:
        g = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(dest)]
        subprocess.run(g[:-2] + ["init", "-q", str(dest)], check=True)
        subprocess.run(g + ["add", "-A"], check=True)
        subprocess.run(g + ["commit", "-qm", "snapshot"], check=True)
    return dest


def printed_command(message: str) -> list[str]:
    """The command a DependencyMissingError tells the user to run."""
    m = re.search(r"changes nothing already installed: (.+?)  — ", message)
    assert m, message
    import shlex

    return shlex.split(m.group(1))


def assert_only_added(before: dict, after: dict, allowed: set) -> set:
    """Every distribution of ``before`` keeps its version in ``after``; what was added is within ``allowed``."""
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, changed
    added = set(after) - set(before)
    assert added <= allowed, added
    return added
