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


# ---- QOperator models: QLinearConv, QGemm, QLinearAdd, ... written out as QDQ --------------------

def _conv(n, f, node):
    x, xs, xz, w, ws, wz, ys, yz, *b = list(node.input) + [""]
    bias = [f.bias(b[0], xs, ws)] if b[0] else []
    return [f.dq(x, xs, xz), f.dq(w, ws, wz, axis=0)] + bias, ys, yz, "Conv", {}


def _matmul(n, f, node):
    a, as_, az, b, bs, bz, ys, yz = node.input
    return [f.dq(a, as_, az), f.dq(b, bs, bz, axis=1)], ys, yz, "MatMul", {}


def _gemm(n, f, node):
    a, as_, az, b, bs, bz, *rest = list(node.input) + ["", "", ""]
    c, ys, yz = rest[:3]
    trans_b = next((a_.i for a_ in node.attribute if a_.name == "transB"), 0)
    bias = [f.bias(c, as_, bs)] if c else []
    return [f.dq(a, as_, az), f.dq(b, bs, bz, axis=0 if trans_b else 1)] + bias, ys, yz, "Gemm", {}


def _binary(op):
    def expand(n, f, node):
        a, as_, az, b, bs, bz, ys, yz = node.input
        return [f.dq(a, as_, az), f.dq(b, bs, bz)], ys, yz, op, {}
    return expand


def _unary(op):
    def expand(n, f, node):
        x, xs, xz, ys, yz = node.input
        return [f.dq(x, xs, xz)], ys, yz, op, {}
    return expand


def _concat(n, f, node):
    ys, yz, *rest = node.input
    return [f.dq(*rest[i:i + 3]) for i in range(0, len(rest), 3)], ys, yz, "Concat", {}


QOPERATORS = {"QLinearConv": _conv, "QLinearMatMul": _matmul, "QGemm": _gemm, "QLinearAdd": _binary("Add"),
              "QLinearMul": _binary("Mul"), "QLinearGlobalAveragePool": _unary("GlobalAveragePool"),
              "QLinearAveragePool": _unary("AveragePool"), "QLinearSigmoid": _unary("Sigmoid"),
              "QLinearLeakyRelu": _unary("LeakyRelu"), "QLinearSoftmax": _unary("Softmax"),
              "QLinearConcat": _concat}
DROPPED_ATTRS = {"channels_last", "opset"}       # onnxruntime's extras with no meaning here


class _Writer:
    """Makes the nodes and constants of the expansion, with names that do not clash."""

    def __init__(self, proto):
        import onnx
        self.onnx = onnx
        self.inits = {t.name: t for t in proto.graph.initializer}
        self.taken = {t.name for t in proto.graph.initializer} | {o for n in proto.graph.node for o in n.output} | \
            {i.name for i in proto.graph.input}
        self.nodes = []

    def name(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def dq(self, x: str, scale: str, zp: str = "", axis: int | None = None) -> str:
        out = self.name(f"{x}__dequantized")
        attrs = {"axis": axis} if axis is not None and scale in self.inits and \
            self.onnx.numpy_helper.to_array(self.inits[scale]).size > 1 else {}
        self.nodes.append(self.onnx.helper.make_node("DequantizeLinear", [x, scale] + ([zp] if zp else []), [out],
                                                     name=self.name(f"{out}_node"), **attrs))
        return out

    def bias(self, b: str, a_scale: str, w_scale: str) -> str:
        """The int32 bias (scale a_scale * w_scale) as the float constant it stands for."""
        to_array = self.onnx.numpy_helper.to_array
        arr = to_array(self.inits[b]).astype(np.float32) * (
            to_array(self.inits[a_scale]).astype(np.float32) * to_array(self.inits[w_scale]).astype(np.float32))
        name = self.name(f"{b}__float")
        self.inits[name] = self.onnx.numpy_helper.from_array(arr.astype(np.float32), name)
        return name


def expand_qoperators(proto) -> bool:
    """Rewrite, in place, the QOperator nodes of a quantised model (inputs quantised in the graph)
    as DequantizeLinear -> float op -> QuantizeLinear, and ops that pass an int8 tensor through
    (MaxPool, Flatten, ...) likewise with its parameters, so that absorb() sees a QDQ model.
    QLinearConv / QLinearMatMul reading a graph input stay as they are (their own kernels, exact
    as onnx's reference); onnxruntime's own ops (com.microsoft) are always expanded."""
    import onnx
    graph = proto.graph
    scales: dict[str, tuple[str, str]] = {}       # int8 tensor made in the graph -> (scale, zero point)
    w = _Writer(proto)
    changed = False
    for node in graph.node:
        ins = list(node.input)
        expand = QOPERATORS.get(node.op_type)
        if node.op_type == "QuantizeLinear" and len(ins) >= 2 and ins[1] in w.inits:
            scales[node.output[0]] = (ins[1], ins[2] if len(ins) > 2 else "")
        elif expand and ins and (node.domain == "com.microsoft" or ins[0] in scales):
            inputs, ys, yz, op, extra = expand(node.op_type, w, node)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name not in DROPPED_ATTRS}
            out = node.output[0]
            if ys:                                # QGemm without y_scale gives float
                f = w.name(f"{out}__float")
                w.nodes.append(onnx.helper.make_node(op, inputs, [f], name=w.name(f"{node.name or out}"), **attrs,
                                                     **extra))
                w.nodes.append(onnx.helper.make_node("QuantizeLinear", [f, ys] + ([yz] if yz else []), [out],
                                                     name=w.name(f"{out}_quantize")))
                scales[out] = (ys, yz)
            else:
                w.nodes.append(onnx.helper.make_node(op, inputs, [out], name=w.name(node.name or out), **attrs))
            changed = True
            continue
        elif node.domain in ("", "ai.onnx") and ins and ins[0] in scales and node.op_type not in (
                "DequantizeLinear", "QuantizeLinear", "QLinearConv", "QLinearMatMul") and len(node.output) == 1:
            s, z = scales[ins[0]]                 # an op that moves int8 values: the same on floats
            f = w.name(f"{node.output[0]}__float")
            moved = onnx.helper.make_node(node.op_type, [w.dq(ins[0], s, z)] + ins[1:], [f], name=w.name(node.name or f))
            moved.attribute.extend(node.attribute)
            w.nodes.append(moved)
            w.nodes.append(onnx.helper.make_node("QuantizeLinear", [f, s] + ([z] if z else []), [node.output[0]],
                                                 name=w.name(f"{node.output[0]}_quantize")))
            scales[node.output[0]] = (s, z)
            changed = True
            continue
        w.nodes.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(w.nodes)
        del graph.initializer[:]
        graph.initializer.extend(w.inits.values())
        if not any(n.domain == "com.microsoft" for n in graph.node):
            kept = [o for o in proto.opset_import if o.domain != "com.microsoft"]
            del proto.opset_import[:]
            proto.opset_import.extend(kept)
    return changed
