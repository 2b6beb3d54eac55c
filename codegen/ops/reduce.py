"""Reductions over any set of axes (given as the axes input, opset 18+), keepdims or not; CumSum
(a running sum along one axis); Mean (the elementwise mean of its inputs)."""
from __future__ import annotations

import numpy as np

from . import (Kernel, Unsupported, c_float, c_type, op, require_const, require_dtype, shape_strides,
               wrapping_type)
from .elementwise import expression
from .layout import nothing

# name: (initial value, accumulate acc with v, finish acc over `count` elements)
REDUCTIONS = {
    "ReduceSum": ("0.0f", "acc + v", "acc"),
    "ReduceMean": ("0.0f", "acc + v", "acc / (float)count"),
    "ReduceMax": ("-INFINITY", "(v > acc || v != v) ? v : acc", "acc"),
    "ReduceMin": ("INFINITY", "(v < acc || v != v) ? v : acc", "acc"),
    "ReduceProd": ("1.0f", "acc * v", "acc"),
    "ReduceL1": ("0.0f", "acc + fabsf(v)", "acc"),
    "ReduceL2": ("0.0f", "acc + v * v", "sqrtf(acc)"),
    "ReduceSumSquare": ("0.0f", "acc + v * v", "acc"),
    "ReduceLogSum": ("0.0f", "acc + v", "logf(acc)"),
    "ReduceLogSumExp": ("0.0f", "acc + expf(v)", "logf(acc)"),
}


def _reduction(name):
    init, step, finish = REDUCTIONS[name]

    def lower(outs, data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        (Y,) = outs
        require_dtype(data, Y)
        rank = len(data.shape)
        axes = require_const(axes, "the axes input")
        axes = [] if axes is None else [int(a) + rank if a < 0 else int(a) for a in axes.reshape(-1)]
        if not axes and not noop_with_empty_axes:
            axes = list(range(rank))
        if data.size == 0:
            raise Unsupported("reduction of an empty tensor")
        strides = shape_strides(data.shape, data.shape)
        kept = [d for d in range(rank) if d not in axes]
        count = int(np.prod([data.shape[a] for a in axes], dtype=np.int64))
        return Kernel("reduce", {"X": data}, {"Y": Y},
                      params=dict(out_dims=[data.shape[d] for d in kept], out_strides=[strides[d] for d in kept],
                                  red_dims=[data.shape[d] for d in axes], red_strides=[strides[d] for d in axes],
                                  count=count, init=init, step=step, finish=finish),
                      macs=data.size, math=f"Y = {name}(X) over axes {axes}")
    lower.__name__ = name
    return lower


for _name in REDUCTIONS:
    op(_name)(_reduction(_name))


@op("CumSum")
def cum_sum(outs, x, axis, *, exclusive=0, reverse=0):
    (Y,) = outs
    ctype = c_type(x)
    if np.dtype(x.dtype) == np.bool_:
        raise Unsupported("CumSum of bool")
    axis = require_const(axis, "the axis input").reshape(-1)
    rank = len(x.shape)
    if axis.size != 1 or not -rank <= int(axis[0]) < rank:
        raise Unsupported("axis must be one number within the rank")
    a = int(axis[0]) % rank
    if x.size == 0:
        return nothing({"X": x}, {"Y": Y})
    return Kernel("cumsum", {"X": x}, {"Y": Y},
                  params=dict(outer=int(np.prod(x.shape[:a], dtype=np.int64)), n=x.shape[a],
                              inner=int(np.prod(x.shape[a + 1:], dtype=np.int64)), ctype=ctype,
                              acc=wrapping_type(x.dtype) or ctype,
                              exclusive=bool(exclusive), reverse=bool(reverse)),
                  macs=x.size,
                  math=f"Y[j] = sum of X[i] for i {'>' if reverse else '<'}{'' if exclusive else '='} j along axis {a}")


@expression("Mean")
def mean(*data_0):
    """(X0 + X1 + ... + Xn-1) / n, summed in input order as the reference does."""
    if not data_0:
        raise Unsupported("no inputs")
    total = data_0[0]
    for x in data_0[1:]:
        total = f"({total} + {x})"
    return f"({total} / {c_float(len(data_0))})" if len(data_0) > 1 else total
