"""Execution providers: map the user's choice to ONNX Runtime providers, and check what loaded.

Policy (documented in the README):
- ``auto`` follows the device: ``cuda``/``cuda:N`` -> CUDA on device N (ROCm when
  that is the GPU provider installed), ``cpu`` and ``mps`` -> CPU. If the GPU
  provider is missing or fails to load, ``auto`` falls back to CPU with one loud
  warning.
- An explicit choice (``cuda``, ``tensorrt``...) that is unavailable or fails to
  load raises ProviderUnavailableError saying what was asked, what loaded, and
  the likely fix. An explicit choice never silently runs on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Optional, Sequence, Union

from .errors import ProviderUnavailableError

log = logging.getLogger(__name__)

ProviderSpec = Union[str, tuple[str, dict]]

PROVIDER_CHOICES: dict[str, str] = {
    "auto": "Auto (follow InvokeAI's device)",
    "cpu": "CPU",
    "cuda": "CUDA (NVIDIA)",
    "tensorrt": "TensorRT (NVIDIA)",
    "rocm": "ROCm (AMD)",
    "directml": "DirectML (Windows)",
    "openvino": "OpenVINO (Intel)",
    "coreml": "CoreML (Apple)",
}

ORT_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "directml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}

ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-rocm",
    "onnxruntime-silicon",
    "onnxruntime-coreml",
)

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask ONNX Runtime for, and whether falling back to CPU is allowed."""

    choice: str  # what the user picked ("auto", "cuda", ...)
    providers: tuple[ProviderSpec, ...]
    accelerator: Optional[str]  # the ORT provider that must load, or None for CPU
    explicit: bool  # True: fail if the accelerator does not load

    @property
    def key(self) -> tuple:
        """Hashable description for the session cache."""
        return tuple((p[0], tuple(sorted(p[1].items()))) if isinstance(p, tuple) else (p, ()) for p in self.providers)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def installed_ort_distributions() -> list[str]:
    """The onnxruntime wheels installed; more than one of them fight over the same module."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def _device_index(device: Optional[str]) -> int:
    if device and ":" in device:
        try:
            return int(device.split(":", 1)[1])
        except ValueError:
            return 0
    return 0


def _with_options(name: str, device_id: int) -> ProviderSpec:
    if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider"):
        return (name, {"device_id": device_id})
    return name


def plan_providers(choice: str, device: Optional[str] = None, available: Optional[Sequence[str]] = None) -> ProviderPlan:
    """Turn a provider choice and a torch-style device (``cpu``, ``cuda:1``, ``mps``) into a plan."""
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"Unknown execution provider {choice!r}. Choose one of: {', '.join(PROVIDER_CHOICES)}.")
    available = list(available if available is not None else available_providers())
    index = _device_index(device)
    if choice == "auto":
        kind = (device or "").split(":")[0]
        if device is None:  # outside InvokeAI: the first GPU provider installed, else CPU
            for name in ("CUDAExecutionProvider", "ROCMExecutionProvider"):
                if name in available:
                    return ProviderPlan(choice, (_with_options(name, 0), CPU), name, explicit=False)
            return ProviderPlan(choice, (CPU,), None, explicit=False)
        if kind == "cuda":
            gpu = next((n for n in ("CUDAExecutionProvider", "ROCMExecutionProvider") if n in available), None)
            if gpu is None:
                _warn_fallback(choice, device, "CUDAExecutionProvider", available)
                return ProviderPlan(choice, (CPU,), None, explicit=False)
            return ProviderPlan(choice, (_with_options(gpu, index), CPU), gpu, explicit=False)
        # cpu, mps (CoreML is not proven for these models; see README) and anything else: CPU
        return ProviderPlan(choice, (CPU,), None, explicit=False)
    if choice == "cpu":
        return ProviderPlan(choice, (CPU,), None, explicit=True)
    name = ORT_NAMES[choice]
    if name not in available:
        raise ProviderUnavailableError(_unavailable_message(choice, name, available))
    chain: list[ProviderSpec] = [_with_options(name, index)]
    if choice == "tensorrt" and "CUDAExecutionProvider" in available:
        chain.append(_with_options("CUDAExecutionProvider", index))
    chain.append(CPU)
    return ProviderPlan(choice, tuple(chain), name, explicit=True)


def _ort_version() -> str:
    try:
        import onnxruntime as ort

        return ort.__version__
    except ImportError:
        return "1.19.2"


def _fix_hint(name: str) -> str:
    """The likely fix for a GPU provider that is missing or did not load (same advice as the README)."""
    dists = installed_ort_distributions()
    from .safe_install import reinstall_command

    gpu_install = reinstall_command(f"onnxruntime-gpu=={_ort_version()}")
    if len(dists) > 1:
        return (
            f"Several onnxruntime packages are installed ({', '.join(dists)}); they share one 'onnxruntime' module "
            f"and the one installed last wins. Put the GPU build's files back in place: {gpu_install} "
            f"(then check with: remove-background doctor)."
        )
    if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return (
            f"Install the GPU build over the CPU one: {gpu_install}, and make sure CUDA 12 and cuDNN 9 libraries "
            f"can be loaded (check with: remove-background doctor)."
        )
    return "Install the onnxruntime build for that provider (check with: remove-background doctor)."


def _unavailable_message(choice: str, name: str, available: Sequence[str]) -> str:
    return (
        f"Execution provider '{choice}' ({name}) is not available in this onnxruntime. "
        f"Available: {', '.join(available) or 'none'}. {_fix_hint(name)}"
    )


_warned: set[tuple] = set()


def _warn_fallback(choice: str, device: Optional[str], wanted: str, available: Sequence[str]) -> None:
    """One loud warning per (device, provider, what is installed): not one per image."""
    key = (device, wanted, tuple(available))
    if key in _warned:
        return
    _warned.add(key)
    log.warning(
        "remove-background: InvokeAI runs on %s but ONNX Runtime has no %s (available: %s). "
        "Background removal runs on the CPU instead, much slower. %s",
        device,
        wanted,
        ", ".join(available),
        _fix_hint(wanted),
    )


def check_loaded(plan: ProviderPlan, loaded: Sequence[str], model: str) -> None:
    """After creating a session: fail (explicit) or warn loudly (auto) if the accelerator did not load."""
    if plan.accelerator is None or plan.accelerator in loaded:
        return
    message = (
        f"Execution provider '{plan.choice}' asked for {plan.accelerator} for model '{model}', "
        f"but ONNX Runtime loaded only {', '.join(loaded) or 'nothing'}. Its libraries probably failed to load "
        f"(for CUDA: CUDA 12 / cuDNN 9 missing or mismatched). {_fix_hint(plan.accelerator)}"
    )
    if plan.explicit:
        raise ProviderUnavailableError(message)
    log.warning("remove-background: %s Running on the CPU instead.", message)
