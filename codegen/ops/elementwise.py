"""Elementwise ops: one loop nest, numpy broadcasting, the maths as a C expression.

Each op is a C expression over its inputs {0}, {1}, ...; scalar constants are
printed into the expression as literals, other inputs are read through
broadcast strides. Adjacent dimensions that every input walks the same way are
merged, so same-shape operands become one flat loop.
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, broadcast_strides, c_float, is_splat, op, require_const, require_dtype


def _coalesce(shape, strides_per_input):
    """Merge dim i into dim i-1 where every input's stride is contiguous across the pair."""
    dims = list(shape)
    strides = [list(s) for s in strides_per_input]
    i = len(dims) - 1
    while i > 0:
        if all(s[i - 1] == s[i] * dims[i] for s in strides):
            dims[i - 1] *= dims[i]
            for s in strides:
                s[i - 1] = s[i]
                del s[i]
            del dims[i]
        i -= 1
    return dims, strides


def elementwise(outs, inputs, expr: str, math: str) -> Kernel:
    """Y = expr(inputs...) with numpy broadcasting."""
    (Y,) = outs
    require_dtype(Y, *inputs)
    operands, args = [], {}   # each operand: a C literal, or (C name, broadcast strides)
    for v in inputs:
        if v.is_const and (v.size == 1 or is_splat(v)):
            operands.append(c_float(v.const.reshape(-1)[0]))
        else:
            name = f"X{len(args)}" if len(inputs) > 1 else "X"
            args[name] = v
            operands.append((name, broadcast_strides(v, Y.shape)))
    arrays = [o for o in operands if isinstance(o, tuple)]
    dims, strides = _coalesce(Y.shape, [s for _, s in arrays])
    strides = dict(zip((name for name, _ in arrays), strides))

    def read(operand):
        if isinstance(operand, str):
            return operand
        name = operand[0]
        index = " + ".join(f"i{d} * {st}" if st != 1 else f"i{d}" for d, st in enumerate(strides[name]) if st)
        return f"{name}[{index or '0'}]"
    reads = [read(o) for o in operands]
    body = expr.format(*reads)
    inplace = tuple(n for n, v in args.items() if v.shape == Y.shape and np.dtype(v.dtype) == np.dtype(Y.dtype))
    return Kernel("elementwise", args, {"Y": Y}, params=dict(dims=dims, expr=body),
                  splat_ok=tuple(args), inplace=inplace, math=f"Y = {math}")


def unary(outs, X, expr: str, math: str) -> Kernel:
    return elementwise(outs, [X], expr, math)


# ---- unary ---------------------------------------------------------------------------------------

@op("Relu")
def relu(outs, X):
    return unary(outs, X, "({0} > 0.0f ? {0} : 0.0f)", "max(X, 0)")


@op("LeakyRelu")
def leaky_relu(outs, X, *, alpha=0.01):
    return unary(outs, X, f"({{0}} >= 0.0f ? {{0}} : {c_float(alpha)} * {{0}})", f"X >= 0 ? X : {alpha} * X")


@op("Sigmoid")
def sigmoid(outs, X):
    return unary(outs, X, "(1.0f / (1.0f + expf(-{0})))", "1 / (1 + exp(-X))")


@op("Tanh")
def tanh(outs, X):
    return unary(outs, X, "tanhf({0})", "tanh(X)")


@op("HardSigmoid")
def hard_sigmoid(outs, X, *, alpha=0.2, beta=0.5):
    return unary(outs, X, f"fmaxf(0.0f, fminf(1.0f, {c_float(alpha)} * {{0}} + {c_float(beta)}))",
                 f"max(0, min(1, {alpha} * X + {beta}))")


@op("HardSwish")
def hard_swish(outs, X):
    return unary(outs, X, "({0} * fmaxf(0.0f, fminf(1.0f, {0} * (1.0f / 6.0f) + 0.5f)))",
                 "X * max(0, min(1, X / 6 + 0.5))")


@op("Clip")
def clip(outs, X, min=None, max=None):
    bounds = [v for v in (min, max) if v is not None]
    expr, k = "{0}", 1
    if min is not None:
        expr, k = f"({expr} < {{{k}}} ? {{{k}}} : {expr})", k + 1
    if max is not None:        # applied last, so that min > max gives max, as the spec says
        expr = f"({expr} > {{{k}}} ? {{{k}}} : {expr})"
    return elementwise(outs, [X, *bounds], expr, "min(max(X, min), max)")


@op("Identity", "Dropout")
def identity(outs, X, ratio=None, training_mode=None, *, seed=None):
    if len(outs) > 1 and outs[1] is not None:
        raise Unsupported("the Dropout mask output is not supported (inference only)")
    if training_mode is not None and (not training_mode.is_const or bool(training_mode.const)):
        raise Unsupported("Dropout in training mode is not supported")
    (Y,) = outs[:1]
    return Kernel("copy", {"X": X}, {"Y": Y}, params=dict(nbytes=Y.nbytes), alias=True, math="Y = X")


# ---- binary and variadic -------------------------------------------------------------------------

_BINARY = {"Add": ("({0} + {1})", "A + B"), "Sub": ("({0} - {1})", "A - B"),
           "Mul": ("({0} * {1})", "A * B"), "Div": ("({0} / {1})", "A / B")}


def _binary(name):
    expr, math = _BINARY[name]

    def lower(outs, A, B):
        return elementwise(outs, [A, B], expr, math)
    lower.__name__ = name.lower()
    return lower


for _name in _BINARY:
    op(_name)(_binary(_name))


def _variadic(outs, inputs, combine: str, math: str) -> Kernel:
    if not inputs:
        raise Unsupported("no inputs")
    expr = "{0}"
    for i in range(1, len(inputs)):
        expr = combine.format(expr, f"{{{i}}}")
    return elementwise(outs, list(inputs), expr, math)


@op("Sum")
def sum_(outs, *data_0):
    return _variadic(outs, data_0, "{} + {}", "X0 + X1 + ...")


@op("Max")
def max_(outs, *data_0):
    return _variadic(outs, data_0, "fmaxf({}, {})", "max(X0, X1, ...)")


@op("Min")
def min_(outs, *data_0):
    return _variadic(outs, data_0, "fminf({}, {})", "min(X0, X1, ...)")
