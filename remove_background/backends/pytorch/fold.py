"""The fold: an ONNX file with its input shapes fixed, then ONNX Runtime's basic graph optimisation, so that every
shape computation becomes a constant.

Before ONNX Runtime sees the graph, inputs that always take one value (SAM's ``orig_im_size``) become constants,
the other inputs get the shapes we feed, and a half-precision graph is widened to float32 (``rewrites.precision``):
the fold then keeps every weight an initializer, on any onnxruntime from 1.17. Large constants the fold would make
out of small ones (a Swin attention mask) stay computed in each forward (``expansions.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

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

    from .expansions import keep_out, put_back
    from .rewrites.precision import widen_to_float32

    model = fixed_input_model(path, shapes, frozen)
    widen_to_float32(model)
    with tempfile.TemporaryDirectory(prefix="remove-background-fold-") as tmp:
        kept = keep_out(model, tmp)
        fixed = os.path.join(tmp, "fixed.onnx")
        folded = os.path.join(tmp, "folded.onnx")
        onnx.save(model, fixed)
        del model
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        opts.log_severity_level = 3
        ort.InferenceSession(fixed, sess_options=opts, providers=["CPUExecutionProvider"])
        folded_model = onnx.load(folded)
    put_back(folded_model, kept)
    return folded_model
