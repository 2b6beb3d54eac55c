"""Fold per-channel affine ops and padding into the weights of the layer before them.

    BatchNormalization(Conv(x, w, b)) -> Conv(x, w * s, b * s + t)   s = scale / sqrt(var + eps)
    Mul(Conv(x, w, b), c)  -> Conv(x, w * c, b * c)      c a scalar or one value per output channel
    Add(Conv(x, w, b), c)  -> Conv(x, w, b + c)          (Sub and Div likewise; Gemm likewise per column)
    Add(MatMul(x, w), c)   -> Gemm(x, w, c)              x 2-D, w and c constants
    Conv(Pad(x, p), w, b)  -> Conv(x, w, b, pads + p)    zero padding of the spatial dims only
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .rules import Rule, apply_rules, merge_into

AFFINE = frozenset({"Mul", "Add", "Sub", "Div", "BatchNormalization"})


def _const(g: Graph, name: str) -> np.ndarray | None:
    v = g.value(name) if name else None
    return None if v is None or not v.is_const else v.const


def _per_channel(c: np.ndarray, out_shape, axis: int = 1) -> np.ndarray | None:
    """c broadcast against the output as one value per channel (axis), or None if it is not."""
    shape = (1,) * (len(out_shape) - c.ndim) + c.shape
    if len(shape) != len(out_shape) or any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    return np.broadcast_to(c.reshape(-1), (out_shape[axis],)).astype(np.float64)


def _scale_shift(g: Graph, a: Node, b: Node):
    """(s, t) with b(y) = y * s + t per channel of a's output, or a reason why not."""
    y = g.values[a.outputs[0]]
    if b.op == "BatchNormalization":
        if b.attrs.get("training_mode") or len([o for o in b.outputs if o]) > 1:
            return "training mode"
        stats = [_const(g, i) for i in b.inputs[1:5]]
        if any(s is None for s in stats) or len(y.shape) < 2:
            return "its statistics are not constants"
        scale, bias, mean, var = (s.astype(np.float64) for s in stats)
        s = scale / np.sqrt(var + np.float32(b.attrs.get("epsilon", 1e-5)))
        return s, bias - mean * s
    other = [i for i in b.inputs if i != a.outputs[0]]
    if len(other) != 1 or (b.op in ("Sub", "Div") and b.inputs[0] != a.outputs[0]):
        return "not of the form y op constant"
    c = _const(g, other[0])
    if c is None:
        return "the other operand is not a constant"
    c = _per_channel(c, y.shape)
    if c is None:
        return "the constant is not one value per channel"
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    return {"Mul": (c, zeros), "Div": (1 / c, zeros), "Add": (ones, c), "Sub": (ones, -c)}[b.op]


def _layer_weights(g: Graph, a: Node):
    """(w as (channels, ...) float64, bias float64, a function writing them back), or a reason."""
    if a.op == "Conv":
        w, bias = _const(g, a.inputs[1]), _const(g, a.inputs[2]) if len(a.inputs) > 2 else None
        if w is None or (len(a.inputs) > 2 and a.inputs[2] and bias is None):
            return "its weights are not constants"
        bias = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)

        def store(w2, b2):
            _set_inputs(g, a, {1: w2.astype(np.float32), 2: b2.astype(np.float32)})
        return w.astype(np.float64), bias, store
    # Gemm: Y = alpha * A @ B' + beta * C, B' = B or B^T; channels are the columns of Y
    w = _const(g, a.inputs[1])
    c = _const(g, a.inputs[2]) if len(a.inputs) > 2 and a.inputs[2] else None
    if w is None or (len(a.inputs) > 2 and a.inputs[2] and c is None) or a.attrs.get("transA", 0):
        return "its weights are not constants"
    n = g.values[a.outputs[0]].shape[1]
    c_cols = _per_channel(c, (1, n)) if c is not None else np.zeros(n)
    if c_cols is None:
        return "its bias is not one value per column"
    rows = (w.T if not a.attrs.get("transB", 0) else w) * a.attrs.get("alpha", 1.0)   # (N, K)

    def store(w2, b2):
        a.attrs.update(alpha=1.0, beta=1.0, transB=1)
        _set_inputs(g, a, {1: w2.astype(np.float32), 2: b2.astype(np.float32)})
    return rows.astype(np.float64), c_cols * a.attrs.get("beta", 1.0), store


