"""Elementwise ops as data: each op is a C expression over its operands.

`@expression("Relu")` registers both the op's lowering (one loop nest with numpy broadcasting)
and its use as a step of a fused chain or of an anchor's epilogue: a fused layer is a list of
such steps evaluated into typed temporaries, `const float e0 = ...; const uint8_t e1 = ...;`, so
each value is computed once. Float scalar constants are printed as literals; other operands
(integer constants included, so that no comparison with a literal trips -Wtype-limits) are read
through broadcast strides, with adjacent dims that every operand walks alike merged into one.

Dtypes. An expression receives `Operand`s: C expressions that know their ONNX dtype (`.kind` is
f/i/u/b, `.T` the C storage type, `.C` the type the expression computes in, `.fn("exp")` the
math function for that type, `.lit(x)` a literal). float16 and bfloat16 are stored as their bits
(uint16_t) and computed in float: operands read them through kiln_h2f() / kiln_bf2f(), temporaries
store them through kiln_f2h() / kiln_f2bf().
Integer arithmetic wraps as numpy's does, through the unsigned type (signed overflow is undefined
in C); integer division and remainder never divide by zero or overflow.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable

import ml_dtypes
import numpy as np

from . import Kernel, Unsupported, broadcast_strides, c_float, is_splat, op
from ..ir import ACC, Node, Value

# numpy dtype -> (kind, the C type expressions compute in); storage types are emit.C_TYPES's
DTYPES = {
    "float16": ("f", "float"), "bfloat16": ("f", "float"), "float32": ("f", "float"), "float64": ("f", "double"),
    "int8": ("i", "int8_t"), "int16": ("i", "int16_t"), "int32": ("i", "int32_t"), "int64": ("i", "int64_t"),
    "uint8": ("u", "uint8_t"), "uint16": ("u", "uint16_t"), "uint32": ("u", "uint32_t"),
    "uint64": ("u", "uint64_t"), "bool": ("b", "uint8_t"),
    "float8_e4m3fn": ("f", "float"), "float8_e4m3fnuz": ("f", "float"), "float8_e5m2": ("f", "float"),
    "float8_e5m2fnuz": ("f", "float"), "float8_e8m0fnu": ("f", "float"), "float4_e2m1fn": ("f", "float"),
    "int4": ("i", "int8_t"), "uint4": ("u", "uint8_t"), "int2": ("i", "int8_t"), "uint2": ("u", "uint8_t"),
}
MATH_SUFFIX = {"float": "f", "double": ""}      # expf / exp: the one per-type table of math functions
# float functions Kiln computes itself (runtime_c/kiln_helpers.c: about 1 ulp, no branches, so a loop of
# them vectorises where libm's calls would not); fn(..., exact=True) keeps libm's (kiln_expf stops at
# exp(87), where the Exp op itself must overflow to inf)
FAST_FLOAT = {"exp": "kiln_expf", "tanh": "kiln_tanhf", "erf": "kiln_erff"}
# dtypes stored as bits, one byte or two per element: (read the value, store a value as the bits);
# {saturate} and {round_mode} are Cast's attributes (float8 only), the defaults everywhere else. The
# explicit (double)(x) keeps clang's -Wdouble-promotion quiet; the parentheses, -Wbad-function-cast.
STORED = {
    "float16": ("kiln_h2f({x})", "kiln_f2h((double)({x}))"), "bfloat16": ("kiln_bf2f({x})", "kiln_f2bf((double)({x}))"),
    "float8_e4m3fn": ("kiln_e4m3fn_to_f({x})", "kiln_f_to_e4m3fn((double)({x}), {saturate})"),
    "float8_e4m3fnuz": ("kiln_e4m3fnuz_to_f({x})", "kiln_f_to_e4m3fnuz((double)({x}), {saturate})"),
    "float8_e5m2": ("kiln_e5m2_to_f({x})", "kiln_f_to_e5m2((double)({x}), {saturate})"),
    "float8_e5m2fnuz": ("kiln_e5m2fnuz_to_f({x})", "kiln_f_to_e5m2fnuz((double)({x}), {saturate})"),
    "float8_e8m0fnu": ("kiln_e8m0_to_f({x})", "kiln_f_to_e8m0((float)({x}), {saturate}, {round_mode})"),
    "float4_e2m1fn": ("kiln_e2m1_to_f({x})", "kiln_f_to_e2m1((double)({x}))"),
    # int4 / int2 as ml_dtypes holds them: two's complement in the low bits, the rest zero
    "int4": ("(kiln_sext({x}, 4))", "(uint8_t)((uint64_t)({x}) & 15u)"),
    "uint4": ("{x}", "(uint8_t)((uint64_t)({x}) & 15u)"),
    "int2": ("(kiln_sext({x}, 2))", "(uint8_t)((uint64_t)({x}) & 3u)"),
    "uint2": ("{x}", "(uint8_t)((uint64_t)({x}) & 3u)"),
}
BOOL = np.dtype(bool)
F32 = np.dtype(np.float32)


def supported(dtype) -> bool:
    return dtype is not None and np.dtype(dtype).name in DTYPES


class Operand(str):
    """A side-effect-free C expression of a known ONNX dtype (f-strings print its text)."""

    def __new__(cls, text: str, dtype):
        self = super().__new__(cls, text)
        self.dtype = np.dtype(dtype)
        return self

    @property
    def kind(self) -> str:
        return DTYPES[self.dtype.name][0]

    @property
    def C(self) -> str:
        return DTYPES[self.dtype.name][1]

    @property
    def T(self) -> str:
        from ..emit import c_type          # emit imports ops: import it late
        return c_type(self.dtype)[0]

    @property
    def W(self) -> str:
        """The unsigned type integer arithmetic on this dtype wraps in."""
        return "uint64_t" if self.dtype.itemsize == 8 else "uint32_t"

    def fn(self, name: str, exact: bool = False) -> str:
        if self.C == "float" and name in FAST_FLOAT and not exact:
            return FAST_FLOAT[name]
        return name + MATH_SUFFIX[self.C]

    def lit(self, x) -> str:
        return literal(x, self.dtype)

    def attr(self, x) -> str:
        """A float attribute as a literal: ONNX stores it as float32, so a double op uses that value."""
        return literal(np.float32(x), self.dtype)


def literal(x, dtype) -> str:
    """A C literal of `x` in the type `dtype` computes in (float16: float)."""
    dtype = np.dtype(dtype)
    kind, ctype = DTYPES[dtype.name]
    if ctype == "float":
        return c_float(x)
    if ctype == "double":
        x = float(x)
        if np.isnan(x):
            return "NAN"
        if np.isinf(x):
            return "INFINITY" if x > 0 else "(-INFINITY)"
        text = repr(x)
        return f"({text})" if x < 0 else text
    x = int(x)
    if kind == "b":
        return str(int(bool(x)))
    info = ml_dtypes.iinfo(dtype)
    if x == info.min and kind == "i" and info.bits >= 8:      # int4 / int2: a plain number
        return f"INT{info.bits}_MIN"
    suffix = {"uint32": "u"}.get(dtype.name, "")
    text = f"{ctype.upper()[:-2]}_C({x})" if info.bits == 64 else f"{x}{suffix}"
    return f"({text})" if x < 0 else text


class Bits(str):
    """An expression that already gives the stored bits of its dtype: store() leaves it alone."""


def load(text: str, dtype) -> Operand:
    """Read a stored value (an array element or a temporary) as an operand."""
    convert = STORED.get(np.dtype(dtype).name)
    return Operand(convert[0].format(x=text) if convert else text, dtype)


ROUND_MODES = {"up": 0, "nearest": 1, "down": 2}     # kiln_f_to_e8m0's modes


def store(expr: str, dtype, saturate: int = 1, round_mode: str = "up") -> str:
    """An expression's value as stored in `dtype`."""
    convert = STORED.get(np.dtype(dtype).name)
    if not convert or isinstance(expr, Bits):
        return expr
    return convert[1].format(x=expr, saturate=int(bool(saturate)), round_mode=ROUND_MODES[round_mode])


