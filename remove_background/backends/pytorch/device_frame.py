"""One image on the model's torch device: its pixels, the resizes around the model, the cut-out, one download.

On a GPU the model takes milliseconds, so the CPU work around it (the downscale to the model's input, the mask
upscale, the cut-out: 36-55 ms at 4096² on a 2-core CPU) would be most of the time. Where a model runs on a torch
device, that work runs there too, the same maths as imaging/resample.py and imaging/compositing.py:

- the downscale: PIL's integer box reduction and LANCZOS resampling with a reducing gap, as resample.downscale
  does it, with PIL's own filter coefficients (quantised as PIL's 8-bit path quantises them) applied as two
  small matrix products, each pass rounded to 8 bits like PIL's;
- the mask upscale: bilinear (like OpenCV's INTER_LINEAR; LANCZOS when the image is smaller than the model's
  input, like resample.upscale_mask);
- the cut-out: RGB where alpha > 0, 0 elsewhere, the input's own alpha multiplied in.

The family's own steps (normalisation, the mask maths) are in its class (families/); a ``DeviceFrame`` is what it
works on. Nothing is read back to the host until the end: one download of the mask, and of the cut-out when one is
wanted. ``timings`` (optional) gets each step's time, with the device synchronised between steps, for the
benchmarks; without it nothing waits.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image

from ...imaging.buffers import BUFFERS
from ...imaging.resample import REDUCING_GAP, pil_vertical_first

PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit resampling (Resample.c)
LANCZOS_SUPPORT = 3.0


def _lanczos(x: float) -> float:
    if -LANCZOS_SUPPORT <= x < LANCZOS_SUPPORT:
        return _sinc(x) * _sinc(x / LANCZOS_SUPPORT)
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


@lru_cache(maxsize=64)
def lanczos_matrix(in_size: int, out_size: int, box0: float, box1: float) -> np.ndarray:
    """(out_size × in_size) float32 weights of PIL's LANCZOS resampling of ``in_size`` pixels, ``box0..box1`` of
    them, onto ``out_size``: PIL's precompute_coeffs, then rounded to its fixed point as its 8-bit path does."""
    scale = (box1 - box0) / out_size
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    weights = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = box0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        k = np.array([_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)])
        total = k.sum()
        if total != 0.0:
            k /= total
        weights[xx, xmin:xmax] = k
    one = float(1 << PRECISION_BITS)
    quantised = np.where(weights < 0, np.trunc(-0.5 + weights * one), np.trunc(0.5 + weights * one))
    return (quantised / one).astype(np.float32)


def _round8(torch, x):
    """Round to the nearest integer and clip to 0..255, as PIL's 8-bit passes do (still float)."""
    return torch.clamp(torch.floor(x + 0.5), 0.0, 255.0)


_CONSTANTS: dict = {}  # (device, dtype, values) -> tensor: small constants and resampling matrices, uploaded once
_MAX_CONSTANTS = 256


def _cached(key, make):
    value = _CONSTANTS.get(key)
    if value is None:
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        value = _CONSTANTS[key] = make()
    return value


