"""A model of fixed input size run at an image's own resolution: square windows over the pixels that need it only,
overlapping, blended without seams, in memory bounded by the windows.

The windows lie on a grid: along each axis, the fewest origins that cover the image with at least ``overlap`` pixels
shared between neighbours, spread evenly from the first pixel to the last (``origins``). A window is run only if it
holds a wanted pixel, so the cost follows the wanted pixels, not the image.

Blending: each window's result is weighted by a 1-D weight per axis that ramps up from its inner edges over the
overlap (not at the image's border) and is divided by the sum over all windows at that pixel (``partition``): along
each axis the weights of the windows covering a pixel sum to 1, and so do their products. Every window that covers a
wanted pixel holds a wanted pixel, so it runs: at a wanted pixel the result is a convex combination of the windows'
values with weights that sum to 1 and change smoothly, and where every window computes the same value there (a model
whose output at a pixel is a function of the input at that pixel) the result is exactly that value.

Memory: results are summed in a strip one window high and as wide as the image, which moves down the grid; rows no
later window can reach are written out and dropped. At 6000×4000 that strip is 24 MB of float32, against 96 MB for
an image-sized sum.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Run = Callable[[int, int, int, int], np.ndarray]  # (top, left, height, width) -> float32 values of that window


def origins(length: int, window: int, overlap: int) -> list[int]:
    """Window starts along an axis of ``length`` pixels: one at 0 when the axis fits in a window, else the fewest
    that overlap by at least ``overlap``, the first at 0 and the last ending on the last pixel."""
    if length <= window:
        return [0]
    count = math.ceil((length - overlap) / (window - overlap))
    count = max(count, 2)
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def partition(length: int, starts: list[int], window: int, overlap: int) -> list[np.ndarray]:
    """Each window's 1-D weights (float64, as long as the window, or the axis when shorter): positive inside it,
    ramping from its inner edges over ``overlap`` pixels, and summing to 1 over the windows at every pixel."""
    side = min(window, length)
    ramp = max(overlap, 1)
    position = np.arange(side, dtype=np.float64) + 0.5
    raw = []
    for start in starts:
        weight = np.ones(side)
        if start > 0:
            weight = np.minimum(weight, position / ramp)
        if start + side < length:
            weight = np.minimum(weight, (side - position) / ramp)
        raw.append(weight)
    total = np.zeros(length)
    for start, weight in zip(starts, raw):
        total[start:start + side] += weight
    return [weight / total[start:start + side] for start, weight in zip(starts, raw)]


class Windows:
    """The grid of ``size``-square windows over an image of ``height`` × ``width`` pixels."""

    def __init__(self, height: int, width: int, size: int, overlap: int):
        self.height, self.width, self.size = height, width, size
        self.tops, self.lefts = origins(height, size, overlap), origins(width, size, overlap)
        self.row_weights = partition(height, self.tops, size, overlap)
        self.column_weights = partition(width, self.lefts, size, overlap)
        self.window_height, self.window_width = min(size, height), min(size, width)

    def wanted(self, wanted: np.ndarray) -> list[tuple[int, int]]:
        """(top, left) of each window that holds a wanted pixel, row by row."""
        h, w = self.window_height, self.window_width
        return [(top, left) for top in self.tops for left in self.lefts if wanted[top:top + h, left:left + w].any()]

    def blend(self, wanted: np.ndarray, run: Run, out: np.ndarray, to_output: Callable[[np.ndarray], np.ndarray]) -> int:
        """Run ``run`` on every window that holds a wanted pixel and write the blend of their values, through
        ``to_output``, into ``out`` at the wanted pixels (the others are left as they are). Returns how many windows
        ran."""
        h, w = self.window_height, self.window_width
        strip = np.zeros((h, self.width), np.float32)
        top_of_strip, ran = 0, 0
        todo = set(self.wanted(wanted))
        for row, top in enumerate(self.tops):
            if top > top_of_strip:  # rows above this window row are finished: no later window reaches them
                done = top - top_of_strip
                self._write(strip[:done], top_of_strip, wanted, out, to_output)
                strip = np.concatenate([strip[done:], np.zeros((done, self.width), np.float32)])
                top_of_strip = top
            for column, left in enumerate(self.lefts):
                if (top, left) not in todo:
                    continue
                weight = np.outer(self.row_weights[row], self.column_weights[column]).astype(np.float32)
                strip[:, left:left + w] += run(top, left, h, w) * weight
                ran += 1
        self._write(strip, top_of_strip, wanted, out, to_output)
        return ran

    @staticmethod
    def _write(rows: np.ndarray, top: int, wanted: np.ndarray, out: np.ndarray, to_output) -> None:
        here = wanted[top:top + rows.shape[0]]
        if here.any():
            out[top:top + rows.shape[0]][here] = to_output(rows[here])
