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

from . import __version__
from .catalog import DEFAULT_MODEL, MODEL_NAMES, MODELS
from .pipeline import remove
from .matting import MAX_ERODE, MattingOptions
from .providers import PROVIDER_CHOICES
from .refine import MAX_BLUR, MAX_GROW

_M = MattingOptions()

NODE_ID = "remove_background_rembg"
OUTPUT_ID = "remove_background_rembg_output"
MODELS_SUBDIR = "rembg"

ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]
ProviderName = Literal[tuple(PROVIDER_CHOICES)]  # type: ignore[valid-type]


def models_dir(context: InvocationContext) -> Path:
    """``<InvokeAI models dir>/rembg``: where this node keeps model files."""
    return Path(context.config.get().models_path) / MODELS_SUBDIR


def current_device() -> Optional[str]:
    """The calling thread's torch device as a string (``cuda:1``, ``cpu``, ``mps``)."""
    try:
        from invokeai.backend.util.devices import TorchDevice

        device = TorchDevice.choose_torch_device()
    except Exception:
        return None
    return f"{device.type}:{device.index}" if device.index is not None else device.type


@invocation_output(OUTPUT_ID)
class RemoveBackgroundOutput(BaseInvocationOutput):
    """The cut-out, its mask, and their size."""

    image: ImageField = OutputField(description="The cut-out: RGBA, transparent where the background was")
    mask: ImageField = OutputField(description="The mask (greyscale L): white = subject, black = background")
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

    image: ImageField = InputField(description="The image to cut out")
    model: ModelName = InputField(
        default=DEFAULT_MODEL,
        description="The rembg model. Files live in <InvokeAI models dir>/rembg; a missing one is downloaded. "
        "bria-rmbg is licensed for NON-COMMERCIAL use only.",
        ui_choice_labels={name: info.label for name, info in MODELS.items()},
    )
    execution_provider: ProviderName = InputField(
        default="auto",
        description="Where the model runs. Auto follows InvokeAI's device (CUDA GPU, else CPU) and falls back to "
        "the CPU with a warning; an explicit choice fails clearly if it cannot load.",
        ui_choice_labels=PROVIDER_CHOICES,
    )

    post_process_mask: bool = InputField(
        default=False, description="Refine step 1: rembg's morphological clean-up (removes specks, makes it binary)"
    )
    mask_threshold: int = InputField(
        default=0, ge=0, le=255, description="Refine step 2: 0 keeps the soft mask; otherwise binary, 255 where mask ≥ this"
    )
    mask_grow: int = InputField(
        default=0, ge=-MAX_GROW, le=MAX_GROW, description="Refine step 3: grow the mask by this many pixels (negative shrinks)"
    )
    mask_blur: float = InputField(
        default=0.0, ge=0.0, le=MAX_BLUR, description="Refine step 4: feather the mask edge by this radius in pixels"
    )
    mask_invert: bool = InputField(default=False, description="Refine step 5: invert the mask (keep the background)")
    alpha_matting: bool = InputField(
        default=False,
        description="Closed-form alpha matting on the uncertain edge band (hair, fur), before the refine steps",
    )
    alpha_matting_foreground_threshold: int = InputField(
        default=_M.foreground_threshold, ge=0, le=255, description="Alpha matting: mask values above this are sure foreground"
    )
    alpha_matting_background_threshold: int = InputField(
        default=_M.background_threshold, ge=0, le=255, description="Alpha matting: mask values below this are sure background"
    )
    alpha_matting_erode_size: int = InputField(
        default=_M.erode_size, ge=0, le=MAX_ERODE, description="Alpha matting: erode the sure regions by this size in pixels"
    )
    decontaminate: bool = InputField(
        default=False,
        description="Estimate the true foreground colour at soft edges, so no fringe of the old background shows",
    )
    background: Literal["transparent", "color"] = InputField(
        default="transparent",
        description="Transparent cut-out, or composite it over Background Color (the mask output is unchanged)",
        ui_choice_labels={"transparent": "Transparent", "color": "Solid colour"},
    )
    background_color: ColorField = InputField(
        default=ColorField(r=255, g=255, b=255, a=255), description="The colour behind the subject when Background is colour"
    )
    output_mode: Literal["cutout_and_mask", "mask_only"] = InputField(
        default="cutout_and_mask",
        description="Save the cut-out and the mask, or only the mask (then the image output is the mask too)",
        ui_choice_labels={"cutout_and_mask": "Cut-out + mask", "mask_only": "Mask only"},
    )
    cloth_category: Literal["all", "upper", "lower", "full"] = InputField(
        default="all",
        description="u2net_cloth_seg only: which garments make the mask (all = their union)",
        ui_choice_labels={"all": "All clothes", "upper": "Upper body", "lower": "Lower body", "full": "Full body"},
    )
    sam_point_x: int = InputField(default=-1, ge=-1, description="sam only: x of the point prompt (-1 = image centre)")
    sam_point_y: int = InputField(default=-1, ge=-1, description="sam only: y of the point prompt (-1 = image centre)")
    sam_box: Optional[BoundingBoxField] = InputField(default=None, description="sam only: an optional box prompt")

    def _sam_prompt(self) -> dict:
        point = None
        if self.sam_point_x >= 0 or self.sam_point_y >= 0:
            point = (max(self.sam_point_x, 0), max(self.sam_point_y, 0))
        box = None
        if self.sam_box is not None:
            box = (self.sam_box.x_min, self.sam_box.y_min, self.sam_box.x_max, self.sam_box.y_max)
        return {"sam_point": point, "sam_box": box}

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
        result = remove(
            image,
            model=self.model,
            provider=self.execution_provider,
            models_dir=models_dir(context),
            device=current_device(),
            progress=progress,
            post_process_mask=self.post_process_mask,
            mask_threshold=self.mask_threshold,
            mask_grow=self.mask_grow,
            mask_blur=self.mask_blur,
            mask_invert=self.mask_invert,
            alpha_matting=self.alpha_matting,
            alpha_matting_foreground_threshold=self.alpha_matting_foreground_threshold,
            alpha_matting_background_threshold=self.alpha_matting_background_threshold,
            alpha_matting_erode_size=self.alpha_matting_erode_size,
            decontaminate=self.decontaminate,
            background_color=self.background_color.tuple() if self.background == "color" else None,
            output_mode=self.output_mode,
            cloth_category=self.cloth_category,
            **self._sam_prompt(),
        )
        mask_dto = context.images.save(image=result.mask, image_category=ImageCategory.MASK)
        image_dto = mask_dto if self.output_mode == "mask_only" else context.images.save(image=result.image)
        return RemoveBackgroundOutput(
            image=ImageField(image_name=image_dto.image_name),
            mask=ImageField(image_name=mask_dto.image_name),
            width=image_dto.width,
            height=image_dto.height,
        )
