"""Hardmax, LpNormalization (along one axis), CumProd (as CumSum, in reduce.py), EyeLike, Compress (a
constant condition as a Gather with constant indices; one given at run time is counted, then read),
CenterCropPad (as a Pad; a shape given at run time is checked against the output's)."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, check_param, guarded, op, require_dtype, runtime_param
from .reduce import cumulative

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _split(shape, axis):
    rank = len(shape)
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    axis %= rank
    return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


def _along(kind, X, Y, axis, math, **extra):
    require_dtype(X, Y, dtypes=_FLOATS)
    outer, n, inner = _split(X.shape, axis)
    double = c_type(X) == "double"
    return Kernel("along_axis", {"X": X}, {"Y": Y},
                  params=dict(kind=kind, outer=outer, n=n, inner=inner, ctype=c_type(X),
                              fabs="fabs" if double else "fabsf", sqrt="sqrt" if double else "sqrtf",
                              one="1.0" if double else "1.0f", zero="0.0" if double else "0.0f", **extra),
                  macs=2 * X.size, math=math)


@op("Hardmax")
def hardmax(outs, input, *, axis=-1):
    (Y,) = outs
    return _along("hardmax", input, Y, axis, "Y = 1 at the first maximum along the axis, else 0")


@op("LpNormalization")
def lp_normalization(outs, input, *, axis=-1, p=2):
    (Y,) = outs
    if p not in (1, 2):
        raise Unsupported(f"p = {p} not supported (only 1 and 2)")
    return _along("lpnorm", input, Y, axis, f"Y = X / (L{p} norm of X along the axis)", p=p)


@op("CumProd")
def cum_prod(outs, x, axis, *, exclusive=0, reverse=0):
    return cumulative(outs[0], x, axis, exclusive=exclusive, reverse=reverse, product=True)


@op("EyeLike")
def eye_like(outs, input, *, dtype=None, k=0):
    (Y,) = outs
    ctype = c_type(Y)
    c_type(input, bits=True)
    if len(Y.shape) != 2:
        raise Unsupported("EyeLike needs a 2-D tensor")
    R, C = Y.shape
    ones = [(i, i + k) for i in range(R) if 0 <= i + k < C]
    return Kernel("eye_like", {}, {"Y": Y}, params=dict(size=Y.size, C=C, ctype=ctype,
                                                      first=ones[0][0] if ones else 0, count=len(ones), k=k),
                  math=f"Y[i][j] = (j - i == {k})")


@op("Compress")
def compress(outs, input, condition, *, axis=None):
    (Y,) = outs
    c_type(input, bits=True)
    if axis is None:
        outer, A, inner = 1, input.size, 1
    else:
        outer, A, inner = _split(input.shape, axis)
    if runtime_param(condition) is None:
        return _compress_at_run_time(Y, input, condition, outer, A, inner)
    cond = runtime_param(condition).reshape(-1).astype(bool)
    idx = np.nonzero(cond[:A])[0]
    if Y.size != outer * idx.size * inner:
        raise Unsupported("output shape does not match the condition")
    return Kernel("gather", {"X": input}, {"Y": Y}, consts={"I": idx.astype(np.int64)},
                  params=dict(outer=outer, A=A, N=int(idx.size), inner=inner),
                  math=f"Y = the slices of X along axis {axis} where the condition holds")


def _compress_at_run_time(Y, X, condition, outer, A, inner) -> Kernel:
    """The condition at run time: the kernel copies the slices where it holds, and fails unless they
    are as many as Y's static shape holds."""
    require_dtype(condition, dtypes=(np.dtype(np.bool_),))
    if len(condition.shape) != 1 or outer * inner == 0 or Y.size % (outer * inner):
        raise Unsupported("the condition must be 1-D and the output a whole number of slices")
    N, L = Y.size // (outer * inner), min(condition.size, A)
    kernel = Kernel("compress", {"X": X}, {"Y": Y}, params=dict(outer=outer, A=A, L=L, N=N, inner=inner),
                    math="Y = the slices of X along the axis where C holds")
    return guarded(kernel, "C", condition, [(f"kiln_count_true(C, {L}) == {N}", {})])


@op("CenterCropPad")
def center_crop_pad(outs, input_data, shape, *, axes=None):
    """The target sizes are read off the output's shape (known at compile time), so `shape` may be a
    run-time input (checked to hold them); lowered as a Pad with negative pads where it crops."""
    from ..ir import Value
    from .layout import pad
    (Y,) = outs
    rank = len(input_data.shape)
    if Y.shape is None or len(Y.shape) != rank:
        raise Unsupported("the output shape must be known")
    axes_ = list(range(rank)) if axes is None else [a % rank for a in axes]
    sizes = runtime_param(shape, [Y.shape[a] for a in axes_])
    if shape.is_const:
        want = list(input_data.shape)
        for a, s in zip(axes_, sizes.reshape(-1)):
            want[a] = int(s)
        if tuple(want) != tuple(Y.shape):
            raise Unsupported("the output shape differs from the shape input")
    begin, end = [], []
    for n, s in zip(input_data.shape, Y.shape):
        if s < n:                                   # crop: start at (n - s) // 2
            b = -((n - s) // 2)
        else:                                       # pad: (s - n) // 2 before
            b = (s - n) // 2
        begin.append(b)
        end.append(s - n - b)
    pads = Value(name="pads", shape=(2 * rank,), dtype=np.dtype(np.int64),
                 const=np.array(begin + end, dtype=np.int64))
    return check_param(pad([Y], input_data, pads), "S", shape, sizes)


@op("Col2Im")
def col2im(outs, input, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """The image sizes are read off the output's shape; the block sizes are read at run time (only
    their product, input.shape[1] / C, is fixed), and each spatial position count follows from them
    (the layer fails when they do not give the input's L positions)."""
    (Y,) = outs
    require_dtype(input, Y)
    require_dtype(block_shape, dtypes=(np.dtype(np.int64), np.dtype(np.int32)))
    if Y.shape is None or len(Y.shape) < 3 or len(input.shape) != 3:
        raise Unsupported("needs a (N, C*K, L) input and a known (N, C, ...) output shape")
    N, C, *I = Y.shape
    nd = len(I)
    if block_shape.size != nd or input.shape[0] != N or C == 0 or input.shape[1] % C:
        raise Unsupported("block_shape or the input's shape does not match the output")
    if block_shape.is_const and int(np.prod(block_shape.const)) * C != input.shape[1]:
        raise Unsupported("block_shape does not match the input's channels")
    dilations = list(dilations or [1] * nd)
    strides = list(strides or [1] * nd)
    pads = list(pads or [0] * (2 * nd))
    if len(dilations) != nd or len(strides) != nd or len(pads) != 2 * nd:
        raise Unsupported("dilations, strides and pads must give every spatial dimension")
    if Y.size == 0 or input.size == 0:
        return Kernel("eye_like", {}, {"Y": Y}, params=dict(size=Y.size, C=1, ctype="float", first=0, count=0, k=0))
    return Kernel("col2im", {"X": input, "B": block_shape}, {"Y": Y}, fails=True,
                  params=dict(NC=N * C, K=input.shape[1] // C, L=input.shape[2], I=I, nd=nd, D=dilations,
                              S=strides, P=pads[:nd], PE=pads[nd:], size=Y.size,
                              plane=int(np.prod(I, dtype=np.int64))),
                  macs=input.size, math="Y[n][c][l * S - P + k * D] += X[n][c * K + k][l]")
