"""The plain Python API: ``remove(image) -> RemovalResult``. No InvokeAI needed.

One path for every model and backend: image -> 8-bit RGB (+alpha) -> the model's files, checked -> a live model
from a ``models`` source -> the steps for this image (work.py): the family's mask, matting, refining, the cut-out.
When the options ask for a refiner (ViTMatte), its files are checked before anything runs, and its live model is
opened from the same source, on the same route, for the steps after the mask (``None`` when none is asked for).
Which backend runs the model, and whether the steps around it run on its GPU, is the live model's business
(backends/); how the model is fed and read is its family's (families/). Models come from our own bounded cache by
default (backends/cache.OWN_MODELS), from InvokeAI's model cache in the node (invokeai_adapter/model_cache.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from PIL import Image

from . import catalog, families, model_files
from .backends import cache
from .backends.models import LoadedModel
from .backends.routes import plan_providers
from .custom_models import custom_model
from .imaging.decode import to_rgb_alpha
from .install import dependencies
from .options import RemovalOptions


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
    *,
    model_path: Union[str, Path, None] = None,
    model_family: Optional[str] = None,
):
    """(catalog entry, its verified files, the provider plan): found or downloaded, checked, planned. Model
    ``custom``: your own file ``model_path``, run as ``model_family`` (custom_models.py)."""
    dependencies.require()
    plan = plan_providers(provider, device)
    if model == catalog.CUSTOM or model_path is not None:
        if model_path is None or model_family is None:
            raise ValueError("Your own model file needs model_path= (the .onnx file) and model_family= (how it is "
                             f"fed: {', '.join(families.custom_families())}).")
        return (*custom_model(model_path, model_family), plan)
    info = catalog.get_model(model)
    paths = model_files.ensure_model(info, model_files.models_dir_or_default(models_dir), progress=progress,
                                     allow_download=allow_download)
    return info, paths, plan


def load_model(
    model: str = catalog.DEFAULT_MODEL,
    provider: str = "auto",
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
    *,
    model_path: Union[str, Path, None] = None,
    model_family: Optional[str] = None,
) -> LoadedModel:
    """Find (or download) the model's files and return its cached live session (our own cache)."""
    return cache.get_session(*model_request(model, provider, models_dir, device, progress, allow_download,
                                            model_path=model_path, model_family=model_family))


def refiner_request(options: RemovalOptions, models_dir: Union[str, Path, None] = None, device: Optional[str] = None,
                    progress: Optional[model_files.Progress] = None, allow_download: bool = True):
    """``model_request`` for the refiner ``options`` ask for (its files found or downloaded, checked), or None."""
    if options.refiner is None:
        return None
    return model_request(options.refiner, options.provider, models_dir, device, progress, allow_download)


def load_models(options: RemovalOptions, models_dir: Union[str, Path, None] = None, device: Optional[str] = None,
                allow_download: bool = True) -> list[LoadedModel]:
    """Every live model ``options`` need (the model, and its refiner when asked for), created now in our cache:
    what the batch path checks before any work, and what each of its workers loads once."""
    loaded = [load_model(options.model, options.provider, models_dir, device, allow_download=allow_download,
                         model_path=options.model_path, model_family=options.model_family)]
    if options.refiner is not None:
        loaded.append(load_model(options.refiner, options.provider, models_dir, device,
                                 allow_download=allow_download))
    return loaded


def _open_refiner(source: cache.ModelSource, request):
    """The refiner's live model from ``source`` while the block runs, or None when there is none to open."""
    return source.open(*request) if request is not None else contextlib.nullcontext(None)


def remove(
    image: Image.Image,
    options: Union[RemovalOptions, str, None] = None,
    *,
    models_dir: Union[str, Path, None] = None,
    device: Optional[str] = None,
    progress: Optional[model_files.Progress] = None,
    allow_download: bool = True,
    models: Optional[cache.ModelSource] = None,
    **option_keywords,
) -> RemovalResult:
    """Remove the background of ``image``. The input image is never modified.

    ``options``: a ``RemovalOptions`` (every option, its default and range, is declared there); keywords with
    option names are applied on top, so ``remove(image, model="u2net", mask_blur=2)`` works as well.
    ``models_dir``: where model files live (default ``$REMOVE_BACKGROUND_MODELS`` or
    ``~/.cache/remove-background/models``); rembg's own folder is searched too.
    ``device``: a torch-style device (``cuda:1``) that the ``auto`` provider follows.
    ``progress(name, done, total)``: called while a model downloads. ``allow_download``: False fails instead.
    ``models``: where live models are kept (default: our own cache; the node passes InvokeAI's model cache); with
    ``vitmatte=True`` the refiner's model comes from there too, on the same route.
    Your own file: ``remove(image, model_path="my.onnx", model_family="isnet")`` (how it is fed).
    """
    if isinstance(options, str):  # remove(image, "u2net"): the model, as the first positional argument always was
        options, option_keywords = None, {"model": options, **option_keywords}
    opts = RemovalOptions.build(options, **option_keywords)
    t0 = time.perf_counter()
    rgb, input_alpha = to_rgb_alpha(image)
    t1 = time.perf_counter()
    info, paths, plan = model_request(opts.model, opts.provider, models_dir, device, progress, allow_download,
                                      model_path=opts.model_path, model_family=opts.model_family)
    refiner = refiner_request(opts, models_dir, device, progress, allow_download)  # its files before any run
    source = models or cache.OWN_MODELS
    with source.open(info, paths, plan) as model:
        t2 = time.perf_counter()
        providers = list(model.providers)
        work = model.start(rgb, input_alpha)
        work.predict(opts)
    t3 = time.perf_counter()
    with _open_refiner(source, refiner) as refiner_model:  # held only while the steps after the mask run
        result_image, result_mask = work.complete(opts, refiner_model)
    t4 = time.perf_counter()
    timings = dict(decode=t1 - t0, session=t2 - t1, mask=t3 - t2, finish=t4 - t3, total=t4 - t0)
    return RemovalResult(result_image, result_mask, info.name, providers, timings)
