"""Models held by InvokeAI's model cache, for the node: counted in its RAM/VRAM budget, moved, evicted.

``InvokeAIModels(context.models).open(info, paths, plan)`` loads each file through
``context.models.load_local_model(key, loader)`` and locks it for the run: an ONNX Runtime session (InvokeAI counts
it by its file) or a converted torch module (counted by its weights, moved to the execution device while locked,
offloaded and evicted under memory pressure with InvokeAI's other models). InvokeAI's cache is keyed by path: a
session is keyed by its ONNX file's path, a torch module by that path plus ``#torch``, so the two never meet under
one key (and a half-precision row, or your own file's revision, adds to the key: see ``cache_key``). The ONNX file
stays the one source of truth (verified by checksum before loading; nothing converted is
written to disk but the float16 twin a half-precision row runs on ONNX Runtime, as rembg makes it).

This module imports no InvokeAI code: it only calls the ``context.models`` object it is given.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator, Optional

from ..catalog import ModelInfo
from ..backends.routes import TORCH, ProviderPlan
from ..backends.pytorch.session import load_module
from ..backends.models import LoadedModel, first_route, ort_model, torch_model
from ..backends.onnx_runtime import create_sessions

TORCH_KEY_SUFFIX = "#torch"
HALF_KEY_SUFFIX = "#fp16"

_resolved: dict[tuple, ProviderPlan] = {}  # (files, plan asked for) -> the route that worked (auto's fallbacks)
_resolved_lock = threading.Lock()


def cache_key(path: Path, plan: ProviderPlan, info: Optional[ModelInfo] = None) -> Path:
    """The path InvokeAI's cache keys this file's live model by, for this route: the file's own path, plus your
    own file's revision (a changed file is a new model), ``#fp16`` for a half-precision row (birefnet-general-fp16
    runs birefnet-general's file) and ``#torch`` for the torch route."""
    key = str(path)
    if info is not None and info.revision:
        key += f"@{info.revision}"
    if info is not None and info.half:
        key += HALF_KEY_SUFFIX
    return Path(key + TORCH_KEY_SUFFIX) if plan.backend == TORCH else Path(key)


class InvokeAIModels:
    """A ``backends.cache.ModelSource`` over InvokeAI's model cache (``context.models``)."""

    def __init__(self, models):
        self.models = models

    def _load(self, info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> list:
        """InvokeAI's loaded-model handles for ``paths`` on ``plan`` (the loaders run only on a cache miss)."""
        handles = []
        for i, path in enumerate(paths):
            if plan.backend == TORCH:
                def loader(_key: Path, path=path, i=i):
                    return load_module(info, path, i)
            else:
                def loader(_key: Path, path=path):
                    return create_sessions(info, [path], plan)[0]
            handles.append(self.models.load_local_model(cache_key(path, plan, info), loader))
        return handles

    @contextlib.contextmanager
    def open(self, info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> Iterator[LoadedModel]:
        asked = (tuple(str(p) for p in paths), plan.key, plan.choice)
        with _resolved_lock:
            route = _resolved.get(asked, plan)
        handles, route = first_route(route, info.name, lambda r: self._load(info, paths, r))
        with _resolved_lock:
            _resolved[asked] = route
        with contextlib.ExitStack() as stack:
            held = [stack.enter_context(_on_device(h)) for h in handles]
            if route.backend == TORCH:
                yield torch_model(info, held, route)
            else:
                yield ort_model(info, held, route)


def _on_device(handle):
    """Lock an InvokeAI loaded model for the run: ``model_on_device()`` (the model only) where InvokeAI has it,
    else the older ``with handle as model``."""
    if hasattr(handle, "model_on_device"):
        return _model_only(handle.model_on_device())
    return handle


@contextlib.contextmanager
def _model_only(context):
    with context as (_state_dict, model):
        yield model
