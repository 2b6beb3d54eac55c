"""Cast and CastLike between the numeric types and bool, as C expressions.

float -> integer truncates toward zero and saturates out of range (NaN gives 0), where C leaves the
conversion undefined; integer -> narrower integer wraps; anything -> bool is x != 0; to float16,
bfloat16, float8 and float4 is one rounding to nearest even (the kiln_f2h family takes a double),
float8 saturating as the `saturate` attribute says (float8e8m0 rounding as `round_mode` says, from
the float32 value, as the reference does); to int4 / int2 keeps the low bits of the truncated value,
as the reference (ml_dtypes) does. Strings are refused. BitCast reinterprets the bytes: a view, no code.
"""
from __future__ import annotations

import numpy as np
import onnx

from . import Kernel, Unsupported, op
from .elementwise import DTYPES, ROUND_MODES, STORED, Bits, Operand, expression, store, supported


def target(to: int) -> np.dtype:
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to))
    except Exception:
        dtype = None
    if not supported(dtype):
        name = onnx.TensorProto.DataType.Name(to) if to in onnx.TensorProto.DataType.values() else str(to)
        raise Unsupported(f"Cast to {name} is not supported")
    return dtype


def convert(X: Operand, dtype: np.dtype, saturate=1, round_mode="up") -> str:
    kind, ctype = DTYPES[dtype.name]
    if round_mode not in ROUND_MODES:
        raise Unsupported(f"round_mode {round_mode!r} is not supported")
    if kind == "b":
        return f"({X} != 0)"
    if dtype.name in STORED:        # to the stored bits in one step, from the operand's own type
        value = f"kiln_trunc_int64((double)({X}))" if kind != "f" and X.kind == "f" else X
        return Bits(store(value, dtype, saturate, round_mode))
    if kind == "f" or X.kind != "f":
        return f"({ctype}){X}"
    return f"kiln_sat_{dtype.name}({X})"


@expression("Cast", kinds="fiub", out=lambda operands, attrs: target(attrs["to"]))
def cast(input, *, to, saturate=1, round_mode="up"):
    return convert(input, target(to), saturate, round_mode)


@expression("CastLike", kinds="fiub", out=lambda operands, attrs: operands[1].dtype)
def cast_like(input, target_type, *, saturate=1, round_mode="up"):
    return convert(input, target_type.dtype, saturate, round_mode)


@op("BitCast")
def bit_cast(outs, input, *, to):
    (Y,) = outs
    dtype = target(to)
    if not supported(input.dtype) or np.dtype(input.dtype).itemsize != dtype.itemsize:
        raise Unsupported(f"BitCast from {input.dtype} to {dtype} is not supported")
    return Kernel("copy", {"X": input}, {"Y": Y}, params=dict(nbytes=Y.nbytes), alias=True,
                  math=f"Y = the bytes of X as {dtype}")
