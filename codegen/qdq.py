"""Imported quantised models (QDQ format, as onnxruntime's quantize_static writes them): each
QuantizeLinear -> DequantizeLinear pair on an activation says "this float tensor is stored as
int8 (or uint8) with this scale and zero point". The pair is taken out of the graph and its
parameters recorded in `graph.quant`; so are the parameters of every dequantised constant
(the weights). The float graph that remains is compiled to integers by passes/quantize.py with
exactly those parameters, as a model quantised by `kiln --int8` is with calibrated ones.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node
from .quant import QParams

INTEGER = (np.dtype(np.int8), np.dtype(np.uint8))


def _params(g: Graph, node: Node, dtype) -> QParams | None:
    """A Q / DQ node's parameters when they are constants (None otherwise)."""
    scale = g.value(node.inputs[1]) if len(node.inputs) > 1 else None
    zp = g.value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if scale is None or not scale.is_const or (zp is not None and not zp.is_const) \
            or node.attrs.get("block_size", 0) or np.dtype(scale.dtype) != np.float32:
        return None
    zero = zp.const if zp is not None else np.zeros(scale.const.shape, np.int64)
    axis = node.attrs.get("axis", 1) if scale.const.size > 1 else None
    return QParams(scale.const, zero, dtype, axis)


def absorb(graph: Graph) -> Graph:
    """The graph without its activation Q -> DQ pairs, their parameters (and those of dequantised
    constants) in graph.quant."""
    g = graph.copy()
    users = g.consumers()
    rename: dict[str, str] = {}
    drop = set()
    for node in g.nodes:
        if node.op == "DequantizeLinear" and node.inputs and g.values[node.inputs[0]].is_const:
            qp = _params(g, node, g.values[node.inputs[0]].dtype)
            if qp is not None:
                g.quant[node.outputs[0]] = qp
        if node.op != "QuantizeLinear" or len(node.outputs) != 1:
            continue
        y = node.outputs[0]
        dtype = g.values[y].dtype if g.values[y].dtype is not None else None
        qp = _params(g, node, dtype)
        readers = users.get(y, [])
        if qp is None or dtype is None or np.dtype(dtype) not in INTEGER or qp.axis is not None \
                or y in g.outputs or not readers or node.inputs[0] in rename:
            continue
        pairs = [r for r in readers if r.op == "DequantizeLinear" and r.inputs[0] == y
                 and (p := _params(g, r, dtype)) is not None and p.same(qp)]
        if len(pairs) != len(readers):
            continue
        x = node.inputs[0]
        g.quant[x] = qp
        drop.add(node.name)
        for dq in pairs:
            drop.add(dq.name)
            rename[dq.outputs[0]] = x
    g.nodes = [n for n in g.nodes if n.name not in drop]
    for node in g.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
    for i, out in enumerate(g.outputs):       # an output that was a DQ keeps its name: a copy
        if out in rename:
            g.nodes.append(Node("Identity", f"{out}_output", [rename[out]], [out]))
            g.quant[out] = g.quant[rename[out]]
    return g
