"""Elementwise maths as C expressions: math.h functions, activations, Pow, Mod, PRelu.

Each op is one expression over typed operands (see elementwise.py); a float function's name
comes from the one per-type table there (`X.fn("exp")` is expf for float, exp for double).
"""
from __future__ import annotations

import numpy as np

from . import Unsupported
from .elementwise import BOOL, Operand, arith, expression

# ONNX op -> the math.h function it is (float types only); Round is half to even, as nearbyint
# in the default rounding mode
FUNCTIONS = {
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
    "Round": "nearbyint", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos",
    "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
}


def _function(name):
    def call(X):
        return f"{X.fn(name, exact=name == 'exp')}({X})"     # Exp overflows to inf as libm's does
    return call


for _op, _name in FUNCTIONS.items():
    expression(_op)(_function(_name))


@expression("Abs", kinds="fiu")
def abs_(X):
    if X.kind == "f":
        return f"{X.fn('fabs')}({X})"
    return f"({X} < 0 ? ({X.T})-({X.W}){X} : {X})" if X.kind == "i" else str(X)


@expression("Neg", kinds="fi")
def neg(X):
    return f"(-{X})" if X.kind == "f" else f"({X.T})-({X.W}){X}"


@expression("Reciprocal")
def reciprocal(X):
    return f"({X.lit(1)} / {X})"


@expression("Sign", kinds="fiu")
def sign(X):
    if X.kind == "f":      # NaN stays NaN
        return f"({X} > 0 ? {X.lit(1)} : {X} < 0 ? {X.lit(-1)} : {X})"
    return f"(({X} > 0) - ({X} < 0))" if X.kind == "i" else f"({X} > 0)"


@expression("Pow", kinds=("fi", "fiu"))
def pow_(X, Y):
    """Computed in numpy's promoted type (float ** int32 in double); integer ** integer exactly,
    wrapping as numpy; a negative integer exponent gives the truncated real result."""
    if X.kind == "f":
        wide = "float64" in (X.dtype.name, Y.dtype.name) or (Y.kind in "iu" and Y.dtype.itemsize >= 4)
        return f"{'pow' if wide else X.fn('pow')}({X}, {Y})"
    if Y.kind == "f":
        return f"kiln_sat_{X.dtype.name}(pow((double){X}, (double){Y}))"
    power = f"({X.T})kiln_ipow((uint64_t){X}, (uint64_t){Y})"
    if Y.kind == "u":
        return power
    return f"({Y} < 0 ? ({X} == 1 ? 1 : {X} == -1 ? 1 - 2 * ({Y} & 1) : 0) : {power})"


@expression("Mod", kinds="fiu")
def mod(A, B, *, fmod=0):
    """fmod=1: the remainder has the dividend's sign (C's fmod and %); fmod=0: the divisor's
    (numpy's mod). An integer x mod 0 gives 0, as numpy."""
    if A.kind == "f":
        r = f"{A.fn('fmod')}({A}, {B})"
        if fmod:
            return r
        return f"({r} != 0 ? (({r} < 0) != ({B} < 0) ? {r} + {B} : {r}) : {A.fn('copysign')}({A.lit(0)}, {B}))"
    if A.kind == "u":
        return f"({B} == 0 ? {A.lit(0)} : {A} % {B})"
    r = f"{A} % {B}"
    if fmod:
        return f"({B} == 0 || {B} == -1 ? 0 : {r})"
    return f"({B} == 0 || {B} == -1 ? 0 : {r} != 0 && ({r} < 0) != ({B} < 0) ? {r} + {B} : {r})"


# ---- activations -----------------------------------------------------------------------------------

@expression("Elu")
def elu(X, *, alpha=1.0):
    return f"({X} > 0 ? {X} : {X.attr(alpha)} * {X.fn('expm1')}({X}))"


@expression("Celu")
def celu(X, *, alpha=1.0):
    return f"({X} > 0 ? {X} : {X.attr(alpha)} * {X.fn('expm1')}({X} / {X.attr(alpha)}))"


@expression("Selu")
def selu(X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    a = X.attr(alpha)
    return f"({X.attr(gamma)} * ({X} > 0 ? {X} : {a} * {X.fn('exp')}({X}) - {a}))"


def _softplus(X) -> str:
    """log(1 + exp(x)), without overflow for large x."""
    return f"({X} > 0 ? {X} + {X.fn('log1p')}({X.fn('exp')}(-{X})) : {X.fn('log1p')}({X.fn('exp')}({X})))"


@expression("Softplus")
def softplus(X):
    return _softplus(X)


@expression("Mish")
def mish(X):
    return f"({X} * {X.fn('tanh')}{_softplus(X)})"


@expression("Softsign")
def softsign(X):
    return f"({X} / ({X.lit(1)} + {X.fn('fabs')}({X})))"


@expression("ThresholdedRelu")
def thresholded_relu(X, *, alpha=1.0):
    return f"({X} > {X.attr(alpha)} ? {X} : {X.lit(0)})"


@expression("Swish")
def swish(X, *, alpha=1.0):
    return f"({X} * ({X.lit(1)} / ({X.lit(1)} + {X.fn('exp')}({X.attr(-alpha)} * {X}))))"


@expression("SwiGLU")
def swiglu(A, B, *, alpha=1.0):
    """Swish_alpha(A) * B."""
    return f"({swish(A, alpha=alpha)} * {B})"


@expression("PRelu", kinds="fiu")
def prelu(X, slope):
    if X.kind == "u":          # never negative: the slope is never read
        return str(X)
    return f"({X} < 0 ? {arith('*', slope, X)} : {X})"


@expression("Gelu")
def gelu(X, *, approximate="none"):
    if approximate == "none":   # x/2 (1 + erf(x / sqrt 2))
        return f"({X.lit(0.5)} * {X} * ({X.lit(1)} + {X.fn('erf')}({X} * {X.lit(0.7071067811865476)})))"
    if approximate == "tanh":   # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = f"{X.lit(0.7978845608028654)} * ({X} + {X.lit(0.044715)} * {X} * {X} * {X})"
        return f"({X.lit(0.5)} * {X} * ({X.lit(1)} + {X.fn('tanh')}({inner})))"
    raise Unsupported(f"Gelu approximate={approximate!r} is not supported (only 'none' and 'tanh')")


@expression("Shrink", kinds="fiu")
def shrink(X, *, bias=0.0, lambd=0.5):
    """Integers compute in double and convert back (saturating), as numpy's reference does."""
    x, back = (X, "") if X.kind == "f" else (Operand(f"(double){X}", np.float64), f"kiln_sat_{X.dtype.name}")
    return (f"({x} < {x.attr(-lambd)} ? {back}({x} + {x.attr(bias)}) : "
            f"{x} > {x.attr(lambd)} ? {back}({x} - {x.attr(bias)}) : {X.lit(0)})")


@expression("IsNaN", out=BOOL)
def is_nan(X):
    return f"(isnan({X}) != 0)"


@expression("IsInf", out=BOOL)
def is_inf(X, *, detect_negative=1, detect_positive=1):
    tests = [f"{X} == INFINITY"] * bool(detect_positive) + [f"{X} == -INFINITY"] * bool(detect_negative)
    return f"({' || '.join(tests)})" if tests else "0"
