"""U²-Net (u2net, u2netp, u2net_human_seg, silueta): 320², ImageNet normalisation, a sigmoid inside the file."""

from ..catalog import IMAGENET_MEAN, IMAGENET_STD
from .base import CustomRecipe
from .image_mask import ImageMaskFamily


class U2Net(ImageMaskFamily):
    key = "u2net"
    title = "U²-Net"
    custom = CustomRecipe(320, IMAGENET_MEAN, IMAGENET_STD, "320², ImageNet mean and std, as rembg's u2net_custom")
