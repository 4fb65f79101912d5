"""What every model family answers: the one place that knows how a family's models are fed and read.

A family is an architecture (U²-Net, IS-Net, BiRefNet, Segment Anything...): the models of one family take their
input and give their output the same way, and differ only in the facts the catalog holds (files, input size, mean
and std). A family class owns everything else: how the image becomes the model's input and the output a mask, on
the host and (where it has them) on the model's torch device; the input shapes and the always-equal inputs the
torch backend converts a file for; which options apply; and how ``doctor`` describes it.

Subclasses set ``key`` (what catalog rows name) and register themselves; ``families.of(info)`` finds them. A family
that sets ``custom`` runs your own file too (``custom_info``): ``custom`` says how such a file is fed, as rembg's
custom sessions feed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # only for annotations: no import cycle at run time
    from ..backends.models import LoadedModel
    from ..catalog import ModelInfo
    from ..options import RemovalOptions

REGISTRY: dict[str, "Family"] = {}


@dataclass(frozen=True)
class CustomRecipe:
    """How a family feeds your own file: its input size (the default, where the family reads it from the file),
    mean and std; ``label`` names the family in the model-family dropdown."""

    size: int
    mean: tuple
    std: tuple
    label: str


class Family:
    """One model family. Instances hold no state: one per family serves every model and thread."""

    key: ClassVar[str]  # what catalog rows name in their ``family`` field
    title: ClassVar[str]  # for people: doctor, the docs
    edge_detail: ClassVar[bool] = False  # edge detail "high" (imaging/detail.py) applies to its masks
    torch_note: ClassVar[str] = ""  # what the torch route does for it beyond converting its file (doctor)
    custom: ClassVar[Optional[CustomRecipe]] = None  # your own file of this family: how it is fed; None: not offered
    ort_arena: ClassVar[bool] = True  # ONNX Runtime keeps its CPU memory arena (False: memory goes back after a run)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "key" in cls.__dict__:  # a concrete family (shared bases set no key of their own)
            REGISTRY[cls.key] = cls()

    def mask(self, model: "LoadedModel", rgb: Image.Image, options: "RemovalOptions") -> np.ndarray:
        """The model's mask for the RGB image ``rgb``, at the image's own size (H×W uint8), on the host."""
        raise NotImplementedError

    def refine(self, model: "LoadedModel", rgb: Image.Image, pixels: np.ndarray, mask: np.ndarray,
               matting: Any) -> np.ndarray:
        """A refiner's alpha (H×W uint8) for ``mask`` on ``rgb`` (``pixels``: the same as an H×W×3 array), the
        trimap built with ``matting``'s thresholds (imaging/matting.MattingOptions). Only refiner families (ViTMatte)
        answer it."""
        raise ValueError(f"{model.info.name} makes masks; it does not refine them.")

    def device_mask(self, model: "LoadedModel", frame: Any, options: "RemovalOptions") -> Optional[Any]:
        """The same mask as a uint8 tensor on the model's torch device, ``frame`` being the image there
        (backends/pytorch/device_frame.DeviceFrame); None where this family, or these options, have no device
        version (the host's ``mask`` then runs, with the model still on its device)."""
        return None

    def torch_input_shapes(self, info: "ModelInfo", file_index: int) -> dict:
        """The input shapes file ``file_index`` of ``info`` is fed (by input position or name): what the torch
        backend converts it for first."""
        raise NotImplementedError

    def torch_frozen_inputs(self, info: "ModelInfo", file_index: int) -> dict:
        """Inputs that file is always fed the same value (name -> array): folded into the converted graph."""
        return {}

    def custom_info(self, path, graph) -> "ModelInfo":
        """The catalog entry for your own file ``path`` of this family, ``graph`` being its inputs and outputs
        (model_graph.GraphIO); a ModelFileError, before anything runs, when the file does not fit the family."""
        from ..errors import ModelFileError

        raise ModelFileError(f"The model family {self.key!r} takes no files of your own.")
