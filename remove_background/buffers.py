"""Big pixel buffers, kept after use and handed out again once nothing refers to them any more.

A warm call then writes its mask and cut-out into memory that is already mapped. Fresh memory costs a page fault
per 4 KiB on first write: on a VM that hands freed memory back to its host, up to 40 ms for a 4096² RGBA image
(benchmarks/bench_speed.py). Like ONNX Runtime's own arena for the model, the pool trades some idle memory
(``REMOVE_BACKGROUND_BUFFER_MB``, default 384; 0 turns it off) for that time; ``clear_buffers()`` frees it.

A block is reused only when its reference count shows that the pool alone holds it: every NumPy view keeps its
base block alive, and so does every PIL image made with ``Image.frombuffer`` / ``Image.fromarray`` on one, so a
result the caller still holds is never overwritten.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 22  # smaller arrays are cheap to allocate: plain np.empty


def _limit_bytes() -> int:
    raw = os.environ.get("REMOVE_BACKGROUND_BUFFER_MB", "384")
    try:
        return max(0, int(float(raw) * (1 << 20)))
    except ValueError:
        return 384 << 20


def _only_holder_count() -> int:
    """``sys.getrefcount`` of an array that only a list holds (it differs between Python versions)."""
    held = [np.empty(1, np.uint8)]
    return sys.getrefcount(held[0])


class BufferPool:
    """Hands out uint8 arrays; keeps up to ``limit`` bytes of blocks for reuse."""

    def __init__(self, limit: int):
        self.limit = limit
        self._blocks: list[np.ndarray] = []  # every block the pool tracks, busy or free, oldest first
        self._lock = threading.Lock()
        self._free_count = _only_holder_count()
        gil = getattr(sys, "_is_gil_enabled", None)  # reference counts say "free" reliably on CPython with the GIL
        self._enabled = sys.implementation.name == "cpython" and (gil is None or gil())

    def _is_free(self, index: int) -> bool:
        return sys.getrefcount(self._blocks[index]) <= self._free_count

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised C-contiguous uint8 array of ``shape``."""
        size = int(np.prod(shape))
        if size < MIN_BYTES or size > self.limit or not self._enabled:
            return np.empty(shape, np.uint8)
        with self._lock:
            fits = [i for i in range(len(self._blocks))
                    if size <= self._blocks[i].size <= size + size // 4 and self._is_free(i)]
            if fits:
                block = self._blocks.pop(min(fits, key=lambda i: self._blocks[i].size))
            else:
                block = np.empty(size, np.uint8)
                self._make_room(size)
            if sum(b.size for b in self._blocks) + block.size <= self.limit:
                self._blocks.append(block)  # most recently used last
            return block[:size].reshape(shape)

    def _make_room(self, size: int) -> None:
        """Drop free blocks, oldest first, until ``size`` more bytes fit under the limit."""
        i = 0
        while i < len(self._blocks) and sum(b.size for b in self._blocks) + size > self.limit:
            if self._is_free(i):
                del self._blocks[i]
            else:
                i += 1

    def idle_bytes(self) -> int:
        """Bytes held in blocks that nothing else refers to."""
        with self._lock:
            return sum(self._blocks[i].size for i in range(len(self._blocks)) if self._is_free(i))

    def clear(self) -> int:
        """Forget every block (busy ones stay alive with their users); returns the idle bytes freed."""
        with self._lock:
            freed = sum(self._blocks[i].size for i in range(len(self._blocks)) if self._is_free(i))
            self._blocks.clear()
            return freed


BUFFERS = BufferPool(_limit_bytes())


def clear_buffers() -> int:
    """Free the idle pixel buffers kept for reuse; returns how many bytes were freed."""
    return BUFFERS.clear()
