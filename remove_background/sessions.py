"""A bounded, thread-safe LRU cache of live model sessions, keyed by (model, providers, files).

A session is created once per key and reused. Creation of one key never blocks
the use of another, and two threads asking for the same key create it once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .catalog import ModelInfo
from .errors import DependencyMissingError, ModelChecksumError
from .providers import ProviderPlan, check_loaded

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = int(os.environ.get("REMOVE_BACKGROUND_MAX_SESSIONS", "2"))

def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as e:
        from .dependencies import install_command

        raise DependencyMissingError(
            f"onnxruntime is not installed in this Python environment ({e}). Install it with: "
            f"{install_command(['onnxruntime'])}"
        ) from None
    return ort


def session_options(ort) -> Any:
    """ONNX Runtime settings, each measured against ORT's defaults in benchmarks/bench_speed.py:
    all graph optimisations; intra-op threads from OMP_NUM_THREADS when set (else ORT's choice, one per
    physical core); idle worker threads sleep instead of spinning, so both cores are free at once for the
    two-thread steps after the model run."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


@dataclass
class LoadedModel:
    """A live model: its ONNX Runtime sessions and what they actually run on."""

    info: ModelInfo
    ort_sessions: list
    providers: list[str]
    plan: ProviderPlan

    @property
    def main(self):
        return self.ort_sessions[0]


def create_model(info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> LoadedModel:
    """Create ORT sessions for ``info`` from ``paths`` on ``plan``; check which providers loaded."""
    ort = import_onnxruntime()
    opts = session_options(ort)
    sessions = []
    for path in paths:
        try:
            sessions.append(ort.InferenceSession(str(path), sess_options=opts, providers=list(plan.providers)))
        except Exception as e:  # ORT raises its own InvalidProtobuf / InvalidGraph / Fail types
            text = str(e)
            unreadable = type(e).__name__ in ("InvalidProtobuf", "InvalidGraph") or "Protobuf parsing failed" in text
            if unreadable:
                raise ModelChecksumError(
                    f"Model file {path} could not be loaded by ONNX Runtime; it looks corrupt or truncated. "
                    f"Delete it and download it again. ({text.strip()[:300]})"
                ) from None
            raise
    loaded = list(sessions[0].get_providers())
    check_loaded(plan, loaded, info.name)
    return LoadedModel(info=info, ort_sessions=sessions, providers=loaded, plan=plan)


class SessionCache:
    """Bounded LRU of LoadedModel, safe to use from several threads at once."""

    def __init__(self, max_size: int = DEFAULT_MAX_SESSIONS):
        self.max_size = max(1, max_size)
        self._items: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self.created = 0  # how many sessions were created (for tests and benchmarks)

    def get(self, key: tuple, factory: Callable[[], LoadedModel]) -> LoadedModel:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            model = factory()
            with self._lock:
                self.created += 1
                self._items[key] = model
                self._items.move_to_end(key)
                while len(self._items) > self.max_size:
                    old_key, _ = self._items.popitem(last=False)
                    log.info("remove-background: evicted session %s", old_key[0])
                self._key_locks.pop(key, None)
            return model

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


CACHE = SessionCache()


def get_session(
    info: ModelInfo,
    paths: list[Path],
    plan: ProviderPlan,
    cache: Optional[SessionCache] = None,
) -> LoadedModel:
    """The cached LoadedModel for (model, providers, files), created on first use."""
    cache = CACHE if cache is None else cache
    key = (info.name, plan.key, tuple(str(p) for p in paths))
    return cache.get(key, lambda: create_model(info, paths, plan))


def clear_sessions() -> int:
    """Empty the global session cache (frees model memory)."""
    return CACHE.clear()
