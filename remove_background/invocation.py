"""The InvokeAI node: fields and wiring only. All the work happens in ``pipeline``.

This is the only module that imports InvokeAI. (No `from __future__ import annotations` here:
InvokeAI reads the return annotation of `invoke` as a class.)
"""


from pathlib import Path
from typing import Literal, Optional

from invokeai.invocation_api import (
    BaseInvocation,
    BaseInvocationOutput,
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
from .providers import PROVIDER_CHOICES

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

    def invoke(self, context: InvocationContext) -> RemoveBackgroundOutput:
        image = context.images.get_pil(self.image.image_name)

        last = [-1.0]

        def progress(name: str, done: int, total: Optional[int]) -> None:
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
        )
        image_dto = context.images.save(image=result.image)
        mask_dto = context.images.save(image=result.mask, image_category=ImageCategory.MASK)
        return RemoveBackgroundOutput(
            image=ImageField(image_name=image_dto.image_name),
            mask=ImageField(image_name=mask_dto.image_name),
            width=image_dto.width,
            height=image_dto.height,
        )
