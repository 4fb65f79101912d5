"""The shared base of families whose model maps one image to one mask (U²-Net, IS-Net, BiRefNet, BRIA, cloth).

rembg's recipe, which each such family follows: resize the image to the model's square input (PIL's LANCZOS), divide
by the image's maximum (by 255 for the rows whose authors do: ``max_scaled``), normalise with the model's mean and
std (NCHW float32), run, take output 0, apply a sigmoid where the family's file gives logits, stretch min..max to
0..1, and resize the mask back to the image. The resizes are ours and cheaper (imaging/resample.py) and stay within
a fraction of a grey level of rembg's.

A subclass sets ``sigmoid`` and may replace ``small_mask`` / ``device_small_mask`` (cloth's classes). The device
versions do the same maths on the model's torch device, with nothing read back to the host.

Your own file (``custom_info``): one float32 NCHW image input with 3 channels, a square side that is the family's
(or free), and a mask output. A family with ``size_from_graph`` (BiRefNet, exported at 1024² or 2048²) runs the
file at the side it declares, at the recipe's side where the axes are free.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..catalog import ModelFile, ModelInfo
from ..errors import ModelFileError
from ..imaging import detail
from ..imaging.decode import is_flat
from ..imaging.resample import downscale, upscale_mask
from .base import Family


class ImageMaskFamily(Family):
    """A model that maps one normalised square image to one mask (output 0, channel 0)."""

    sigmoid: ClassVar[bool] = False  # the file gives logits: apply a sigmoid before the min-max stretch
    size_from_graph: ClassVar[bool] = False  # your own file may declare its side (else the recipe's side only)
    edge_detail = True

    # --- the host ----------------------------------------------------------------------------------------------

    def model_input(self, rgb, info) -> tuple[np.ndarray, np.ndarray]:
        """(the NCHW float32 tensor the model wants, the resized uint8 RGB it came from)."""
        small = downscale(rgb, info.input_size)
        top = float(small.max()) if info.max_scaled else 255.0  # rembg divides by the image's maximum
        scale = 1.0 / max(top, 1e-6)
        x = np.empty((1, 3, *small.shape[:2]), np.float32)
        for c in range(3):  # (v * scale - mean) / std, one channel plane at a time, straight into NCHW
            np.multiply(small[..., c], np.float32(scale / info.std[c]), out=x[0, c], dtype=np.float32)
            x[0, c] -= np.float32(info.mean[c] / info.std[c])
        return x, small

    def small_mask(self, outputs: list, options) -> np.ndarray:
        """The model-size uint8 mask from the model's outputs, as rembg computes it."""
        pred = np.asarray(outputs[0])[0, 0].astype(np.float32, copy=False)
        if self.sigmoid:
            pred = 1.0 / (1.0 + np.exp(-pred))
        return (np.clip(_minmax(pred), 0.0, 1.0) * 255).astype(np.uint8)

    def crop_mask(self, model, rgb, options) -> np.ndarray:
        """The model-size mask of ``rgb`` (a whole image, or the detail pass's crop): preprocess, run, read."""
        x, _ = self.model_input(rgb, model.info)
        return self.small_mask(model.main.run(None, {model.main.get_inputs()[0].name: x}), options)

    def mask(self, model, rgb, options) -> np.ndarray:
        info, session = model.info, model.main
        width, height = rgb.size
        x, small = self.model_input(rgb, info)
        if (small == small[0, 0]).all() and is_flat(rgb):  # nothing to separate: rembg would stretch noise here
            return np.zeros((height, width), dtype=np.uint8)
        low = self.small_mask(session.run(None, {session.get_inputs()[0].name: x}), options)
        full = upscale_mask(low, width, height)
        if self.edge_detail and options.edge_detail == "high":
            return detail.detailed_mask(rgb, low, full, run=lambda crop: self.crop_mask(model, crop, options))
        return full

    def torch_input_shapes(self, info, file_index: int) -> dict:
        return {0: (1, 3, info.input_size, info.input_size)}  # by position: the one image input

    # --- your own file ---------------------------------------------------------------------------------------

    def custom_info(self, path, graph) -> ModelInfo:
        if self.custom is None:
            return super().custom_info(path, graph)
        side = self.file_side(path, graph)
        st = path.stat()
        return ModelInfo(
            name=f"custom:{self.key}:{path.name}", label=f"your own file ({self.title})",
            files=(ModelFile(path.name, path.resolve().as_uri(), None, max(1, round(st.st_size / 1e6))),),
            input_size=side, mean=tuple(self.custom.mean), std=tuple(self.custom.std), family=self.key,
            licence="your file's own", commercial_use=True, description=f"Your own {self.title} file {path}.",
            source=str(path), revision=f"{st.st_size}-{st.st_mtime_ns}")

    def file_side(self, path, graph) -> int:
        """The square side to feed ``path`` at, checked against its declared input and output."""
        recipe = self.custom
        where = f"{path.name} as family {self.key!r} ({self.title}, {recipe.label})"
        if len(graph.inputs) != 1:
            raise ModelFileError(f"{where}: the file takes {len(graph.inputs)} inputs "
                                 f"({', '.join(t.name for t in graph.inputs)}); this family feeds one image.")
        image, mask = graph.inputs[0], graph.outputs[0]
        if image.element_type != "float32" or len(image.dims) != 4 or not _fits(image.dims[:2], (1, 3)):
            raise ModelFileError(f"{where}: its input {image.name} is {image.described}; this family feeds "
                                 "float32 [1, 3, height, width] (RGB, NCHW). A file exported in half precision "
                                 "needs float32 inputs and outputs (onnxconverter-common's keep_io_types).")
        if mask.dims and (len(mask.dims) != 4 or not _fits(mask.dims[:2], (1, 1))):
            raise ModelFileError(f"{where}: its first output {mask.name} is {mask.described}; this family reads "
                                 "one mask, [1, 1, height, width].")
        height, width = image.dims[2:]
        fixed = [d for d in (height, width) if isinstance(d, int) and d > 0]
        if len(fixed) == 2 and height != width:
            raise ModelFileError(f"{where}: it takes {width}×{height} images; this family feeds square ones.")
        if not fixed:
            return recipe.size
        if self.size_from_graph or fixed[0] == recipe.size:
            return fixed[0]
        raise ModelFileError(f"{where}: it takes {fixed[0]}×{fixed[0]} images, but this family runs at "
                             f"{recipe.size}×{recipe.size}: choose the family the file was trained as.")

    # --- the model's torch device ------------------------------------------------------------------------------

    def device_input(self, frame, small, info):
        """rembg's normalisation on the device: divided by the image's maximum (or 255), then (v - mean) / std;
        1×3×S×S."""
        mean, std = frame.constant(info.mean).view(3, 1, 1), frame.constant(info.std).view(3, 1, 1)
        scale = 1.0 / frame.torch.clamp(small.amax(), min=1e-6) if info.max_scaled else 1.0 / 255.0
        return ((small * scale - mean) / std)[None]

    def device_small_mask(self, frame, outputs, options):
        """``small_mask`` on the device: the model-size uint8 mask tensor."""
        torch = frame.torch
        pred = outputs[0][0, 0].to(torch.float32)
        if self.sigmoid:
            pred = torch.sigmoid(pred)
        lo, hi = torch.aminmax(pred)
        spread = hi - lo
        stretched = (pred - lo) / torch.where(spread < 1e-12, torch.ones_like(spread), spread)
        pred = torch.where(spread < 1e-12, torch.clamp(pred, 0.0, 1.0), stretched)
        return (torch.clamp(pred, 0.0, 1.0) * 255).to(torch.uint8)

    def device_mask(self, model, frame, options):
        if self.edge_detail and options.edge_detail == "high":
            return None  # the detail pass has no device version
        small = frame.downscale(model.info.input_size)
        x = self.device_input(frame, small, model.info)
        frame.lap("model input")
        outputs = model.main.run_tensors(x)
        frame.lap("model")
        mask = frame.upscale(self.device_small_mask(frame, outputs, options))
        return mask * (~frame.is_flat()).to(frame.torch.uint8)  # nothing to separate: rembg would stretch noise here


def _fits(dims, sizes) -> bool:
    """Whether each of ``dims`` is that size or free (a name, unnamed, or -1)."""
    return all(not isinstance(d, int) or d <= 0 or d == n for d, n in zip(dims, sizes))


def _minmax(pred: np.ndarray) -> np.ndarray:
    lo, hi = float(pred.min()), float(pred.max())
    if hi - lo < 1e-12:  # constant output: rembg divides by zero here
        return np.clip(pred, 0.0, 1.0)
    return (pred - lo) / (hi - lo)
