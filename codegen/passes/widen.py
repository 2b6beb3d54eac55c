"""Half-precision (and bool) operands of float32 kernels: load as float, compute, round once on store.

    Op(x: float16, ...) -> Cast(Op(Cast(x, float32), ...), float16)       (bfloat16 alike)
    ReduceMax(x: bool)  -> Greater(ReduceMax(Cast(x, float32)), 0)        (ReduceMin alike: over an
                           empty set max gives -inf -> false and min +inf -> true, as for bool)
    MaxPool(x: uint8)   -> Cast(MaxPool(Cast(x, float32)), uint8)         (8- and 16-bit integers)

The kernels of these ops compute in float; converting float16 / bfloat16 to float32 is exact,
so the result is the one a kernel that reads through kiln_h2f() and stores through kiln_f2h()
would give: computed in float, rounded once. Constant operands are converted at compile time.
The frontend runs this after folding, always (a lowering need, not an optimisation); the float32
path is untouched.
"""
from __future__ import annotations

import numpy as np
import onnx

from ..ir import Graph, Node, Value

HALF = ("float16", "bfloat16")
REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
# op -> the dtypes of its float operands it computes in float32. Not Softmax, nor Attention in
# bfloat16: their reference rounds after each step (max, exp, sum, divide), and with bfloat16's
# 8-bit mantissa one rounding more or less is beyond the conformance cases' rtol of 1e-3.
WIDEN = {"MatMul": HALF, "Gemm": HALF, "Einsum": HALF, "Attention": ("float16",), "Conv": HALF,
         **{r: HALF for r in REDUCTIONS},
         "ReduceMax": HALF + ("bool",), "ReduceMin": HALF + ("bool",),
         "MaxPool": HALF + ("int8", "uint8", "int16", "uint16")}     # exact in float, as is their maximum
F32 = np.dtype(np.float32)


def _widened(v: Value | None, dtypes) -> bool:
    return v is not None and v.dtype is not None and np.dtype(v.dtype).name in dtypes


def widen_half(graph: Graph) -> Graph:
    g = graph.copy()
    nodes, wide = [], {}            # wide: value name -> its float32 copy's name

    def to_f32(name: str) -> str:
        if name not in wide:
            v = g.values[name]
            wide[name] = f"{name}__kiln_f32"
            const = v.const.astype(F32) if v.is_const else None
            g.values[wide[name]] = Value(wide[name], v.shape, F32, const)
            if not v.is_const:
                nodes.append(Node("Cast", f"{name}__kiln_to_f32", [name], [wide[name]],
                                  {"to": onnx.TensorProto.FLOAT}))
        return wide[name]

    for node in g.nodes:
        dtypes = WIDEN.get(node.op)
        outs = [g.value(o) for o in node.outputs]
        if dtypes is None or not any(_widened(g.value(i), dtypes) for i in node.inputs):
            nodes.append(node)
            continue
        node.inputs = [to_f32(i) if _widened(g.value(i), dtypes) else i for i in node.inputs]
        back = []
        for k, v in enumerate(outs):
            if _widened(v, dtypes):
                node.outputs[k] = f"{v.name}__kiln_f32"
                g.values[node.outputs[k]] = Value(node.outputs[k], v.shape, F32)
                back.append(_narrow(g, node.outputs[k], v))
        nodes += [node] + back
    g.nodes = nodes
    return g


def _narrow(g: Graph, wide: str, v: Value) -> Node:
    """The node that turns the float32 result back into v's dtype."""
    if np.dtype(v.dtype) == np.bool_:
        zero = f"{v.name}__kiln_zero"
        g.values[zero] = Value(zero, (), F32, np.zeros((), F32))
        return Node("Greater", f"{v.name}__kiln_to_bool", [wide, zero], [v.name])
    to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
    return Node("Cast", f"{v.name}__kiln_from_f32", [wide], [v.name], {"to": to})
