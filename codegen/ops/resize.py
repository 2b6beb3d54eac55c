"""Resize (and Upsample, which the frontend's opset conversion turns into Resize): nearest with its
four rounding modes, linear and cubic (antialias and exclude_outside included), every coordinate
transformation mode, axes and keep_aspect_ratio_policy.

Resizing is separable, so the lowering works out, per resized axis and per output index, which
input indices contribute and with what weights (the taps), exactly as the ONNX reference computes
them (in double); the kernel only sums products of table entries. Nearest needs one tap of weight
1 per axis: a pure gather, so it works for every dtype. Sizes given at run time are checked against
the output's shape; scales, sizes with a keep_aspect_ratio_policy, or a roi given at run time
(without antialias) are read by the kernel, which then computes the taps itself.
"""
from __future__ import annotations

import math

import numpy as np

from . import Kernel, Unsupported, c_float, c_type, check_param, op, require_dtype, runtime_param
from .layout import contiguous_strides

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


# ---- per-axis coefficients, as onnx/reference/ops/op_resize.py defines them ---------------------

def _nearest(ratio, scale, *, nearest_mode, **_):
    if float(ratio).is_integer():
        return np.array([0.0, 1.0])
    return {"round_prefer_floor": np.array([ratio <= 0.5, ratio > 0.5]),
            "round_prefer_ceil": np.array([ratio < 0.5, ratio >= 0.5]),
            "floor": np.array([1, 0]), "ceil": np.array([0, 1])}[nearest_mode].astype(np.float64)


