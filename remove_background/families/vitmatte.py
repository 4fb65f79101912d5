"""ViTMatte (rembg 2.0.86's learned edge refinement): a refiner, not a segmenter. It takes the image and a trimap made
from a mask, and gives the alpha of the trimap's unknown band.

rembg's recipe (rembg/matting.py, ``vitmatte_alpha``), followed here for images up to the model's size (1024² on
both sides): the trimap from the mask as its alpha matting builds it (imaging/matting.trimap: the thresholds 240 / 10
and erode size 10 by default, scipy's erosion); the image resized to 1024² with PIL's bilinear filter and the trimap
with nearest; both scaled to 0–1 with no mean or std and stacked into one 1×4×1024×1024 input; the output clipped to
0–1, times 255 truncated to 8 bits, resized back with PIL's bilinear filter. The export is fixed at 1024² because
VitDet builds its relative positions from the input size.

Beyond rembg, for larger images: squeezing a 4096² photo to 1024² throws away the strands the refiner is for. There
the model runs at the image's own resolution, in 1024² windows that hold a pixel of the unknown band, overlapping
and blended without seams (imaging/windows.py); a window that does not fill 1024² (an image narrower than that) is
padded with zeros, as ViTMatte's own image processor pads. The band takes the model's alpha, the sure regions keep
the trimap's 0 and 255. A mask with no unknown band is its trimap at once, on either path.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..imaging.matting import trimap
from ..imaging.windows import Windows
from .base import Family

UNKNOWN = 128
OVERLAP = 256  # pixels two neighbouring windows share at least; the blend ramps across them


class ViTMatte(Family):
    key = "vitmatte"
    title = "ViTMatte (edge refiner)"
    torch_note = "a refiner: runs after the model's mask, on the same route"
    # ONNX Runtime's CPU arena plus its memory pattern held 3.4 GB after three 1024² runs of ViTMatte-S (the peak of
    # one run is 1.8 GB); without the arena the peak is the same 1.8 GB, the memory goes back after each run (0.14 GB
    # held), and a run takes as long (benchmarks/bench_vitmatte.py)
    ort_arena = False

    def mask(self, model, rgb, options):
        raise ValueError(f"{model.info.name} refines a mask, it does not make one: choose a segmentation model and "
                         "set vitmatte (and vitmatte_model) instead.")

    def torch_input_shapes(self, info, file_index: int) -> dict:
        return {0: (1, 4, info.input_size, info.input_size)}  # by position: pixel_values

    def refine(self, model, rgb: Image.Image, pixels: np.ndarray, mask: np.ndarray, matting) -> np.ndarray:
        """The refined alpha (H×W uint8) of ``rgb`` (``pixels``: the same as an H×W×3 array) for ``mask``, with the
        trimap's thresholds and erode size from ``matting`` (whether alpha matting is on or not, as in rembg)."""
        tri = trimap(mask, matting)
        if not (tri == UNKNOWN).any():
            return tri
        side = model.info.input_size
        if max(rgb.size) <= side:
            return self.squeezed(model, rgb, tri)
        return self.windowed(model, pixels, tri)

    def run(self, model, x: np.ndarray) -> np.ndarray:
        """The model's alpha for the 1×4×S×S input ``x``: S×S float32, clipped to 0–1."""
        session = model.main
        alphas = session.run(None, {session.get_inputs()[0].name: x})[0]
        return np.clip(np.asarray(alphas, np.float32)[0, 0], 0.0, 1.0)

    def squeezed(self, model, rgb: Image.Image, tri: np.ndarray) -> np.ndarray:
        """rembg's way: the whole image and trimap resized to the model's size, the alpha resized back."""
        side = model.info.input_size
        image = np.asarray(rgb.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
        small_tri = np.asarray(Image.fromarray(tri).resize((side, side), Image.Resampling.NEAREST), dtype=np.float32)
        x = np.concatenate([(image / 255.0).transpose(2, 0, 1), (small_tri / 255.0)[None]], axis=0)[None]
        alpha = self.run(model, x.astype(np.float32))
        small = Image.fromarray((alpha * 255).astype(np.uint8))
        return np.asarray(small.resize(rgb.size, Image.Resampling.BILINEAR))

    def windowed(self, model, pixels: np.ndarray, tri: np.ndarray) -> np.ndarray:
        """At the image's own resolution, in model-size windows over the unknown band (see the module docstring)."""
        side = model.info.input_size
        height, width = tri.shape
        out = tri.copy()

        def run(top: int, left: int, h: int, w: int) -> np.ndarray:
            x = np.zeros((1, 4, side, side), np.float32)  # zero padding where the image is narrower than a window
            x[0, :3, :h, :w] = (pixels[top:top + h, left:left + w].astype(np.float32) / 255.0).transpose(2, 0, 1)
            x[0, 3, :h, :w] = tri[top:top + h, left:left + w].astype(np.float32) / 255.0
            return self.run(model, x)[:h, :w]

        Windows(height, width, side, OVERLAP).blend(tri == UNKNOWN, run, out, _to_bytes)
        return out


def _to_bytes(alpha: np.ndarray) -> np.ndarray:
    """0–1 alpha to 8 bits as rembg does it: times 255, truncated."""
    return (np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