def arith(op_: str, A: Operand, B: Operand) -> str:
    """A op B (+, -, *) in A's dtype: IEEE for floats, wrapping like numpy for integers."""
    if A.kind == "f" or A.T == A.W:
        return f"({A} {op_} {B})"
    return f"({A.T})(({A.W}){A} {op_} ({A.W}){B})"


# ---- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expression:
    fn: Callable                  # fn(*operands, **attrs) -> C expression
    kinds: tuple[str, ...]        # dtype kinds (f, i, u, b) each input may have; the last repeats
    out: Callable                 # (operands, attrs) -> output dtype
    fold: bool = False            # variadic, applied pairwise from the left through temporaries

    def __call__(self, *operands, **attrs):
        return self.fn(*operands, **attrs)


EXPRESSIONS: dict[str, Expression] = {}     # ONNX op -> its expression


def same_as_first(operands, attrs):
    return next(x for x in operands if x is not None).dtype


def expression(*names: str, kinds="f", out: Callable | np.dtype = same_as_first, fold: bool = False):
    """Register elementwise ops by their C expression. `kinds`: the dtype kinds the expression is
    written for (one string for every input, or one per input); `out`: the output dtype, or a
    function (operands, attrs) -> dtype; `fold`: a variadic op whose expression takes two operands
    (Max(a, b, c) = Max(Max(a, b), c)). Omitted optional inputs arrive as None."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    rule = out if callable(out) else (lambda operands, attrs, _d=np.dtype(out): _d)

    def register(fn):
        sig = inspect.signature(fn)
        for name in names:
            EXPRESSIONS[name] = Expression(fn, kinds, rule, fold)

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
    """A float constant with one distinct value is printed into the expression."""
    if supported(v.dtype) and DTYPES[np.dtype(v.dtype).name][0] == "f" and v.is_const \
            and (v.size == 1 or is_splat(v)):
        return literal(v.const.reshape(-1)[0], v.dtype)
    return None


def _typed(x) -> Operand:
    return x if isinstance(x, Operand) else Operand(x, F32)     # an untyped leaf is float32


def _chain(steps: list[Node], leaf) -> tuple[list[str], str, np.dtype]:
    names, lines = {}, []
    dtype = None
    for k, step in enumerate(steps):
        spec = EXPRESSIONS.get(step.op)
        if spec is None:
            raise Unsupported(f"{step.op} cannot be fused")
        operands = [None if not i else names.get(i) or _typed(leaf(i)) for i in step.inputs]
        for pos, x in enumerate(operands):
            if x is None:
                continue
            if not supported(x.dtype):
                raise Unsupported(f"{step.op}: dtype {x.dtype} is not supported")
            kinds = spec.kinds[min(pos, len(spec.kinds) - 1)]
            if x.kind not in kinds:
                raise Unsupported(f"{step.op}: dtype {x.dtype} of input {pos} is not supported")
        try:
            dtype = np.dtype(spec.out(operands, step.attrs))
            if not supported(dtype):
                raise Unsupported(f"{step.op}: output dtype {dtype} is not supported")
            ctype = Operand("", dtype).T
            if spec.fold:
                if not operands:
                    raise Unsupported(f"{step.op}: no inputs")
                acc = operands[0]
                for j, x in enumerate(operands[1:-1]):
                    lines.append(f"const {ctype} e{k}_{j} = {store(spec(acc, x, **step.attrs), dtype)};")
                    acc = load(f"e{k}_{j}", dtype)
                expr = spec(acc, operands[-1], **step.attrs) if len(operands) > 1 else acc
            else:
                expr = spec(*operands, **step.attrs)
        except TypeError as err:
            raise Unsupported(f"{step.op}: {err}") from None
        lines.append(f"const {ctype} e{k} = {store(expr, dtype)};")
        names[step.outputs[0]] = load(f"e{k}", dtype)
    return lines, f"e{len(steps) - 1}", dtype


def chain_code(steps: list[Node], leaf) -> tuple[list[str], str]:
    """Steps (in order) -> C statements into temporaries e0, e1, ... and the last one's name.
    `leaf(name)` gives the Operand that reads a value produced outside the chain (a plain string
    is taken as float32)."""
    lines, result, _ = _chain(steps, leaf)
    return lines, result


def _uses(lines: list[str], arg: str) -> bool:
    return any(re.search(rf"\b{arg}\[", line) for line in lines)


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


def _require_supported(*values: Value) -> None:
    for v in values:
        if not supported(v.dtype):
            raise Unsupported(f"dtype {v.dtype} of {v.name!r} is not supported")


def elementwise(Y: Value, steps: list[Node], inputs: list[Value]) -> Kernel:
    """Y = steps(inputs...) in one loop nest, numpy broadcasting."""
    values = {v.name: v for v in inputs}
    _require_supported(Y, *values.values())
    literals = {n: Operand(lit, v.dtype) for n, v in values.items() if (lit := scalar_literal(v)) is not None}
    arrays = [v for n, v in values.items() if n not in literals]
    # a first pass finds the arrays the code reads (CastLike reads only its second input's dtype)
    probe = {v.name: load(f"X{k}[0]", v.dtype) for k, v in enumerate(arrays)}
    lines, _, _ = _chain(steps, lambda n: literals.get(n) or probe[n])
    args = {f"X{k}": v for k, v in enumerate(a for i, a in enumerate(arrays) if _uses(lines, f"X{i}"))}
    for v in args.values():
        if len(v.shape) > len(Y.shape) or any(d not in (1, o) for d, o in zip(v.shape[::-1], Y.shape[::-1])):
            raise Unsupported(f"{v.name!r} {list(v.shape)} does not broadcast to the output {list(Y.shape)}")
    dims, strides = _coalesce(Y.shape, [broadcast_strides(v, Y.shape) for v in args.values()])
    reads = {}
    for (name, v), s in zip(args.items(), strides):
        index = " + ".join(f"i{d} * {st}" if st != 1 else f"i{d}" for d, st in enumerate(s) if st)
        reads[v.name] = load(f"{name}[{index or '0'}]", v.dtype)
    lines, result, dtype = _chain(steps, lambda n: literals.get(n) or reads.get(n) or Operand("", values[n].dtype))
    if dtype != np.dtype(Y.dtype):
        raise Unsupported(f"the expression gives {dtype}, the graph says {np.dtype(Y.dtype)}")
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
    The steps read the anchor's value as ACC; the chain may compute in other dtypes on the way,
    but must end in the anchor's dtype."""
    if kernel.epilogue_modes is None:
        raise Unsupported(f"the {kernel.template} kernel takes no epilogue")
    (out_arg, anchor_out), = kernel.outputs.items()
    produced = {s.outputs[0] for s in steps} | {ACC}
    final = values[steps[-1].outputs[0]]
    if np.dtype(final.dtype) != np.dtype(anchor_out.dtype):
        raise Unsupported(f"the epilogue changes the dtype from {anchor_out.dtype} to {final.dtype}")
    if tuple(final.shape) != tuple(anchor_out.shape):
        raise Unsupported("the epilogue changes the shape")
    leaves, operands = {ACC: Operand("{acc}", anchor_out.dtype)}, {}
    for step in steps:
        for name in step.inputs:
            if not name or name in produced or name in leaves:
                continue
            v = values[name]
            _require_supported(v)
            mode = operand_mode(v, final.shape, "chan" in kernel.epilogue_modes)
            if mode is None:
                raise Unsupported(f"operand {name!r} of {step.op} cannot be read in the epilogue")
            if mode == "scalar":
                leaves[name] = Operand(scalar_literal(v), v.dtype)
            else:
                arg = f"E{len(operands)}"
                operands[arg] = v
                leaves[name] = load(f"{arg}[{{{mode}}}]", v.dtype)
    lines, result, dtype = _chain(steps, leaves.__getitem__)
    if dtype != np.dtype(final.dtype):
        raise Unsupported(f"the epilogue gives {dtype}, the graph says {np.dtype(final.dtype)}")
    kernel.inputs.update({arg: v for arg, v in operands.items() if _uses(lines, arg)})
    kernel.outputs[out_arg] = final
    kernel.params["epilogue"] = Epilogue(lines, result)
    kernel.inplace = ()
    kernel.math += "; then " + " -> ".join(s.op for s in steps)
    return kernel


