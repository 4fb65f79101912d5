"""BiRefNet (general, lite, portrait, DIS, HRSOD, COD, massive): 1024², ImageNet normalisation; the file gives
logits, so the sigmoid is ours (as rembg's BiRefNet sessions apply it)."""

from .image_mask import ImageMaskFamily


class BiRefNet(ImageMaskFamily):
    key = "birefnet"
    title = "BiRefNet"
    sigmoid = True
    torch_note = "its deform convolutions run as torchvision.ops.deform_conv2d"
