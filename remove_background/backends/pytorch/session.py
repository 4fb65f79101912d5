"""The torch backend: rembg's ONNX files converted once to torch modules, run in fp32 on a torch device.

``load_module(info, path)`` converts a file (convert.py) into a ``ConvertedModel``: a plain ``nn.Module``
on the CPU whose parameters and buffers are the model's weights, so InvokeAI's model cache can count it, move it
to VRAM and evict it like its own models. ``TorchSession`` wraps a module on its device and is called like an ONNX
Runtime session (``get_inputs()``, ``run(None, feeds)`` with NumPy arrays), so every family's host steps
(families/) run unchanged; ``run_tensors`` keeps tensors on the device for its device steps (device_work.py).

A graph is converted for the input shapes its family feeds it (the model's input size, batch 1): its shapes are
folded into constants, so a run never reads a tensor back to the host to learn a size. A graph that is later fed other
shapes (Segment Anything's decoder, one point or several) gets one more specialisation for those shapes.
GPU out of memory becomes a ``DeviceOutOfMemoryError`` that says what to do.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np

from ...catalog import ModelInfo
from ...errors import DeviceOutOfMemoryError, ProviderUnavailableError


def _torch():
    import torch

    return torch


def _signature(shapes: Sequence[Sequence[int]]) -> str:
    return "x".join("_".join(str(int(d)) for d in s) or "scalar" for s in shapes).replace("-", "m") or "none"


def _converted_model_class():
    torch = _torch()

    class _ConvertedModel(torch.nn.Module):
        """An ONNX file as torch: one converted graph per set of input shapes (usually one), called with tensors
        in the ONNX inputs' order; returns a tuple in the ONNX outputs' order."""

        def __init__(self, source: Path, model_name: str, input_names, output_names, frozen=None):
            super().__init__()
            self.source, self.model_name = Path(source), model_name
            self.frozen = dict(frozen or {})  # inputs folded into the graph: name -> the one value they take
            self.input_names = [n for n in input_names if n not in self.frozen]
            self.output_names = list(output_names)
            self.graphs = torch.nn.ModuleDict()
            self._lock = threading.Lock()

        def add_graph(self, shapes: Sequence[Sequence[int]], graph) -> None:
            self.graphs[_signature(shapes)] = graph

        def graph_for(self, shapes: Sequence[Sequence[int]]):
            key = _signature(shapes)
            graph = self.graphs[key] if key in self.graphs else None
            if graph is None:
                with self._lock:
                    if key not in self.graphs:
                        from .convert import convert

                        new = convert(self.source, self.model_name, dict(enumerate(shapes)), self.frozen)
                        new = new.to(module_device(self))
                        self.graphs[key] = new.half() if float_dtype(self) == torch.float16 else new
                    graph = self.graphs[key]
            return graph

        def forward(self, *inputs):
            out = self.graph_for([tuple(t.shape) for t in inputs])(*inputs)
            return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    return _ConvertedModel


_CLASS = None


def converted_model_class():
    """The ``nn.Module`` class of converted models (made on first use, so importing this module needs no torch)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _converted_model_class()
    return _CLASS


def load_module(info: ModelInfo, path: Path, file_index: int = 0):
    """Convert the ONNX file ``path`` of ``info`` for the shapes its family feeds it: a module on the CPU, fp32."""
    from ... import families
    from .convert import convert

    family = families.of(info)
    frozen = family.torch_frozen_inputs(info, file_index)
    graph = convert(path, info.name, family.torch_input_shapes(info, file_index), frozen)
    module = converted_model_class()(path, info.name, graph.onnx_input_names, graph.onnx_output_names, frozen)
    module.add_graph(graph.onnx_input_shapes, graph)
    return in_half_precision(module) if info.half else module


