"""Live models: ``LoadedModel`` (a model's sessions on their route) and how one is created, routes tried in turn.

A ``LoadedModel`` is what the pipeline holds while it runs: the catalog entry, its family, the sessions (ONNX
Runtime sessions, or pytorch/session.py's ``TorchSession``s called the same way) and the route that really runs them.
``start(rgb, alpha)`` hands out the steps for one image: the host's (work.Work), or the torch backend's device
version (pytorch/device_work.DeviceWork) where a converted model runs on a GPU. The pipeline does not know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from .. import families
from ..catalog import ModelInfo
from ..errors import DeviceOutOfMemoryError, ProviderUnavailableError
from . import onnx_runtime
from .routes import TORCH, ProviderPlan, warn_once

DEVICE_WORK_ON_CPU = False  # tests set it, to run the device steps where CI has no GPU
T = TypeVar("T")


@dataclass
class LoadedModel:
    """A live model: its sessions and what they run on. ``plan`` is the route that actually runs it (auto's
    fallback when the route asked for did not load)."""

    info: ModelInfo
    sessions: list
    providers: list[str]
    plan: ProviderPlan

    @property
    def main(self):
        return self.sessions[0]

    @property
    def ort_sessions(self) -> list:  # the name of 1.x
        return self.sessions

    @property
    def family(self) -> families.Family:
        return families.of(self.info)

    @property
    def steps_on_device(self) -> bool:
        """Whether the steps around the model run on its torch device: on a GPU, not on the CPU, where the host's
        NumPy, PIL and OpenCV are several times faster than the same maths in torch (benchmarks/bench_torch.py)."""
        return self.plan.backend == TORCH and (self.main.device.type != "cpu" or DEVICE_WORK_ON_CPU)

    def start(self, rgb, input_alpha):
        """The steps for one image with this model (see work.py)."""
        if self.steps_on_device:
            from .pytorch.device_work import DeviceWork

            return DeviceWork(self, rgb, input_alpha)
        from ..work import Work

        return Work(self, rgb, input_alpha)


def first_route(plan: ProviderPlan, model: str, attempt: Callable[[ProviderPlan], T]) -> tuple[T, ProviderPlan]:
    """``attempt(plan)``, or for ``auto`` its fallbacks in turn while a route does not load or convert, with one
    loud warning each time; returns (the result, the plan that gave it). Explicit choices fail instead."""
    while True:
        try:
            return attempt(plan), plan
        except DeviceOutOfMemoryError:
            raise  # out of memory is not a route that does not work: the run fails with its message
        except ProviderUnavailableError as e:
            if plan.explicit or plan.fallback is None:
                raise
            warn_once((model, plan.key, type(e).__name__),
                      f"{e} Running model '{model}' on {plan.fallback.description} instead.")
            plan = plan.fallback


def ort_model(info: ModelInfo, sessions: list, plan: ProviderPlan) -> LoadedModel:
    """A LoadedModel over ONNX Runtime sessions; CPU ones share the CPU run gate."""
    sessions, loaded = onnx_runtime.gated(sessions)
    return LoadedModel(info=info, sessions=sessions, providers=loaded, plan=plan)


def torch_model(info: ModelInfo, modules: list, plan: ProviderPlan) -> LoadedModel:
    """A LoadedModel over converted torch modules already on their device."""
    from .pytorch.session import TorchSession

    sessions = [TorchSession(m, info.name, plan.torch_device) for m in modules]
    return LoadedModel(info=info, sessions=sessions, providers=sessions[0].get_providers(), plan=plan)


def create_model(info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> LoadedModel:
    """A live model for ``info`` from ``paths`` on ``plan`` (or, for auto, the first of its fallbacks that works)."""

    def attempt(route: ProviderPlan) -> LoadedModel:
        if route.backend == TORCH:
            from .pytorch.session import load_modules, to_device

            return torch_model(info, to_device(load_modules(info, paths), route.torch_device, info.name), route)
        return ort_model(info, onnx_runtime.create_sessions(info, paths, route), route)

    return first_route(plan, info.name, attempt)[0]
