"""The CPU run gate: how many model runs may use the CPU at once in this process.

ONNX Runtime already spreads one run over every core, so several callers running the model at once on the CPU
(threads of one process) only fight over the cores. At most ``cpu_run_slots()`` CPU runs go at once (cores / ORT
threads per session: 1 with ORT's default thread count); the other callers wait for a slot while their decoding,
resizing and compositing go on.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ort_threads() -> Optional[int]:
    """ONNX Runtime's intra-op threads per session from ``OMP_NUM_THREADS``, when it is set to a positive number."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    return int(threads) if threads.isdigit() and int(threads) > 0 else None


def cpu_run_slots() -> int:
    """How many CPU model runs may go at once in this process: ``REMOVE_BACKGROUND_CPU_RUNS`` when set (0: no
    limit), else the cores divided by ORT's threads per session (OMP_NUM_THREADS, else ORT's one per core)."""
    value = os.environ.get("REMOVE_BACKGROUND_CPU_RUNS", "")
    if value.strip().isdigit():
        return int(value)
    per_run = ort_threads() or usable_cores()
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

    def account(self, seconds: float) -> None:
        with self._lock:
            self.run_seconds += seconds

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
                self._gate.account(time.perf_counter() - t0)

    def __getattr__(self, name):
        return getattr(self._session, name)
