"""rembg's ONNX files as torch modules: fold the graph's shapes, rewrite what onnx2torch cannot convert, convert.

1. **Fold** (``fold.py``). The graph's inputs are fixed to the shapes we feed (batch 1, the model's input size), a
   half-precision graph is widened to float32, then ONNX Runtime's basic graph optimisation (constant folding,
   shape folding, no fused or vendor operators) rewrites the graph, so every shape computation becomes a constant.
   A module converted from the folded graph never reads a tensor back to the host to learn a size (no
   ``.tolist()`` per run), which is what makes it ``torch.export``-able.
2. **Rewrite** (``rewrites/``): operator patterns that onnx2torch 1.5.15 does not convert, or converts with host
   round trips, become nodes of our own domain, converted by ``converters.py`` (registered through onnx2torch's
   public ``add_converter``).
3. **Convert** with ``onnx2torch.convert``: an fp32 ``torch.fx.GraphModule`` on the CPU, in eval mode, without
   gradients, each weight held once (``weights.py``). Moving it to a device is the caller's (or InvokeAI's model
   cache's) business.

A graph that cannot be converted raises ``TorchConversionError`` naming the model, the operator and the provider
that does run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from ...errors import TorchConversionError
from .fold import InputShapes, fold


def convert(path: Path, model_name: str, shapes: Optional[InputShapes] = None, frozen: Optional[Mapping] = None):
    """The torch module for the ONNX file at ``path`` (fp32, CPU, eval mode, no gradients). ``frozen``: inputs that
    are always fed the same value (name -> array), made constants so what depends on them folds too; the module
    does not take them. The module's ``onnx_input_names``, ``onnx_input_shapes`` and ``onnx_output_names`` are the
    folded graph's inputs (in the order the module takes them), their fixed shapes, and its outputs."""
    _onnx2torch()  # before the fold: say at once when the torch route is not installed
    return convert_graph(fold(path, shapes, frozen), model_name)


def convert_graph(graph, model_name: str):
    """``convert`` for a graph already folded (``fold``): rewritten, converted, each weight held once."""
    onnx2torch_convert = _onnx2torch()
    from . import converters as torch_converters
    from . import rewrites as onnx_rewrites
    from .rewrites.precision import quantized_operators
    from .weights import share_weights

    torch_converters.register()
    quantized = quantized_operators(graph)
    if quantized:
        raise TorchConversionError(model_name, quantized[0], f"a quantized (8-bit) graph: {', '.join(quantized)} "
                                   f"have no PyTorch conversion")
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


def _onnx2torch():
    """onnx2torch's ``convert``, or the error that says how to install the torch route."""
    try:
        from onnx2torch import convert as onnx2torch_convert
    except ImportError as e:
        from ...install.dependencies import torch_route_missing

        raise torch_route_missing(e) from None
    return onnx2torch_convert


def _operator_of(error: Exception) -> str:
    """The operator named in onnx2torch's 'Converter is not implemented (OperationDescription(...))', or ''."""
    text = str(error)
    marker = "operation_type='"
    if marker in text:
        return text.split(marker, 1)[1].split("'", 1)[0]
    return ""
