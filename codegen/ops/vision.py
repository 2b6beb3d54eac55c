"""Sampling ops of vision models: GridSample (2D and 3D; nearest, linear and cubic; zeros, border
and reflection padding) and AffineGrid, as onnx/reference/ops/op_grid_sample.py defines them."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_float, op, require_const, require_dtype
from .layout import nothing

MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic", "bicubic": "cubic"}
PADDINGS = {"zeros": 0, "border": 1, "reflection": 2}


@op("GridSample")
def grid_sample(outs, X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    (Y,) = outs
    require_dtype(X, grid, Y)
    if mode not in MODES or padding_mode not in PADDINGS:
        raise Unsupported(f"mode {mode!r} with padding_mode {padding_mode!r} not supported")
    mode = MODES[mode]
    dims = list(X.shape[2:])
    if len(dims) not in (2, 3) or grid.shape[-1] != len(dims):
        raise Unsupported("only 2D and 3D sampling")
    if mode == "cubic" and len(dims) != 2:
        raise Unsupported("cubic mode is 2D only")
    if Y.size == 0 or X.size == 0:
        return nothing({"X": X, "G": grid}, {"Y": Y})
    # the borders a coordinate is clamped or reflected into, per axis
    lo = [0.0 if align_corners else -0.5 for _ in dims]
    hi = [d - 1.0 if align_corners else d - 0.5 for d in dims]
    strides = [int(np.prod(dims[i + 1:], dtype=np.int64)) for i in range(len(dims))]
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    out_size = int(np.prod(Y.shape[2:], dtype=np.int64))
    return Kernel("grid_sample", {"X": X, "G": grid}, {"Y": Y},
                  params=dict(N=X.shape[0], C=X.shape[1], dims=dims, strides=strides, in_size=int(np.prod(dims)),
                              out_size=out_size, mode=mode, padding=PADDINGS[padding_mode],
                              align_corners=bool(align_corners), lo=lo, hi=hi, taps=taps),
                  macs=Y.size * taps ** len(dims),
                  math=f"Y[n][c][o] = {mode} sample of X[n][c] at grid[n][o] ({padding_mode} padding)")
