"""A bounded, thread-safe LRU cache of live model sessions, keyed by (model, providers, files).

A session is created once per key and reused. Creation of one key never blocks
the use of another, and two threads asking for the same key create it once.
The bound applies per device (the providers with their device id), so InvokeAI
running the node on several GPUs at once keeps one session per GPU instead of
evicting one GPU's session for another's.

CPU runs are gated: ONNX Runtime already spreads one run over every core, so
several callers running the model at once on the CPU (threads of one process)
only fight over the cores. At most ``cpu_run_slots()`` CPU runs go at once
(cores / ORT threads per session: 1 with ORT's default thread count); the other
callers wait for a slot while their decoding, resizing and compositing go on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
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
    if loaded == [CPU_PROVIDER]:
        sessions = [GatedSession(s, CPU_GATE) for s in sessions]
    return LoadedModel(info=info, ort_sessions=sessions, providers=loaded, plan=plan)


CPU_PROVIDER = "CPUExecutionProvider"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_run_slots() -> int:
    """How many CPU model runs may go at once in this process: ``REMOVE_BACKGROUND_CPU_RUNS`` when set (0: no
    limit), else the cores divided by ORT's threads per session (OMP_NUM_THREADS, else ORT's one per core)."""
    value = os.environ.get("REMOVE_BACKGROUND_CPU_RUNS", "")
    if value.strip().isdigit():
        return int(value)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    per_run = int(threads) if threads.isdigit() and int(threads) > 0 else usable_cores()
    return max(1, usable_cores() // per_run)


class RunGate:
    """A counting gate for model runs, with figures for tests and benchmarks (peak runs at once, waits)."""

    def __init__(self, slots: int):
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots) if slots > 0 else None
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.waited = 0
        self.run_seconds = 0.0  # total time spent in model runs through this gate

    def __enter__(self):
        if self._sem is not None:
            if not self._sem.acquire(blocking=False):
                with self._lock:
                    self.waited += 1
                self._sem.acquire()
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.running -= 1
        if self._sem is not None:
            self._sem.release()
        return False

    def reset(self, slots: Optional[int] = None) -> None:
        """Start again with ``slots`` (default ``cpu_run_slots()``); only while no run is in progress."""
        self.__init__(cpu_run_slots() if slots is None else slots)


CPU_GATE = RunGate(cpu_run_slots())


class GatedSession:
    """An ``ort.InferenceSession`` whose ``run`` takes a slot of ``gate``; everything else is the session's."""

    __slots__ = ("_session", "_gate")

    def __init__(self, session, gate: RunGate):
        self._session = session
        self._gate = gate

    def run(self, *args, **kwargs):
        with self._gate:
            t0 = time.perf_counter()
            try:
                return self._session.run(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                with self._gate._lock:
                    self._gate.run_seconds += elapsed

    @property
    def inner(self):
        return self._session

    def __getattr__(self, name):
        return getattr(self._session, name)


class SessionCache:
    """Bounded LRU of LoadedModel (``max_size`` per device), safe to use from several threads at once."""

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
                group = _device_group(key)
                same = [k for k in self._items if _device_group(k) == group]  # oldest first
                for old_key in same[: max(0, len(same) - self.max_size)]:
                    del self._items[old_key]
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


def _device_group(key: tuple):
    """The providers-with-device part of a cache key: the bound applies to each device on its own."""
    return key[1] if len(key) > 1 else None


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
