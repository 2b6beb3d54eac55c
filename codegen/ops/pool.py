"""Pooling over any number of spatial dims: MaxPool (and its Indices), AveragePool (pads, ceil_mode,
dilations, count_include_pad), their Global forms (the window is the whole plane), and MaxUnpool."""
from __future__ import annotations

import numpy as np

from . import FLOAT, Kernel, Tactics, Unsupported, c_type, op, require_dtype
from .conv import plane_geometry, plane_taps, resolve_pads, tap_columns, tap_phases


def _pool(kind, X, Y, kernel, strides, dilations, begin, end, count_include_pad, p=0, indices=None,
          storage_order=0):
    N, C, *in_sizes = X.shape
    # where MaxPool's Indices output counts each spatial index from: row-major, or column-major
    steps = [int(np.prod(in_sizes[d + 1:] if not storage_order else in_sizes[:d])) for d in range(len(in_sizes))]
    outputs = {"Y": Y} if indices is None else {"Y": Y, "Ind": indices}
    generic = Kernel("pool", {"X": X}, outputs,
                  params=dict(kind=kind, NC=N * C, C=C, osize=int(np.prod(Y.shape[2:])), I=in_sizes,
                              O=list(Y.shape[2:]), K=list(kernel),
                              S=list(strides), D=list(dilations), P=list(begin), PE=list(end),
                              count_include_pad=bool(count_include_pad), p=p, indices=indices is not None,
                              index_steps=steps, integer=None),
                  macs=int(np.prod(Y.shape)) * int(np.prod(kernel)),
                  epilogue_modes=("flat", "chan") if indices is None else None,
                  math=f"Y[n][c][o] = {kind} over the window X[n][c][o*S + k*D - P]")
    if len(in_sizes) == 2 and kind in ("max", "avg") and indices is None and not count_include_pad \
            and dilations == [1, 1] and np.dtype(X.dtype) == np.float32:
        if list(kernel) == in_sizes and not any(begin) and not any(end) and X.size:   # global: a plane, one output
            return Tactics("plane", {"plane": lambda: _plane(kind, generic, int(np.prod(in_sizes))),
                                     "generic": lambda: generic})
        return Tactics("planes", {"planes": lambda: _planes(kind, X, Y, kernel, strides, begin, generic),
                                  "rows": lambda: _rows(kind, X, Y, kernel, strides, begin, generic),
                                  "generic": lambda: generic}, lean="rows")
    return generic


PLANE_LANES = 16     # the partial results of a global pool: one AVX-512 vector


def _plane(kind, generic, n) -> Kernel:
    """Global max/average pooling of each float plane through PLANE_LANES partial results
    (templates/c/pool_plane.c.j2)."""
    return Kernel("pool_plane", generic.inputs, generic.outputs,
                  params=dict(kind=kind, NC=generic.params["NC"], C=generic.params["C"], n=n, lanes=min(n, PLANE_LANES)),
                  macs=generic.macs, epilogue_modes=generic.epilogue_modes, math=generic.math)


def _rows(kind, X, Y, kernel, strides, begin, generic) -> Kernel:
    """2-D max/average pooling one output row at a time (templates/c/pool_rows.c.j2), over the tap columns'
    output ranges inside the input row (conv.tap_columns)."""
    (_, _, IH, IW), (OH, OW) = X.shape, Y.shape[2:]
    (KH, KW), (SH, SW), (PH, PW) = kernel, strides, begin
    columns = [(lo, hi, shift) for _, lo, hi, shift in tap_columns(IW, OW, KW, SW, 1, PW)]
    if not columns:
        return generic
    return Kernel("pool_rows", generic.inputs, generic.outputs,
                  params=dict(kind=kind, NC=generic.params["NC"], C=generic.params["C"], IH=IH, IW=IW, OH=OH, OW=OW,
                              KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, columns=columns),
                  scratch={"A": (np.float32, OW)},       # one output row's maxima or sums
                  macs=generic.macs, epilogue_modes=generic.epilogue_modes, math=generic.math)


