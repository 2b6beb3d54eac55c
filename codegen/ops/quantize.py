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

from . import Kernel, Unsupported, op, shape_strides
from .conv import resolve_pads, window
from .elementwise import DTYPES, EXPRESSIONS, Bits, Expression, elementwise, load, store
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


def _broadcast(x: Value, params: list[Value | None], axis: int, block_size: int) -> list[Value | None]:
    """x and the scale / zero-point Values as views that broadcast elementwise: a scalar as it is,
    a 1-D one along `axis`, a blocked one with x's axis split into (blocks, block_size)."""
    first = next(p for p in params if p is not None)
    if first.size == 1:                 # per tensor: the axis does not matter
        return [x] + [_view(p, ()) for p in params]
    rank = len(x.shape)
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    axis %= rank
    if not block_size:
        if len(first.shape) != 1 or first.shape[0] != x.shape[axis]:
            raise Unsupported(f"a per-axis scale must have {x.shape[axis]} elements")
        shape = [1] * rank
        shape[axis] = first.shape[0]
        return [x] + [_view(p, shape) for p in params]
    dim, blocks = x.shape[axis], -(-x.shape[axis] // block_size)
    if dim % block_size or tuple(first.shape) != x.shape[:axis] + (blocks,) + x.shape[axis + 1:]:
        raise Unsupported(f"block_size {block_size} must divide axis {axis} ({dim}) and give the scale's shape")
    split = x.shape[:axis] + (blocks, block_size) + x.shape[axis + 1:]
    pshape = x.shape[:axis] + (blocks, 1) + x.shape[axis + 1:]
    return [_view(x, split)] + [_view(p, pshape) for p in params]


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
    q = f"(({ctype})({x}) / ({ctype})({scale}))"
    if x.dtype == scale.dtype and x.dtype.name in ("float16", "bfloat16") and precision is None:
        q = load(store(q, x.dtype), x.dtype)           # numpy divides in float16: round the quotient
    name = np.dtype(dtype).name
    if name in FLOAT8:
        return Bits(store(q, dtype, saturate))
    if name == "float4_e2m1fn":
        return Bits(store(f"({q} + {zero_point})" if zero_point is not None else q, dtype))
    lo, hi = _qrange(dtype)
    if ctype == "float" and name in ("int8", "uint8", "int16", "uint16"):     # no double, no libm
        zp = f"(int32_t)({zero_point})" if zero_point is not None else "0"
        return f"({DTYPES[name][1]})kiln_quantize_f32({q}, {zp}, {lo}, {hi})"
    rint = "nearbyintf" if ctype == "float" else "nearbyint"
    v = f"((double)({rint}({q})){f' + {zero_point}' if zero_point is not None else ''})"
    return f"({DTYPES[name][1]})({v} >= {hi}.0 ? {hi} : {v} > {lo}.0 ? {v} : {lo})"   # NaN gives the low end


def _dequantize(x, scale, zero_point=None, *, dtype):
    """(float32(x) - zero_point) * scale in the type numpy computes it in (double for a double
    scale or an int32 zero point); the zero point of float8 and float4 is ignored, as the
    reference does."""
    subtract = zero_point is not None and x.kind != "f"
    ctype = "double" if scale.C == "double" or subtract and x.dtype.name == "int32" else "float"
    dx = f"(({ctype})(float)({x}) - ({ctype})({zero_point}))" if subtract else f"({ctype})(float)({x})"
    return f"({dx} * {scale})"


EXPRESSIONS["QuantizeLinear"] = Expression(_quantize, ("f", "f", "fiu"), lambda ops, attrs: attrs["dtype"])
EXPRESSIONS["DequantizeLinear"] = Expression(_dequantize, ("fiu", "f", "fiu"), lambda ops, attrs: attrs["dtype"])


def _step(opname: str, Y: Value, inputs: list[Value | None], views: list[Value | None], **attrs) -> Kernel:
    """One elementwise loop over the broadcasting views; the kernel names the graph's own Values."""
    step = Node(opname, opname, [v.name if v is not None else "" for v in inputs], [Y.name], attrs)
    kernel = elementwise(_view(Y, views[0].shape), [step], [v for v in views if v is not None])
    graph_values = {v.name: v for v in inputs if v is not None}
    kernel.inputs = {arg: graph_values[v.name] for arg, v in kernel.inputs.items()}
    kernel.outputs = {"Y": Y}
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
    views = _broadcast(x, [y_scale, y_zero_point], axis, block_size)
    return _step("QuantizeLinear", Y, [x, y_scale, y_zero_point], views, dtype=dtype, saturate=saturate,
                 precision=precision or None)


@op("DequantizeLinear")
def dequantize_linear(outs, x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    (Y,) = outs
    if np.dtype(x.dtype).name not in QUANT + ("int32",):
        raise Unsupported(f"dequantisation of {x.dtype} is not supported")
    if np.dtype(x.dtype).name not in FLOAT8 + ("float4_e2m1fn",):
        _check_zero_point(x_zero_point, x.dtype)
    views = _broadcast(x, [x_scale, x_zero_point], axis, block_size)
    return _step("DequantizeLinear", Y, [x, x_scale, x_zero_point], views, dtype=np.dtype(Y.dtype))


# ---- integer matmul and convolution, int32 accumulation ------------------------------------------

INT8 = (np.dtype(np.int8), np.dtype(np.uint8))


def _operand(arg: str, v: Value, index: str, zp_arg: str, zp: Value | None, zp_index: dict[int, str]) -> str:
    """(int32_t)v[index] - zero point, the zero point scalar or indexed as zp_index says by its size."""
    if np.dtype(v.dtype) not in INT8:
        raise Unsupported(f"dtype {v.dtype} of {v.name!r} not supported (only int8, uint8)")
    if zp is None:
        return f"(int32_t){arg}[{index}]"
    _check_zero_point(zp, v.dtype)
    if zp.size != 1 and zp.size not in zp_index:
        raise Unsupported(f"zero point {zp.name!r} of shape {list(zp.shape)} not supported")
    return f"((int32_t){arg}[{index}] - (int32_t){zp_arg}[{'0' if zp.size == 1 else zp_index[zp.size]}])"


def _scale(arg: str, v: Value, index: dict[int, str]) -> str:
    if v.size != 1 and v.size not in index:
        raise Unsupported(f"scale {v.name!r} of shape {list(v.shape)} not supported")
    return load(f"{arg}[{'0' if v.size == 1 else index[v.size]}]", v.dtype)


def _requantize(Y: Value, scales: list[Value], zy: Value | None, per_channel: tuple[int, str]) -> tuple[dict, str]:
    """The inputs and the C expression that requantise `acc`: the multiplier x_scale * w_scale /
    y_scale is computed (and rounded) in the scales' dtype, as numpy does, the rest in double.
    Only w_scale may hold one value per output channel (`per_channel`: its count and index)."""
    if np.dtype(Y.dtype) not in INT8:
        raise Unsupported(f"output dtype {Y.dtype} not supported (only int8, uint8)")
    dtype = np.dtype(scales[0].dtype)
    if any(np.dtype(s.dtype) != dtype for s in scales) or dtype.name not in ("float32", "float16", "bfloat16"):
        raise Unsupported("the scales must share one dtype of float32, float16, bfloat16")
    if zy is not None and zy.size != 1:
        raise Unsupported("y_zero_point must be one number")
    _check_zero_point(zy, Y.dtype)
    xs, ws, ys = (_scale(f"S{i}", s, dict([per_channel]) if i == 1 else {}) for i, s in enumerate(scales))
    rounded = lambda e: load(store(e, dtype), dtype)        # noqa: E731
    multiplier = rounded(f"({rounded(f'({xs} * {ws})')} / {ys})")
    zero = "0.0" if zy is None else "(double)ZY[0]"
    lo, hi = _qrange(Y.dtype)
    inputs = {f"S{i}": s for i, s in enumerate(scales)} | ({"ZY": zy} if zy is not None else {})
    return inputs, (f"({DTYPES[np.dtype(Y.dtype).name][1]})(kiln_requantize((int32_t)acc, (double)({multiplier}), "
                    f"{zero}, {lo}.0, {hi}.0))")


def _int_matmul(Y, A, B, za, zb, finish, inputs, math) -> Kernel:
    """Y[b] = finish(sum_k (A[b] - za) * (B[b] - zb)), batched with numpy broadcasting; B's zero
    point may hold one value per column (A's one per row would broadcast along K in the reference,
    so it is refused)."""
    if len(A.shape) < 2 or len(B.shape) < 2:
        raise Unsupported("A and B must be at least 2-D")
    M, K = A.shape[-2:]
    N = B.shape[-1]
    batch = list(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    a_batch = [s * M * K for s in shape_strides(A.shape[:-2], batch)]
    b_batch = [s * K * N for s in shape_strides(B.shape[:-2], batch)]
    a = _operand("A", A, f"a_off + m * {K} + k", "ZA", za, {})
    b = _operand("B", B, f"b_off + k * {N} + n", "ZB", zb, {N: "n"})
    args = {"A": A, "B": B} | ({"ZA": za} if za is not None else {}) | ({"ZB": zb} if zb is not None else {})
    return Kernel("int_matmul", args | inputs, {"Y": Y},
                  params=dict(M=M, N=N, K=K, batch=batch, a_batch=a_batch, b_batch=b_batch, a=a, b=b,
                              finish=finish),
                  macs=int(np.prod(batch, dtype=np.int64)) * M * N * K, math=math)


@op("MatMulInteger")
def matmul_integer(outs, A, B, a_zero_point=None, b_zero_point=None):
    (Y,) = outs
    return _int_matmul(Y, A, B, a_zero_point, b_zero_point, "(int32_t)acc", {},
                       "Y[b] = (A[b] - a_zero_point) @ (B[b] - b_zero_point), in int32")


@op("QLinearMatMul")
def qlinear_matmul(outs, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    (Y,) = outs
    inputs, finish = _requantize(Y, [a_scale, b_scale, y_scale], y_zero_point, (b.shape[-1], "n"))
    return _int_matmul(Y, a, b, a_zero_point, b_zero_point, finish, inputs,
                       "Y[b] = saturate(rint((a[b] - a_zp) @ (b[b] - b_zp) * a_scale * b_scale / y_scale) + y_zp)")


UNROLL_TAPS = 8      # the widest kernel row int_conv writes out tap by tap


def _int_conv(op_type, Y, X, W, xz, wz, bias, finish, inputs, math, auto_pad, dilations, group, kernel_shape,
              pads, strides) -> Kernel:
    spatial, kernel, strides, dilations = window(op_type, X, W, kernel_shape, strides, dilations)
    N, C, *in_sizes = X.shape
    M, Cg = W.shape[:2]
    if C != Cg * group or M % group:
        raise Unsupported("channels do not divide by group")
    begin, _ = resolve_pads(auto_pad, in_sizes, kernel, strides, dilations, pads)
    if xz is not None and xz.size != 1:
        raise Unsupported("x_zero_point must be one number")
    x = _operand("X", X, "xi", "ZX", xz, {})
    w = _operand("W", W, "wi", "ZW", wz, {M: "m"})
    args = {"X": X, "W": W} | ({"ZX": xz} if xz is not None else {}) | ({"ZW": wz} if wz is not None else {})
    if bias is not None:
        if np.dtype(bias.dtype) != np.dtype(np.int32) or bias.size != M:
            raise Unsupported("B must be int32 with one value per output channel")
        args["B"] = bias
    out_sizes = list(Y.shape[2:])
    # per axis, the outputs [lo, hi) whose window lies inside the input: no bounds checks there
    inner = []
    for i, o, k, s, d, p in zip(in_sizes, out_sizes, kernel, strides, dilations, begin):
        lo = min(o, -(-p // s))
        inner.append((lo, max(lo, min(o, (i - 1 - (k - 1) * d + p) // s + 1))))
    tests = [f"o{a} - {lo} < {hi - lo}" if lo else f"o{a} < {hi}" for a, ((lo, hi), o) in enumerate(zip(inner, out_sizes))
             if (lo, hi) != (0, o)]
    inside = "none" if any(lo == hi for lo, hi in inner) else " && ".join(tests) or "all"
    # inside the input every tap is read: sum (x - x_zp) * w = sum x * w - x_zp * sum w, one subtraction
    # per output instead of one per tap (in uint32, wrapping: the same bits). Not for 1x1 kernels:
    # there it made the host build (gcc -O3, x86-64) 10 % slower on DS-CNN.
    fold = None if xz is None or inside == "none" or np.prod(kernel) == 1 else dict(x=_operand("X", X, "xi", "ZX", None, {}), zp="ZX[0]",
                                                           taps=Cg * int(np.prod(kernel)))
    return Kernel("int_conv", args | inputs, {"Y": Y},
                  params=dict(N=N, C=C, M=M, G=group, Cg=Cg, Mg=M // group, I=in_sizes, O=out_sizes, K=kernel,
                              S=strides, D=dilations, P=begin, x=x, w=w, finish=finish, inner=inner, inside=inside,
                              unroll_k=kernel[-1] <= UNROLL_TAPS, fold=fold,
                              bias="(uint32_t)B[m]" if bias is not None else "0"),
                  macs=N * M * int(np.prod(out_sizes)) * Cg * int(np.prod(kernel)), math=math)


@op("ConvInteger")
def conv_integer(outs, x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None,
                 group=1, kernel_shape=None, pads=None, strides=None):
    (Y,) = outs
    return _int_conv("ConvInteger", Y, x, w, x_zero_point, w_zero_point, None, "(int32_t)acc", {},
                     "Y[n][m][o] = sum_{c,k} (X[n][g*Cg+c][o*S + k*D - P] - x_zp) * (W[m][c][k] - w_zp[m]), in int32",
                     auto_pad, dilations, group, kernel_shape, pads, strides)


@op("QLinearConv")
def qlinear_conv(outs, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    (Y,) = outs
    inputs, finish = _requantize(Y, [x_scale, w_scale, y_scale], y_zero_point, (w.shape[0], "m"))
    return _int_conv("QLinearConv", Y, x, w, x_zero_point, w_zero_point, B, finish, inputs,
                     "Y = saturate(rint((B + sum (x - x_zp) * (w - w_zp)) * x_scale * w_scale / y_scale) + y_zp)",
                     auto_pad, dilations, group, kernel_shape, pads, strides)


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(outs, x):
    """y = saturate(rint(x / scale) + zero_point) to uint8, with scale and zero point from x's range
    (widened to hold 0), computed in float32 as the reference does."""
    Y, Y_scale, Y_zero_point = (list(outs) + [None, None])[:3]
    if np.dtype(x.dtype) != np.dtype(np.float32):
        raise Unsupported(f"dtype {x.dtype} of {x.name!r} not supported (only float32)")
    written = {k: v for k, v in (("Y", Y), ("Y_scale", Y_scale), ("Y_zero_point", Y_zero_point)) if v is not None}
    return Kernel("dynamic_quantize", {"X": x}, written, params=dict(n=x.size, outputs=list(written)), macs=2 * x.size,
                  math="Y = saturate(rint(X / scale) + zero_point), scale and zero point from X's range")