# ---- the ops ---------------------------------------------------------------------------------------

@expression("Relu", kinds="fi")
def relu(X):
    return f"({X} < {X.lit(0)} ? {X.lit(0)} : {X})"     # NaN stays NaN


@expression("LeakyRelu")
def leaky_relu(X, *, alpha=0.01):
    return f"({X} >= {X.lit(0)} ? {X} : {X.attr(alpha)} * {X})"


@expression("Sigmoid")
def sigmoid(X):
    return f"({X.lit(1)} / ({X.lit(1)} + {X.fn('exp')}(-{X})))"


@expression("Tanh")
def tanh(X):
    return f"{X.fn('tanh')}({X})"


def _clamp01(X, v: str) -> str:
    """v clamped to [0, 1], NaN staying NaN (fmin/fmax would drop it)."""
    return f"({v} < {X.lit(0)} ? {X.lit(0)} : {v} > {X.lit(1)} ? {X.lit(1)} : {v})"


@expression("HardSigmoid")
def hard_sigmoid(X, *, alpha=0.2, beta=0.5):
    return _clamp01(X, f"({X.attr(alpha)} * {X} + {X.attr(beta)})")


@expression("HardSwish")
def hard_swish(X):
    return f"({X} * {_clamp01(X, f'({X.attr(1 / 6)} * {X} + {X.lit(0.5)})')})"


