"""The work around the model, on the model's torch device: image in, mask and cut-out out, one download.

On a GPU the model takes milliseconds, so the CPU work around it (the downscale to the model's input, the mask
upscale, the cut-out: 36-55 ms at 4096² on this project's CPU) would be most of the time. Where a model runs on a
torch device, that work runs there too, the same maths as inference.py and compositing.py:

- the downscale: PIL's integer box reduction and LANCZOS resampling with a reducing gap, as inference.downscale
  does it, with PIL's own filter coefficients (quantised as PIL's 8-bit path quantises them) applied as two
  small matrix products, each pass rounded to 8 bits like PIL's;
- the model input: divided by the image's maximum, normalised with the model's mean and std;
- the mask: rembg's sigmoid / min-max / clip maths, or u2net_cloth_seg's classes; bilinear upscale (like OpenCV's
  INTER_LINEAR; LANCZOS when the image is smaller than the model's input, like inference.upscale_mask);
- the cut-out: RGB where alpha > 0, 0 elsewhere, the input's own alpha multiplied in.

Nothing is read back to the host until the end (no host round trip per step): one download of the mask, and of
the cut-out when one is wanted. ``timings`` (optional) gets each step's time, with the device synchronised between
steps, for the benchmarks; without it nothing waits.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image

from ...imaging.buffers import BUFFERS
from ...catalog import ModelInfo
from ...imaging.resample import CLOTH_CLASSES, REDUCING_GAP, pil_vertical_first

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


class DevicePipeline:
    """Device-side pre- and post-processing for one torch session (torch_backend.TorchSession)."""

    def __init__(self, session, info: ModelInfo):
        import torch

        self.torch = torch
        self.session = session
        self.info = info
        self.device = session.device
        self._matrices: dict = {}
        self._mean = torch.tensor(info.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32, device=self.device).view(3, 1, 1)

    # ---- resampling -------------------------------------------------------------------------------------------

    def _matrix(self, in_size: int, out_size: int, box0: float, box1: float):
        key = (in_size, out_size, box0, box1)
        m = self._matrices.get(key)
        if m is None:
            m = self.torch.from_numpy(lanczos_matrix(in_size, out_size, box0, box1)).to(self.device)
            self._matrices[key] = m
        return m

    def _resample(self, planes, out_w: int, out_h: int, box_w: float, box_h: float):
        """PIL's LANCZOS resize of C×H×W float planes (values 0..255) to C×out_h×out_w, box (0, 0, box_w, box_h):
        its two passes in the order the installed Pillow runs them (inference.pil_vertical_first), each rounded to
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

    def downscale(self, rgb):
        """H×W×3 uint8 on the device -> 3×side×side float (values 0..255), like inference.downscale."""
        torch = self.torch
        side = self.info.input_size
        h, w = rgb.shape[:2]
        factor = max(1, int(min(w / side, h / side) / REDUCING_GAP))
        planes = rgb.permute(2, 0, 1).to(torch.float32)
        if factor > 1:  # PIL's reduce: the mean of each factor×factor block (partial blocks: of their pixels)
            planes = torch.nn.functional.avg_pool2d(planes[None], factor, stride=factor, ceil_mode=True)[0]
            planes = _round8(torch, planes)
        return self._resample(planes, side, side, w / factor, h / factor)

    # ---- the model and its mask -------------------------------------------------------------------------------

    def model_input(self, small):
        """rembg's normalisation: divided by the image's maximum, then (v - mean) / std; 1×3×side×side."""
        scale = 1.0 / self.torch.clamp(small.amax(), min=1e-6)
        return ((small * scale - self._mean) / self._std)[None]

    def small_mask(self, outputs, cloth_category: str):
        """The model-size uint8 mask, as inference.small_mask / cloth_mask compute it."""
        torch = self.torch
        if self.info.output == "cloth":
            classes = torch.argmax(outputs[0][0], dim=0)
            wanted = torch.tensor(CLOTH_CLASSES[cloth_category], device=self.device)
            return torch.isin(classes, wanted).to(torch.uint8) * 255
        pred = outputs[0][0, 0].to(torch.float32)
        if self.info.output == "sigmoid_minmax":
            pred = torch.sigmoid(pred)
        lo, hi = torch.aminmax(pred)
        spread = hi - lo
        stretched = (pred - lo) / torch.where(spread < 1e-12, torch.ones_like(spread), spread)
        pred = torch.where(spread < 1e-12, torch.clamp(pred, 0.0, 1.0), stretched)
        return (torch.clamp(pred, 0.0, 1.0) * 255).to(torch.uint8)

    def upscale(self, mask, width: int, height: int):
        """The model-size uint8 mask at the image's size: bilinear, or LANCZOS when the image is smaller."""
        torch = self.torch
        src_h, src_w = mask.shape
        if (src_h, src_w) == (height, width):
            return mask
        planes = mask[None].to(torch.float32)
        if width < src_w or height < src_h:
            return self._resample(planes, width, height, src_w, src_h)[0].to(torch.uint8)
        up = torch.nn.functional.interpolate(planes[None], size=(height, width), mode="bilinear",
                                             align_corners=False)[0, 0]
        return _round8(torch, up).to(torch.uint8)

    # ---- the whole run ----------------------------------------------------------------------------------------

    def run(self, rgb: Image.Image, input_alpha: Optional[np.ndarray], cloth_category: str = "all",
            cutout: bool = True, timings: Optional[dict] = None):
        """(cut-out RGBA image or None, H×W uint8 alpha on the host). The alpha is the mask times the input's own
        alpha; a flat image has an empty mask (as pipeline.predict_mask decides)."""
        torch = self.torch
        clock = _Clock(torch, self.device, timings)
        width, height = rgb.size
        with torch.inference_mode():
            pixels = _upload(torch, np.asarray(rgb), self.device)
            alpha_in = _upload(torch, input_alpha, self.device) if input_alpha is not None else None
            clock.lap("upload")
            small = self.downscale(pixels)
            x = self.model_input(small)
            clock.lap("model input")
            outputs = self.session.run_tensors(x)
            clock.lap("model")
            mask = self.upscale(self.small_mask(outputs, cloth_category), width, height)
            flat = (pixels == pixels[0, 0]).all()
            mask = mask * (~flat).to(torch.uint8)  # nothing to separate: rembg would stretch noise here
            if alpha_in is not None:
                mask = ((mask.to(torch.int32) * alpha_in.to(torch.int32) + 127) // 255).to(torch.uint8)
            clock.lap("mask")
            image = None
            if cutout:
                rgba = torch.empty((height, width, 4), dtype=torch.uint8, device=self.device)
                rgba[..., :3] = pixels * (mask != 0)[..., None]
                rgba[..., 3] = mask
                clock.lap("cut-out")
                host = BUFFERS.empty((height, width, 4))
                torch.from_numpy(host).copy_(rgba)
                image = Image.frombuffer("RGBA", (width, height), host, "raw", "RGBA", 0, 1)
            alpha = BUFFERS.empty((height, width))
            torch.from_numpy(alpha).copy_(mask)
            clock.lap("download")
        return image, alpha


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
