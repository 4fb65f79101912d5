"""Execution providers: map the user's choice to a backend and device, and check what loaded.

Two backends run the same ONNX files: ONNX Runtime (its providers: CPU, CUDA, TensorRT, ...) and ``torch``, the
files converted with onnx2torch and run on InvokeAI's own torch device (pytorch/session.py).

Policy (documented in .readme/providers.md):
- ``auto``: ONNX Runtime's GPU provider when it is installed and loads; otherwise torch when InvokeAI's device is a
  GPU (``cuda``/``cuda:N``, ROCm torch reports ``cuda``; ``mps``; ``xpu``); otherwise ONNX Runtime on the CPU, which
  is faster than torch there. Outside InvokeAI (no device given) the device is torch's own GPU, if torch is
  installed and sees one. Whenever ``auto`` cannot have the GPU route it wants (a provider that does not load, a
  graph that does not convert, onnx2torch missing) it runs on the next route and logs one loud warning saying
  what was asked, what runs instead, and how to fix it.
- An explicit choice (``cuda``, ``tensorrt``, ``torch``...) that is unavailable or fails to load raises
  ProviderUnavailableError (or DependencyMissingError) saying what was asked, what loaded, and the likely fix. An
  explicit choice never silently runs elsewhere.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Optional, Sequence, Union

from ..errors import ProviderUnavailableError

log = logging.getLogger(__name__)

ProviderSpec = Union[str, tuple[str, dict]]

PROVIDER_CHOICES: dict[str, str] = {
    "auto": "Auto (follow InvokeAI's device)",
    "torch": "PyTorch on InvokeAI's device (GPU)",
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


GPU_DEVICE_KINDS = ("cuda", "mps", "xpu")  # torch devices that are GPUs (ROCm torch reports cuda)
TORCH = "torch"


@dataclass(frozen=True)
class ProviderPlan:
    """Where a model runs: ONNX Runtime with these providers, or torch on this device; and what runs instead."""

    choice: str  # what the user picked ("auto", "cuda", "torch", ...)
    providers: tuple[ProviderSpec, ...]  # ONNX Runtime's providers; () for torch
    accelerator: Optional[str]  # the ORT provider that must load, or None for CPU (and for torch)
    explicit: bool  # True: fail if the accelerator does not load (or the graph does not convert)
    backend: str = "ort"  # "ort" or "torch"
    torch_device: Optional[str] = None  # torch only: "cuda:0", "mps", "xpu:0", "cpu"
    fallback: Optional["ProviderPlan"] = None  # auto only: the next route if this one does not load or convert

    @property
    def key(self) -> tuple:
        """Hashable description for the session cache (the route asked for, not its fallbacks)."""
        if self.backend == TORCH:
            return ((TORCH, self.torch_device),)
        return tuple((p[0], tuple(sorted(p[1].items()))) if isinstance(p, tuple) else (p, ()) for p in self.providers)

    @property
    def description(self) -> str:
        """What runs the model, for people: "torch on cuda:0", "ONNX Runtime (CUDAExecutionProvider, ...)"."""
        if self.backend == TORCH:
            return f"PyTorch on {self.torch_device}"
        return "ONNX Runtime (" + ", ".join(p[0] if isinstance(p, tuple) else p for p in self.providers) + ")"


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


def torch_route_installed() -> bool:
    """True when the torch provider can be used here: torch and onnx2torch are importable."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("onnx2torch") is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def torch_gpu_device() -> Optional[str]:
    """torch's own GPU, when torch is installed and sees one ("cuda:0", "mps", "xpu:0"); else None. Asked once per
    process (importing torch takes seconds; only where it is installed)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if torch.cuda.is_available():
        return "cuda:0"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu:0"
    return None


def normalise_device(device: str) -> str:
    """``cuda`` -> ``cuda:0`` (and ``xpu`` -> ``xpu:0``): one cache key per physical device."""
    kind = device.split(":")[0]
    if kind in ("cuda", "xpu") and ":" not in device:
        return f"{kind}:0"
    return device


def _torch_plan(choice: str, device: str, explicit: bool, fallback: Optional[ProviderPlan] = None) -> ProviderPlan:
    return ProviderPlan(choice, (), None, explicit, backend=TORCH, torch_device=normalise_device(device),
                        fallback=fallback)


def plan_providers(choice: str, device: Optional[str] = None, available: Optional[Sequence[str]] = None,
                   torch_route: Optional[bool] = None) -> ProviderPlan:
    """Turn a provider choice and a torch-style device (``cpu``, ``cuda:1``, ``mps``; None outside InvokeAI) into
    a plan. ``available`` (ONNX Runtime's providers) and ``torch_route`` (torch + onnx2torch installed) default to
    what this environment has."""
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"Unknown execution provider {choice!r}. Choose one of: {', '.join(PROVIDER_CHOICES)}.")
    available = list(available if available is not None else available_providers())
    if torch_route is None:
        torch_route = torch_route_installed()
    index = _device_index(device)
    if choice == TORCH:
        if not torch_route:
            from ..install.dependencies import torch_route_missing

            raise torch_route_missing()
        if device is None:
            device = torch_gpu_device() or "cpu"
        return _torch_plan(choice, device, explicit=True)
    if choice == "auto":
        return _auto_plan(device, available, torch_route, index)
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


def _auto_plan(device: Optional[str], available: Sequence[str], torch_route: bool, index: int) -> ProviderPlan:
    cpu = ProviderPlan("auto", (CPU,), None, explicit=False)
    if device is None:  # outside InvokeAI: ORT's GPU provider if installed, else torch's own GPU, else CPU
        gpu_device = torch_gpu_device() if torch_route else None
        kind = "cuda"
    else:
        kind = device.split(":")[0]
        gpu_device = device if kind in GPU_DEVICE_KINDS else None
    torch_next = _torch_plan("auto", gpu_device, explicit=False, fallback=cpu) if gpu_device and torch_route else cpu
    if kind == "cuda":
        ort_gpu = next((n for n in ("CUDAExecutionProvider", "ROCMExecutionProvider") if n in available), None)
        if ort_gpu is not None:
            return ProviderPlan("auto", (_with_options(ort_gpu, index), CPU), ort_gpu, explicit=False,
                                fallback=torch_next)
    if gpu_device is None:
        return cpu  # the CPU: ONNX Runtime is faster than torch there
    if not torch_route:
        _warn_no_gpu_route(device or gpu_device, available)
    return torch_next


def _ort_version() -> str:
    try:
        import onnxruntime as ort

        return ort.__version__
    except ImportError:
        return "1.19.2"


def _fix_hint(name: str) -> str:
    """The likely fix for a GPU provider that is missing or did not load (same advice as the README)."""
    dists = installed_ort_distributions()
    from ..install.safe_install import reinstall_command

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


def warn_once(key: tuple, message: str) -> None:
    """Log ``message`` loudly once per ``key`` (device, route, what is installed): not once per image."""
    if key in _warned:
        return
    _warned.add(key)
    log.warning("remove-background: %s", message)


def _warn_no_gpu_route(device: Optional[str], available: Sequence[str]) -> None:
    """auto on a GPU device with neither ONNX Runtime's GPU provider nor the torch route installed."""
    from ..install.dependencies import torch_route_command

    warn_once((device, "no GPU route", tuple(available)),
              f"InvokeAI runs on {device} but neither ONNX Runtime's GPU provider (available: {', '.join(available)}) "
              f"nor the torch route (onnx2torch) is installed. Background removal runs on the CPU instead, much "
              f"slower. To run it on {device} with PyTorch, install onnx2torch: {torch_route_command()}")


def check_loaded(plan: ProviderPlan, loaded: Sequence[str], model: str) -> None:
    """After creating a session: raise ProviderUnavailableError if the accelerator did not load (models.first_route
    then fails an explicit choice, and runs auto on its fallback with one loud warning)."""
    if plan.accelerator is None or plan.accelerator in loaded:
        return
    message = (
        f"Execution provider '{plan.choice}' asked for {plan.accelerator} for model '{model}', "
        f"but ONNX Runtime loaded only {', '.join(loaded) or 'nothing'}. Its libraries probably failed to load "
        f"(for CUDA: CUDA 12 / cuDNN 9 missing or mismatched). {_fix_hint(plan.accelerator)}"
    )
    raise ProviderUnavailableError(message)
