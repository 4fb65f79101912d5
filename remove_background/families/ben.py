"""BEN (Background Erase Network; BEN2 base): 1024², a sigmoid inside the file, which computes in half precision
(its published ONNX file holds float16 weights behind float32 inputs). Your own BEN file is fed as rembg 2.0.86's
ben_custom feeds it (1024², mean 0.5, std 1); the published BEN2 base as its authors' ONNX example does (catalog)."""

from ..catalog import HALF_MEAN, UNIT_STD
from .base import CustomRecipe
from .image_mask import ImageMaskFamily


class BEN(ImageMaskFamily):
    key = "ben"
    title = "BEN"
    custom = CustomRecipe(1024, HALF_MEAN, UNIT_STD, "1024², mean 0.5, std 1, as rembg's ben_custom")
    torch_note = "its published file computes in float16"