def _planes(kind, X, Y, kernel, strides, begin, generic) -> Kernel:
    """2-D max/average pooling of each plane as a whole (templates/c/pool_planes.c.j2): the plane is copied,
    padded (with -inf for max, 0 for the sums) and split by stride phase, so that every tap reads one
    contiguous run of the flattened output positions (as the planes convolution does)."""
    (_, _, IH, IW), (OH, OW) = X.shape, Y.shape[2:]
    (KH, KW), (SH, SW), (PH, PW) = kernel, strides, begin
    pitch, halo, positions = plane_geometry(OH, OW, KH, KW, SH, SW, 1, 1)
    rows = OH + halo
    phases = tap_phases(KH, KW, SH, SW, 1, 1)
    taps, phases = plane_taps(phases, rows, pitch, IW, KH, KW, SH, SW, 1, 1, PW)
    columns = [(lo, hi) for _, lo, hi, _ in tap_columns(IW, OW, KW, SW, 1, PW)]     # the averages' counts
    if not columns or not taps or not X.size:        # no window reads the input
        return generic
    return Kernel("pool_planes", generic.inputs, generic.outputs,
                  params=dict(kind=kind, NC=generic.params["NC"], C=generic.params["C"], IH=IH, IW=IW, OH=OH, OW=OW,
                              KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, PITCH=pitch, ROWS=rows, Q=positions,
                              taps=taps, phases=phases, columns=columns),
                  # the padded planes of one channel; the maxima or sums of its positions
                  scratch={"P": (np.float32, len(phases) * rows * pitch), "A": (np.float32, positions)},
                  macs=generic.macs, epilogue_modes=generic.epilogue_modes, math=generic.math)


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
    require_dtype(X, Y, dtypes=(FLOAT, *INT8))
    n, strides, dilations = _spatial(X, kernel_shape, strides, dilations)
    begin, end = resolve_pads(auto_pad, X.shape[2:], kernel_shape, strides, dilations, pads)
    return _integer(_pool("max", X, Y, kernel_shape, strides, dilations, begin, end, 0, indices=indices,
                          storage_order=storage_order), X)


INT8 = (np.dtype(np.int8), np.dtype(np.uint8))


def _integer(kernel: Kernel, X) -> Kernel:
    """MaxPool of an int8 / uint8 tensor (an int8 model's): the same loops over integers."""
    if np.dtype(X.dtype) in INT8:
        kernel.params["integer"] = dict(T=c_type(X), lowest=int(np.iinfo(X.dtype).min))
        kernel.epilogue_modes = None
    return kernel


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
    (Y,) = outs
    require_dtype(X, Y, dtypes=(FLOAT, *INT8))
    sizes = list(X.shape[2:])
    n = len(sizes)
    return _integer(_pool("max", X, Y, sizes, [1] * n, [1] * n, [0] * n, [0] * n, 0), X)


@op("MaxUnpool")
def max_unpool(outs, X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):
    """Y = 0, then Y[I[e]] = X[e]: I indexes the tensor of the inferred shape ((in - 1) * stride - pads
    + kernel per spatial dim), which sits at the start of a larger output_shape. An index outside
    that tensor is skipped (the spec calls it an error)."""
    (Y,) = outs
    c_type(X, bits=True)          # any dtype: elements are only moved
    require_dtype(I, dtypes=(np.dtype(np.int64),))
    n = len(X.shape) - 2
    if kernel_shape is None or len(kernel_shape) != n:
        raise Unsupported("kernel_shape must give every spatial dimension")
    strides, pads = list(strides or [1] * n), list(pads or [0] * (2 * n))
    inferred = list(X.shape[:2]) + [(X.shape[2 + d] - 1) * strides[d] - pads[d] - pads[n + d] + kernel_shape[d]
                                    for d in range(n)]
    if len(Y.shape) != len(inferred) or any(y < i for y, i in zip(Y.shape, inferred)):
        raise Unsupported("output_shape is smaller than the unpooled shape")
    return Kernel("max_unpool", {"X": X, "I": I}, {"Y": Y},
                  params=dict(size=X.size, nbytes=Y.nbytes, inferred=inferred, total=int(np.prod(inferred)),
                              y_strides=[int(np.prod(Y.shape[d + 1:])) for d in range(len(Y.shape))]),
                  math="Y = 0; Y[I[e]] = X[e]")
