"""Folder settings of an InvokeAI root, read from its ``invokeai.yaml`` without importing InvokeAI.

Standard library only: ``install.py`` loads this file directly, before the package is installed.
"""

from __future__ import annotations

from pathlib import Path


def config_value(root: Path, key: str, default: str) -> str:
    """A top-level setting of ``invokeai.yaml`` (``device``, ``models_dir``...), or ``default``."""
    value = default
    config = root / "invokeai.yaml"
    if config.is_file():
        for line in config.read_text(errors="replace").splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                value = v.split(" #", 1)[0].strip().strip("'\"") or default
    return value


def config_folder(root: Path, key: str, default: str) -> Path:
    """A folder setting (``models_dir``, ``custom_nodes_dir``) from ``invokeai.yaml``, resolved against the root."""
    path = Path(config_value(root, key, default)).expanduser()
    return path if path.is_absolute() else root / path
