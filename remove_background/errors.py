"""The errors users see. Each carries a message written for a person, not a traceback."""


class RemoveBackgroundError(RuntimeError):
    """Base class for every error this package raises on purpose."""


class ModelNotAvailableError(RemoveBackgroundError):
    """A model file is missing and could not be downloaded (offline, HTTP error...)."""


class ModelChecksumError(RemoveBackgroundError):
    """A model file is corrupt or truncated: its checksum does not match the catalog."""


class ModelFileError(RemoveBackgroundError, ValueError):
    """A model file that cannot serve as asked: not an ONNX model, outside the node's models folder, or inputs that do
    not fit the family chosen for it."""


class ProviderUnavailableError(RemoveBackgroundError):
    """An execution provider the user asked for explicitly is not available or did not load."""


class DependencyMissingError(RemoveBackgroundError):
    """A package we need (onnxruntime, pymatting, onnx2torch for the torch provider...) is not installed here."""


class TorchConversionError(ProviderUnavailableError):
    """A model's ONNX graph holds an operator that the torch provider cannot convert (ONNX Runtime runs it)."""

    def __init__(self, model: str, operator: str, detail: str = ""):
        self.model, self.operator = model, operator
        super().__init__(
            f"Model '{model}' cannot run on the 'torch' execution provider: its ONNX graph uses the operator "
            f"{operator}, which the conversion to PyTorch (onnx2torch and our converters) does not support. "
            f"Choose the execution provider 'cpu' (ONNX Runtime), or 'auto', which falls back to ONNX Runtime."
            + (f" ({detail.strip()[:300]})" if detail and detail.strip() != operator else "")
        )


class DeviceOutOfMemoryError(RemoveBackgroundError):
    """The GPU ran out of memory while running a model."""


class InvalidImageError(RemoveBackgroundError, ValueError):
    """The input image cannot be processed (empty, unsupported mode...)."""


def check_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    """Raise a ValueError naming the option and its allowed range when ``value`` is outside it."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}{unit}, got {value}.")
