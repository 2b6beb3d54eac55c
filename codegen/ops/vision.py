"""Sampling ops of vision models: GridSample (2D and 3D; nearest, linear and cubic; zeros, border
and reflection padding), AffineGrid and RoiAlign, as onnx/reference/ops/ defines them."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_float, op, require_dtype

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
    if X.size == 0 and Y.size:
        raise Unsupported("sampling an empty input")
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


def _base_grid(dims: list[int], align_corners: int) -> np.ndarray:
    """(prod(dims), r + 1): the normalised coordinates of each output point, last axis first, and 1
    (in double, as the reference builds them)."""
    axes = []
    for d in dims:
        if align_corners:
            if d < 2:
                raise Unsupported("align_corners needs every size to be at least 2")
            a = np.arange(-1, 1 + 0.0001, 2.0 / (d - 1))
        else:
            a = np.arange(-1 + 1.0 / d, 1, 2.0 / d)
        if len(a) != d:
            raise Unsupported("the reference's coordinate count differs from the size")
        axes.append(a)
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size)], axis=1)


@op("AffineGrid")
def affine_grid(outs, theta, size, *, align_corners=0):
    """The sizes are the output's static shape (N, *dims, r); a constant `size` must agree."""
    (Y,) = outs
    require_dtype(theta, Y)
    dims = list(Y.shape[1:-1])
    r = len(dims)
    if r not in (2, 3) or tuple(theta.shape) != (Y.shape[0], r, r + 1) or Y.shape[-1] != r:
        raise Unsupported("only 2D and 3D grids")
    if size.is_const and [int(s) for s in size.const.reshape(-1)[2:]] != dims:
        raise Unsupported("size disagrees with the output's shape")
    base = _base_grid(dims, align_corners)
    return Kernel("affine_grid", {"T": theta}, {"Y": Y}, consts={"B": base},
                  params=dict(N=Y.shape[0], P=base.shape[0], r=r),
                  macs=Y.size * (r + 1), math="Y[n][p][i] = sum_j theta[n][i][j] * base[p][j] (in double)")


@op("RoiAlign")
def roi_align(outs, X, rois, batch_indices, *, coordinate_transformation_mode="half_pixel", mode="avg",
              output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """Each roi's bins averaged (or maxed) over a grid of bilinear samples, as the reference; a batch
    index outside [0, N) is clamped into it (the spec calls it an error)."""
    (Y,) = outs
    require_dtype(X, rois, Y)
    require_dtype(batch_indices, dtypes=(np.dtype(np.int64), np.dtype(np.int32)))
    if mode not in ("avg", "max") or coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
        raise Unsupported(f"mode {mode!r} with {coordinate_transformation_mode!r} not supported")
    if len(X.shape) != 4 or tuple(rois.shape[1:]) != (4,):
        raise Unsupported("X must be [N, C, H, W] and rois [R, 4]")
    if X.size == 0 and Y.size:
        raise Unsupported("pooling from an empty input")
    N, C, H, W = X.shape
    return Kernel("roi_align", {"X": X, "R": rois, "B": batch_indices}, {"Y": Y},
                  params=dict(N=N, C=C, H=H, W=W, rois=rois.shape[0], PH=output_height, PW=output_width,
                              ratio=int(sampling_ratio), scale=c_float(spatial_scale), mode=mode,
                              half_pixel=coordinate_transformation_mode == "half_pixel"),
                  macs=Y.size * 4 * max(int(sampling_ratio), 1) ** 2,
                  math=f"Y[r][c] = {mode} of bilinear samples of X[B[r]][c] over each bin of roi r")
