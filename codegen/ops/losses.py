"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: one kernel. For each sample n and position d
the loss is -X[n][t][d] * W[t] (t = target, zero where t == ignore_index), X being the scores'
log-softmax along axis 1 for SoftmaxCrossEntropyLoss (computed on the fly; written out as log_prob
when asked for), then reduced: none, sum, or mean = sum / sum of the weights used."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, op

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX = (np.dtype(np.int32), np.dtype(np.int64))


def _loss(outs, X, T, W, reduction, ignore_index, softmax):
    L = outs[0]
    LP = outs[1] if softmax and len(outs) > 1 else None
    for v in (X, W, L, LP):
        if v is not None and (v.dtype is None or np.dtype(v.dtype) not in _FLOATS):
            raise Unsupported(f"dtype {v.dtype} of {v.name!r} not supported (only float32, float64)")
    if W is not None and np.dtype(W.dtype) != np.dtype(X.dtype):
        raise Unsupported("weights of another dtype than the input")
    if T.dtype is None or np.dtype(T.dtype) not in _INDEX:
        raise Unsupported(f"dtype {T.dtype} of the target not supported (only int32, int64)")
    if isinstance(reduction, bytes):
        reduction = reduction.decode()
    if reduction not in ("none", "sum", "mean"):
        raise Unsupported(f"reduction {reduction!r} not supported")
    if len(X.shape) < 2 or X.size == 0:
        raise Unsupported("the input must be (N, C, ...) and not empty")
    N, C = X.shape[:2]
    D = int(np.prod(X.shape[2:], dtype=np.int64))
    if tuple(T.shape) != (N, *X.shape[2:]) or (W is not None and tuple(W.shape) != (C,)):
        raise Unsupported("target or weight shape does not match the input")
    ctype = c_type(X)
    double = ctype == "double"
    inputs = {"X": X, "T": T, **({"W": W} if W is not None else {})}
    outputs = {"L": L, **({"LP": LP} if LP is not None else {})}
    what = "log-softmax(X)" if softmax else "X"
    return Kernel("loss", inputs, outputs,
                  params=dict(N=N, C=C, D=D, ctype=ctype, exp="exp" if double else "expf",
                              log="log" if double else "logf", one="1.0" if double else "1.0f",
                              zero="0.0" if double else "0.0f",
                              softmax=softmax, has_w=W is not None, has_lp=LP is not None,
                              ignore=None if ignore_index is None else int(ignore_index), reduction=reduction),
                  macs=3 * X.size if softmax else N * D,
                  math=f"L[n][d] = -{what}[n][t][d] * W[t], t = T[n][d] (0 where t == ignore_index); "
                       f"reduction {reduction}")


@op("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(outs, input, target, weight=None, *, ignore_index=None, reduction="mean"):
    return _loss(outs, input, target, weight, reduction, ignore_index, softmax=False)


@op("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(outs, scores, labels, weights=None, *, ignore_index=None, reduction="mean"):
    return _loss(outs, scores, labels, weights, reduction, ignore_index, softmax=True)
