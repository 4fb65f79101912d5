"""The plain Python API: ``remove(image) -> RemovalResult``. No InvokeAI needed.

Flow: image -> 8-bit RGB (+alpha) -> model input -> cached session -> mask at
model size -> mask at image size -> RGBA cut-out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from . import catalog, dependencies, inference, model_files, sessions
from .compositing import combine_alpha, cutout, over_background
from .matting import MattingOptions, alpha_matte
from .matting import decontaminate as decontaminate_colours
from .refine import MaskOptions, refine
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
    dependencies.require()
    info = catalog.get_model(model)
    folder = Path(models_dir).expanduser() if models_dir else model_files.default_models_dir()
    plan = plan_providers(provider, device)
    paths = model_files.ensure_model(info, folder, progress=progress, allow_download=allow_download)
    return sessions.get_session(info, paths, plan)


OUTPUT_MODES = ("cutout_and_mask", "mask_only")


def sam_prompt(point: Optional[Sequence[float]] = None, box: Optional[Sequence[float]] = None) -> Optional[list]:
    """rembg's SAM prompt from an (x, y) point and/or an (x0, y0, x1, y1) box; None = rembg's centre point."""
    prompt = []
    if point is not None:
        if len(point) != 2:
            raise ValueError(f"sam_point must be (x, y), got {point!r}.")
        prompt.append({"type": "point", "data": [float(point[0]), float(point[1])], "label": 1})
    if box is not None:
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"sam_box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}.")
        prompt.append({"type": "rectangle", "data": [float(v) for v in box], "label": 1})
    return prompt or None


def predict_mask(
    loaded: sessions.LoadedModel,
    rgb: Image.Image,
    cloth_category: str = "all",
    prompt: Optional[list] = None,
) -> np.ndarray:
    """The model's mask for the RGB image ``rgb`` at the image's own size (uint8, H×W)."""
    info = loaded.info
    width, height = rgb.size
    if info.output == "sam":
        kwargs = {"sam_prompt": prompt} if prompt else {}
        return np.asarray(loaded.rembg_session().predict(rgb, **kwargs)[0].convert("L"))
    x, small = inference.model_input(rgb, info)
    if (small == small[0, 0]).all() and is_flat(rgb):  # nothing to separate: rembg would stretch noise here
        return np.zeros((height, width), dtype=np.uint8)
    outputs = loaded.main.run(None, {loaded.main.get_inputs()[0].name: x})
    if info.output == "cloth":
        low = inference.cloth_mask(outputs, cloth_category)
    else:
        low = inference.small_mask(outputs, info)
    return inference.upscale_mask(low, width, height)


def _colour(value) -> Optional[tuple[int, int, int, int]]:
    if value is None:
        return None
    if isinstance(value, str):
        from PIL import ImageColor

        value = ImageColor.getrgb(value)
    value = tuple(int(v) for v in value)
    if len(value) == 3:
        value = (*value, 255)
    if len(value) != 4 or not all(0 <= v <= 255 for v in value):
        raise ValueError(f"background_color must be RGB or RGBA with values 0-255, got {value!r}.")
    return value


def remove(
    image: Image.Image,
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    *,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
    post_process_mask: bool = False,
    mask_threshold: int = 0,
    mask_grow: int = 0,
    mask_blur: float = 0.0,
    mask_invert: bool = False,
    alpha_matting: bool = False,
    alpha_matting_foreground_threshold: int = 240,
    alpha_matting_background_threshold: int = 10,
    alpha_matting_erode_size: int = 10,
    decontaminate: bool = False,
    background_color=None,
    output_mode: str = "cutout_and_mask",
    cloth_category: str = "all",
    sam_point: Optional[Sequence[float]] = None,
    sam_box: Optional[Sequence[float]] = None,
) -> RemovalResult:
    """Remove the background of ``image``. The input image is never modified.

    ``model``: a catalog name (``remove_background.MODEL_NAMES``).
    ``provider``: ``auto``, ``cpu``, ``cuda``, ``tensorrt``, ``rocm``, ``directml``, ``openvino``, ``coreml``.
    ``models_dir``: where model files live (default ``$REMOVE_BACKGROUND_MODELS`` or
    ``~/.cache/remove-background/models``); rembg's own folder is searched too.
    ``device``: a torch-style device (``cuda:1``) that ``auto`` follows.

    Mask steps, in this order: alpha matting (``alpha_matting*``), ``post_process_mask``,
    ``mask_threshold`` (0 = soft), ``mask_grow`` (pixels, negative shrinks), ``mask_blur`` (pixels),
    ``mask_invert``; then the input's own alpha is multiplied in.
    ``decontaminate``: estimate the true foreground colour at soft edges (no fringe of the old background).
    ``background_color``: None (transparent) or an RGB(A) tuple / colour name to composite over; the mask is unchanged.
    ``output_mode``: ``cutout_and_mask`` or ``mask_only`` (then ``result.image`` is the mask).
    ``cloth_category`` (u2net_cloth_seg): ``upper``, ``lower``, ``full`` or ``all``.
    ``sam_point`` (x, y) and/or ``sam_box`` (x0, y0, x1, y1) prompt ``sam``; default the image centre.
    """
    mask_options = MaskOptions(post_process_mask, int(mask_threshold), int(mask_grow), float(mask_blur),
                               bool(mask_invert)).validate()
    matting_options = MattingOptions(bool(alpha_matting), int(alpha_matting_foreground_threshold),
                                     int(alpha_matting_background_threshold), int(alpha_matting_erode_size)).validate()
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}.")
    if cloth_category not in inference.CLOTH_CLASSES:
        raise ValueError(f"cloth_category must be one of {', '.join(inference.CLOTH_CLASSES)}, got {cloth_category!r}.")
    background = _colour(background_color)
    prompt = sam_prompt(sam_point, sam_box)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rgb, input_alpha = to_rgb_alpha(image)
    t1 = time.perf_counter()
    loaded = load_model(model, provider, models_dir, device, progress, allow_download)
    t2 = time.perf_counter()
    mask = predict_mask(loaded, rgb, cloth_category, prompt)
    t3 = time.perf_counter()
    rgb_array = None
    if matting_options.enabled or decontaminate or background is not None:
        rgb_array = np.asarray(rgb)
    if matting_options.enabled:
        mask = alpha_matte(rgb_array, mask, matting_options)
    if not mask_options.is_identity:
        mask = refine(mask, mask_options)
    alpha = combine_alpha(mask, input_alpha)
    result_mask = Image.fromarray(alpha, "L")
    if output_mode == "mask_only":
        result_image = result_mask
    else:
        colours = rgb
        if decontaminate:
            colours = Image.fromarray(decontaminate_colours(rgb_array, alpha), "RGB")
        if background is not None:
            base = np.asarray(colours) if colours is not rgb else rgb_array
            result_image = Image.fromarray(over_background(base, alpha, background), "RGBA")
        else:
            result_image = cutout(colours, alpha)
    t4 = time.perf_counter()
    timings.update(decode=t1 - t0, session=t2 - t1, mask=t3 - t2, finish=t4 - t3, total=t4 - t0)
    return RemovalResult(result_image, result_mask, loaded.info.name, list(loaded.providers), timings)