def _linear(ratio, scale, *, antialias, **_):
    if not antialias:
        return np.array([1 - ratio, ratio])
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    args = (np.arange(start, start + 2 - 2 * start) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _cubic(ratio, scale, *, antialias, A, **_):
    if not antialias:
        return np.array([
            ((A * (ratio + 1) - 5 * A) * (ratio + 1) + 8 * A) * (ratio + 1) - 4 * A,
            ((A + 2) * ratio - (A + 3)) * ratio * ratio + 1,
            ((A + 2) * (1 - ratio) - (A + 3)) * (1 - ratio) * (1 - ratio) + 1,
            ((A * ((1 - ratio) + 1) - 5 * A) * ((1 - ratio) + 1) + 8 * A) * ((1 - ratio) + 1) - 4 * A])
    scale = min(scale, 1.0)

    def coeff(x):
        x = abs(x)
        if x <= 1:
            return (A + 2) * x ** 3 - (A + 3) * x ** 2 + 1
        return A * x ** 3 - 5 * A * x ** 2 + 8 * A * x - 4 * A if x < 2 else 0.0

    start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([coeff(scale * (i - ratio)) for i in range(start, 2 - start)])
    return coeffs / coeffs.sum()


def _source_coords(ctm, y, scale, in_w, out_w, out_w_int, roi):
    """Output indices -> source coordinates, and which fall outside the input (tf_crop_and_resize)."""
    outside = None
    if ctm == "align_corners":
        x = np.zeros(out_w_int) if out_w == 1 else y * (in_w - 1) / (out_w - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        x = np.full(out_w_int, (roi[1] - roi[0]) * (in_w - 1) / 2) if out_w == 1 else \
            y * (roi[1] - roi[0]) * (in_w - 1) / (out_w - 1)
        x = x + roi[0] * (in_w - 1)
        outside = (x < 0) | (x > in_w - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(out_w_int, -0.5) if out_w == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    else:   # half_pixel_symmetric
        offset = in_w / 2 * (1 - out_w_int / out_w)
        x = offset + (y + 0.5) / scale - 0.5
    return x, outside


def axis_taps(in_w, out_w_int, scale, coeffs_of, ctm, roi, exclude_outside):
    """(indices [out, n], weights [out, n], outside [out] or None) for one resized axis."""
    y = np.arange(out_w_int, dtype=np.float64)
    x, outside = _source_coords(ctm, y, scale, in_w, scale * in_w, out_w_int, roi)
    x_int = np.floor(x).astype(np.int64)
    ratios = np.where(x == x_int, 1.0, x - x_int)
    weights = np.array([coeffs_of(float(r), scale) for r in ratios], dtype=np.float64)
    n = weights.shape[1]
    pad = int(np.ceil(n / 2))
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:
        shift = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        base = -((n - 1) // 2)
        shift = np.where(frac <= 0.5, base, base + 1)
    idx = (p + shift)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        weights = np.where((idx < 0) | (idx >= in_w), 0.0, weights)
        total = weights.sum(axis=-1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_w - 1), weights, outside


def _compact(idx, weights):
    """Keep only the taps with a non-zero weight, padding rows to the longest with (0, 0.0)."""
    keep = weights != 0
    width = max(1, int(keep.sum(axis=1).max()))
    out_i = np.zeros((len(idx), width), dtype=np.int64)
    out_w = np.zeros((len(idx), width), dtype=np.float64)
    for r in range(len(idx)):
        k = np.flatnonzero(keep[r])
        out_i[r, :len(k)] = idx[r, k]
        out_w[r, :len(k)] = weights[r, k]
    return out_i, out_w


@op("Resize")
def resize(outs, X, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    (Y,) = outs
    ctm = coordinate_transformation_mode
    if mode not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"mode {mode!r} not supported")
    if ctm not in COORDINATE_MODES or nearest_mode not in NEAREST_MODES:
        raise Unsupported(f"coordinate_transformation_mode {ctm!r} / nearest_mode {nearest_mode!r} not supported")
    if mode == "nearest" and antialias:
        raise Unsupported("antialias with mode nearest")
    if mode == "nearest":
        ctype = c_type(X, bits=True)
    else:
        require_dtype(X, Y)
        ctype = "float"
    rank = len(X.shape)
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise Unsupported("axes out of range or repeated")
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest_mode, antialias=antialias,
                 cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                 extrapolation_value=extrapolation_value, ctype=ctype)
    if scales is not None and runtime_param(scales) is None:
        if sizes is not None and sizes.size:
            raise Unsupported("exactly one of scales and sizes must be given")
        return _resize_at_run_time(Y, X, axes, attrs, scales=scales, roi=roi)
    sizes_in, stretch = sizes, keep_aspect_ratio_policy == "stretch"
    scales = runtime_param(scales)
    sizes = runtime_param(sizes, [Y.shape[a] for a in axes] if stretch else None)   # at run time: Y's dims
    if sizes_in is not None and sizes is None:     # the scale follows from the sizes and the policy
        if keep_aspect_ratio_policy not in ("not_larger", "not_smaller"):
            raise Unsupported(f"keep_aspect_ratio_policy {keep_aspect_ratio_policy!r} not supported")
        return _resize_at_run_time(Y, X, axes, attrs, sizes=sizes_in, policy=keep_aspect_ratio_policy, roi=roi)
    scales = None if scales is None or scales.size == 0 else [float(s) for s in scales.reshape(-1)]
    sizes = None if sizes is None or sizes.size == 0 else [int(s) for s in sizes.reshape(-1)]
    if (scales is None) == (sizes is None):
        raise Unsupported("exactly one of scales and sizes must be given")
    if len(scales or sizes) != len(axes):
        raise Unsupported("scales or sizes must give one value per axis")
    roi_full, roi_at_run_time = None, False
    if ctm == "tf_crop_and_resize" and roi is not None and runtime_param(roi) is None:
        roi_at_run_time = True         # the taps are computed at run time (below)
    elif ctm == "tf_crop_and_resize":
        r = runtime_param(roi)
        if r is None or r.size != 2 * len(axes):
            raise Unsupported("tf_crop_and_resize needs a roi with a start and an end per axis")
        r = r.reshape(-1).astype(np.float64)
        roi_full = [0.0] * rank + [1.0] * rank
        for i, a in enumerate(axes):
            roi_full[a], roi_full[rank + a] = r[i], r[len(axes) + i]

    # scale factors and output sizes per axis, as the reference derives them
    scale_of = [1.0] * rank
    size_of = list(X.shape)
    if sizes is not None:
        for a, s in zip(axes, sizes):
            size_of[a] = s
        scale_of = [size_of[i] / X.shape[i] if X.shape[i] else 1.0 for i in range(rank)]
        if keep_aspect_ratio_policy != "stretch":
            if keep_aspect_ratio_policy not in ("not_larger", "not_smaller"):
                raise Unsupported(f"keep_aspect_ratio_policy {keep_aspect_ratio_policy!r} not supported")
            picked = [scale_of[a] for a in axes]
            s = min(picked) if keep_aspect_ratio_policy == "not_larger" else max(picked)
            scale_of = [s if i in axes else 1.0 for i in range(rank)]
            size_of = [int(s * X.shape[i] + 0.5) if i in axes else X.shape[i] for i in range(rank)]
    else:
        for a, s in zip(axes, scales):
            if not s > 0:
                raise Unsupported("scales must be positive")
            scale_of[a] = s
        size_of = [int(s * d) for s, d in zip(scale_of, X.shape)]
    if tuple(size_of) != tuple(Y.shape):
        raise Unsupported(f"output shape {Y.shape} differs from the computed {tuple(size_of)}")
    if X.size == 0:
        raise Unsupported("resizes an empty tensor")
    if roi_at_run_time:
        return check_param(_resize_at_run_time(Y, X, axes, attrs, fixed=scale_of, roi=roi), "S", sizes_in, sizes or [])

    coeffs = {"nearest": _nearest, "linear": _linear, "cubic": _cubic}[mode]
    coeffs_of = lambda r, s: coeffs(r, s, nearest_mode=nearest_mode, antialias=antialias,   # noqa: E731
                                    A=cubic_coeff_a)
    strides = contiguous_strides(X.shape)
    offsets, weights, rows, extrapolate = [], [], [], False
    for a in range(rank):
        identity = a not in axes or (math.isclose(scale_of[a], 1.0) and size_of[a] == X.shape[a] and (
            roi_full is None or (math.isclose(roi_full[a], 0.0) and math.isclose(roi_full[a + rank], 1.0))))
        if identity:
            rows.append(dict(kind="ident", dim=size_of[a], stride=strides[a]))
            continue
        idx, w, outside = axis_taps(X.shape[a], size_of[a], scale_of[a], coeffs_of, ctm,
                                    None if roi_full is None else (roi_full[a], roi_full[a + rank]),
                                    exclude_outside)
        idx, w = _compact(idx, w)
        q = idx * strides[a]
        if outside is not None and outside.any():
            q[outside, 0] = -1        # this output reads nothing: it is the extrapolation value
            extrapolate = True
        at = sum(len(t) for t in offsets)
        offsets.append(q.reshape(-1))
        if idx.shape[1] == 1 and np.all(w == 1.0):
            rows.append(dict(kind="gather", dim=size_of[a], at=at))
        else:
            if mode == "nearest":
                raise Unsupported("nearest resize found a fractional weight")   # cannot happen
            rows.append(dict(kind="taps", dim=size_of[a], at=at, taps=idx.shape[1],
                             wat=sum(len(t) for t in weights)))
            weights.append(w.astype(np.float32).reshape(-1))
    if extrapolate and ctype != "float":
        raise Unsupported(f"extrapolation_value for dtype {X.dtype}")
    consts = {}
    if offsets:
        consts["Q"] = np.concatenate(offsets).astype(np.int32 if X.size < 2**31 else np.int64)
    if weights:
        consts["Wt"] = np.concatenate(weights)
    return check_param(Kernel("resize", {"X": X}, {"Y": Y}, consts=consts,
                  params=dict(rows=rows, ctype=ctype, extrapolate=extrapolate, fills=[],
                              qtype="int32_t" if X.size < 2**31 else "int64_t",
                              value=c_float(extrapolation_value) if ctype == "float" else None,
                              taps=[r for r in rows if r["kind"] == "taps"]),
                  macs=Y.size * int(np.prod([r["taps"] for r in rows if r["kind"] == "taps"], dtype=np.int64)),
                  math=f"Y = resize(X) by {mode} ({ctm}), sizes {list(X.shape)} -> {list(Y.shape)}"),
                       "S", sizes_in, sizes or [])


def _resize_at_run_time(Y, X, axes, attrs, *, scales=None, sizes=None, policy=None, fixed=None, roi=None):
    """The kernel computes each resized axis's taps itself (kiln_resize_taps, the same arithmetic as
    axis_taps) from what arrives at run time: the scales S, or the sizes S and a
    keep_aspect_ratio_policy (one scale: the smallest or largest of sizes / input lengths), each
    checked to give the output's static length; or, the scales `fixed` at compile time, the roi R."""
    mode, ctm = attrs["mode"], attrs["coordinate_transformation_mode"]
    k, inputs = len(axes), {"X": X}
    if attrs["antialias"] or X.size == 0:
        raise Unsupported("antialias with scales, sizes or roi given at run time, or an empty input")
    if fixed is None:
        param = sizes if policy else scales
        if param.size != k:
            raise Unsupported("scales or sizes must give one value per axis")
        require_dtype(param, dtypes=(np.dtype(np.int64),) if policy else (np.dtype(np.float32),))
        inputs["S"] = param
    roi_c = [("0.0", "1.0")] * k
    if ctm == "tf_crop_and_resize":
        if roi is None or roi.size != 2 * k:
            raise Unsupported("tf_crop_and_resize needs a roi with a start and an end per axis")
        if attrs["ctype"] != "float":
            raise Unsupported(f"extrapolation_value for dtype {X.dtype}")
        if roi.is_const:
            r = roi.const.reshape(-1).astype(np.float64)
            roi_c = [(repr(float(r[i])), repr(float(r[k + i]))) for i in range(k)]
        else:
            require_dtype(roi, dtypes=(np.dtype(np.float32), np.dtype(np.float64)))
            inputs["R"] = roi
            roi_c = [(f"(double)R[{i}]", f"(double)R[{k + i}]") for i in range(k)]
    strides = contiguous_strides(X.shape)
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    rows, fills = [], []
    for a in range(len(X.shape)):
        if a not in axes:
            if X.shape[a] != Y.shape[a]:
                raise Unsupported("an axis that is not resized changes length")
            rows.append(dict(kind="ident", dim=Y.shape[a], stride=strides[a]))
            continue
        i, at = axes.index(a), sum(f["m"] for f in fills) * taps       # Q and Wt: the same layout
        scale = repr(float(fixed[a])) if fixed is not None else "scale" if policy else f"(double)S[{i}]"
        fills.append(dict(i=i, n=X.shape[a], m=Y.shape[a], stride=strides[a], at=at, wat=at, scale=scale,
                          check=fixed is None, roi=", ".join(roi_c[i])))
        rows.append(dict(kind="gather", dim=Y.shape[a], at=at) if taps == 1 else
                    dict(kind="taps", dim=Y.shape[a], at=at, taps=taps, wat=at))
    extrapolate = ctm == "tf_crop_and_resize"
    codes = [COORDINATE_MODES.index(ctm), ["nearest", "linear", "cubic"].index(mode),
             NEAREST_MODES.index(attrs["nearest_mode"]), repr(float(attrs["cubic_coeff_a"])),
             int(bool(attrs["exclude_outside"]))]
    what = "roi R" if fixed is not None else "sizes S" if policy else "scales S"
    return Kernel("resize", inputs, {"Y": Y}, fails=True,
                  params=dict(rows=rows, ctype=attrs["ctype"], extrapolate=extrapolate, qtype="ptrdiff_t",
                              value=c_float(attrs["extrapolation_value"]) if extrapolate else None,
                              taps=[r for r in rows if r["kind"] == "taps"], fills=fills,
                              table=sum(f["m"] for f in fills) * taps, policy=policy, codes=codes),
                  macs=Y.size * taps ** len(fills),
                  math=f"Y = resize(X) by {mode} ({ctm}), the {what} read at run time, "
                       f"sizes {list(X.shape)} -> {list(Y.shape)}")


@op("Upsample")
def upsample(outs, X, scales, *, mode="nearest"):
    """Only reached for opset-10 and older models the conversion left alone: Resize semantics."""
    raise Unsupported("Upsample should have been converted to Resize")
