"""An InvokeAI root: where it is (``find_root``, the one function that finds it), and the folder settings of its
``invokeai.yaml``, read without importing InvokeAI.

Standard library only: ``install.py`` loads this file directly, before the package is installed. It looks at a
running InvokeAI's config only when that module is already loaded (we run inside InvokeAI).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Union

HOME_ROOT = "~/invokeai"  # InvokeAI's own default root
RUNNING_CONFIG = "invokeai.app.services.config.config_default"
SHIM_ROOT_VARIABLE = "REMOVE_BACKGROUND_INVOKEAI_ROOT"  # written by install.py's node-pack shim into InvokeAI's process
ASSUME_HOME = ("never", "if_present", "always")


def running_root() -> Optional[Path]:
    """The root of the InvokeAI this process runs in: the shim's record, else the running config (never imported
    here: read only when InvokeAI already loaded it)."""
    if os.environ.get(SHIM_ROOT_VARIABLE):
        return Path(os.environ[SHIM_ROOT_VARIABLE])
    if RUNNING_CONFIG in sys.modules:
        try:
            return Path(sys.modules[RUNNING_CONFIG].get_config().root_path)
        except Exception:  # a half-initialised or different InvokeAI: not knowing the root is fine
            return None
    return None


def find_root(explicit: Union[str, Path, None] = None, *, clone: Optional[Path] = None,
              assume_home: str = "never") -> Optional[Path]:
    """The InvokeAI root (expanded and absolute), from the first of:

    ``explicit`` (a ``--root``); the InvokeAI this process runs in (``running_root``); ``$INVOKEAI_ROOT``; the root
    that ``clone`` (a clone of this repository) sits in as ``<root>/nodes/<clone>`` beside ``invokeai.yaml``; and
    ``~/invokeai`` as ``assume_home`` says: ``"never"`` (the run-time install command adds ``--root`` only when it
    knows it), ``"if_present"`` (doctor, where InvokeAI is installed: when that folder exists) or ``"always"``
    (install.py, which says so when it does not exist). None when none of them applies.
    """
    if assume_home not in ASSUME_HOME:
        raise ValueError(f"assume_home must be one of {', '.join(ASSUME_HOME)}, got {assume_home!r}.")
    found = explicit or running_root() or os.environ.get("INVOKEAI_ROOT") or None
    if found is None and clone is not None and (Path(clone).resolve().parent.parent / "invokeai.yaml").is_file():
        found = Path(clone).resolve().parent.parent
    home = Path(HOME_ROOT).expanduser()
    if found is None and (assume_home == "always" or (assume_home == "if_present" and home.is_dir())):
        found = home
    return Path(found).expanduser().resolve() if found is not None else None


def config_value(root: Path, key: str, default: str) -> str:
    """A top-level setting of ``invokeai.yaml`` (``device``, ``models_dir``...), or ``default``."""
    value = default
    try:
        text = (root / "invokeai.yaml").read_text(errors="replace")
    except OSError:  # no config yet (InvokeAI writes it on first start), or unreadable: InvokeAI's defaults
        return default
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key and v.strip():
            value = v.split(" #", 1)[0].strip().strip("'\"") or default
    return value


def config_folder(root: Path, key: str, default: str) -> Path:
    """A folder setting (``models_dir``, ``custom_nodes_dir``) from ``invokeai.yaml``, resolved against the root."""
    path = Path(config_value(root, key, default)).expanduser()
    return path if path.is_absolute() else root / path
