"""The graph the rewrites work on: the model's main graph as a node list, with producers, constants and inferred
types, and the helpers that build nodes of our domain."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

DOMAIN = "remove_background"  # our operators' domain; converters.py registers a converter for each
DOMAIN_VERSION = 1

# element types (onnx.TensorProto) that are integers; Clip on these must stay integer
INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # uint8, int8, uint16, int16, int32, int64, uint32, uint64
_SMALL_CONSTANT = 4096  # initializers up to this many elements are kept for shape inference (shape values)


class Graph:
    """The model's main graph as a plain node list, with producers, constants and inferred types."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = {v.name for v in self.graph.output}
        self.inputs = {v.name for v in self.graph.input} - set(self.initializers)
        self.types: Dict[str, Tuple[int, Optional[List[Optional[int]]]]] = {}
        self._arrays: Dict[str, np.ndarray] = {}
        self._new_initializers: List = []
        self._counter = 0
        self._producers = None
        self.opset = 1
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                self.opset = entry.version

    # constants -------------------------------------------------------------------------------------------
    def const(self, name: str) -> Optional[np.ndarray]:
        """The value of ``name`` if it is an initializer, else None."""
        if not name or name not in self.initializers:
            return None
        if name not in self._arrays:
            from onnx import numpy_helper

            self._arrays[name] = numpy_helper.to_array(self.initializers[name])
        return self._arrays[name]

    def is_const(self, name: str) -> bool:
        return bool(name) and name in self.initializers

    def add_initializer(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        tensor = numpy_helper.from_array(np.asarray(array), name=name)
        self.initializers[name] = tensor
        self._arrays[name] = np.asarray(array)
        self._new_initializers.append(tensor)
        return name

    def compute_constant(self, name: str, node) -> None:
        """The initializer ``name`` becomes what ``node`` computes (from constants) at the start of each forward."""
        tensor = self.initializers.pop(name)
        self._arrays.pop(name, None)
        self.types[name] = (tensor.data_type, list(tensor.dims))
        self.nodes.insert(0, node)
        self._producers = None

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{DOMAIN}/{hint}/{self._counter}"

    def constants_to_initializers(self) -> None:
        """``Constant`` nodes (not graph outputs) become initializers, where onnx2torch looks weights up."""
        from onnx import helper, numpy_helper

        kept = []
        for node in self.nodes:
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or node.output[0] in self.outputs:
                kept.append(node)
                continue
            attrs = {a.name: a for a in node.attribute}
            array = None
            if "value" in attrs:
                array = numpy_helper.to_array(attrs["value"].t)
            elif "value_float" in attrs or "value_floats" in attrs or "value_int" in attrs or "value_ints" in attrs:
                key = next(k for k in ("value_float", "value_floats", "value_int", "value_ints") if k in attrs)
                value = helper.get_attribute_value(attrs[key])
                dtype = np.float32 if key.startswith("value_float") else np.int64
                array = np.asarray(value, dtype=dtype)
            if array is None:
                kept.append(node)
                continue
            tensor = numpy_helper.from_array(array, name=node.output[0])
            self.initializers[tensor.name] = tensor
            self._arrays[tensor.name] = array
            self._new_initializers.append(tensor)
        self.nodes = kept

    def bypass_constant_identities(self) -> None:
        """Consumers of ``Identity(initializer)`` read the initializer itself (the Identity dies unless an output)."""
        alias: Dict[str, str] = {}
        for node in self.nodes:
            if node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
                source = alias.get(node.input[0], node.input[0])
                if source in self.initializers:
                    alias[node.output[0]] = source
        if not alias:
            return
        for node in self.nodes:
            if node.op_type == "Identity" and node.output[0] in self.outputs:
                continue
            for i, name in enumerate(node.input):
                if name in alias:
                    node.input[i] = alias[name]

    # types -----------------------------------------------------------------------------------------------
    def infer_types(self) -> None:
        """Element type and shape of every tensor, by ONNX shape inference on a copy without the large weights."""
        import onnx
        from onnx import helper

        small = []
        big_inputs = []
        for name, tensor in self.initializers.items():
            if int(np.prod(tensor.dims, dtype=np.int64)) <= _SMALL_CONSTANT:
                small.append(tensor)
            else:
                big_inputs.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
        real_inputs = [v for v in self.graph.input if v.name not in self.initializers]
        skeleton = helper.make_graph(self.nodes, self.graph.name or "graph", real_inputs + big_inputs,
                                     list(self.graph.output), initializer=small)
        model = helper.make_model(skeleton, opset_imports=list(self.model.opset_import))
        model.ir_version = self.model.ir_version
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # an operator shape inference cannot handle: keep what the model says
            inferred = model
            inferred.graph.value_info.extend(self.graph.value_info)
        for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
            self.types[value.name] = type_of(value)
        for name, tensor in self.initializers.items():
            self.types[name] = (tensor.data_type, list(tensor.dims))

    def shape(self, name: str) -> Optional[List[int]]:
        """The full static shape of ``name``, or None if any dimension is unknown."""
        entry = self.types.get(name)
        if entry is None or entry[1] is None or any(d is None for d in entry[1]):
            return None
        return list(entry[1])

    def rank(self, name: str) -> Optional[int]:
        entry = self.types.get(name)
        return None if entry is None or entry[1] is None else len(entry[1])

    def elem_type(self, name: str) -> Optional[int]:
        entry = self.types.get(name)
        return None if entry is None else entry[0]

    # structure -------------------------------------------------------------------------------------------
    def producer_map(self) -> Dict[str, object]:
        """Output name -> node (cached; callers that replace a node keep its outputs' names)."""
        if self._producers is None:
            self._producers = {out: node for node in self.nodes for out in node.output if out}
        return self._producers

    def replace(self, old, new) -> None:
        index = next(i for i, n in enumerate(self.nodes) if n is old)
        self.nodes[index] = new
        if self._producers is not None:
            for out in new.output:
                self._producers[out] = new

    def remove_dead(self) -> None:
        """Drop the nodes no graph output depends on, then the initializers nothing reads."""
        live = set(self.outputs)
        kept = []
        for node in reversed(self.nodes):
            if any(out in live for out in node.output):
                kept.append(node)
                live.update(inputs_of(node))
        kept.reverse()
        self.nodes = kept
        self._producers = None
        used = set(live)
        for name in [n for n in self.initializers if n not in used]:
            del self.initializers[name]
            self._arrays.pop(name, None)

    def commit(self) -> None:
        """Write nodes, initializers, value_info and our opset import back into the model."""
        from onnx import helper

        graph = self.graph
        del graph.node[:]
        graph.node.extend(self.nodes)
        # drop unused initializers in place (no copy of the large ones), then add the new ones
        existing = {t.name for t in self._new_initializers}
        for i in reversed(range(len(graph.initializer))):
            name = graph.initializer[i].name
            if name not in self.initializers or name in existing:
                del graph.initializer[i]
        graph.initializer.extend(t for t in self._new_initializers if t.name in self.initializers)
        for i in reversed(range(len(graph.input))):
            name = graph.input[i].name
            if name not in self.inputs and name not in self.initializers:
                del graph.input[i]
        # every node output's type as inferred before the rewrite: our nodes keep their outputs' names, so
        # onnx2torch's own shape inference (which skips our domain) still knows the shapes after them
        produced = {out for node in self.nodes for out in node.output if out} - self.outputs
        del graph.value_info[:]
        for name in sorted(produced):
            entry = self.types.get(name)
            if entry is None or entry[0] == 0:
                continue
            dims = None if entry[1] is None else [d if d is not None else "?" for d in entry[1]]
            graph.value_info.append(helper.make_tensor_value_info(name, entry[0], dims))
        if not any(entry.domain == DOMAIN for entry in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))