@expression("Clip", kinds="fiu")
def clip(X, min=None, max=None):
    """An omitted bound is the type's lowest / largest value, as the spec says (a float clips
    infinities to the finite range, as onnxruntime does). NaN in X or in a bound gives NaN."""
    if X.kind != "f":          # an omitted integer bound clips nothing
        lo = f"({X} < {min} ? {min} : {X})" if min is not None else X
        return f"({lo} > {max} ? {max} : {lo})" if max is not None else lo
    info = ml_dtypes.finfo(X.dtype)
    min = X.lit(info.min) if min is None else f"{min}"
    max = X.lit(info.max) if max is None else f"{max}"
    lo = f"({X} < {min} || isnan({min}) ? {min} : {X})"
    return f"({lo} > {max} || isnan({max}) ? {max} : {lo})"     # last: min > max gives max, as the spec says


@expression("Add", kinds="fiu")
def add(A, B):
    return arith("+", A, B)


@expression("Sub", kinds="fiu")
def sub(A, B):
    return arith("-", A, B)


@expression("Mul", kinds="fiu")
def mul(A, B):
    return arith("*", A, B)


@expression("Div", kinds="fiu")
def div(A, B):
    """Integers truncate toward zero (as C and onnxruntime); x / 0 gives 0, INT_MIN / -1 wraps."""
    if A.kind == "f":
        return f"({A} / {B})"
    if A.kind == "u":
        return f"({B} == {B.lit(0)} ? {A.lit(0)} : {A} / {B})"
    return f"({B} == 0 ? {A.lit(0)} : {B} == -1 ? ({A.T})-({A.W}){A} : {A} / {B})"


