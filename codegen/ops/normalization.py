"""Softmax, BatchNormalization (inference) and LRN."""
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
