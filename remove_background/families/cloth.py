"""U²-Net cloth segmentation (u2net_cloth_seg): 768², four class channels (background, upper, lower, full body).

rembg resizes the class-index map with LANCZOS, which invents thin strips of "upper" and "lower" along the border
between background and a full-body garment. Here the category's pixels are taken at the model's size and that mask
is resized, which cannot invent a class (a deliberate departure, tested against rembg's own session).
"""

import numpy as np

from .image_mask import ImageMaskFamily

CLOTH_CLASSES = {"upper": (1,), "lower": (2,), "full": (3,), "all": (1, 2, 3)}


class Cloth(ImageMaskFamily):
    key = "cloth"
    title = "U²-Net cloth"
    edge_detail = False  # its mask is a class map, not a soft matte

    def small_mask(self, outputs, options) -> np.ndarray:
        """One uint8 mask for the options' cloth category (upper, lower, full or all), at the model's size."""
        classes = np.argmax(np.asarray(outputs[0])[0], axis=0)
        return np.isin(classes, CLOTH_CLASSES[options.cloth_category]).astype(np.uint8) * 255

    def device_small_mask(self, frame, outputs, options):
        torch = frame.torch
        classes = torch.argmax(outputs[0][0], dim=0)
        wanted = frame.constant(CLOTH_CLASSES[options.cloth_category], torch.int64)
        return torch.isin(classes, wanted).to(torch.uint8) * 255
