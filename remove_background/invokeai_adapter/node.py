"""The InvokeAI node: fields and wiring only. All the work happens in ``pipeline``.

This is the only module that imports InvokeAI. (No `from __future__ import annotations` here:
InvokeAI reads the return annotation of `invoke` as a class.)
"""


from pathlib import Path
from typing import Literal, Optional

from invokeai.invocation_api import (
    BaseInvocation,
    BaseInvocationOutput,
    BoundingBoxField,
    ColorField,
    ImageCategory,
    ImageField,
    InputField,
    InvocationContext,
    OutputField,
    WithBoard,
    WithMetadata,
    invocation,
    invocation_output,
)

from invokeai.app.invocations.fields import TensorField

from .. import __version__
from ..catalog import CUSTOM
from ..custom_models import file_in_folder
from ..model_files import invokeai_models_dir
from .model_cache import InvokeAIModels
from ..options import (CLOTH_LABELS, EDGE_DETAIL_LABELS, FAMILY_LABELS, MODEL_LABELS, OUTPUT_LABELS, VITMATTE_LABELS,
                       RemovalOptions, node_input, node_name)
from ..pipeline import remove
from ..backends.routes import PROVIDER_CHOICES

NODE_ID = "remove_background_rembg"
OUTPUT_ID = "remove_background_rembg_output"

ModelName = Literal[tuple(MODEL_LABELS)]  # type: ignore[valid-type]
ModelFamily = Literal[tuple(FAMILY_LABELS)]  # type: ignore[valid-type]
ProviderName = Literal[tuple(PROVIDER_CHOICES)]  # type: ignore[valid-type]
OutputMode = Literal[tuple(OUTPUT_LABELS)]  # type: ignore[valid-type]
ClothCategory = Literal[tuple(CLOTH_LABELS)]  # type: ignore[valid-type]
EdgeDetail = Literal[tuple(EDGE_DETAIL_LABELS)]  # type: ignore[valid-type]
VitMatteModel = Literal[tuple(VITMATTE_LABELS)]  # type: ignore[valid-type]
# Options the node shows in a shape of its own (options.py): converted in RemoveBackgroundInvocation.options().
NODE_SHAPED = {"model_path": ("model_file",), "model_family": ("model_family",),
               "background_color": ("background", "background_color"), "sam_point": ("sam_point_x", "sam_point_y"),
               "sam_box": ("sam_box",)}


def models_dir(context: InvocationContext) -> Path:
    """``<InvokeAI models dir>/rembg``: where this node keeps model files (the rule: model_files)."""
    return invokeai_models_dir(context.config.get().models_path)


def current_device() -> Optional[str]:
    """The calling thread's torch device as a string (``cuda:1``, ``cpu``, ``mps``)."""
    try:
        from invokeai.backend.util.devices import TorchDevice

        device = TorchDevice.choose_torch_device()
    except Exception:
        return None
    return f"{device.type}:{device.index}" if device.index is not None else device.type


