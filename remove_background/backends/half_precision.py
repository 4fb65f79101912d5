"""Models that run in half precision (catalog rows with ``half``: birefnet-general-fp16), on either backend.

ONNX Runtime: as rembg 2.0.86 makes ``birefnet-general-fp16``: the float32 file (downloaded and verified as its own
row's) is converted once with onnxconverter-common's ``convert_float_to_float16(..., keep_io_types=True)``, so
inputs and outputs stay float32, and written atomically beside it as ``<model name>.onnx``; later runs use that file.
The torch route converts the float32 file as usual and runs that module in half precision instead
(pytorch/session.py, ``in_half_precision``): one conversion path, the weights stored once, in float16.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ..catalog import ModelInfo
from ..errors import DependencyMissingError

log = logging.getLogger(__name__)

FP16_PACKAGES = ["onnx", "onnxconverter-common"]


def half_file(info: ModelInfo, source: Path) -> Path:
    """The float16 twin of ``source`` for ``info``: made on first use, beside it, then reused."""
    target = source.with_name(f"{info.name}.onnx")
    if target.is_file():
        return target
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        from ..install.dependencies import install_command

        raise DependencyMissingError(
            f"Model '{info.name}' converts {source.name} to half precision on first use, which needs onnx and "
            f"onnxconverter-common: {install_command(FP16_PACKAGES)} (or choose {source.stem}, the same model in "
            "float32).") from None
    log.info("remove-background: converting %s to half precision for %s (once)", source.name, info.name)
    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, target)  # an interrupted conversion never leaves a file that looks finished
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def backend_paths(info: ModelInfo, paths: list) -> list:
    """The files ONNX Runtime runs for ``info``: its own, or for a half-precision row their float16 twins."""
    return [half_file(info, Path(p)) for p in paths] if info.half else list(paths)
