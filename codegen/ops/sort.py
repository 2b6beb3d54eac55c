"""Ordering along one axis: ArgMax, ArgMin, TopK.

Ties go to the lower index (ArgMax/ArgMin with select_last_index to the higher). NaN is picked by
both ArgMax and ArgMin and sorts above every number in TopK, as numpy (the ONNX reference) does.
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, check_param, op, runtime_param


def _split(shape, axis):
    rank = len(shape)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise Unsupported(f"axis {axis} out of range")
    if rank == 0:
        return 1, 1, 1, 0
    return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
            int(np.prod(shape[axis + 1:], dtype=np.int64)), axis)


def _beats(largest: bool, is_float: bool) -> str:
    """C expression: a sorts before b (NaN sorts above every number)."""
    cmp, nan = ("a > b", "(a != a && b == b)") if largest else ("a < b", "(b != b && a == a)")
    return f"({cmp} || {nan})" if is_float else f"({cmp})"


def _arg_beats(largest: bool, is_float: bool, last: bool) -> str:
    """C expression: a replaces the best so far, b. NaN wins for both ArgMax and ArgMin (numpy's rule)."""
    cmp = ("a >= b" if last else "a > b") if largest else ("a <= b" if last else "a < b")
    nan = "a != a" if last else "(a != a && b == b)"
    return f"({cmp} || {nan})" if is_float else f"({cmp})"


def _arg(largest):
    def lower(outs, data, *, axis=0, keepdims=1, select_last_index=0):
        (Y,) = outs
        ctype = c_type(data)
        outer, n, inner, axis_ = _split(data.shape, axis)
        if n == 0:
            raise Unsupported("arg-reduction over an empty axis")
        is_float = np.dtype(data.dtype).kind == "f"
        return Kernel("argmax", {"X": data}, {"Y": Y},
                      params=dict(outer=outer, n=n, inner=inner, ctype=ctype,
                                  beats=_arg_beats(largest, is_float, bool(select_last_index))),
                      math=f"Y = index of the {'largest' if largest else 'smallest'} X along axis {axis_} "
                           f"({'last' if select_last_index else 'first'} on ties)")
    return lower


op("ArgMax")(_arg(True))
op("ArgMin")(_arg(False))


@op("TopK")
def top_k(outs, X, K, *, axis=-1, largest=1, sorted=1):
    Y, I = outs[0], outs[1] if len(outs) > 1 else None
    ctype = c_type(X)
    outer, n, inner, axis_ = _split(X.shape, axis)
    k = runtime_param(K, [Y.shape[axis_] if Y.shape else 1]).reshape(-1)     # K fixes Y's length on the axis
    if k.size != 1:
        raise Unsupported("K must be one number")
    k = int(k[0])
    if not 0 <= k <= n:
        raise Unsupported(f"K = {k} is outside 0..{n}")
    outputs = {"Y": Y, **({"I": I} if I is not None else {})}
    is_float = np.dtype(X.dtype).kind == "f"
    return check_param(Kernel("topk", {"X": X}, outputs,
                  params=dict(outer=outer, n=n, inner=inner, k=k, ctype=ctype, indices=I is not None,
                              beats=_beats(bool(largest), is_float)),
                  macs=X.size * k,
                  math=f"Y, I = the {k} {'largest' if largest else 'smallest'} X along axis {axis_}, "
                       "sorted, ties by lower index"), "K", K, [k])
