"""IS-Net / DIS (isnet-general-use, isnet-anime): 1024², each model's own mean and std, a sigmoid inside the file."""

from ..catalog import HALF_MEAN, UNIT_STD
from .base import CustomRecipe
from .image_mask import ImageMaskFamily


class ISNet(ImageMaskFamily):
    key = "isnet"
    title = "IS-Net (DIS)"
    custom = CustomRecipe(1024, HALF_MEAN, UNIT_STD, "1024², mean 0.5, std 1, as rembg's dis_custom")