class DeviceFrame:
    """One RGB image (and its own alpha) on a torch device, uploaded on first use, with the resizes around the model
    and the cut-out. Families compute their masks on it (``Family.device_mask``)."""

    def __init__(self, device, rgb: Image.Image, input_alpha: Optional[np.ndarray], timings: Optional[dict] = None):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.rgb, self.input_alpha = rgb, input_alpha
        self._pixels = None
        self.clock = _Clock(torch, self.device, timings)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    @property
    def pixels(self):
        """H×W×3 uint8 on the device (uploaded once)."""
        if self._pixels is None:
            self._pixels = _upload(self.torch, np.asarray(self.rgb), self.device)
            self.lap("upload")
        return self._pixels

    def lap(self, name: str) -> None:
        """Account the time since the last lap to step ``name`` (only when timing)."""
        self.clock.lap(name)

    def constant(self, values, dtype=None):
        """``values`` as a tensor on the device, uploaded once per device (float32 unless ``dtype``)."""
        dtype = dtype or self.torch.float32
        key = (str(self.device), str(dtype), tuple(values))
        return _cached(key, lambda: self.torch.tensor(values, dtype=dtype, device=self.device))

    def is_flat(self):
        """A bool tensor: every pixel has the same colour (nothing to separate)."""
        return (self.pixels == self.pixels[0, 0]).all()

    # ---- resampling ----------------------------------------------------------------------------------------

    def _matrix(self, in_size: int, out_size: int, box0: float, box1: float):
        key = (str(self.device), "lanczos", in_size, out_size, box0, box1)

        def upload():
            return self.torch.from_numpy(lanczos_matrix(in_size, out_size, box0, box1)).to(self.device)

        return _cached(key, upload)

    def _resample(self, planes, out_w: int, out_h: int, box_w: float, box_h: float):
        """PIL's LANCZOS resize of C×H×W float planes (values 0..255) to C×out_h×out_w, box (0, 0, box_w, box_h):
        its two passes in the order the installed Pillow runs them (resample.pil_vertical_first), each rounded to
        8 bits; a pass PIL would skip is skipped."""
        torch = self.torch
        _, h, w = planes.shape

        def horizontal(p):
            pw = p.shape[2]
            if out_w == pw and box_w == pw:
                return p
            return _round8(torch, torch.matmul(p, self._matrix(pw, out_w, 0.0, box_w).T))

        def vertical(p):
            ph = p.shape[1]
            if out_h == ph and box_h == ph:
                return p
            return _round8(torch, torch.matmul(self._matrix(ph, out_h, 0.0, box_h), p))

        if box_w == w and box_h == h and pil_vertical_first(w, h, out_w, out_h):
            return horizontal(vertical(planes))
        return vertical(horizontal(planes))

    def downscale(self, side: int, rgb=None):
        """The image (or ``rgb``, H×W×3 uint8 on the device) -> 3×side×side float (values 0..255), like
        resample.downscale."""
        torch = self.torch
        rgb = self.pixels if rgb is None else rgb
        h, w = rgb.shape[:2]
        factor = max(1, int(min(w / side, h / side) / REDUCING_GAP))
        planes = rgb.permute(2, 0, 1).to(torch.float32)
        if factor > 1:  # PIL's reduce: the mean of each factor×factor block (partial blocks: of their pixels)
            planes = torch.nn.functional.avg_pool2d(planes[None], factor, stride=factor, ceil_mode=True)[0]
            planes = _round8(torch, planes)
        return self._resample(planes, side, side, w / factor, h / factor)

    def upscale(self, mask):
        """A uint8 mask tensor at the image's size: bilinear, or LANCZOS when the image is smaller."""
        torch = self.torch
        width, height = self.size
        src_h, src_w = mask.shape
        if (src_h, src_w) == (height, width):
            return mask
        planes = mask[None].to(torch.float32)
        if width < src_w or height < src_h:
            return self._resample(planes, width, height, src_w, src_h)[0].to(torch.uint8)
        up = torch.nn.functional.interpolate(planes[None], size=(height, width), mode="bilinear",
                                             align_corners=False)[0, 0]
        return _round8(torch, up).to(torch.uint8)

    # ---- the cut-out and the download ------------------------------------------------------------------------

    def download(self, mask) -> np.ndarray:
        """An H×W uint8 tensor into a host array."""
        host = BUFFERS.empty(tuple(mask.shape))
        self.torch.from_numpy(host).copy_(mask)
        self.lap("download")
        return host

    def finish(self, mask, cutout: bool) -> tuple[Image.Image, Image.Image]:
        """(the cut-out RGBA image, or the mask image when ``cutout`` is false; the mask image): the mask times the
        input's own alpha, RGB where that is above 0, 0 elsewhere; one download of each."""
        torch = self.torch
        width, height = self.size
        if self.input_alpha is not None:
            alpha_in = _upload(torch, self.input_alpha, self.device)
            mask = ((mask.to(torch.int32) * alpha_in.to(torch.int32) + 127) // 255).to(torch.uint8)
        image = None
        if cutout:
            rgba = torch.empty((height, width, 4), dtype=torch.uint8, device=self.device)
            rgba[..., :3] = self.pixels * (mask != 0)[..., None]
            rgba[..., 3] = mask
            self.lap("cut-out")
            host = BUFFERS.empty((height, width, 4))
            torch.from_numpy(host).copy_(rgba)
            image = Image.frombuffer("RGBA", (width, height), host, "raw", "RGBA", 0, 1)
        mask_image = Image.fromarray(self.download(mask), "L")
        return (image if image is not None else mask_image), mask_image


def _upload(torch, array: np.ndarray, device):
    """``array`` as a tensor on ``device``. PIL's arrays are read-only; torch warns about that, and it is only read."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).to(device)


class _Clock:
    """Step times for the benchmarks: synchronises the device between steps, only when asked to time."""

    def __init__(self, torch, device, timings: Optional[dict]):
        self.torch, self.device, self.timings = torch, device, timings
        self.t = time.perf_counter() if timings is not None else 0.0

    def lap(self, name: str) -> None:
        if self.timings is None:
            return
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self.torch.mps.synchronize()
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now
