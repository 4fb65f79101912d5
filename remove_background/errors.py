"""The errors users see. Each carries a message written for a person, not a traceback."""


class RemoveBackgroundError(RuntimeError):
    """Base class for every error this package raises on purpose."""


class ModelNotAvailableError(RemoveBackgroundError):
    """A model file is missing and could not be downloaded (offline, HTTP error...)."""


class ModelChecksumError(RemoveBackgroundError):
    """A model file is corrupt or truncated: its checksum does not match the catalog."""


class ProviderUnavailableError(RemoveBackgroundError):
    """An execution provider the user asked for explicitly is not available or did not load."""


class DependencyMissingError(RemoveBackgroundError):
    """onnxruntime or rembg is not installed in this Python environment."""


class InvalidImageError(RemoveBackgroundError, ValueError):
    """The input image cannot be processed (empty, unsupported mode...)."""


def check_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    """Raise a ValueError naming the option and its allowed range when ``value`` is outside it."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}{unit}, got {value}.")
