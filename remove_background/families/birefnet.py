"""BiRefNet (general, lite, portrait, DIS, HRSOD, COD, massive, matting: 1024²; BiRefNet_HR and HR-matting: 2048²),
ImageNet normalisation; the file gives logits, so the sigmoid is ours (as rembg's BiRefNet sessions apply it)."""

from ..catalog import IMAGENET_MEAN, IMAGENET_STD
from .base import CustomRecipe
from .image_mask import ImageMaskFamily


class BiRefNet(ImageMaskFamily):
    key = "birefnet"
    title = "BiRefNet"
    sigmoid = True
    size_from_graph = True  # exported at 1024² (most) or 2048² (BiRefNet_HR)
    custom = CustomRecipe(1024, IMAGENET_MEAN, IMAGENET_STD, "its file's side, else 1024², ImageNet mean and std, "
                          "sigmoid on its logits")
    torch_note = "its deform convolutions run as torchvision.ops.deform_conv2d"