def _set_inputs(g: Graph, node: Node, arrays: dict[int, np.ndarray]) -> None:
    """Give `node` new constant inputs (fresh names: the old constants may have other readers)."""
    while len(node.inputs) <= max(arrays):
        node.inputs.append("")
    for pos, arr in arrays.items():
        name = f"{node.name}__folded{pos}"
        k = 0
        while name in g.values:
            k += 1
            name = f"{node.name}__folded{pos}_{k}"
        g.values[name] = Value(name, tuple(arr.shape), arr.dtype, arr)
        node.inputs[pos] = name


def _affine_check(g, a, b):
    if len(a.inputs) > 1 and a.inputs[1] in g.quant:
        return "its weights are the model's quantised ones (scaling them would change their rounding)"
    st = _scale_shift(g, a, b)
    if isinstance(st, str):
        return st
    lw = _layer_weights(g, a)
    return lw if isinstance(lw, str) else None


def _affine_rewrite(g, a, b):
    s, t = _scale_shift(g, a, b)
    w, bias, store = _layer_weights(g, a)
    store(w * s.reshape((-1,) + (1,) * (w.ndim - 1)), bias * s + t)
    merge_into(g, a, b)


def _matmul_add_check(g, a, b):
    x, w = (g.values[i] for i in a.inputs)
    other = [i for i in b.inputs if i != a.outputs[0]]
    if len(x.shape) != 2 or len(w.shape) != 2 or not w.is_const:
        return "not a 2-D MatMul by a constant"
    if len(other) != 1 or _const(g, other[0]) is None:
        return "the added operand is not a constant"
    c = _const(g, other[0])
    y = g.values[b.outputs[0]]
    if tuple(y.shape) != tuple(g.values[a.outputs[0]].shape) or c.ndim > 2:
        return "the Add broadcasts beyond the product"
    return None


def _matmul_add_rewrite(g, a, b):
    other = next(i for i in b.inputs if i != a.outputs[0])
    a.op, a.attrs = "Gemm", {}
    a.inputs = [a.inputs[0], a.inputs[1], other]
    merge_into(g, a, b)


def _pad_check(g, a, b):
    if a.attrs.get("mode", "constant") != "constant" or b.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return "not zero padding into explicit pads"
    pads = _const(g, a.inputs[1]) if len(a.inputs) > 1 else None
    value = _const(g, a.inputs[2]) if len(a.inputs) > 2 and a.inputs[2] else np.zeros(1)
    axes = a.inputs[3] if len(a.inputs) > 3 else ""
    rank = len(g.values[a.inputs[0]].shape)
    if pads is None or axes or value is None or np.any(value != 0) or np.any(pads < 0):
        return "pads or value are not constant zeros on all axes"
    if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
        return "it pads the batch or channel dimension"
    return None


def _pad_rewrite(g, a, b):
    rank = len(g.values[a.inputs[0]].shape)
    pads = _const(g, a.inputs[1]).astype(int)
    n = rank - 2
    old = list(b.attrs.get("pads") or [0] * (2 * n))
    b.attrs["pads"] = [old[i] + int(pads[2 + i]) for i in range(n)] + [old[n + i] + int(pads[rank + 2 + i])
                                                                      for i in range(n)]
    b.inputs = [a.inputs[0]] + b.inputs[1:]
    b.sources = a.sources + b.sources
    g.nodes = [x for x in g.nodes if x is not a]


RULES = [
    Rule("fold_affine", "Op(Conv(x, w, b), c) -> Conv(x, w * s, b * s + t), per output channel",
         frozenset({"Conv", "Gemm"}), AFFINE, _affine_check, _affine_rewrite),
    Rule("matmul_add", "Add(MatMul(x, w), c) -> Gemm(x, w, c)", frozenset({"MatMul"}), frozenset({"Add"}),
         _matmul_add_check, _matmul_add_rewrite),
    Rule("pad_conv", "Conv(Pad(x, p), w, b) -> Conv(x, w, b, pads + p)", frozenset({"Pad"}), frozenset({"Conv"}),
         _pad_check, _pad_rewrite),
]


def fold_weights(graph: Graph) -> tuple[Graph, list[str]]:
    return apply_rules(graph, RULES)
