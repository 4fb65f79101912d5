"""Where live models are kept: a bounded, thread-safe LRU of LoadedModel, keyed by (model, route, files).

A model is created once per key and reused. Creation of one key never blocks the use of another, and two threads
asking for the same key create it once. The bound applies per device (the route with its device id), so InvokeAI
running the node on several GPUs at once keeps one session per GPU instead of evicting one GPU's for another's.
The API, the CLI and the batch path keep their models here (``OWN_MODELS``); the node keeps them in InvokeAI's
model cache instead (invokeai_adapter/model_cache.py). Both are a ``ModelSource``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional, Protocol

from ..catalog import ModelInfo
from .models import LoadedModel, create_model
from .routes import ProviderPlan

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = int(os.environ.get("REMOVE_BACKGROUND_MAX_SESSIONS", "2"))


class SessionCache:
    """Bounded LRU of LoadedModel (``max_size`` per device), safe to use from several threads at once."""

    def __init__(self, max_size: int = DEFAULT_MAX_SESSIONS):
        self.max_size = max(1, max_size)
        self._items: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self.created = 0  # how many sessions were created (for tests and benchmarks)

    def _hit(self, key: tuple) -> Optional[LoadedModel]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def get(self, key: tuple, factory: Callable[[], LoadedModel]) -> LoadedModel:
        found = self._hit(key)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            found = self._hit(key)
            if found is not None:
                return found
            model = factory()
            with self._lock:
                self.created += 1
                self._items[key] = model
                self._evict_beyond_bound(_device_group(key))
                self._key_locks.pop(key, None)
            return model

    def _evict_beyond_bound(self, group) -> None:
        same = [k for k in self._items if _device_group(k) == group]  # oldest first
        for old_key in same[: max(0, len(same) - self.max_size)]:
            del self._items[old_key]
            log.info("remove-background: evicted session %s", old_key[0])

    def clear(self) -> int:
        """Drop every cached session; return how many were dropped."""
        with self._lock:
            n = len(self._items)
            self._items.clear()
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)


def _device_group(key: tuple):
    """The route-with-device part of a cache key: the bound applies to each device on its own."""
    return key[1] if len(key) > 1 else None


CACHE = SessionCache()


def get_session(info: ModelInfo, paths: list[Path], plan: ProviderPlan,
                cache: Optional[SessionCache] = None) -> LoadedModel:
    """The cached LoadedModel for (model, route, files), created on first use. Your own file's entry names its
    family and its revision (size, mtime): two files, or one file changed, never share an entry."""
    cache = CACHE if cache is None else cache
    key = (info.name, plan.key, tuple(str(p) for p in paths), info.revision)
    return cache.get(key, lambda: create_model(info, paths, plan))


def clear_sessions() -> int:
    """Empty the global session cache (frees model memory)."""
    return CACHE.clear()


class ModelSource(Protocol):
    """Where live models come from: ``open(info, paths, plan)`` is a context manager giving a LoadedModel, held
    (on its device) for as long as the block runs."""

    def open(self, info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> ContextManager[LoadedModel]: ...


class OwnModels:
    """Where the API, the CLI and the batch path keep their models: this module's bounded cache."""

    def __init__(self, cache: Optional[SessionCache] = None):
        self.cache = cache

    @contextlib.contextmanager
    def open(self, info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> Iterator[LoadedModel]:
        yield get_session(info, paths, plan, self.cache)


OWN_MODELS = OwnModels()
