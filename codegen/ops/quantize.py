"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the integer ops MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv, with the reference semantics of onnx's evaluator.

These are the standalone ops, computing in float as the spec defines:
  QuantizeLinear    y = saturate(rint(x / scale) + zero_point)   (float8: x / scale, rounded once)
  DequantizeLinear  y = (x - zero_point) * scale
Per-tensor, per-axis and blocked scales are elementwise broadcasting: a block of `block_size`
along the axis is a new axis of that length, over which the scale is broadcast. The integer ops
accumulate (x - x_zero_point) * (w - w_zero_point) in int32; the QLinear ones then requantise
in double, y = saturate(rint(acc * (x_scale * w_scale / y_scale)) + y_zero_point), the multiplier
rounded in the scales' own type as numpy does.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx

from . import Kernel, Unsupported, op
from .elementwise import DTYPES, EXPRESSIONS, STORED, Bits, Expression, elementwise, load, store
from ..ir import Node, Value

FLOAT8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
INTEGERS = ("int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2")
QUANT = FLOAT8 + INTEGERS + ("float4_e2m1fn",)
PRECISIONS = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.DOUBLE: "double"}


def _view(v: Value | None, shape) -> Value | None:
    """v under another shape with the same elements (a view: same buffer, same name)."""
    if v is None:
        return None
    return Value(v.name, tuple(shape), v.dtype, None if v.const is None else v.const.reshape(shape))


def _broadcast(x: Value, params: list[Value | None], axis: int, block_size: int):
    """x and the scale / zero-point Values as views that broadcast elementwise: a scalar as it is,
    a 1-D one along `axis`, a blocked one with x's axis split into (blocks, block_size)."""
    first = next(p for p in params if p is not None)
    if first.size == 1:                 # per tensor: the axis does not matter
        return x, [_view(p, ()) for p in params]
    rank = len(x.shape)
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    axis %= rank
    if not block_size:
        if len(first.shape) != 1 or first.shape[0] != x.shape[axis]:
            raise Unsupported(f"a per-axis scale must have {x.shape[axis]} elements")
        shape = [1] * rank
        shape[axis] = first.shape[0]
        return x, [_view(p, shape) for p in params]
    dim, blocks = x.shape[axis], -(-x.shape[axis] // block_size)
    if dim % block_size or tuple(first.shape) != x.shape[:axis] + (blocks,) + x.shape[axis + 1:]:
        raise Unsupported(f"block_size {block_size} must divide axis {axis} ({dim}) and give the scale's shape")
    split = x.shape[:axis] + (blocks, block_size) + x.shape[axis + 1:]
    pshape = x.shape[:axis] + (blocks, 1) + x.shape[axis + 1:]
    return _view(x, split), [_view(p, pshape) for p in params]


def _check_zero_point(zp: Value | None, dtype) -> None:
    if zp is not None and np.dtype(zp.dtype) != np.dtype(dtype):
        raise Unsupported(f"zero point of dtype {zp.dtype}, not {dtype}")


# ---- QuantizeLinear / DequantizeLinear: one elementwise expression each ----------------------------

def _qrange(dtype) -> tuple[int, int]:
    info = ml_dtypes.iinfo(dtype)
    return int(info.min), int(info.max)


def _quantize(x, scale, zero_point=None, *, dtype, saturate=1, precision=None):
    """x / scale in the type numpy computes it in, then saturate(rint(.) + zero_point) for the
    integer types, one rounding to float8 (zero_point ignored, as the reference does) or to
    float4 (zero point added in float)."""
    ctype = PRECISIONS.get(precision, "double" if "double" in (x.C, scale.C) else "float")
    q = f"(({ctype}){x} / ({ctype}){scale})"
    if x.dtype == scale.dtype and x.dtype.name in ("float16", "bfloat16") and precision is None:
        q = load(store(q, x.dtype), x.dtype)           # numpy divides in float16: round the quotient
    name = np.dtype(dtype).name
    if name in FLOAT8:
        return Bits(store(q, dtype, saturate))
    if name == "float4_e2m1fn":
        return Bits(store(f"({q} + {zero_point})" if zero_point is not None else q, dtype))
    lo, hi = _qrange(dtype)
    v = f"((double)nearbyint{'f' if ctype == 'float' else ''}({q}){f' + {zero_point}' if zero_point is not None else ''})"
    return f"({DTYPES[name][1]})({v} >= {hi}.0 ? {hi} : {v} > {lo}.0 ? {v} : {lo})"   # NaN gives the low end


def _dequantize(x, scale, zero_point=None, *, dtype):
    """(x - zero_point) * scale in float (double for int32 x, as numpy promotes); the zero point
    of float8 and float4 is ignored, as the reference does."""
    ctype = "double" if x.dtype.name == "int32" or "double" in (scale.C,) else "float"
    dx = f"(({ctype}){x} - ({ctype}){zero_point})" if zero_point is not None and x.kind != "f" else f"({ctype}){x}"
    return f"({dx} * {scale})"


EXPRESSIONS["QuantizeLinear"] = Expression(_quantize, ("f", "f", "fiu"), lambda ops, attrs: attrs["dtype"])
EXPRESSIONS["DequantizeLinear"] = Expression(_dequantize, ("fiu", "f", "fiu"), lambda ops, attrs: attrs["dtype"])


def _step(opname: str, Y: Value, inputs: list[Value | None], **attrs) -> Kernel:
    step = Node(opname, opname, [v.name if v is not None else "" for v in inputs], [Y.name], attrs)
    kernel = elementwise(Y, [step], [v for v in inputs if v is not None])
    kernel.math = f"Y = {opname}(" + ", ".join(a for a, v in zip(("x", "scale", "zero_point"), inputs) if v) + ")"
    return kernel


@op("QuantizeLinear")
def quantize_linear(outs, x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
                    saturate=1, precision=0):
    (Y,) = outs
    dtype = np.dtype(Y.dtype)
    if dtype.name not in QUANT:
        raise Unsupported(f"quantisation to {dtype} is not supported")
    if precision and precision not in PRECISIONS:
        raise Unsupported(f"precision {precision} not supported (only float and double)")
    _check_zero_point(y_zero_point, dtype)
    xv, (s, z) = _broadcast(x, [y_scale, y_zero_point], axis, block_size)
    return _step("QuantizeLinear", _view(Y, xv.shape), [xv, s, z], dtype=dtype, saturate=saturate,
                 precision=precision or None)


@op("DequantizeLinear")
def dequantize_linear(outs, x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    (Y,) = outs
    if np.dtype(x.dtype).name not in QUANT + ("int32",):
        raise Unsupported(f"dequantisation of {x.dtype} is not supported")
    if np.dtype(x.dtype).name not in FLOAT8 + ("float4_e2m1fn",):
        _check_zero_point(x_zero_point, x.dtype)
    xv, (s, z) = _broadcast(x, [x_scale, x_zero_point], axis, block_size)
    return _step("DequantizeLinear", _view(Y, xv.shape), [xv, s, z], dtype=np.dtype(Y.dtype))
