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

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional, Protocol, TypeVar

from ..catalog import ModelInfo
from ..errors import DependencyMissingError, DeviceOutOfMemoryError, ModelChecksumError, ProviderUnavailableError
from .routes import TORCH, ProviderPlan, check_loaded, warn_once

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = int(os.environ.get("REMOVE_BACKGROUND_MAX_SESSIONS", "2"))

def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as e:
        from ..install.dependencies import install_command

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
    """A live model: its sessions (ONNX Runtime sessions, or torch_backend.TorchSession) and what they run on.

    ``plan`` is the route that actually runs it (auto's fallback when the route asked for did not load)."""

    info: ModelInfo
    sessions: list
    providers: list[str]
    plan: ProviderPlan
    _device_pipeline: Any = field(default=None, repr=False)

    @property
    def main(self):
        return self.sessions[0]

    @property
    def ort_sessions(self) -> list:  # the name of 1.x
        return self.sessions

    @property
    def device_pipeline(self):
        """The device-side pre- and post-processing (device_pipeline.DevicePipeline) for a torch model on a GPU;
        else None. On the CPU the host path (PIL, OpenCV, NumPy) is several times faster than the same maths in
        torch (benchmarks/bench_torch.py), so a torch model there runs the model only."""
        if self.plan.backend != TORCH or self.info.output == "sam":
            return None
        if self.main.device.type == "cpu" and not DEVICE_PIPELINE_ON_CPU:
            return None
        if self._device_pipeline is None:
            from .pytorch.device_work import DevicePipeline

            self._device_pipeline = DevicePipeline(self.main, self.info)
        return self._device_pipeline


DEVICE_PIPELINE_ON_CPU = False  # tests set it, to run the device pipeline where CI has no GPU
T = TypeVar("T")


def first_route(plan: ProviderPlan, model: str, attempt: Callable[[ProviderPlan], T]) -> tuple[T, ProviderPlan]:
    """``attempt(plan)``, or for ``auto`` its fallbacks in turn while a route does not load or convert, with one
    loud warning each time; returns (the result, the plan that gave it). Explicit choices fail instead."""
    while True:
        try:
            return attempt(plan), plan
        except DeviceOutOfMemoryError:
            raise  # out of memory is not a route that does not work: the run fails with its message
        except ProviderUnavailableError as e:
            if plan.explicit or plan.fallback is None:
                raise
            warn_once((model, plan.key, type(e).__name__),
                      f"{e} Running model '{model}' on {plan.fallback.description} instead.")
            plan = plan.fallback


def create_ort_sessions(info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> list:
    """ONNX Runtime sessions for ``paths`` on ``plan``'s providers; raises if its accelerator did not load."""
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
    check_loaded(plan, list(sessions[0].get_providers()), info.name)
    return sessions


def ort_model(info: ModelInfo, sessions: list, plan: ProviderPlan) -> LoadedModel:
    """A LoadedModel over ONNX Runtime sessions; CPU ones share the CPU run gate."""
    loaded = list(sessions[0].get_providers())
    if loaded == [CPU_PROVIDER]:
        sessions = [GatedSession(s, CPU_GATE) for s in sessions]
    return LoadedModel(info=info, sessions=sessions, providers=loaded, plan=plan)


def load_torch_modules(info: ModelInfo, paths: list[Path]) -> list:
    """The converted torch modules (CPU, fp32) for ``paths``."""
    from .pytorch import session as torch_backend

    return [torch_backend.load_module(info, path, i) for i, path in enumerate(paths)]


def torch_model(info: ModelInfo, modules: list, plan: ProviderPlan) -> LoadedModel:
    """A LoadedModel over torch modules already on their device."""
    from .pytorch.session import TorchSession

    sessions = [TorchSession(m, info.name, plan.torch_device) for m in modules]
    return LoadedModel(info=info, sessions=sessions, providers=sessions[0].get_providers(), plan=plan)


def to_device(modules: list, device: str, model: str) -> list:
    """Move our own (not InvokeAI's) converted modules to ``device``; a device torch cannot use is a route that
    does not work (auto falls back), out of memory a clear failure."""
    from .pytorch import session as torch_backend

    try:
        return [m.to(device) for m in modules]
    except Exception as e:
        if torch_backend.is_out_of_memory(e):
            raise torch_backend.out_of_memory_error(model, device, e) from None
        raise ProviderUnavailableError(f"PyTorch cannot use the device {device} for model '{model}' ({e}).") from None


def create_model(info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> LoadedModel:
    """A live model for ``info`` from ``paths`` on ``plan`` (or, for auto, the first of its fallbacks that works)."""

    def attempt(route: ProviderPlan) -> LoadedModel:
        if route.backend == TORCH:
            modules = to_device(load_torch_modules(info, paths), route.torch_device, info.name)
            return torch_model(info, modules, route)
        return ort_model(info, create_ort_sessions(info, paths, route), route)

    return first_route(plan, info.name, attempt)[0]


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
