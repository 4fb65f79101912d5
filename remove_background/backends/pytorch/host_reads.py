"""Count what a torch module reads back to the host while it runs: on a GPU each is a wait for the device.

``HostReads`` is a context manager that counts, in the calling thread:

- reads of a tensor's values by Python: ``.tolist()``, ``.numpy()``, ``.cpu()``, ``.to("cpu")`` (counted on any
  device: on the CPU they cost nothing, on a GPU each copies to the host);
- ``aten._local_scalar_dense``: every ``.item()``, ``int(t)``, ``float(t)``, ``bool(t)``, and a 0-dim tensor used
  as an index;
- operators whose output size depends on values (``nonzero``, ``masked_select``, ``unique``...), which wait for
  the device to learn that size.

A converted module whose shapes are folded makes none in a forward; ``count_host_reads`` runs one and says.
Count under ``torch.no_grad``: in ``inference_mode`` some reads (a 0-dim index) bypass the dispatcher unseen.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_READ_METHODS = {"tolist", "numpy", "cpu"}
_WAITING_OPS = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2",
                "unique_dim", "unique_consecutive", "unique_dim_consecutive", "repeat_interleave"}


class _PythonReads(TorchFunctionMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _READ_METHODS or (name == "to" and _to_host(args[1:], kwargs)):
            self.counts[f"Tensor.{name}"] += 1
        return func(*args, **kwargs)


class _WaitingOps(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _WAITING_OPS and not (name == "repeat_interleave" and not _tensor_repeats(args, kwargs)):
            self.counts[f"aten.{name}"] += 1
        return func(*args, **(kwargs or {}))


class HostReads:
    """``with HostReads() as reads: ...``; then ``reads.total`` and ``reads.counts`` (by kind)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self._modes = [_PythonReads(self.counts), _WaitingOps(self.counts)]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> "HostReads":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def count_host_reads(module, *inputs) -> HostReads:
    """One forward of ``module`` on ``inputs`` (tensors), counting its host reads.

    Under ``torch.no_grad``, not ``inference_mode``: there torch reads a 0-dim index tensor back without passing
    through the dispatcher, so the read happens but no mode sees it."""
    with torch.no_grad(), HostReads() as reads:
        module(*inputs)
    return reads


def _to_host(args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    if isinstance(target, (str, torch.device)):
        try:
            return torch.device(target).type == "cpu"
        except (RuntimeError, TypeError):
            return False
    return False


def _tensor_repeats(args, kwargs) -> bool:
    """repeat_interleave waits for the device only when its repeats are a tensor (the output size is their sum)."""
    repeats = kwargs.get("repeats", args[1] if len(args) > 1 else args[0] if args else None)
    return isinstance(repeats, torch.Tensor)
