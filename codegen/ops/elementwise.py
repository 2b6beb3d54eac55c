"""Elementwise ops as data: each op is a C expression over its operands.

`@expression("Relu")` registers both the op's lowering (one loop nest with numpy broadcasting)
and its use as a step of a fused chain or of an anchor's epilogue: a fused layer is a list of
such steps evaluated into temporaries, `const float e0 = ...; const float e1 = ...;`, so each
value is computed once. Scalar constants are printed as literals; other operands are read
through broadcast strides, with adjacent dims that every operand walks alike merged into one.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from . import Kernel, Unsupported, broadcast_strides, c_float, is_splat, op, require_dtype
from ..ir import ACC, Node, Value

EXPRESSIONS: dict[str, callable] = {}     # ONNX op -> fn(*operand C exprs, **attrs) -> C expr


def expression(*names: str):
    """Register elementwise ops by their C expression (float32 operands, None for omitted inputs)."""
    def register(fn):
        sig = inspect.signature(fn)
        for name in names:
            EXPRESSIONS[name] = fn

            def lower(outs, *inputs, _name=name, **attrs):
                (Y,) = outs
                step = Node(_name, _name, [v.name if v is not None else "" for v in inputs], [Y.name], attrs)
                return elementwise(Y, [step], [v for v in inputs if v is not None])
            lower.__signature__ = sig.replace(parameters=[inspect.Parameter("outs", inspect.Parameter.POSITIONAL_ONLY),
                                                          *sig.parameters.values()])
            op(name)(lower)
        return fn
    return register


def scalar_literal(v: Value) -> str | None:
    """A constant with one distinct value is printed into the expression."""
    if v.is_const and (v.size == 1 or is_splat(v)):
        return c_float(v.const.reshape(-1)[0])
    return None


def chain_code(steps: list[Node], leaf) -> tuple[list[str], str]:
    """Steps (in order) -> C statements into temporaries e0, e1, ... and the last one's name.
    `leaf(name)` gives the C expression that reads a value produced outside the chain."""
    names, lines = {}, []
    for k, step in enumerate(steps):
        fn = EXPRESSIONS.get(step.op)
        if fn is None:
            raise Unsupported(f"{step.op} cannot be fused")
        operands = [None if not i else names.get(i) or leaf(i) for i in step.inputs]
        try:
            expr = fn(*operands, **step.attrs)
        except TypeError as err:
            raise Unsupported(f"{step.op}: {err}") from None
        lines.append(f"const float e{k} = {expr};")
        names[step.outputs[0]] = f"e{k}"
    return lines, f"e{len(steps) - 1}"


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


def elementwise(Y: Value, steps: list[Node], inputs: list[Value]) -> Kernel:
    """Y = steps(inputs...) in one loop nest, numpy broadcasting."""
    require_dtype(Y, *inputs)
    args, literals = {}, {}
    for v in {v.name: v for v in inputs}.values():
        lit = scalar_literal(v)
        if lit is not None:
            literals[v.name] = lit
        else:
            args[f"X{len(args)}"] = v
    dims, strides = _coalesce(Y.shape, [broadcast_strides(v, Y.shape) for v in args.values()])
    reads = {}
    for (name, v), s in zip(args.items(), strides):
        index = " + ".join(f"i{d} * {st}" if st != 1 else f"i{d}" for d, st in enumerate(s) if st)
        reads[v.name] = f"{name}[{index or '0'}]"
    lines, result = chain_code(steps, lambda n: literals.get(n) or reads[n])
    inplace = tuple(n for n, v in args.items() if v.shape == Y.shape and np.dtype(v.dtype) == np.dtype(Y.dtype))
    math = " -> ".join(s.op for s in steps)
    return Kernel("elementwise", args, {"Y": Y}, params=dict(dims=dims, lines=lines, result=result),
                  splat_ok=tuple(args), inplace=inplace, math=f"Y = {math} (elementwise)")


@op("Fused")
def fused(outs, *inputs, body):
    """A chain of elementwise ops merged by the fusion pass: one loop, no intermediate tensors."""
    return elementwise(outs[0], body, list(inputs))


# ---- epilogues: elementwise steps applied in an anchor's store ----------------------------------

@dataclass
class Epilogue:
    """C statements that turn the anchor's value into the layer's output value. Operands are read
    at `{flat}` (the output's flat index: same-shape tensors) or `{chan}` (the index along axis 1:
    per-channel constants); the template fills both in."""
    lines: list[str]
    result: str

    def apply(self, var: str, flat: str = "", chan: str = "") -> str:
        code = " ".join(self.lines).replace("{acc}", var).replace("{flat}", flat).replace("{chan}", chan)
        return f"{{ {code} {var} = {self.result}; }}"


def operand_mode(v: Value, out_shape: tuple[int, ...], chan_ok: bool) -> str | None:
    """How an epilogue reads an operand: 'scalar', 'flat', 'chan', or None (cannot fuse)."""
    if scalar_literal(v) is not None:
        return "scalar"
    if tuple(v.shape) == tuple(out_shape):
        return "flat"
    shape = (1,) * (len(out_shape) - len(v.shape)) + tuple(v.shape)
    if chan_ok and len(out_shape) >= 2 and all(d == 1 for i, d in enumerate(shape) if i != 1) \
            and shape[1] == out_shape[1] and not is_splat(v):
        return "chan"
    return None


def attach_epilogue(kernel: Kernel, steps: list[Node], values: dict[str, Value]) -> Kernel:
    """Give an anchor kernel an epilogue: extra operands as inputs, the chain's output as Y.
    The steps read the anchor's value as ACC."""
    if kernel.epilogue_modes is None:
        raise Unsupported(f"the {kernel.template} kernel takes no epilogue")
    (out_arg, anchor_out), = kernel.outputs.items()
    produced = {s.outputs[0] for s in steps} | {ACC}
    final = values[steps[-1].outputs[0]]
    leaves = {}
    for step in steps:
        for name in step.inputs:
            if not name or name in produced or name in leaves:
                continue
            v = values[name]
            require_dtype(v)
            mode = operand_mode(v, final.shape, "chan" in kernel.epilogue_modes)
            if mode is None:
                raise Unsupported(f"operand {name!r} of {step.op} cannot be read in the epilogue")
            if mode == "scalar":
                leaves[name] = scalar_literal(v)
            else:
                arg = f"E{len(leaves)}"
                kernel.inputs[arg] = v
                leaves[name] = f"{arg}[{{{mode}}}]"
    if tuple(final.shape) != tuple(anchor_out.shape):
        raise Unsupported("the epilogue changes the shape")
    lines, result = chain_code(steps, lambda n: "{acc}" if n == ACC else leaves[n])
    kernel.outputs[out_arg] = final
    kernel.params["epilogue"] = Epilogue(lines, result)
    kernel.inplace = ()
    kernel.math += "; then " + " -> ".join(s.op for s in steps)
    return kernel


