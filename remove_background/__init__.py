"""remove-background: remove image backgrounds with rembg's ONNX models, in InvokeAI or plain Python.

    from remove_background import RemovalOptions, remove
    result = remove(pil_image, RemovalOptions(model="u2netp", mask_blur=2))   # result.image (RGBA), result.mask (L)
    result = remove(pil_image, model="u2netp", mask_blur=2)                   # the same

Importing this package never needs InvokeAI. When InvokeAI loads it as a node
pack (its invocation machinery is already imported then), the node registers.
"""

import sys

__version__ = "1.4.0"  # 1.4: vitmatte, vitmatte_model (learned edges)
# 1.3: your own model file (model custom), BiRefNet HR and matting, BEN2, birefnet-general-fp16;
# 1.2: the torch execution provider (auto runs on InvokeAI's GPU); 1.1: mask_tensor, edge_detail

from .imaging.buffers import clear_buffers  # noqa: E402
from .catalog import MODEL_NAMES, MODELS  # noqa: E402
from .errors import (  # noqa: E402
    DependencyMissingError,
    DeviceOutOfMemoryError,
    InvalidImageError,
    ModelChecksumError,
    ModelFileError,
    ModelNotAvailableError,
    ProviderUnavailableError,
    RemoveBackgroundError,
    TorchConversionError,
)
from .options import RemovalOptions  # noqa: E402
from .pipeline import RemovalResult, load_model, remove  # noqa: E402
from .backends.cache import clear_sessions  # noqa: E402

if "invokeai.app.invocations" in sys.modules:  # InvokeAI is loading node packs (4.x: before baseinvocation)
    from .invokeai_adapter.releases import require_supported_invokeai  # noqa: E402

    require_supported_invokeai()  # older: one clear line in its log, not a silent or later failure
if "invokeai.app.invocations.baseinvocation" in sys.modules:  # loaded by InvokeAI: register the node
    from . import invocation  # noqa: E402,F401

__all__ = [
    "remove",
    "RemovalOptions",
    "load_model",
    "clear_sessions",
    "clear_buffers",
    "RemovalResult",
    "MODELS",
    "MODEL_NAMES",
    "RemoveBackgroundError",
    "ModelNotAvailableError",
    "ModelChecksumError",
    "ModelFileError",
    "ProviderUnavailableError",
    "DependencyMissingError",
    "InvalidImageError",
    "TorchConversionError",
    "DeviceOutOfMemoryError",
]
