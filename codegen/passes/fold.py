"""Constant folding: every node whose inputs are all constants is evaluated at compile time.

    Op(c1, c2, ...) -> c           (by onnx's reference evaluator)
    Shape(x), Size(x) -> c         (when x has a static shape)

Nodes whose output shapes were unknown until constants were known are
re-inferred here, one node at a time, before they are folded: in one pass in
graph order, a shape found this way makes the next node's inputs static (or
constant) in turn, e.g. axes = Range(0, Size(Shape(x)), 1) -> ReduceMean(x, axes).
"""
from __future__ import annotations

import numpy as np
import onnx

from .. import onnx_bridge
from ..errors import ShapeError
from ..ir import Graph, Value

NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli"}


def _static(v: Value | None) -> bool:
    return v is not None and v.shape is not None and all(d is not None for d in v.shape)


GENERATORS = {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot"}


def _small(node, ins, outs, limit=1 << 31) -> bool:
    """Fold only what is known to fit. Where inference did not give an output's shape, only ops
    that cannot make a tensor much larger than their inputs are folded (and ConstantOfShape, whose
    size its input tells)."""
    def nbytes(v):
        return int(np.prod(v.shape, dtype=object)) * np.dtype(v.dtype).itemsize
    if all(_static(v) and v.dtype is not None for v in outs):
        return all(nbytes(v) <= limit for v in outs)
    if node.op == "ConstantOfShape" and ins and ins[0] is not None:
        return int(np.prod(ins[0].const, dtype=object)) * 8 <= limit
    return node.op not in GENERATORS and sum(v.nbytes for v in ins if v is not None) <= limit


def _shape_of(node, x: Value) -> np.ndarray:
    if node.op == "Size":
        return np.array(x.size, dtype=np.int64)
    rank = len(x.shape)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", rank)
    start, end = (max(0, min(rank, i + rank if i < 0 else i)) for i in (start, end))
    return np.array(x.shape[start:end], dtype=np.int64)


def _reinfer(g: Graph, node, outs: list[Value]) -> list[Value]:
    """Infer a node's output shapes again, now that its inputs' shapes (and constants) are known."""
    try:
        inferred = onnx_bridge.infer(g, node)
    except Exception as err:
        if all(g.value(i) is None or g.value(i).is_const for i in node.inputs):
            return outs         # the reference evaluator may still fold it
        raise ShapeError(f"node {node.name!r} ({node.op}): shape inference failed: "
                         f"{str(err).strip().splitlines()[-1][:200]}") from None
    for out, (shape, dtype) in zip(outs, inferred):
        g.values[out.name] = Value(out.name, shape if shape is not None else out.shape,
                                   dtype if dtype is not None else out.dtype)
    return [g.values[o.name] for o in outs]


def fold_constants(graph: Graph, keep_output_writers: bool = False) -> Graph:
    """Fold every node whose inputs are constants (except, if asked, those writing graph outputs)."""
    g = graph.copy()
    kept = []
    for node in g.nodes:
        if keep_output_writers and any(o in g.outputs for o in node.outputs):
            kept.append(node)
            continue
        ins = [g.value(i) for i in node.inputs]
        outs = [g.values[o] for o in node.outputs if o]
        bodies = [a for a in node.attrs.values() if isinstance(a, onnx.GraphProto)]   # the frontend inlines them
        if not bodies and not all(_static(v) and v.dtype is not None for v in outs) and \
                all(v is None or _static(v) for v in ins):
            outs = _reinfer(g, node, outs)     # first, so that a generator whose size is now known folds
        results = None
        if node.op in ("Shape", "Size") and _static(ins[0]):
            results = [_shape_of(node, ins[0])]
        elif node.op not in NONDETERMINISTIC and all(v is None or v.is_const for v in ins) and not bodies \
                and _small(node, ins, outs):
            try:
                results = onnx_bridge.evaluate(g, node)
            except Exception:
                results = None      # leave it to the op's lowering to accept or refuse
        if results is not None:
            for out, arr in zip(outs, results):
                arr = np.asarray(arr)
                g.values[out.name] = Value(out.name, tuple(arr.shape), arr.dtype, arr)
            continue
        kept.append(node)
    g.nodes = kept
    live = {i for n in g.nodes for i in n.inputs + n.outputs} | set(g.outputs) | set(g.inputs) | \
        {i for n in g.nodes for a in n.attrs.values() if isinstance(a, onnx.GraphProto)
         for i in onnx_bridge.outer_names(a)}     # values that only an If/Scan/Loop body reads
    g.values = {k: v for k, v in g.values.items() if k in live}
    return g
