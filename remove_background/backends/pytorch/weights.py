"""Each weight of a converted module held once, so a model cache counts, moves and evicts its true size.

onnx2torch 1.5.15 gives every node that uses an initializer its own copy of it: a Conv's weight is copied into its
``nn.Conv2d``, and an initializer fed to MatMul, Add, Gather... is copied into one buffer per use (its
``converter.py`` looks the initializer up among module names, where it never is). A network that runs a
sub-network twice, as BiRefNet runs its Swin backbone on the image and on a half-size copy, then holds those
weights twice.

``share_weights`` undoes that after conversion, without touching what the module computes:

1. tensors with the same dtype, shape and bytes are found (a copy of one initializer is such a tensor);
2. modules of the same class and configuration whose tensors are the same (the second run of a sub-network) become
   one module, called from every place that called one of them;
3. every constant the graph reads (``get_attr``) reads the one tensor left of its kind;
4. what nothing uses any more is dropped.

Each tensor is then registered in one place only: ``parameters()``, ``buffers()`` and ``state_dict()`` list it
once, ``.to(device)`` moves it once, and a state dict loaded with ``assign=True`` (InvokeAI's partial loading)
replaces it in the one place every user reads it from. A tensor used by two modules of different configuration
(one weight in a stride-1 and a stride-2 Conv) stays a copy in each; ``held_values`` shows it.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import fx, nn

_MODULE_INTERNALS = frozenset(vars(nn.Module()))  # what every nn.Module has in its __dict__: not configuration
_FINGERPRINT_POINTS = 257

Slot = Tuple[str, str]  # (module path, attribute name)


def share_weights(module: fx.GraphModule) -> fx.GraphModule:
    """``module`` (an onnx2torch GraphModule) with each distinct tensor held once (in place; also returned)."""
    group_of = _equal_tensor_groups(module)
    _merge_equal_modules(module, group_of)
    _read_constants_from_one_place(module, group_of)
    _drop_unused(module)
    return module


def held_values(module: nn.Module) -> int:
    """How many values the module's parameters and buffers hold, each storage counted once."""
    return sum(numel for numel in _storages(module).values())


def held_bytes(module: nn.Module) -> int:
    """The bytes of the module's parameters and buffers, each storage counted once."""
    return sum(t.numel() * t.element_size() for t in _distinct_tensors(module))


def _distinct_tensors(module: nn.Module) -> List[torch.Tensor]:
    seen: Dict[Tuple[int, int], torch.Tensor] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        seen.setdefault((tensor.data_ptr(), tensor.numel()), tensor)
    return list(seen.values())


def _storages(module: nn.Module) -> Dict[Tuple[int, int], int]:
    return {(t.data_ptr(), t.numel()): t.numel() for t in _distinct_tensors(module)}


# --------------------------------------------------------------------------------------------------------------
# 1. equal tensors


def _slots(module: nn.Module) -> Dict[Slot, torch.Tensor]:
    """Every registered parameter and buffer, by (owning module's path, name)."""
    slots = {}
    for path, owner in module.named_modules(remove_duplicate=False):
        for name, tensor in list(owner._parameters.items()) + list(owner._buffers.items()):
            if tensor is not None:
                slots[(path, name)] = tensor
    return slots


def _equal_tensor_groups(module: nn.Module) -> Dict[Slot, int]:
    """Slot -> group number; slots in one group hold bit-for-bit equal tensors (same dtype and shape)."""
    candidates: Dict[tuple, List[Slot]] = defaultdict(list)
    slots = _slots(module)
    for slot, tensor in slots.items():
        candidates[_fingerprint(tensor)].append(slot)
    group_of: Dict[Slot, int] = {}
    for members in candidates.values():
        representatives: List[Slot] = []
        for slot in members:
            match = next((r for r in representatives if _same_bits(slots[r], slots[slot])), None)
            if match is None:
                representatives.append(slot)
                group_of[slot] = len(group_of)
            else:
                group_of[slot] = group_of[match]
    return group_of


