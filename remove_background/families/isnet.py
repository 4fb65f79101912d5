"""IS-Net / DIS (isnet-general-use, isnet-anime): 1024², each model's own mean and std, a sigmoid inside the file."""

from .image_mask import ImageMaskFamily


class ISNet(ImageMaskFamily):
    key = "isnet"
    title = "IS-Net (DIS)"
