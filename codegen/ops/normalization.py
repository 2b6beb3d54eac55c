"""Softmax, BatchNormalization (inference), LRN; LayerNormalization, InstanceNormalization and
GroupNormalization (one kernel)."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_float, op, require_dtype


def _split(shape, axis):
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        raise Unsupported(f"axis {axis} out of range")
    return int(np.prod(shape[:axis], dtype=np.int64)), shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64))


def _softmax(outs, X, axis, log):
    (Y,) = outs
    require_dtype(X, Y)
    outer, n, inner = _split(X.shape, axis)
    return Kernel("softmax", {"X": X}, {"Y": Y}, params=dict(outer=outer, n=n, inner=inner, log=log),
                  math=("Y = X - max - log(sum(exp(X - max)))" if log else
                        "Y = exp(X - max) / sum(exp(X - max))") + " along the axis")


@op("Softmax")
def softmax(outs, input, *, axis=-1):
    return _softmax(outs, input, axis, log=False)


@op("LogSoftmax")
def log_softmax(outs, input, *, axis=-1):
    return _softmax(outs, input, axis, log=True)


@op("BatchNormalization")
def batch_normalization(outs, X, scale, B, input_mean, input_var, *, epsilon=1e-5, momentum=0.9,
                        training_mode=0):
    if training_mode or len([o for o in outs if o is not None]) > 1:
        raise Unsupported("BatchNormalization in training mode is not supported")
    Y = outs[0]
    require_dtype(X, scale, B, input_mean, input_var, Y)
    C = X.shape[1] if len(X.shape) > 1 else 1
    params = dict(N=X.shape[0], C=C, inner=int(np.prod(X.shape[2:], dtype=np.int64)), eps=c_float(epsilon))
    stats = (scale, B, input_mean, input_var)
    if all(v.is_const for v in stats):     # fold into one scale and shift per channel
        s, b, mean, var = (v.const.astype(np.float64) for v in stats)
        factor = s / np.sqrt(var + np.float32(epsilon))
        consts = {"S": factor.astype(np.float32), "T": (b - mean * factor).astype(np.float32)}
        return Kernel("batchnorm", {"X": X}, {"Y": Y}, consts=consts, params=dict(params, folded=True),
                      splat_ok=("S", "T"), inplace=("X",),
                      math="Y[n][c] = X[n][c] * S[c] + T[c],  S = scale / sqrt(var + eps),  T = B - mean * S")
    return Kernel("batchnorm", {"X": X, "scale": scale, "B": B, "mean": input_mean, "var": input_var}, {"Y": Y},
                  params=dict(params, folded=False), splat_ok=("scale", "B", "mean", "var"), inplace=("X",),
                  math="Y[n][c] = (X[n][c] - mean[c]) * scale[c] / sqrt(var[c] + eps) + B[c]")


@op("LRN")
def lrn(outs, X, *, alpha=1e-4, beta=0.75, bias=1.0, size=None):
    (Y,) = outs
    require_dtype(X, Y)
    if size is None or len(X.shape) < 2:
        raise Unsupported("LRN needs size and a channel dimension")
    return Kernel("lrn", {"X": X}, {"Y": Y},
                  params=dict(N=X.shape[0], C=X.shape[1], inner=int(np.prod(X.shape[2:], dtype=np.int64)),
                              before=(size - 1) // 2, after=-(-(size - 1) // 2),
                              alpha_n=c_float(alpha / size), beta=c_float(beta), bias=c_float(bias)),
                  math="Y = X / (bias + alpha / size * sum of X^2 over nearby channels) ^ beta")


# ---- LayerNormalization, InstanceNormalization, GroupNormalization: one kernel -------------------
# Each normalises rows of n = chans * inner contiguous elements (mean and variance summed in double),
# then scales: element (c, i) of row r uses Scale[(r % per) * stride + c] and B likewise.

def _affine(v, size, what):
    """A per-channel operand -> (kernel input or const, printed read of index `c`)."""
    if v is None:
        return None
    if v.size == size:
        return v
    if v.size == 1 or (v.is_const and v.const.size and np.all(v.const == v.const.reshape(-1)[0])):
        return v
    raise Unsupported(f"{what} of shape {v.shape} does not give one value per normalised element")


def _norm(Y, X, scale, bias, *, rows, chans, inner, per, stride, epsilon, mean=None, inv_std=None, math=""):
    require_dtype(X, Y, scale, bias, mean, inv_std)
    if X.size == 0:
        raise Unsupported("normalisation of an empty tensor")
    inputs = {"X": X}
    reads = {}
    for name, v in (("S", scale), ("B", bias)):
        v = _affine(v, per * chans if stride else chans, "scale" if name == "S" else "bias")
        if v is not None:
            inputs[name] = v
            reads[name] = "0" if v.size == 1 else None
    outputs = {"Y": Y, **({"M": mean} if mean is not None else {}), **({"R": inv_std} if inv_std is not None else {})}
    return Kernel("norm", inputs, outputs,
                  params=dict(rows=rows, n=chans * inner, chans=chans, inner=inner, per=per, stride=stride,
                              eps=c_float(epsilon), has_scale="S" in inputs, has_bias="B" in inputs,
                              scalar=reads, has_mean=mean is not None, has_inv=inv_std is not None),
                  splat_ok=("S", "B"), macs=3 * X.size, math=math)


@op("LayerNormalization")
def layer_normalization(outs, X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    Y, mean, inv_std = (list(outs) + [None, None])[:3]
    if stash_type != 1:
        raise Unsupported(f"stash_type {stash_type} not supported")
    rank = len(X.shape)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    n = int(np.prod(X.shape[axis:], dtype=np.int64))
    return _norm(Y, X, Scale, B, rows=int(np.prod(X.shape[:axis], dtype=np.int64)), chans=n, inner=1,
                 per=1, stride=0, epsilon=epsilon, mean=mean, inv_std=inv_std,
                 math=f"Y = (X - mean) / sqrt(var + eps) * Scale + B over axes {axis}..{rank - 1}")


@op("InstanceNormalization")
def instance_normalization(outs, input, scale, B, *, epsilon=1e-5):
    (Y,) = outs
    if len(input.shape) < 3:
        raise Unsupported("InstanceNormalization needs a spatial dimension")
    N, C = input.shape[:2]
    return _norm(Y, input, scale, B, rows=N * C, chans=1, inner=int(np.prod(input.shape[2:], dtype=np.int64)),
                 per=C, stride=1, epsilon=epsilon,
                 math="Y[n][c] = (X[n][c] - mean) / sqrt(var + eps) * scale[c] + B[c], over each plane")


@op("GroupNormalization")
def group_normalization(outs, X, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1):
    (Y,) = outs
    if stash_type != 1:
        raise Unsupported(f"stash_type {stash_type} not supported")
    if len(X.shape) < 2 or num_groups < 1 or X.shape[1] % num_groups:
        raise Unsupported("the channels do not divide into num_groups")
    N, C = X.shape[:2]
    Cg = C // num_groups
    return _norm(Y, X, scale, bias, rows=N * num_groups, chans=Cg,
                 inner=int(np.prod(X.shape[2:], dtype=np.int64)), per=num_groups, stride=Cg, epsilon=epsilon,
                 math=f"Y[n][c] = (X[n][c] - mean) / sqrt(var + eps) * scale[c] + bias[c], "
                      f"over each of {num_groups} channel groups")


@op("MeanVarianceNormalization")
def mean_variance_normalization(outs, X, *, axes=(0, 2, 3)):
    """Y = (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9) over `axes`, as the function body says."""
    (Y,) = outs
    require_dtype(X, Y)
    rank = len(X.shape)
    axes = sorted({a + rank if a < 0 else a for a in axes})
    if not all(0 <= a < rank for a in axes):
        raise Unsupported(f"axes {axes} out of range")
    if X.size == 0:
        raise Unsupported("normalisation of an empty tensor")
    strides = [int(np.prod(X.shape[d + 1:], dtype=np.int64)) for d in range(rank)]
    kept = [d for d in range(rank) if d not in axes]
    return Kernel("mvn", {"X": X}, {"Y": Y},
                  params=dict(out_dims=[X.shape[d] for d in kept], out_strides=[strides[d] for d in kept],
                              red_dims=[X.shape[d] for d in axes], red_strides=[strides[d] for d in axes],
                              count=int(np.prod([X.shape[d] for d in axes], dtype=np.int64))),
                  macs=3 * X.size, math=f"Y = (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9) over axes {axes}")
