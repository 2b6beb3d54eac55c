"""Comparisons, boolean logic, Where and bitwise ops as C expressions (booleans are uint8_t 0/1)."""
from __future__ import annotations

from .elementwise import BOOL, expression

COMPARISONS = {"Equal": "==", "Less": "<", "LessOrEqual": "<=", "Greater": ">", "GreaterOrEqual": ">="}
LOGIC = {"And": "&&", "Or": "||", "Xor": "!="}
BITWISE = {"BitwiseAnd": "&", "BitwiseOr": "|", "BitwiseXor": "^"}


def _binary(c_op, cast=False):
    def compute(A, B):
        return f"({A.T})({A} {c_op} {B})" if cast else f"({A} {c_op} {B})"
    return compute


for _op, _c in COMPARISONS.items():
    expression(_op, kinds="fiub" if _op == "Equal" else "fiu", out=BOOL)(_binary(_c))
for _op, _c in LOGIC.items():
    expression(_op, kinds="b")(_binary(_c))
for _op, _c in BITWISE.items():
    expression(_op, kinds="iu")(_binary(_c, cast=True))


@expression("Not", kinds="b")
def not_(X):
    return f"(!{X})"


@expression("BitwiseNot", kinds="iu")
def bitwise_not(X):
    return f"({X.T})~{X}"


@expression("Where", kinds=("b", "fiub"), out=lambda operands, attrs: operands[1].dtype)
def where(condition, X, Y):
    return f"({condition} ? {X} : {Y})"


@expression("BitShift", kinds="iu")
def bit_shift(X, Y, *, direction):
    """A shift by a negative amount or by the width or more gives 0 (left), or what shifting the
    sign out gives (right: 0 or -1); a right shift of a negative value is arithmetic."""
    bits = 8 * X.dtype.itemsize
    out_of_range = f"{Y} < 0 || {Y} >= {bits}" if X.kind == "i" else f"{Y} >= {bits}"
    if direction == "LEFT":
        return f"({out_of_range} ? 0 : ({X.T})(({X.W}){X} << {Y}))"
    if direction != "RIGHT":
        raise ValueError(direction)
    if X.kind == "u":
        return f"({out_of_range} ? 0 : {X} >> {Y})"
    shift = f"({out_of_range} ? {bits - 1} : {Y})"
    return f"({X} < 0 ? ~(~{X} >> {shift}) : {X} >> {shift})"
