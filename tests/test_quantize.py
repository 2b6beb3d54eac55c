"""The small element types and the quantisation ops beyond what the conformance cases reach: every
float8 / float4 / int4 / int2 conversion on every float16 value and on edge float32 values, bit-exact
against onnx's reference evaluator; every bit pattern decoded; QuantizeLinear saturating where the
reference's int32 conversion would overflow; what is refused, and why."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import codegen

from .conftest import TEST_CFLAGS

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # the reference
SMALL = {"FLOAT8E4M3FN": ml_dtypes.float8_e4m3fn, "FLOAT8E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
         "FLOAT8E5M2": ml_dtypes.float8_e5m2, "FLOAT8E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
         "FLOAT8E8M0": ml_dtypes.float8_e8m0fnu, "FLOAT4E2M1": ml_dtypes.float4_e2m1fn,
         "INT4": ml_dtypes.int4, "UINT4": ml_dtypes.uint4, "INT2": ml_dtypes.int2, "UINT2": ml_dtypes.uint2}
EDGES = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e30, -1e30, 448, 464, 465, 480, 240, 248,
                  57344, 61440, 61439.996, 65536, 6, 5, 7, 0.25, 0.75, 2.5, -1.5, 7.5, 8, 15.5, 16, 1e-9,
                  2.0 ** -127, 2.0 ** -149, 3.4e38, 1.5 * 2.0 ** 127], np.float32)
VALUES = np.concatenate([EDGES, np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)])


def _model(nodes, inputs, outputs, opset=25):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=11)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8) if a.dtype.itemsize == 1 else a.view(np.uint32)


def _same(got, want) -> bool:
    """Bit-exact, NaN payloads of float32 aside."""
    if got.dtype == np.float32:
        return bool(np.all((_bits(got) == _bits(want)) | (np.isnan(got) & np.isnan(want))))
    return bool(np.array_equal(_bits(got), _bits(want)))


@pytest.mark.parametrize("to", sorted(SMALL))
def test_cast_matches_reference_bit_for_bit(to):
    """float32 -> the type (each saturate / round_mode it has) and every bit pattern -> float32."""
    code, n = getattr(T, to), VALUES.size
    variants = [dict(saturate=s, round_mode=r) for s in (1, 0) for r in ("up", "nearest", "down")] \
        if to == "FLOAT8E8M0" else [dict(saturate=1), dict(saturate=0)] if to.startswith("FLOAT8") else [{}]
    nodes = [helper.make_node("Cast", ["x"], [f"y{i}"], to=code, **v) for i, v in enumerate(variants)]
    nodes.append(helper.make_node("Cast", ["b"], ["f"], to=T.FLOAT))
    width = 256 if to.startswith("FLOAT8") else 16 if "4" in to else 4
    model = _model(nodes, [("x", T.FLOAT, [n]), ("b", code, [width])],
                   [(f"y{i}", code, [n]) for i in range(len(variants))] + [("f", T.FLOAT, [width])])
    patterns = np.arange(width, dtype=np.uint8).view(SMALL[to])
    got = codegen.compile(model, name="small").build(TEST_CFLAGS)(VALUES, patterns)
    want = ReferenceEvaluator(model).run(None, {"x": VALUES, "b": patterns})
    for g, w, name in zip(got, want, [str(v) for v in variants] + ["decode"]):
        assert _same(g, np.asarray(w)), f"{to} {name}"


def test_quantize_saturates_beyond_int32():
    """rint(x / scale) + zero_point clamps into the type's range, NaN to its low end, also where the
    reference's int32 conversion would overflow."""
    x = np.array([1e10, -1e10, 127.5, -128.5, 0.5, 1.5, -2.5, np.nan], np.float32)
    outs = {"INT8": [127, -128, 127, -128, 0, 2, -2, -128], "UINT2": [3, 0, 3, 0, 0, 2, 0, 0],
            "INT4": [7, -8, 7, -8, 0, 2, -2, -8]}
    for to, want in outs.items():
        zp = numpy_helper.from_array(np.array(0, SMALL.get(to, np.int8)), "zp")
        nodes = [helper.make_node("Constant", [], ["zp"], value=zp),
                 helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])]
        model = _model(nodes, [("x", T.FLOAT, [8]), ("s", T.FLOAT, [])], [("y", getattr(T, to), [8])])
        (got,) = codegen.compile(model, name="q").build(TEST_CFLAGS)(x, np.array(1, np.float32))
        assert got.astype(np.int32).tolist() == want, to


@pytest.mark.parametrize("rounding", ["by 1.5 * 2^23", "by truncation"])
@pytest.mark.parametrize("to,zp", [("INT8", -3), ("UINT8", 200), ("INT16", -1000), ("UINT16", 40000)])
def test_quantize_rounds_and_saturates_as_the_reference(to, zp, rounding):
    """The vectorised QuantizeLinear (clamp, truncate, ties to even) on every float16 value and the
    edges, at two scales, bit for bit against onnx's reference (where its int32 cast does not wrap)
    and against saturate(rint(x / scale) + zp) everywhere."""
    dtype = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16}[to]
    z = numpy_helper.from_array(np.array(zp, dtype), "zp")
    nodes = [helper.make_node("Constant", [], ["zp"], value=z), helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])]
    model = _model(nodes, [("x", T.FLOAT, [VALUES.size]), ("s", T.FLOAT, [])], [("y", getattr(T, to), [VALUES.size])])
    flags = TEST_CFLAGS + ([] if rounding.startswith("by 1.5") else ["-U__FLT_EVAL_METHOD__"])   # the other path
    runner = codegen.compile(model, name="q").build(flags)
    for scale in (np.float32(1), np.float32(0.37)):
        (got,) = runner(VALUES, scale)
        (want,) = ReferenceEvaluator(model).run(None, {"x": VALUES, "s": scale})
        info, q = np.iinfo(dtype), np.rint((VALUES / scale).astype(np.float64)) + zp
        small = np.abs(q) < 2 ** 30           # beyond: the reference's int32 cast wraps (and NaN: lo, as above)
        assert np.array_equal(got[small], want[small]), (to, float(scale))
        assert np.array_equal(got, np.where(np.isnan(q), info.min, np.clip(np.nan_to_num(q), info.min, info.max)))


def test_blocks_that_do_not_divide_the_axis_are_refused():
    nodes = [helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, block_size=3)]
    model = _model(nodes, [("x", T.INT8, [2, 4]), ("s", T.FLOAT, [2, 2])], [("y", T.FLOAT, [2, 4])])
    with pytest.raises(codegen.UnsupportedError, match="block_size 3 must divide axis 1"):
        codegen.compile(model)


def test_matmul_integer_refuses_a_per_row_zero_point():
    """The reference subtracts a 1-D a_zero_point along K, the spec along M: refused, not guessed."""
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])]
    model = _model(nodes, [("a", T.UINT8, [3, 3]), ("b", T.UINT8, [3, 2]), ("za", T.UINT8, [3])],
                   [("y", T.INT32, [3, 2])], opset=10)
    with pytest.raises(codegen.UnsupportedError, match="zero point"):
        codegen.compile(model)
