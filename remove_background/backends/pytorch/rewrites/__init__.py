"""ONNX graph rewrites before conversion to torch: what onnx2torch 1.5.15 cannot convert, or converts with host syncs.

``rewrite(model)`` takes a *folded* ``onnx.ModelProto`` (``convert.fold``: fixed input shapes, ONNX Runtime's
basic optimisation) and rewrites, in place, the node patterns below into nodes of our own domain (``DOMAIN``), which
``converters`` converts. Every rewritten node keeps its output names, so the rest of the graph is untouched.

Why a domain of our own: onnx2torch's public ``add_converter`` refuses an (operator, version, domain) that it has
already registered, so where its converter is wrong or reads a tensor back to the host on every run, the node is
renamed into our domain, with what the folded graph knows as constants turned into attributes.

- **Weights through Identity** (``Identity`` of an initializer, from the exporter's deduplication of equal weights):
  consumers read the initializer directly, since onnx2torch's Conv/Gemm/LayerNorm converters look weights up among
  the initializers. ``Constant`` nodes become initializers for the same reason.
- **Deformable convolution** (the deform-conv2d-onnx-exporter's subgraph: Pad, Reshape, Transpose, Floor, Cast,
  Clip on int64, four GatherND with batch_dims=2, bilinear weights, Sum, mask Mul, Reshape/Transpose/Reshape, Conv
  with stride = kernel): one ``DeformConv2d`` node (``torchvision.ops.deform_conv2d``); the dead subgraph is removed.
- **Static shapes**: ``Resize`` with constant scales or sizes (and a known input shape), ``Reshape``, ``Slice``,
  ``Expand``, ``Tile``, ``Pad``, ``Split`` and ``Squeeze`` with constant shape inputs: the constants become
  attributes, so the module never calls ``.tolist()``/``.numpy()`` on them.
- **Wrong or missing converters**: ``Clip`` on integers (onnx2torch clamps with floats, which makes a float tensor),
  ``GatherND`` with ``batch_dims`` > 0, ``LayerNormalization`` (onnx2torch needs the input's shape in value_info),
  ``OneHot`` (none), ``Flatten`` (onnx2torch's is wrong for axis 0 and axis = rank; ONNX always gives 2-D).
- **Constants of few distinct rows** (a relative-position table the fold gathered for every query and key): their
  distinct rows and an index, rebuilt by a ``Gather`` in each forward, so the module holds what the file holds.

Where things are: ``graph.py`` (the node list, constants, inferred types; building our nodes), ``rules.py`` (one
rule per operator), ``deform_conv.py`` (the deformable-convolution matcher), ``tables.py`` (constants of few distinct
rows).
"""

from __future__ import annotations

import numpy as np

from .deform_conv import rewrite_deform_convs
from .graph import DOMAIN, DOMAIN_VERSION, Graph
from .rules import RULES
from .tables import store_distinct_rows

__all__ = ["DOMAIN", "DOMAIN_VERSION", "freeze_inputs", "rewrite"]


def rewrite(model, *, deform_conv: bool = True):
    """``model`` (a folded ``onnx.ModelProto``) with every pattern above rewritten (in place; also returned).

    ``deform_conv=False`` leaves the exporter's deformable-convolution subgraphs as they are (GatherNDs), for
    measuring what the ``DeformConv2d`` rewrite gains.
    """
    graph = Graph(model)
    graph.constants_to_initializers()
    graph.bypass_constant_identities()
    graph.infer_types()
    if deform_conv:
        rewrite_deform_convs(graph)
        graph.remove_dead()
    for index, node in enumerate(graph.nodes):
        if node.domain not in ("", "ai.onnx"):
            continue
        rule = RULES.get(node.op_type)
        if rule is None:
            continue
        new = rule(graph, node)
        if new is not None:
            graph.nodes[index] = new
    graph.remove_dead()
    store_distinct_rows(graph)
    graph.commit()
    return model


def freeze_inputs(model, values) -> None:
    """Turn the graph inputs named in ``values`` into initializers holding those values (in place).

    For an input that is always fed the same value, such as SAM's ``orig_im_size``: frozen before folding, ONNX
    Runtime folds what depends on it (the decoder's last Resize then gets constant sizes, so the module has static
    shapes), and the converted module no longer takes that input.
    """
    from onnx import helper, numpy_helper

    wanted = dict(values)
    for i in reversed(range(len(model.graph.input))):
        value = model.graph.input[i]
        if value.name not in wanted:
            continue
        elem = value.type.tensor_type.elem_type
        array = np.asarray(wanted.pop(value.name))
        array = array.astype(helper.tensor_dtype_to_np_dtype(elem)) if elem else array
        del model.graph.input[i]
        existing = [j for j, t in enumerate(model.graph.initializer) if t.name == value.name]
        for j in reversed(existing):
            del model.graph.initializer[j]
        model.graph.initializer.append(numpy_helper.from_array(array, name=value.name))
    if wanted:
        raise ValueError(f"no graph input named {', '.join(sorted(wanted))}")