# ---- the ops ---------------------------------------------------------------------------------------

@expression("Relu")
def relu(X):
    return f"({X} > 0.0f ? {X} : 0.0f)"


@expression("LeakyRelu")
def leaky_relu(X, *, alpha=0.01):
    return f"({X} >= 0.0f ? {X} : {c_float(alpha)} * {X})"


@expression("Sigmoid")
def sigmoid(X):
    return f"(1.0f / (1.0f + expf(-{X})))"


@expression("Tanh")
def tanh(X):
    return f"tanhf({X})"


@expression("HardSigmoid")
def hard_sigmoid(X, *, alpha=0.2, beta=0.5):
    return f"fmaxf(0.0f, fminf(1.0f, {c_float(alpha)} * {X} + {c_float(beta)}))"


@expression("HardSwish")
def hard_swish(X):
    return f"({X} * fmaxf(0.0f, fminf(1.0f, {X} * (1.0f / 6.0f) + 0.5f)))"


@expression("Clip")
def clip(X, min=None, max=None):
    if min is not None:
        X = f"({X} < {min} ? {min} : {X})"
    if max is not None:        # applied last, so that min > max gives max, as the spec says
        X = f"({X} > {max} ? {max} : {X})"
    return X


@expression("Add")
def add(A, B):
    return f"({A} + {B})"


@expression("Sub")
def sub(A, B):
    return f"({A} - {B})"


@expression("Mul")
def mul(A, B):
    return f"({A} * {B})"


@expression("Div")
def div(A, B):
    return f"({A} / {B})"


def _fold(combine, operands):
    if not operands:
        raise Unsupported("no inputs")
    expr = operands[0]
    for x in operands[1:]:
        expr = combine(expr, x)
    return expr


@expression("Sum")
def sum_(*data_0):
    return _fold(lambda a, b: f"({a} + {b})", data_0)


@expression("Max")
def max_(*data_0):
    return _fold(lambda a, b: f"fmaxf({a}, {b})", data_0)


@expression("Min")
def min_(*data_0):
    return _fold(lambda a, b: f"fminf({a}, {b})", data_0)


# ---- identity-like ----------------------------------------------------------------------------------

@op("Identity", "Dropout")
def identity(outs, X, ratio=None, training_mode=None, *, seed=None):
    if len(outs) > 1 and outs[1] is not None:
        raise Unsupported("the Dropout mask output is not supported (inference only)")
    if training_mode is not None and (not training_mode.is_const or bool(training_mode.const)):
        raise Unsupported("Dropout in training mode is not supported")
    (Y,) = outs[:1]
    return Kernel("copy", {"X": X}, {"Y": Y}, params=dict(nbytes=Y.nbytes), alias=True, math="Y = X")
