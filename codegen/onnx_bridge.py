"""Run one IR node through onnx's own machinery (shape inference, reference evaluator).

Used at compile time only: to fold constants and to infer shapes the frontend
could not see until constants were known.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .ir import Graph, Node


def _attr_value(v):
    if isinstance(v, np.ndarray):
        return numpy_helper.from_array(v)
    return v


def node_model(graph: Graph, node: Node, with_consts: bool) -> onnx.ModelProto:
    """A one-node model: runtime inputs as graph inputs, constants as initializers if asked."""
    inputs, inits = [], []
    for name in dict.fromkeys(i for i in node.inputs if i):
        v = graph.values[name]
        if with_consts and v.is_const:
            inits.append(numpy_helper.from_array(np.asarray(v.const), name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
            inputs.append(helper.make_tensor_value_info(name, elem, v.shape))
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    proto = helper.make_node(node.op, node.inputs, node.outputs, name=node.name,
                             **{k: _attr_value(v) for k, v in node.attrs.items()})
    g = helper.make_graph([proto], "node", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", graph.opset)], ir_version=11)


def evaluate(graph: Graph, node: Node) -> list[np.ndarray]:
    """Outputs of a node whose inputs are all constants, by onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator
    model = node_model(graph, node, with_consts=True)
    return ReferenceEvaluator(model).run(None, {})


def infer(graph: Graph, node: Node) -> list[tuple[tuple | None, np.dtype | None]]:
    """(shape, dtype) of each output, by onnx shape inference with constant inputs visible."""
    from .frontend import np_dtype
    model = onnx.shape_inference.infer_shapes(node_model(graph, node, with_consts=True),
                                              strict_mode=True, data_prop=True)
    found = {vi.name: vi for vi in list(model.graph.output) + list(model.graph.value_info)}
    result = []
    for out in node.outputs:
        tt = found[out].type.tensor_type if out in found else None
        if tt is None or not tt.HasField("shape"):
            result.append((None, np_dtype(tt.elem_type) if tt else None))
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        result.append((shape, np_dtype(tt.elem_type)))
    return result


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graph attributes of a node (If's branches, Loop's and Scan's bodies)."""
    return [g for a in node.attribute for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs)]


def outer_names(body: onnx.GraphProto) -> set[str]:
    """Names a subgraph (and its own subgraphs) reads from the scopes around it."""
    local = {i.name for i in body.input} | {t.name for t in body.initializer} | \
        {o for n in body.node for o in n.output}
    read = {i for n in body.node for i in n.input} | {o.name for o in body.output}
    for n in body.node:
        for sub in subgraphs(n):
            read |= outer_names(sub)
    return {r for r in read if r and r not in local}