def type_of(value) -> Tuple[int, Optional[List[Optional[int]]]]:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return tensor_type.elem_type, None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return tensor_type.elem_type, dims


def inputs_of(node) -> List[str]:
    """The node's inputs, plus the outer names its subgraphs (If/Loop/Scan bodies) read."""
    names = [name for name in node.input if name]
    for attr in node.attribute:
        subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for sub in subgraphs:
            for inner in sub.node:
                names.extend(inputs_of(inner))
    return names


def node_attrs(node) -> dict:
    from onnx import helper

    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def ints_attr(name: str, values: Iterable[int]):
    """An int list as a tensor attribute (a plain ``ints`` attribute cannot be empty for onnx2torch)."""
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(list(values), dtype=np.int64)))


def floats_attr(name: str, values: Iterable[float]):
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(list(values), dtype=np.float64)))


def tensor_attr(name: str, array: np.ndarray):
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(array)))


def make_node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, attributes=(), **plain):
    """A node of our domain; ``attributes`` are ready AttributeProtos, ``plain`` go through make_attribute."""
    from onnx import helper

    node = helper.make_node(op_type, list(inputs), list(outputs), name=name, domain=DOMAIN, **plain)
    node.attribute.extend(attributes)
    return node


def trim_optional(inputs: List[str]) -> List[str]:
    while inputs and not inputs[-1]:
        inputs.pop()
    return inputs


def is_op(node, op_type: str) -> bool:
    """``node`` is an ONNX-domain ``op_type`` node (None is not)."""
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")
