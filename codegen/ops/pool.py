"""Pooling over any number of spatial dims: MaxPool, AveragePool (pads, ceil_mode, dilations,
count_include_pad), and their Global forms (the window is the whole plane)."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_dtype
from .conv import resolve_pads


def _pool(kind, X, Y, kernel, strides, dilations, begin, end, count_include_pad, p=0, indices=None,
          storage_order=0):
    N, C, *in_sizes = X.shape
    # where MaxPool's Indices output counts each spatial index from: row-major, or column-major
    steps = [int(np.prod(in_sizes[d + 1:] if not storage_order else in_sizes[:d])) for d in range(len(in_sizes))]
    outputs = {"Y": Y} if indices is None else {"Y": Y, "Ind": indices}
    return Kernel("pool", {"X": X}, outputs,
                  params=dict(kind=kind, NC=N * C, C=C, osize=int(np.prod(Y.shape[2:])), I=in_sizes,
                              O=list(Y.shape[2:]), K=list(kernel),
                              S=list(strides), D=list(dilations), P=list(begin), PE=list(end),
                              count_include_pad=bool(count_include_pad), p=p, indices=indices is not None,
                              index_steps=steps),
                  macs=int(np.prod(Y.shape)) * int(np.prod(kernel)),
                  epilogue_modes=("flat", "chan") if indices is None else None,
                  math=f"Y[n][c][o] = {kind} over the window X[n][c][o*S + k*D - P]")


def _spatial(X, kernel_shape, strides, dilations):
    n = len(X.shape) - 2
    if n < 1:
        raise Unsupported("pooling needs at least one spatial dimension")
    if kernel_shape is None or len(kernel_shape) != n:
        raise Unsupported("kernel_shape must give every spatial dimension")
    return n, list(strides or [1] * n), list(dilations or [1] * n)


@op("MaxPool")
def max_pool(outs, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
             storage_order=0, strides=None):
    """Indices: the first maximum's flat index into X (the spatial part in storage_order)."""
    Y, indices = (outs + [None])[:2]
    require_dtype(X, Y)
    n, strides, dilations = _spatial(X, kernel_shape, strides, dilations)
    begin, end = resolve_pads(auto_pad, X.shape[2:], kernel_shape, strides, dilations, pads)
    return _pool("max", X, Y, kernel_shape, strides, dilations, begin, end, 0, indices=indices,
                 storage_order=storage_order)


@op("AveragePool")
def average_pool(outs, X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None):
    (Y,) = outs
    require_dtype(X, Y)
    n, strides, dilations = _spatial(X, kernel_shape, strides, dilations)
    begin, end = resolve_pads(auto_pad, X.shape[2:], kernel_shape, strides, dilations, pads)
    return _pool("avg", X, Y, kernel_shape, strides, dilations, begin, end, count_include_pad)


@op("LpPool")
def lp_pool(outs, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None,
            strides=None):
    (Y,) = outs
    require_dtype(X, Y)
    if p < 1:
        raise Unsupported(f"p = {p} not supported")
    n, strides, dilations = _spatial(X, kernel_shape, strides, dilations)
    begin, end = resolve_pads(auto_pad, X.shape[2:], kernel_shape, strides, dilations, pads)
    return _pool("lp", X, Y, kernel_shape, strides, dilations, begin, end, 0, p=int(p))


def _global(kind, outs, X):
    (Y,) = outs
    require_dtype(X, Y)
    sizes = list(X.shape[2:])
    n = len(sizes)
    return _pool(kind, X, Y, sizes, [1] * n, [1] * n, [0] * n, [0] * n, 0)


@op("GlobalAveragePool")
def global_average_pool(outs, X):
    return _global("avg", outs, X)


@op("GlobalMaxPool")
def global_max_pool(outs, X):
    return _global("max", outs, X)