def mask_tensor(mask):
    """The L mask as InvokeAI's boolean mask tensor [1, H, W]: true where the mask is above 0."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(mask) > 0).unsqueeze(0)


@invocation_output(OUTPUT_ID)
class RemoveBackgroundOutput(BaseInvocationOutput):
    """The cut-out, its mask (as an image and as InvokeAI's mask tensor), and their size."""

    image: ImageField = OutputField(description="The cut-out: RGBA, transparent where the background was")
    mask: ImageField = OutputField(description="The mask (greyscale L): white = subject, black = background")
    mask_tensor: TensorField = OutputField(
        description="The mask as InvokeAI's boolean mask tensor [1, H, W], for regional prompts, IP-Adapter masks and "
        "the mask nodes: true wherever the mask is above 0, i.e. wherever the cut-out is not fully transparent (as "
        "Alpha Mask to Tensor reads it). Set Mask Threshold to make the soft mask binary first."
    )
    width: int = OutputField(description="Width of the image and the mask in pixels")
    height: int = OutputField(description="Height of the image and the mask in pixels")


@invocation(
    NODE_ID,
    title="Remove Background",
    tags=["background", "remove", "rembg", "mask", "cutout", "segmentation", "matte"],
    category="image",
    version=__version__,
)
class RemoveBackgroundInvocation(BaseInvocation, WithBoard, WithMetadata):
    """Remove an image's background with rembg's ONNX models. Outputs the RGBA cut-out and the mask."""

    # Fields in the order the editor shows them. Defaults, bounds, labels and help text: options.RemovalOptions.
    image: ImageField = InputField(description="The image to cut out")
    model: ModelName = InputField(**node_input("model"))
    model_file: str = InputField(default="", description="Model custom only: the name of your .onnx file inside "
                                 "<InvokeAI models dir>/rembg (a file outside that folder is refused)")
    model_family: ModelFamily = InputField(default="u2net", description="Model custom only: " +
                                           node_input("model_family")["description"], ui_choice_labels=FAMILY_LABELS)
    execution_provider: ProviderName = InputField(**node_input("provider"))
    edge_detail: EdgeDetail = InputField(**node_input("edge_detail"))
    post_process_mask: bool = InputField(**node_input("post_process_mask"))
    mask_threshold: int = InputField(**node_input("mask_threshold"))
    mask_grow: int = InputField(**node_input("mask_grow"))
    mask_blur: float = InputField(**node_input("mask_blur"))
    mask_invert: bool = InputField(**node_input("mask_invert"))
    alpha_matting: bool = InputField(**node_input("alpha_matting"))
    alpha_matting_foreground_threshold: int = InputField(**node_input("alpha_matting_foreground_threshold"))
    alpha_matting_background_threshold: int = InputField(**node_input("alpha_matting_background_threshold"))
    alpha_matting_erode_size: int = InputField(**node_input("alpha_matting_erode_size"))
    vitmatte: bool = InputField(**node_input("vitmatte"))
    vitmatte_model: VitMatteModel = InputField(**node_input("vitmatte_model"))
    decontaminate: bool = InputField(**node_input("decontaminate"))
    background: Literal["transparent", "color"] = InputField(
        default="transparent",
        description="Transparent cut-out, or composite it over Background Color (the mask output is unchanged)",
        ui_choice_labels={"transparent": "Transparent", "color": "Solid colour"},
    )
    background_color: ColorField = InputField(
        default=ColorField(r=255, g=255, b=255, a=255), description="The colour behind the subject when Background is colour"
    )
    output_mode: OutputMode = InputField(**node_input("output_mode"))
    cloth_category: ClothCategory = InputField(**node_input("cloth_category"))
    sam_point_x: int = InputField(default=-1, ge=-1, title="SAM Point X",
                                  description="sam only: x of the point prompt (-1 = image centre)")
    sam_point_y: int = InputField(default=-1, ge=-1, title="SAM Point Y",
                                  description="sam only: y of the point prompt (-1 = image centre)")
    sam_box: Optional[BoundingBoxField] = InputField(default=None, title="SAM Box",
                                                     description="sam only: an optional box prompt")

    def options(self, folder: Optional[Path] = None) -> RemovalOptions:
        """The node's fields as the pipeline's options; Model custom: the file named inside ``folder`` (the node's
        models folder), refused if the name leads out of it."""
        values = {name: getattr(self, node_name(name)) for name in RemovalOptions.__dataclass_fields__
                  if name not in NODE_SHAPED}
        if self.model == CUSTOM:
            values["model_path"] = str(file_in_folder(folder, self.model_file)) if folder else self.model_file
            values["model_family"] = self.model_family
        if self.background == "color":
            values["background_color"] = self.background_color.tuple()
        if self.sam_point_x >= 0 or self.sam_point_y >= 0:
            values["sam_point"] = (max(self.sam_point_x, 0), max(self.sam_point_y, 0))
        if self.sam_box is not None:
            values["sam_box"] = (self.sam_box.x_min, self.sam_box.y_min, self.sam_box.x_max, self.sam_box.y_max)
        return RemovalOptions(**values)

    def invoke(self, context: InvocationContext) -> RemoveBackgroundOutput:
        image = context.images.get_pil(self.image.image_name)

        last = [-1.0]

        def progress(name: str, done: int, total: Optional[int]) -> None:
            if context.util.is_canceled():  # the download stops and its temporary file is removed
                from invokeai.app.services.session_processor.session_processor_common import CanceledException

                raise CanceledException(f"canceled while downloading {name}")
            fraction = done / total if total else None
            step = fraction if fraction is not None else done / 50e6
            if step - last[0] >= 0.01 or done == total:  # at most ~100 events per file
                last[0] = step
                context.util.signal_progress(f"Downloading {name} ({done / 1e6:.1f} MB)", fraction)

        context.util.signal_progress(f"Removing background ({self.model})")
        folder = models_dir(context)
        result = remove(image, self.options(folder), models_dir=folder, device=current_device(),
                        progress=progress, models=InvokeAIModels(context.models))
        mask_dto = context.images.save(image=result.mask, image_category=ImageCategory.MASK)
        image_dto = mask_dto if self.output_mode == "mask_only" else context.images.save(image=result.image)
        return RemoveBackgroundOutput(
            image=ImageField(image_name=image_dto.image_name),
            mask=ImageField(image_name=mask_dto.image_name),
            mask_tensor=TensorField(tensor_name=context.tensors.save(mask_tensor(result.mask))),
            width=image_dto.width,
            height=image_dto.height,
        )