def in_half_precision(module):
    """A half-precision row (birefnet-general-fp16) on the torch route: its float32 module's floating weights in
    float16 (stored once, as float16); TorchSession feeds it float16 and hands back float32, as the ONNX twin's
    keep_io_types does. The one place the torch route knows half precision."""
    return module.half()


def float_dtype(module):
    """The floating dtype of a module's weights (float32, or float16 after ``in_half_precision``)."""
    torch = _torch()
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def load_modules(info: ModelInfo, paths: list) -> list:
    """The converted modules (CPU, fp32) for each of ``info``'s files."""
    return [load_module(info, path, i) for i, path in enumerate(paths)]


def to_device(modules: list, device: str, model: str) -> list:
    """Move our own (not InvokeAI's) converted modules to ``device``; a device torch cannot use is a route that
    does not work (auto falls back), out of memory a clear failure."""
    try:
        return [m.to(device) for m in modules]
    except Exception as e:
        if is_out_of_memory(e):
            raise out_of_memory_error(model, device, e) from None
        raise ProviderUnavailableError(f"PyTorch cannot use the device {device} for model '{model}' ({e}).") from None


def module_device(module):
    """The device a module's weights are on (InvokeAI's cache may have moved it)."""
    torch = _torch()
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def is_out_of_memory(error: BaseException) -> bool:
    torch = _torch()
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def out_of_memory_error(model: str, device, error: BaseException) -> DeviceOutOfMemoryError:
    """A clear error for GPU out of memory; the torch cache's free blocks are given back first."""
    torch = _torch()
    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.empty_cache()
    first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    return DeviceOutOfMemoryError(
        f"The GPU ({device}) ran out of memory while running model '{model}'. Free GPU memory (other models, other "
        f"programs), lower InvokeAI's VRAM budget for its model cache, run again, or choose the execution provider "
        f"'cpu'. ({first_line})"
    )


class TorchSession:
    """A converted model on its device, called like an ONNX Runtime session (NumPy in, NumPy out)."""

    def __init__(self, module, model: str, device=None):
        """``device``: where inputs go (InvokeAI's execution device: with partial loading, some weights may still be
        in RAM while InvokeAI's layers compute on the device); default: where the module's weights are."""
        self.module = module
        self.model = model
        self.device = _torch().device(device) if device is not None else module_device(module)
        self.half = float_dtype(module) == _torch().float16  # in_half_precision: float16 in, float32 out

    def get_inputs(self):
        return [SimpleNamespace(name=n) for n in self.module.input_names]

    def get_outputs(self):
        return [SimpleNamespace(name=n) for n in self.module.output_names]

    def get_providers(self) -> list[str]:
        return [f"torch:{self.device}"]

    def run_tensors(self, *inputs):
        """The model's outputs (a tuple of tensors on the device) for input tensors already on the device."""
        torch = _torch()
        try:
            with torch.inference_mode():
                if not self.half:
                    return self.module(*inputs)
                out = self.module(*(t.half() if t.is_floating_point() else t for t in inputs))
                return tuple(t.float() if t.is_floating_point() else t for t in out)
        except Exception as e:
            if is_out_of_memory(e):
                raise out_of_memory_error(self.model, self.device, e) from None
            raise

    def run(self, output_names: Optional[Sequence[str]], feeds: dict) -> list[np.ndarray]:
        torch = _torch()
        for name, value in self.module.frozen.items():
            if name in feeds and not np.array_equal(np.asarray(feeds[name]), value):
                raise ValueError(f"input {name} of '{self.model}' was converted for {value.tolist()}, "
                                 f"not {np.asarray(feeds[name]).tolist()}")
        try:
            tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device)
                       for n in self.module.input_names]
        except Exception as e:
            if is_out_of_memory(e):
                raise out_of_memory_error(self.model, self.device, e) from None
            raise
        outputs = self.run_tensors(*tensors)
        by_name = dict(zip(self.module.output_names, outputs))
        names = list(output_names) if output_names else self.module.output_names
        return [by_name[n].cpu().numpy() for n in names]
