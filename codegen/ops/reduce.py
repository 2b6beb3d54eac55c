"""Reductions over any set of axes (given as the axes input, opset 18+), keepdims or not; CumSum and
CumProd (a running sum or product along one axis); Mean (the elementwise mean of its inputs).

An axes or axis input that arrives at run time selects, at run time, one of the loop nests for the
axes that fit the static shapes (the layer fails when it names none of them)."""
from __future__ import annotations

import itertools

import numpy as np

from . import (Kernel, Unsupported, c_float, c_type, guarded, op, require_dtype, runtime_param,
               shape_strides, wrapping_type)
from .elementwise import expression

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
        common = dict(init=init, step=step, finish=finish)
        known = runtime_param(axes)
        if axes is None or known is not None:
            known = [] if known is None else [int(a) + rank if a < 0 else int(a) for a in known.reshape(-1)]
            if not known and not noop_with_empty_axes:
                known = list(range(rank))
            return Kernel("reduce", {"X": data}, {"Y": Y}, params=dict(_loops(data.shape, known), **common),
                          macs=data.size, math=f"Y = {name}(X) over axes {known}")
        # the axes arrive at run time: one loop nest per set of axes that gives Y's static shape
        nests: dict[str, tuple[dict, list[str]]] = {}
        for picked in itertools.combinations(range(rank), axes.size):
            kept = [1 if i in picked else d for i, d in enumerate(data.shape)] if keepdims else \
                [d for i, d in enumerate(data.shape) if i not in picked]
            if tuple(kept) == tuple(Y.shape):
                loops = _loops(data.shape, picked)
                nests.setdefault(repr(loops), (loops, []))[1].append(_holds_set("A", picked, rank))
        if not nests:
            raise Unsupported(f"no {axes.size} axes reduce {list(data.shape)} to the output's {list(Y.shape)}")
        kernel = Kernel("reduce", {"X": data}, {"Y": Y}, params=common, macs=data.size,
                        math=f"Y = {name}(X) over the axes A holds")
        return guarded(kernel, "A", axes, [(" || ".join(f"({c})" for c in conds), loops)
                                           for loops, conds in nests.values()])
    lower.__name__ = name
    return lower


def _loops(shape, axes) -> dict:
    """The reduce template's loop nest over `shape` reducing `axes` (dims of size 1 need no loop)."""
    strides = shape_strides(shape, shape)
    kept = [d for d in range(len(shape)) if d not in axes and shape[d] != 1]
    red = [d for d in axes if shape[d] != 1]
    return dict(out_dims=[shape[d] for d in kept], out_strides=[strides[d] for d in kept],
                red_dims=[shape[d] for d in red], red_strides=[strides[d] for d in red],
                count=int(np.prod([shape[a] for a in axes], dtype=np.int64)))


def _holds_set(arg: str, axes, rank: int) -> str:
    """C condition: arg[0..n-1] holds exactly the n `axes`, in any order, each maybe counted from the end."""
    def is_axis(i, a):
        return f"{arg}[{i}] == {a} || {arg}[{i}] == {a - rank}"
    n = len(axes)
    each_picked = ["(" + " || ".join(is_axis(i, a) for a in axes) + ")" for i in range(n)]
    each_given = ["(" + " || ".join(is_axis(i, a) for i in range(n)) + ")" for a in axes]
    return " && ".join(each_picked + (each_given if n > 1 else []))     # each_given: no axis twice


for _name in REDUCTIONS:
    op(_name)(_reduction(_name))


@op("CumSum")
def cum_sum(outs, x, axis, *, exclusive=0, reverse=0):
    return cumulative(outs[0], x, axis, exclusive=exclusive, reverse=reverse, product=False)


def cumulative(Y, x, axis, *, exclusive, reverse, product) -> Kernel:
    """CumSum and CumProd: the running sum or product along one axis, a constant or one read at run time."""
    ctype = c_type(x)
    if np.dtype(x.dtype) == np.bool_:
        raise Unsupported("a running sum or product of bool")
    if axis.size != 1 or axis.dtype is None or np.dtype(axis.dtype) not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise Unsupported("axis must be one int32 or int64 number")
    rank = len(x.shape)
    common = dict(ctype=ctype, acc=wrapping_type(x.dtype) or ctype, product=product,
                  exclusive=bool(exclusive), reverse=bool(reverse))

    def loops(a):
        return dict(outer=int(np.prod(x.shape[:a], dtype=np.int64)), n=x.shape[a],
                    inner=int(np.prod(x.shape[a + 1:], dtype=np.int64)))

    def math(a):
        return f"Y[j] = {'product' if product else 'sum'} of X[i] for i {'>' if reverse else '<'}" \
               f"{'' if exclusive else '='} j along axis {a}"
    known = runtime_param(axis)
    if known is not None:
        a = int(known.reshape(-1)[0])
        if not -rank <= a < rank:
            raise Unsupported("axis must be within the rank")
        return Kernel("cumsum", {"X": x}, {"Y": Y}, params=dict(common, **loops(a % rank)), macs=x.size,
                      math=math(a % rank))
    kernel = Kernel("cumsum", {"X": x}, {"Y": Y}, params=common, macs=x.size, math=math("A[0]"))
    return guarded(kernel, "A", axis, [(f"A[0] == {a} || A[0] == {a - rank}", loops(a)) for a in range(rank)])


@expression("Mean")
def mean(*data_0):
    """(X0 + X1 + ... + Xn-1) / n, summed in input order as the reference does."""
    if not data_0:
        raise Unsupported("no inputs")
    total = data_0[0]
    for x in data_0[1:]:
        total = f"({total} + {x})"
    return f"({total} / {c_float(len(data_0))})" if len(data_0) > 1 else total
