"""U²-Net (u2net, u2netp, u2net_human_seg, silueta): 320², ImageNet normalisation, a sigmoid inside the file."""

from .image_mask import ImageMaskFamily


class U2Net(ImageMaskFamily):
    key = "u2net"
    title = "U²-Net"
