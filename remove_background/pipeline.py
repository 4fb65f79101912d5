"""The plain Python API: ``remove(image) -> RemovalResult``. No InvokeAI needed.

Flow: image -> 8-bit RGB (+alpha) -> model input -> cached session -> mask at
model size -> mask at image size -> RGBA cut-out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from . import catalog, inference, model_files, sessions
from .compositing import combine_alpha, cutout
from .images import is_flat, to_rgb_alpha
from .providers import plan_providers


@dataclass
class RemovalResult:
    """The cut-out (RGBA), its mask (L, equal to the cut-out's alpha), and how it was made."""

    image: Image.Image
    mask: Image.Image
    model: str
    providers: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def load_model(
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
) -> sessions.LoadedModel:
    """Find (or download) the model's files and return its cached live session."""
    info = catalog.get_model(model)
    folder = Path(models_dir).expanduser() if models_dir else model_files.default_models_dir()
    plan = plan_providers(provider, device)
    paths = model_files.ensure_model(info, folder, progress=progress, allow_download=allow_download)
    return sessions.get_session(info, paths, plan)


def predict_mask(loaded: sessions.LoadedModel, rgb: Image.Image, **options) -> np.ndarray:
    """The model's mask for the RGB image ``rgb`` at the image's own size (uint8, H×W)."""
    info = loaded.info
    width, height = rgb.size
    if info.output == "sam":
        prompt = options.get("sam_prompt")
        kwargs = {"sam_prompt": prompt} if prompt else {}
        return np.asarray(loaded.rembg_session().predict(rgb, **kwargs)[0].convert("L"))
    x, small = inference.model_input(rgb, info)
    if (small == small[0, 0]).all() and is_flat(rgb):  # nothing to separate: rembg would stretch noise here
        return np.zeros((height, width), dtype=np.uint8)
    outputs = loaded.main.run(None, {loaded.main.get_inputs()[0].name: x})
    if info.output == "cloth":
        low = inference.cloth_mask(outputs, options.get("cloth_category", "all"))
    else:
        low = inference.small_mask(outputs, info)
    return inference.upscale_mask(low, width, height)


def remove(
    image: Image.Image,
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    *,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
    **options,
) -> RemovalResult:
    """Remove the background of ``image``.

    ``model``: a catalog name (see ``remove_background.catalog.MODEL_NAMES``).
    ``provider``: ``auto``, ``cpu``, ``cuda``, ``tensorrt``, ``rocm``, ``directml``, ``openvino``, ``coreml``.
    ``models_dir``: where model files live (default ``$REMOVE_BACKGROUND_MODELS`` or
    ``~/.cache/remove-background/models``); rembg's own folder is searched too.
    ``device``: a torch-style device (``cuda:1``) that ``auto`` follows.
    The input image is never modified.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rgb, input_alpha = to_rgb_alpha(image)
    t1 = time.perf_counter()
    loaded = load_model(model, provider, models_dir, device, progress, allow_download)
    t2 = time.perf_counter()
    mask = predict_mask(loaded, rgb, **options)
    t3 = time.perf_counter()
    result_mask = Image.fromarray(combine_alpha(mask, input_alpha), "L")
    result_image = cutout(rgb, result_mask)
    t4 = time.perf_counter()
    timings.update(decode=t1 - t0, session=t2 - t1, mask=t3 - t2, composite=t4 - t3, total=t4 - t0)
    return RemovalResult(result_image, result_mask, loaded.info.name, list(loaded.providers), timings)
