"""Memory-bound work on an image's top and bottom halves at once: one half on a helper thread, one here.

PIL and NumPy release the GIL for their large copies and reductions, so two halves take about half the time on
two cores (benchmarks/bench_speed.py). There is one helper thread per process: when another caller holds it (several
threads removing backgrounds at once), the work runs whole on the calling thread rather than queueing behind that
caller, because the cores are busy anyway.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, TypeVar

T = TypeVar("T")

MIN_ROWS = 256  # below this the thread hand-off costs more than it saves
_HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remove-background-half")
_HELPER_FREE = threading.Lock()  # held by the one caller whose half the helper runs


def on_two_halves(work: Callable[[int, int], T], height: int, step: int = 1) -> list[T]:
    """``work(top, bottom)`` on rows [0, middle) and [middle, height), ``middle`` a multiple of ``step``; returns
    the results top first (one result when the image is too small to split). Both halves have finished before this
    returns or raises."""
    middle = (height // step) // 2 * step
    if height < MIN_ROWS or middle == 0 or not _HELPER_FREE.acquire(blocking=False):
        return [work(0, height)]
    try:
        top = _HELPER.submit(work, 0, middle)
        try:
            bottom = work(middle, height)
        finally:
            wait([top])
    finally:
        _HELPER_FREE.release()
    return [top.result(), bottom]
