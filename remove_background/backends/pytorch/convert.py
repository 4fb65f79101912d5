"""rembg's ONNX files as torch modules: fold the graph's shapes, rewrite what onnx2torch cannot convert, convert.

1. **Fold.** The graph's inputs are fixed to the shapes we feed (batch 1, the model's input size), then ONNX Runtime's
   basic graph optimisation (constant folding, shape folding, no fused or vendor operators) rewrites the graph, so
   every shape computation becomes a constant. A module converted from the folded graph never reads a tensor back
   to the host to learn a size (no ``.tolist()`` per run), which is what makes it ``torch.export``-able.
2. **Rewrite** (``onnx_rewrites``): operator patterns that onnx2torch 1.5.15 does not convert, or converts with
   host round trips, become nodes of our own domain, converted by ``torch_converters`` (registered through
   onnx2torch's public ``add_converter``).
3. **Convert** with ``onnx2torch.convert``: an fp32 ``torch.fx.GraphModule`` on the CPU, in eval mode, without
   gradients, each weight held once (``weights.py``). Moving it to a device is the caller's (or InvokeAI's model
   cache's) business.

A graph that cannot be converted raises ``TorchConversionError`` naming the model, the operator and the provider
that does run it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ...errors import TorchConversionError

InputShapes = Mapping[Union[int, str], Sequence[int]]  # by input position or name; () leaves an input as it is


def fixed_input_model(path: Path, shapes: Optional[InputShapes], frozen: Optional[Mapping] = None):
    """The ONNX model at ``path`` with the inputs named in ``frozen`` made constants of those values, and the other
    inputs' dimensions fixed to ``shapes`` (keyed by the input's position among the remaining inputs, or by name)."""
    import onnx

    model = onnx.load(str(path))
    if frozen:
        from .rewrites import freeze_inputs

        freeze_inputs(model, frozen)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    for position, value in enumerate(inputs):
        wanted = list((shapes or {}).get(position, (shapes or {}).get(value.name, ())))
        if wanted:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 0:  # rank unknown: the shape we feed is the shape
                for _ in wanted:
                    dims.add()
            if len(dims) != len(wanted):
                raise ValueError(f"input {value.name} has {len(dims)} dimensions, not {len(wanted)}")
            for dim, size in zip(dims, wanted):
                dim.Clear()
                dim.dim_value = int(size)
    return model


def fold(path: Path, shapes: Optional[InputShapes] = None, frozen: Optional[Mapping] = None):
    """ONNX Runtime's basic optimisation of the model with fixed input shapes (and ``frozen`` inputs made
    constants), as an ``onnx.ModelProto``."""
    import onnx
    import onnxruntime as ort

    model = fixed_input_model(path, shapes, frozen)
    with tempfile.TemporaryDirectory(prefix="remove-background-fold-") as tmp:
        fixed = os.path.join(tmp, "fixed.onnx")
        folded = os.path.join(tmp, "folded.onnx")
        onnx.save(model, fixed)
        del model
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        opts.log_severity_level = 3
        ort.InferenceSession(fixed, sess_options=opts, providers=["CPUExecutionProvider"])
        return onnx.load(folded)


def convert(path: Path, model_name: str, shapes: Optional[InputShapes] = None, frozen: Optional[Mapping] = None):
    """The torch module for the ONNX file at ``path`` (fp32, CPU, eval mode, no gradients). ``frozen``: inputs that
    are always fed the same value (name -> array), made constants so what depends on them folds too; the module
    does not take them. The module's ``onnx_input_names``, ``onnx_input_shapes`` and ``onnx_output_names`` are the
    folded graph's inputs (in the order the module takes them), their fixed shapes, and its outputs."""
    try:
        from onnx2torch import convert as onnx2torch_convert
    except ImportError as e:
        from ...install.dependencies import torch_route_missing

        raise torch_route_missing(e) from None
    from . import rewrites as onnx_rewrites
    from . import converters as torch_converters
    from .weights import share_weights

    torch_converters.register()
    graph = fold(path, shapes, frozen)
    try:
        module = share_weights(onnx2torch_convert(onnx_rewrites.rewrite(graph)))
    except TorchConversionError:
        raise
    except Exception as e:  # onnx2torch: NotImplementedError per operator; anything else is a graph we cannot take
        operator = _operator_of(e)
        raise TorchConversionError(model_name, operator or "(see below)", "" if operator else
                                   f"{type(e).__name__}: {e}") from None
    module.eval()
    module.requires_grad_(False)
    initializers = {i.name for i in graph.graph.initializer}
    inputs = [v for v in graph.graph.input if v.name not in initializers]
    module.onnx_input_names = [v.name for v in inputs]  # the folded graph's: frozen inputs are constants now
    module.onnx_input_shapes = [tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in inputs]
    module.onnx_output_names = [v.name for v in graph.graph.output]
    return module


def _operator_of(error: Exception) -> str:
    """The operator named in onnx2torch's 'Converter is not implemented (OperationDescription(...))', or ''."""
    text = str(error)
    marker = "operation_type='"
    if marker in text:
        return text.split(marker, 1)[1].split("'", 1)[0]
    return ""
