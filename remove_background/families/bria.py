"""BRIA RMBG 2.0: BiRefNet's architecture, exported with its sigmoid inside the file; 1024², ImageNet normalisation."""

from .image_mask import ImageMaskFamily


class BRIA(ImageMaskFamily):
    key = "bria"
    title = "BRIA RMBG"
