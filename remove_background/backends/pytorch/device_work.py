"""The steps around a torch model on its GPU: ``work.Work``'s steps, on the device where they have a device version.

The torch backend hands a ``DeviceWork`` to ``pipeline.remove()`` where a converted model runs on a GPU
(``LoadedModel.start``). The image goes up once (a ``DeviceFrame``), the family computes its mask there
(``Family.device_mask``: resize in, normalise, run, mask maths, resize back), and with nothing else asked for the
cut-out is made there too: one download of the mask and the cut-out. A step with no device version (alpha matting,
ViTMatte's trimap and windows (its own model still runs on the GPU), the refine steps, colour decontamination, a
solid background) brings the mask to the host first and goes on there;
a family or option with no device mask (Segment Anything, edge detail "high") runs the host's steps, the model still
on its device. On the CPU the host's steps are several times faster than the same maths in torch
(benchmarks/bench_torch.py), so there the backend hands out the host's ``Work``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from ...work import Work
from .device_frame import DeviceFrame


class DeviceWork(Work):
    """``Work`` with the image on the model's torch device; ``timings`` (optional) gets each step's time."""

    def __init__(self, model, rgb: Image.Image, input_alpha: Optional[np.ndarray], timings: Optional[dict] = None):
        super().__init__(model, rgb, input_alpha)
        self.frame = DeviceFrame(model.main.device, rgb, input_alpha, timings)
        self.device_mask = None  # the mask while it is on the device (then ``mask`` is None)

    def predict(self, options) -> None:
        with self.frame.torch.inference_mode():
            mask = self.model.family.device_mask(self.model, self.frame, options)
        if mask is None:
            super().predict(options)
        else:
            self.device_mask = mask
            self.frame.lap("mask")

    def _to_host(self) -> None:
        if self.device_mask is not None:
            with self.frame.torch.inference_mode():
                self.mask = self.frame.download(self.device_mask)
            self.device_mask = None

    def matte(self, options, refiner=None) -> None:
        if refiner is not None or options.matting.enabled:
            self._to_host()
        super().matte(options, refiner)

    def refine(self, mask_options) -> None:
        if not mask_options.is_identity:
            self._to_host()
        super().refine(mask_options)

    def finish(self, options) -> tuple[Image.Image, Image.Image]:
        if self.device_mask is None or options.unmix_colours or options.background_color is not None:
            self._to_host()
            return super().finish(options)
        with self.frame.torch.inference_mode():
            return self.frame.finish(self.device_mask, cutout=options.output_mode != "mask_only")


def run_on_device(model, rgb: Image.Image, options, input_alpha: Optional[np.ndarray] = None,
                  timings: Optional[dict] = None) -> tuple[Image.Image, Image.Image]:
    """Every step of ``remove()`` for ``rgb`` with ``model`` on its device, wherever the model is (the benchmarks use
    it on the CPU, and with their own sessions): (image, mask image); ``timings`` gets each step's time."""
    work = DeviceWork(model, rgb, input_alpha, timings)
    work.predict(options)
    return work.complete(options)
