"""Big pixel buffers, taken back when their last user lets go and handed out again.

A warm call then writes its mask and cut-out into memory that is already mapped. Fresh memory costs a page fault
per 4 KiB on first write: on a VM that hands freed memory back to its host, up to 40 ms for a 4096² RGBA image
(benchmarks/bench_speed.py). Like ONNX Runtime's own arena for the model, the pool trades some idle memory for
that time: at most ``REMOVE_BACKGROUND_BUFFER_MB`` (default 384; 0 turns it off) of buffers that nobody uses,
freed by ``clear_buffers()``. Buffers in use (a result the caller or InvokeAI's image cache still holds) are
never touched and never counted.

Each array handed out is a view of a block through a memoryview that only that array and its views, and images
made on them (``Image.frombuffer`` / ``Image.fromarray``), refer to; when the last of them is gone, a weakref
finalizer gives the block back.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque

import numpy as np

MIN_BYTES = 1 << 22  # smaller arrays are cheap to allocate: plain np.empty
DEFAULT_MB = 384


def _limit_bytes() -> int:
    try:
        return max(0, int(float(os.environ.get("REMOVE_BACKGROUND_BUFFER_MB", DEFAULT_MB)) * (1 << 20)))
    except ValueError:
        return DEFAULT_MB << 20


class BufferPool:
    """Hands out uint8 arrays; keeps up to ``limit`` bytes of idle blocks for reuse, oldest dropped first."""

    def __init__(self, limit: int):
        self.limit = limit
        self._idle: list[np.ndarray] = []  # oldest first
        self._returned: deque = deque()  # blocks given back while the lock was held (by a finalizer, say)
        self._lock = threading.Lock()
        self._count_lock = threading.RLock()  # re-entrant: a finalizer may give a block back inside it
        self._lent: set[int] = set()  # ids of the blocks handed out and not yet given back
        self.lent_bytes = 0
        self.peak_lent_bytes = 0  # for tests and benchmarks: most bytes handed out at once
        self.double_lends = 0  # a block handed to a caller while another still had it: must stay 0

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised C-contiguous uint8 array of ``shape``."""
        size = int(np.prod(shape))
        if size < MIN_BYTES or size > self.limit:
            return np.empty(shape, np.uint8)
        block = None
        with self._lock:
            self._take_returned()
            fits = [i for i, b in enumerate(self._idle) if size <= b.size <= size + size // 4]
            if fits:
                block = self._idle.pop(min(fits, key=lambda i: self._idle[i].size))
        if block is None:
            block = np.empty(size, np.uint8)
        with self._count_lock:
            if id(block) in self._lent:
                self.double_lends += 1
            self._lent.add(id(block))
            self.lent_bytes += block.size
            self.peak_lent_bytes = max(self.peak_lent_bytes, self.lent_bytes)
        self._drain()
        flat = np.frombuffer(memoryview(block), np.uint8, count=size)
        returns = weakref.finalize(flat.base, self._give_back, block)  # flat.base: the memoryview only its users hold
        returns.atexit = False  # nothing to give back at interpreter exit
        return flat.reshape(shape)

    def _give_back(self, block: np.ndarray) -> None:
        with self._count_lock:
            if id(block) in self._lent:
                self._lent.discard(id(block))
                self.lent_bytes -= block.size
        self._returned.append(block)
        self._drain()

    def _drain(self) -> None:
        if self._lock.acquire(blocking=False):  # never wait: a finalizer may run while this thread holds the lock
            try:
                self._take_returned()
            finally:
                self._lock.release()

    def _take_returned(self) -> None:
        while self._returned:
            self._idle.append(self._returned.popleft())
        while self._idle and sum(b.size for b in self._idle) > self.limit:
            self._idle.pop(0)

    def idle_bytes(self) -> int:
        """Bytes held in idle blocks."""
        with self._lock:
            self._take_returned()
            return sum(b.size for b in self._idle)

    def clear(self) -> int:
        """Free the idle blocks; returns how many bytes that was."""
        with self._lock:
            self._take_returned()
            freed = sum(b.size for b in self._idle)
            self._idle.clear()
            return freed


BUFFERS = BufferPool(_limit_bytes())


def clear_buffers() -> int:
    """Free the idle pixel buffers kept for reuse; returns how many bytes were freed."""
    return BUFFERS.clear()