@expression("Sum", fold=True)
def sum_(*data_0):
    A, B = data_0
    return f"({A} + {B})"


@expression("Max", kinds="fiu", fold=True)
def max_(*data_0):
    """NaN propagates, as numpy's maximum."""
    A, B = data_0
    return f"({A} > {B} || isnan({A}) ? {A} : {B})" if A.kind == "f" else f"({A} > {B} ? {A} : {B})"


@expression("Min", kinds="fiu", fold=True)
def min_(*data_0):
    A, B = data_0
    return f"({A} < {B} || isnan({A}) ? {A} : {B})" if A.kind == "f" else f"({A} < {B} ? {A} : {B})"


# ---- identity-like ----------------------------------------------------------------------------------

@op("Identity", "Dropout")
def identity(outs, X, ratio=None, training_mode=None, *, seed=None):
    """Dropout drops nothing in inference, nor in training with a ratio of 0: its mask is all true."""
    if training_mode is not None and (not training_mode.is_const or bool(training_mode.const)) and not (
            ratio is not None and ratio.is_const and float(ratio.const) == 0):
        raise Unsupported("Dropout in training mode is not supported")
    Y, mask = (outs + [None])[:2]
    if mask is not None:
        return Kernel("dropout", {"X": X}, {"Y": Y, "M": mask}, params=dict(nbytes=Y.nbytes, n=mask.size),
                      math="Y = X; mask = true")
    return Kernel("copy", {"X": X}, {"Y": Y}, params=dict(nbytes=Y.nbytes), alias=True, math="Y = X")
