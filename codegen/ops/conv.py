"""Convolution, any number of spatial dimensions, groups (depthwise included), dilations, pads."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_dtype


def resolve_pads(auto_pad, in_sizes, kernel, strides, dilations, pads):
    """Explicit begin/end pads per spatial dim, auto_pad resolved as the ONNX spec says."""
    n = len(in_sizes)
    if auto_pad in ("NOTSET", "", None):
        pads = list(pads) if pads else [0] * (2 * n)
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad {auto_pad!r} not supported")
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin, end


@op("Conv")
def conv(outs, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    (Y,) = outs
    require_dtype(X, W, B, Y)
    spatial = len(X.shape) - 2
    if spatial < 1:
        raise Unsupported("Conv needs at least one spatial dimension")
    N, C, *in_sizes = X.shape
    M, Cg, *kernel = W.shape
    if kernel_shape is not None and list(kernel_shape) != kernel:
        raise Unsupported("kernel_shape differs from the weight's shape")
    strides = list(strides or [1] * spatial)
    dilations = list(dilations or [1] * spatial)
    begin, _ = resolve_pads(auto_pad, in_sizes, kernel, strides, dilations, pads)
    out_sizes = list(Y.shape[2:])
    if C != Cg * group or M % group:
        raise Unsupported("channels do not divide by group")
    macs = N * M * int(np.prod(out_sizes)) * Cg * int(np.prod(kernel))
    return Kernel(
        "conv", {"X": X, "W": W, **({"B": B} if B is not None else {})}, {"Y": Y},
        params=dict(N=N, C=C, M=M, G=group, Cg=Cg, Mg=M // group, I=in_sizes, O=out_sizes, K=kernel,
                    S=strides, D=dilations, P=begin, has_bias=B is not None),
        splat_ok=("W", "B"), macs=macs, epilogue_modes=("flat", "chan"),
        math="Y[n][m][o] = B[m] + sum_{c,k} X[n][g*Cg+c][o*S + k*D - P] * W[m][c][k]")
