"""ConvTranspose (any number of spatial dims): pads, auto_pad, output_shape, output_padding, strides,
dilations, groups. Each input element is scattered through the kernel into the output."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_dtype
from .conv import window
from .layout import contiguous_strides


def _begin_pads(auto_pad, in_sizes, out_sizes, kernel, strides, dilations, output_padding, pads, output_shape):
    """Pads before each spatial dim, as the ONNX reference computes them."""
    n = len(in_sizes)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and pads is None:
        target = list(output_shape)[-n:] if output_shape is not None else [i * s for i, s in zip(in_sizes, strides)]
        begin = []
        for i, s, k, d, op_, o in zip(in_sizes, strides, kernel, dilations, output_padding, target):
            total = s * (i - 1) + op_ + (k - 1) * d + 1 - o
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        return begin
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", "", None):
        raise Unsupported(f"auto_pad {auto_pad!r} not supported")
    if auto_pad == "VALID" or pads is None:
        return [0] * n
    return list(pads[:n])


@op("ConvTranspose")
def conv_transpose(outs, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                   output_padding=None, output_shape=None, pads=None, strides=None):
    (Y,) = outs
    require_dtype(X, W, B, Y)
    spatial, kernel, strides, dilations = window("ConvTranspose", X, W, kernel_shape, strides, dilations)
    N, C, *in_sizes = X.shape
    Cw, Mg = W.shape[:2]
    if group < 1 or C != Cw or C % group:
        raise Unsupported("channels do not divide by group")
    M = Mg * group
    output_padding = list(output_padding or [0] * spatial)
    out_sizes = list(Y.shape[2:])
    if tuple(Y.shape[:2]) != (N, M) or len(out_sizes) != spatial:
        raise Unsupported(f"output shape {Y.shape} does not match the weights")
    begin = _begin_pads(auto_pad, in_sizes, out_sizes, kernel, strides, dilations, output_padding, pads,
                        output_shape)
    if X.size == 0 or Y.size == 0 or 0 in kernel:
        raise Unsupported("an empty tensor")
    macs = N * C * Mg * int(np.prod(in_sizes)) * int(np.prod(kernel))
    return Kernel(
        "convtranspose", {"X": X, "W": W, **({"B": B} if B is not None else {})}, {"Y": Y},
        params=dict(N=N, C=C, M=M, G=group, Cg=C // group, Mg=Mg, I=in_sizes, O=out_sizes, K=kernel,
                    S=strides, D=dilations, P=begin, has_bias=B is not None, KS=contiguous_strides(kernel),
                    IS=contiguous_strides(in_sizes), OS=contiguous_strides(out_sizes)),
        splat_ok=("W", "B"), macs=macs,
        math="Y[n][m][i*S + k*D - P] += X[n][c][i] * W[c][m - g*Mg][k]  (c in group g), Y = B[m] to start")
