"""One image's way through the steps after decoding, on the host: the model's mask, matting, refining, the cut-out.

``pipeline.remove()`` runs the same steps for every model and every backend, in this order::

    work = model.start(rgb, input_alpha)   # the backend's choice: this class, or the torch backend's DeviceWork
    work.predict(options)                  # the family's mask at the image's size (families/)
    image, mask = work.complete(options, refiner)   # the steps after the model, in rembg's order:
        refine(post-process)               #   rembg's post_process_mask, when on (imaging/refine.py)
        matte(options, refiner)            #   the edge step: ViTMatte with the refiner's live model when the
                                           #   options ask for it (families/vitmatte.py), else alpha matting when
                                           #   on (imaging/matting.py)
        refine(the rest)                   #   threshold, grow, blur, invert (imaging/refine.py)
        finish(options)                    #   the input's own alpha in; cut-out, solid background or mask only

The refiner is a second live model, opened by the pipeline beside the first from the same source (our cache, or
InvokeAI's model cache) while ``complete`` runs; None when the options ask for none.

``Work`` does them with NumPy, PIL and OpenCV. Where a torch model runs on a GPU, the backend hands out a
``DeviceWork`` instead (backends/pytorch/device_work.py): the same steps on the device where they have a device
version, the mask brought to the host for the first step that has none.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from PIL import Image

from .imaging.compositing import combine_alpha, cutout, over_background
from .imaging.matting import alpha_matte, decontaminate
from .imaging.refine import refine

log = logging.getLogger(__name__)
_warned_threshold = False


class Work:
    """The steps for one RGB image (and its own alpha, if it had one) with one live model."""

    def __init__(self, model, rgb: Image.Image, input_alpha: Optional[np.ndarray]):
        self.model, self.rgb, self.input_alpha = model, rgb, input_alpha
        self.mask: Optional[np.ndarray] = None  # H×W uint8 once predicted
        self._rgb_array: Optional[np.ndarray] = None

    def rgb_array(self) -> np.ndarray:
        """The image's pixels as an H×W×3 array (made once, only for the steps that need one)."""
        if self._rgb_array is None:
            self._rgb_array = np.asarray(self.rgb)
        return self._rgb_array

    def predict(self, options) -> None:
        """The model's mask at the image's size, as its family computes it."""
        self.mask = self.model.family.mask(self.model, self.rgb, options)

    def matte(self, options, refiner=None) -> None:
        """The edge step: ViTMatte when the options brought a refiner (it takes precedence over alpha matting, and
        reads the alpha matting thresholds whether alpha matting is on or not, as in rembg), else alpha matting."""
        if refiner is not None:
            self.mask = refiner.family.refine(refiner, self.rgb, self.rgb_array(), self.mask, options.matting)
            _say_threshold_undoes(options)
        elif options.matting.enabled:
            self.mask = alpha_matte(self.rgb_array(), self.mask, options.matting)

    def refine(self, mask_options) -> None:
        if not mask_options.is_identity:
            self.mask = refine(self.mask, mask_options)

    def complete(self, options, refiner=None) -> tuple[Image.Image, Image.Image]:
        """The steps after the model, in their order: post-process, the edge step, the other refine steps,
        finishing. ``refiner``: the live ViTMatte model when ``options.vitmatte`` (the pipeline opens it)."""
        before, after = options.mask.split()
        self.refine(before)
        self.matte(options, refiner)
        self.refine(after)
        return self.finish(options)

    def finish(self, options) -> tuple[Image.Image, Image.Image]:
        """(the output image, the mask image): the mask times the input's own alpha is both the mask and the
        cut-out's alpha; the image is the cut-out, the subject over a solid colour, or the mask itself."""
        alpha = combine_alpha(self.mask, self.input_alpha)
        mask_image = Image.fromarray(alpha, "L")
        if options.output_mode == "mask_only":
            return mask_image, mask_image
        colours = self.rgb
        if options.unmix_colours:
            colours = Image.fromarray(decontaminate(self.rgb_array(), alpha), "RGB")
        if options.background_color is not None:
            base = np.asarray(colours) if colours is not self.rgb else self.rgb_array()
            return Image.fromarray(over_background(base, alpha, options.background_color), "RGBA"), mask_image
        return cutout(colours, alpha), mask_image


def _say_threshold_undoes(options) -> None:
    """Once per process: a mask threshold after ViTMatte makes its soft alpha binary again (not silently)."""
    global _warned_threshold
    if options.mask_threshold and not _warned_threshold:
        _warned_threshold = True
        log.warning("remove-background: mask_threshold %d makes ViTMatte's soft alpha binary again (it runs after "
                    "the refiner); set it to 0 to keep the refined edge.", options.mask_threshold)