def _fingerprint(tensor: torch.Tensor) -> tuple:
    """Dtype, shape and a few hundred evenly spaced values: equal tensors share it, different ones almost never."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // _FINGERPRINT_POINTS)
    points = flat[::step].contiguous()
    return str(tensor.dtype), tuple(tensor.shape), points.cpu().view(torch.uint8).numpy().tobytes()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    bits_a = a.detach().contiguous().reshape(-1).view(torch.uint8)
    bits_b = b.detach().contiguous().reshape(-1).view(torch.uint8)
    return bool(torch.equal(bits_a, bits_b))


# --------------------------------------------------------------------------------------------------------------
# 2. equal modules


def _merge_equal_modules(module: fx.GraphModule, group_of: Dict[Slot, int]) -> None:
    """Point every call of a module at the first module of the same class, configuration and tensors."""
    first: Dict[tuple, str] = {}
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        owner = module.get_submodule(node.target)
        if not _owns_tensors(owner):
            continue  # nothing to share
        signature = _signature(owner, node.target, group_of)
        if signature is None:
            continue
        node.target = first.setdefault(signature, node.target)


def _owns_tensors(owner: nn.Module) -> bool:
    return any(t is not None for m in owner.modules() for t in list(m._parameters.values()) + list(m._buffers.values()))


def _signature(owner: nn.Module, path: str, group_of: Dict[Slot, int]):
    """What the module computes from its inputs: class, configuration, tensors (by group), sub-modules."""
    config = []
    for key, value in sorted(vars(owner).items()):
        if key in _MODULE_INTERNALS:
            continue
        frozen = _frozen(value)
        if frozen is None:
            return None
        config.append((key, frozen))
    tensors = []
    for name in list(owner._parameters) + list(owner._buffers):
        tensor = owner._parameters.get(name, owner._buffers.get(name))
        kind = "parameter" if name in owner._parameters else "buffer"
        tensors.append((name, kind, None if tensor is None else group_of[(path, name)],
                        name in owner._non_persistent_buffers_set))
    children = []
    for name, child in owner._modules.items():
        child_signature = None if child is None else _signature(child, f"{path}.{name}", group_of)
        if child is not None and child_signature is None:
            return None
        children.append((name, child_signature))
    return type(owner), tuple(config), tuple(tensors), tuple(children)


def _frozen(value):
    """A hashable stand-in for a configuration value, equal for equal values; None where we cannot tell."""
    if value is None or isinstance(value, (bool, int, str, torch.dtype, torch.device)):
        return ("value", value)
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))  # -0.0 is not 0.0, NaN is NaN
    if isinstance(value, (list, tuple, torch.Size)):
        items = [_frozen(v) for v in value]
        return None if any(i is None for i in items) else (type(value).__name__, tuple(items))
    if isinstance(value, dict):
        items = [(k, _frozen(v)) for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))]
        return None if any(i[1] is None for i in items) else ("dict", tuple(items))
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        return ("tensor", str(value.dtype), tuple(value.shape), flat.view(torch.uint8).numpy().tobytes())
    return None


# --------------------------------------------------------------------------------------------------------------
# 3. constants read from one place, 4. what nothing uses


def _read_constants_from_one_place(module: fx.GraphModule, group_of: Dict[Slot, int]) -> None:
    """Every ``get_attr`` of a tensor reads the group's tensor in a called module if there is one, else the first
    constant of the group the graph reads."""
    called = {node.target for node in module.graph.nodes if node.op == "call_module"}
    home: Dict[int, str] = {}
    for (path, name), group in group_of.items():
        if _inside(path, called):
            home.setdefault(group, f"{path}.{name}" if path else name)
    for node in module.graph.nodes:
        if node.op != "get_attr":
            continue
        path, _, name = node.target.rpartition(".")
        group = group_of.get((path, name))
        if group is not None:
            node.target = home.setdefault(group, node.target)


def _inside(path: str, called: set) -> bool:
    """Whether the module at ``path`` is one of ``called`` or inside one."""
    parts = path.split(".") if path else []
    return any(".".join(parts[:i]) in called for i in range(1, len(parts) + 1))


def _drop_unused(module: fx.GraphModule) -> None:
    """Remove the modules, and the tensors of modules nobody calls, that no node refers to any more; then
    regenerate the code."""
    module.graph.eliminate_dead_code()
    called = {node.target for node in module.graph.nodes if node.op == "call_module"}
    read = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for path, owner in list(module.named_modules()):
        if _inside(path, called):
            continue  # a called module's tensors are its own business
        for name in list(owner._buffers) + list(owner._parameters):
            if (f"{path}.{name}" if path else name) not in read:
                owner._buffers.pop(name, None)
                owner._parameters.pop(name, None)
    module.delete_all_unused_submodules()
    module.recompile()
