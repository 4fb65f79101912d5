"""The plain Python API: ``remove(image) -> RemovalResult``. No InvokeAI needed.

Flow: image -> 8-bit RGB (+alpha) -> model input -> cached session -> mask at
model size -> mask at image size -> RGBA cut-out.

Where the model runs on a torch device, the steps around it run there too (device_pipeline.py) and only the
results come back to the host; options that need the CPU (matting, mask refinements, decontamination, a solid
background, edge detail "high", Segment Anything's prompts) take the mask back and go on here. Models come from a
``models`` source: our own bounded cache by default (sessions.OWN_MODELS), InvokeAI's model cache in the node
(hosted_models.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from . import catalog

from .install import dependencies

from .imaging import detail

from .imaging import resample as inference

from . import model_files

from .families import sam

from .backends import models as sessions
from .imaging.compositing import combine_alpha, cutout, over_background
from .imaging.decode import is_flat, to_rgb_alpha
from .imaging.matting import alpha_matte
from .imaging.matting import decontaminate as decontaminate_colours
from .options import RemovalOptions, sam_prompt
from .backends.routes import plan_providers
from .imaging.refine import refine


@dataclass
class RemovalResult:
    """The cut-out (RGBA), its mask (L, equal to the cut-out's alpha), and how it was made."""

    image: Image.Image
    mask: Image.Image
    model: str
    providers: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def model_request(
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
):
    """(catalog entry, its verified files, the provider plan): found or downloaded, checked, planned."""
    dependencies.require()
    info = catalog.get_model(model)
    folder = Path(models_dir).expanduser() if models_dir else model_files.default_models_dir()
    plan = plan_providers(provider, device)
    paths = model_files.ensure_model(info, folder, progress=progress, allow_download=allow_download)
    return info, paths, plan


def load_model(
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
) -> sessions.LoadedModel:
    """Find (or download) the model's files and return its cached live session (our own cache)."""
    return sessions.get_session(*model_request(model, provider, models_dir, device, progress, allow_download))


def device_work_only(opts: RemovalOptions, info: catalog.ModelInfo) -> bool:
    """True when every step these options ask for has a device version (device_pipeline.py)."""
    return (not opts.matting.enabled and opts.mask.is_identity and not opts.decontaminate
            and opts.background_color is None and info.output != "sam"
            and (opts.edge_detail == "standard" or not detail.supports_detail(info.output)))


def predict_mask(
    loaded: sessions.LoadedModel,
    rgb: Image.Image,
    cloth_category: str = "all",
    prompt: Optional[list] = None,
    edge_detail: str = "standard",
) -> np.ndarray:
    """The model's mask for the RGB image ``rgb`` at the image's own size (uint8, H×W). ``edge_detail`` "high":
    a second pass on the subjects and edge-aware upsampling (detail.py), for plain-mask models."""
    info = loaded.info
    width, height = rgb.size
    if info.output == "sam":
        return sam.predict(*loaded.sessions, rgb, prompt)
    on_device = loaded.device_pipeline
    if on_device is not None and not (edge_detail == "high" and detail.supports_detail(info.output)):
        return on_device.run(rgb, None, cloth_category, cutout=False)[1]
    x, small = inference.model_input(rgb, info)
    if (small == small[0, 0]).all() and is_flat(rgb):  # nothing to separate: rembg would stretch noise here
        return np.zeros((height, width), dtype=np.uint8)
    outputs = loaded.main.run(None, {loaded.main.get_inputs()[0].name: x})
    if info.output == "cloth":
        low = inference.cloth_mask(outputs, cloth_category)
    else:
        low = inference.small_mask(outputs, info)
    full = inference.upscale_mask(low, width, height)
    if edge_detail == "high" and detail.supports_detail(info.output):
        return detail.detailed_mask(loaded, rgb, low, full)
    return full


def remove(
    image: Image.Image,
    options: Union[RemovalOptions, str, None] = None,
    *,
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
    models: Optional[sessions.ModelSource] = None,
    **option_keywords,
) -> RemovalResult:
    """Remove the background of ``image``. The input image is never modified.

    ``options``: a ``RemovalOptions`` (every option, its default and range, is declared there); keywords with
    option names are applied on top, so ``remove(image, model="u2net", mask_blur=2)`` works as well.
    ``models_dir``: where model files live (default ``$REMOVE_BACKGROUND_MODELS`` or
    ``~/.cache/remove-background/models``); rembg's own folder is searched too.
    ``device``: a torch-style device (``cuda:1``) that the ``auto`` provider follows.
    ``progress(name, done, total)``: called while a model downloads. ``allow_download``: False fails instead.
    ``models``: where live models are kept (default: our own cache; the node passes InvokeAI's model cache).
    """
    if isinstance(options, str):  # remove(image, "u2net"): the model, as the first positional argument always was
        options, option_keywords = None, {"model": options, **option_keywords}
    opts = RemovalOptions.build(options, **option_keywords)
    mask_options, matting_options = opts.mask, opts.matting
    background = opts.background_color

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rgb, input_alpha = to_rgb_alpha(image)
    t1 = time.perf_counter()
    info, paths, plan = model_request(opts.model, opts.provider, models_dir, device, progress, allow_download)
    with (models or sessions.OWN_MODELS).open(info, paths, plan) as loaded:
        t2 = time.perf_counter()
        providers = list(loaded.providers)
        on_device = loaded.device_pipeline
        if on_device is not None and device_work_only(opts, info):
            cut, alpha = on_device.run(rgb, input_alpha, opts.cloth_category, opts.output_mode != "mask_only")
            t3 = time.perf_counter()
            result_mask = Image.fromarray(alpha, "L")
            timings.update(decode=t1 - t0, session=t2 - t1, mask=t3 - t2, finish=0.0, total=t3 - t0)
            return RemovalResult(cut if cut is not None else result_mask, result_mask, info.name, providers, timings)
        mask = predict_mask(loaded, rgb, opts.cloth_category, sam_prompt(opts), opts.edge_detail)
    t3 = time.perf_counter()
    rgb_array = None
    if matting_options.enabled or opts.decontaminate or background is not None:
        rgb_array = np.asarray(rgb)
    if matting_options.enabled:
        mask = alpha_matte(rgb_array, mask, matting_options)
    if not mask_options.is_identity:
        mask = refine(mask, mask_options)
    alpha = combine_alpha(mask, input_alpha)
    result_mask = Image.fromarray(alpha, "L")
    if opts.output_mode == "mask_only":
        result_image = result_mask
    else:
        colours = rgb
        if opts.decontaminate:
            colours = Image.fromarray(decontaminate_colours(rgb_array, alpha), "RGB")
        if background is not None:
            base = np.asarray(colours) if colours is not rgb else rgb_array
            result_image = Image.fromarray(over_background(base, alpha, background), "RGBA")
        else:
            result_image = cutout(colours, alpha)
    t4 = time.perf_counter()
    timings.update(decode=t1 - t0, session=t2 - t1, mask=t3 - t2, finish=t4 - t3, total=t4 - t0)
    return RemovalResult(result_image, result_mask, info.name, providers, timings)
