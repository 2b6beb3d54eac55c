"""One-node graphs against onnxruntime, for what the conformance cases leave out: other dtypes,
out-of-range indices, run-time sequence_lens, more Einsum equations, Resize as PyTorch exports it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import codegen
from codegen.verify import Reference, compare

from .conftest import TEST_CFLAGS

RNG = np.random.default_rng(0)


def one_node(op, runtime: dict, consts: dict | None = None, n_out=1, opset=21, **attrs):
    """Build op(inputs...) with `runtime` inputs fed at run time and `consts` as initializers (in the
    order runtime then consts unless `order` is given as an attribute list), run Kiln and onnxruntime."""
    order = attrs.pop("order", None) or [*runtime, *(consts or {})]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in runtime.items()]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (consts or {}).items()]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, order, outs, **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_empty_tensor_value_info(o) for o in outs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)
    got = codegen.compile(model, name="t").build(TEST_CFLAGS)(*runtime.values())
    ref = list(Reference(model)(dict(runtime)).values())
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        result = compare("y", g, r)
        assert result.ok, result
    return got


def test_gather_clamps_out_of_range_indices():
    data = RNG.standard_normal((5, 3)).astype(np.float32)
    idx = np.array([0, 4, -5, 7, -9], dtype=np.int64)
    (got,) = codegen.compile(_gather_model(data.shape), name="t").build(TEST_CFLAGS)(data, idx)
    assert np.array_equal(got, data[[0, 4, 0, 4, 0]])


def _gather_model(shape):
    g = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape),
                           helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [5])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [5, shape[1]])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.float16])
def test_data_movement_dtypes(dtype):
    x = (RNG.standard_normal((2, 3, 4)) * 10).astype(dtype)
    one_node("Gather", {"x": x, "i": np.array([[2, 0], [1, -1]], dtype=np.int32)}, axis=1)
    one_node("Slice", {"x": x}, {"s": np.array([3, 1]), "e": np.array([-5, 3]), "a": np.array([2, 0]),
                                 "st": np.array([-2, 1])})
    one_node("Transpose", {"x": x}, perm=[2, 0, 1])
    one_node("Tile", {"x": x}, {"r": np.array([2, 1, 3])})
    one_node("Pad", {"x": x}, {"p": np.array([1, 0, 2, 0, 2, 1])}, mode="reflect")
    one_node("Expand", {"x": x[:, :1]}, {"s": np.array([2, 2, 5, 4])})


def test_pad_constant_value_and_negative_pads():
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    one_node("Pad", {"x": x}, {"p": np.array([-1, 2, 1, -2]), "v": np.array(1.5, dtype=np.float32)})


def test_split_num_outputs_uneven():
    x = RNG.standard_normal((7, 2)).astype(np.float32)
    one_node("Split", {"x": x}, n_out=3, num_outputs=3, axis=0, opset=18)


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]), ("ii->i", [(4, 4)]), ("ii", [(4, 4)]), ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk", [(2, 1, 3, 4), (1, 3, 4, 5)]), ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij,ij,ij->i", [(2, 3), (2, 3), (2, 3)]),
])
def test_einsum(equation, shapes):
    arrays = {f"x{k}": RNG.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    one_node("Einsum", arrays, equation=equation, opset=12)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("H", [6, 20])       # 20: gates of 60 / 80 columns, vectors of them and the rest
def test_recurrent_sequence_lens(kind, direction, layout, H):
    S, Bt, I = 5, 3, 4
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    dirs = 2 if direction == "bidirectional" else 1
    x = RNG.standard_normal((Bt, S, I) if layout else (S, Bt, I)).astype(np.float32)
    state = (Bt, dirs, H) if layout else (dirs, Bt, H)
    consts = {"W": RNG.standard_normal((dirs, G * H, I)).astype(np.float32) * 0.5,
              "R": RNG.standard_normal((dirs, G * H, H)).astype(np.float32) * 0.5,
              "B": RNG.standard_normal((dirs, 2 * G * H)).astype(np.float32) * 0.5}
    # onnxruntime has no layout 1 and the onnx reference ignores sequence_lens: full lengths there
    lens = [5, 5, 5] if layout else [5, 2, 4]
    runtime = {"x": x, "L": np.array(lens, dtype=np.int32), "h0": RNG.standard_normal(state).astype(np.float32)}
    order = ["x", "W", "R", "B", "L", "h0"]
    attrs = {}
    if kind == "LSTM":
        runtime["c0"] = RNG.standard_normal(state).astype(np.float32)
        consts["P"] = RNG.standard_normal((dirs, 3 * H)).astype(np.float32)
        order += ["c0", "P"]
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    one_node(kind, runtime, consts, n_out=3 if kind == "LSTM" else 2, order=order, hidden_size=H,
             direction=direction, layout=layout, **attrs)


@pytest.mark.parametrize("act", ["Sigmoid", "Tanh"])
def test_recurrent_activations_over_their_range(act):
    """An RNN of one unit with W = 1, R = 0 is act(x): the branch-free kiln_expf / kiln_tanhf against
    float64 (within 2e-7 absolutely; sigmoid within 4 ulp relatively for y > 1e-30, where exp's own error
    shows), over the range and its ends, NaN, and against onnxruntime."""
    x = np.concatenate([np.linspace(-100, 100, 20001), [0.0, -0.0, 1e-8, -1e-8, 1e-3, -1e-3, 86.9, 87.1, -87.1, 88.7, 89,
                                                        -104, 1e30, -1e30, np.inf, -np.inf]]).astype(np.float32)
    got = one_node("RNN", {"x": x.reshape(1, -1, 1)}, {"W": np.ones((1, 1, 1), np.float32),
                                                      "R": np.zeros((1, 1, 1), np.float32)},
                   order=["x", "W", "R"], hidden_size=1, activations=[act])[0].reshape(-1)
    x64 = x.astype(np.float64)
    want = 1 / (1 + np.exp(-x64)) if act == "Sigmoid" else np.tanh(x64)
    assert np.max(np.abs(got - want)) < 2e-7
    if act == "Sigmoid":
        big = want > 1e-30
        assert np.max(np.abs(got[big] - want[big]) / want[big]) < 4 * 2.0 ** -23
    nan = np.full((1, 3, 1), np.nan, np.float32)
    (y,) = codegen.compile(_rnn_model(act, 3), name="t").build(TEST_CFLAGS)(nan)[:1]
    assert np.all(np.isnan(y))


def _rnn_model(act, n):
    graph = helper.make_graph([helper.make_node("RNN", ["x", "W", "R"], ["y"], hidden_size=1, activations=[act])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, n, 1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, n, 1])],
                              [numpy_helper.from_array(np.ones((1, 1, 1), np.float32), "W"),
                               numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "R")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("mode, ctm, nearest", [
    ("nearest", "asymmetric", "floor"), ("linear", "pytorch_half_pixel", "round_prefer_floor"),
    ("linear", "align_corners", "round_prefer_floor"), ("cubic", "half_pixel", "round_prefer_floor"),
    ("nearest", "half_pixel", "round_prefer_ceil")])
def test_resize_like_pytorch(mode, ctm, nearest):
    x = RNG.standard_normal((1, 2, 5, 7)).astype(np.float32)
    one_node("Resize", {"x": x}, {"roi": np.array([], dtype=np.float32), "s": np.array([1, 1, 1.6, 2.0], dtype=np.float32)},
             mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest)


def test_topk_ties_and_smallest():
    x = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    one_node("TopK", {"x": x}, {"k": np.array([4])}, n_out=2, largest=0)
    one_node("TopK", {"x": x}, {"k": np.array([3])}, n_out=2, largest=1)


def test_cumsum_int32_and_argmax_int():
    x = RNG.integers(-100, 100, (3, 4)).astype(np.int32)
    one_node("CumSum", {"x": x}, {"a": np.array(1)}, exclusive=1, reverse=1)
    one_node("ArgMax", {"x": x}, axis=0, keepdims=0, select_last_index=1)


def test_conv_transpose_like_pytorch():
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    one_node("ConvTranspose", {"x": x}, {"w": w, "b": b}, group=2,
             strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], dilations=[1, 2])


def test_old_upsample_with_fractional_scales_is_refused():
    """onnx's converter would give Upsample-9 half_pixel coordinates: refused, not miscompiled."""
    def upsample(scales):
        node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
        out = [1, 1] + [int(4 * s) for s in scales[2:]]
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out)],
                              initializer=[numpy_helper.from_array(np.array(scales, dtype=np.float32), "s")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    with pytest.raises(codegen.UnsupportedError, match="asymmetric"):
        codegen.compile(upsample([1, 1, 1.75, 1.75]))
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    model = upsample([1, 1, 2, 3])
    (got,) = codegen.compile(model, name="t").build(TEST_CFLAGS)(x)
    assert np.array_equal(got, np.repeat(np.repeat(x, 2, axis=2), 3, axis=3))


BF16 = np.dtype(helper.tensor_dtype_to_np_dtype(onnx.TensorProto.BFLOAT16))


def _against_reference(node, inputs: dict, n_out: int, opsets, rtol=1.6e-2, atol=1e-2):
    """Kiln vs onnx's reference evaluator (onnxruntime does not run these opset-27/preview ops)."""
    from onnx.reference import ReferenceEvaluator

    def build(outputs):
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()], outputs)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    ref = ReferenceEvaluator(build([helper.make_empty_tensor_value_info(o) for o in node.output[:n_out]])).run(
        None, inputs)
    model = build([helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(r.dtype), r.shape)
                   for o, r in zip(node.output, ref)])
    got = codegen.compile(model, name="t").build(TEST_CFLAGS)(*inputs.values())
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g.astype(np.float32), r.astype(np.float32), rtol=rtol, atol=atol)


def _bf16(*shape):
    return RNG.standard_normal(shape).astype(np.float32).astype(BF16)


def test_sequence_ops_in_bfloat16():
    """The conformance cases cover float32 and float16; bfloat16 goes through the same conversions."""
    _against_reference(helper.make_node("CausalConvWithState", ["x", "w", "b", "p"], ["y", "s"], activation="silu"),
                       {"x": _bf16(2, 3, 5), "w": _bf16(3, 1, 3), "b": _bf16(3), "p": _bf16(2, 3, 2)}, 2,
                       [("", 27)])
    decay = (-np.abs(RNG.standard_normal((1, 3, 2)))).astype(np.float32).astype(BF16)
    beta = RNG.uniform(0, 1, (1, 3, 2)).astype(np.float32).astype(BF16)
    _against_reference(helper.make_node("LinearAttention", ["q", "k", "v", "", "g", "b"], ["y", "s"],
                                        q_num_heads=4, kv_num_heads=2),
                       {"q": _bf16(1, 3, 16), "k": _bf16(1, 3, 8), "v": _bf16(1, 3, 6), "g": decay, "b": beta}, 2,
                       [("", 27)])
    _against_reference(helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview"),
                       {"q": _bf16(1, 4, 3, 8), "k": _bf16(1, 2, 5, 8), "v": _bf16(1, 2, 5, 6)}, 1,
                       [("", 26), ("ai.onnx.preview", 1)])


def test_flex_attention_refuses_a_score_mod_that_is_not_elementwise():
    mod = helper.make_graph([helper.make_node("Softmax", ["s"], ["t"], axis=-1)], "mod",
                            [helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, ["B", "H", "L", "S"])],
                            [helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, ["B", "H", "L", "S"])])
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", score_mod=mod)
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    with pytest.raises(codegen.UnsupportedError, match="Softmax cannot be fused"):
        _against_reference(node, {"q": x, "k": x, "v": x}, 1, [("", 26), ("ai.onnx.preview", 1)])


@pytest.mark.parametrize("axes", [[0, 2, 3], [1], [2, 3]])
def test_mean_variance_normalization_axes(axes):
    """test_mvn (no axes attribute) is refused by onnx's shape inference; with axes it compiles."""
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    one_node("MeanVarianceNormalization", {"x": x}, opset=13, axes=axes)


def test_reverse_sequence_clamps_lengths():
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    lens = np.array([9, -2, 2], dtype=np.int64)      # beyond T and negative: clamped into [0, T]
    model = _model("ReverseSequence", [("x", x), ("l", lens)], [4, 3], batch_axis=1, time_axis=0)
    (got,) = codegen.compile(model, name="t").build(TEST_CFLAGS)(x, lens)
    want = x.copy()
    want[:, 0] = x[::-1, 0]
    want[:2, 2] = x[1::-1, 2]
    assert np.array_equal(got, want)


def test_tensor_scatter_linear_skips_rows_past_the_end():
    past = np.zeros((2, 5, 3), dtype=np.float32)
    upd = RNG.standard_normal((2, 2, 3)).astype(np.float32)
    idx = np.array([4, 7], dtype=np.int64)           # row 5 of batch 0 and all of batch 1 fall outside
    model = _model("TensorScatter", [("p", past), ("u", upd), ("w", idx)], [2, 5, 3], opset=24, axis=1)
    (got,) = codegen.compile(model, name="t").build(TEST_CFLAGS)(past, upd, idx)
    want = past.copy()
    want[0, 4] = upd[0, 0]
    assert np.array_equal(got, want)


def test_max_unpool_skips_indices_outside():
    x = RNG.standard_normal((1, 1, 2, 2)).astype(np.float32)
    idx = np.array([0, 15, -1, 16], dtype=np.int64).reshape(1, 1, 2, 2)
    model = _model("MaxUnpool", [("x", x), ("i", idx)], [1, 1, 4, 4], kernel_shape=[2, 2], strides=[2, 2])
    (got,) = codegen.compile(model, name="t").build(TEST_CFLAGS)(x, idx)
    want = np.zeros(16, dtype=np.float32)
    want[[0, 15]] = x.reshape(-1)[:2]
    assert np.array_equal(got.reshape(-1), want)


def test_half_precision_matmul_weights_convert_at_compile_time():
    """float16 operands of a float32 kernel: a constant is converted once, not by a Cast at run time."""
    a = RNG.standard_normal((3, 4)).astype(np.float16)
    w = RNG.standard_normal((4, 5)).astype(np.float16)
    compiled = codegen.compile(_model("MatMul", [("a", a)], [3, 5], consts={"w": w}), name="t")
    assert [n.op for n in compiled.graph.nodes].count("Cast") == 2        # a in, y out
    (got,) = compiled.build(TEST_CFLAGS)(a)
    want = (a.astype(np.float32) @ w.astype(np.float32)).astype(np.float16)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3)


def _model(op, runtime, out_shape, consts=None, opset=22, **attrs):
    """A one-node model with a declared output shape (kernels that take sizes from it)."""
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in runtime]
    inits = [numpy_helper.from_array(a, n) for n, a in (consts or {}).items()]
    y = helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(runtime[0][1].dtype), out_shape)
    node = helper.make_node(op, [n for n, _ in runtime] + list(consts or {}), ["y"], **attrs)
    graph = helper.make_graph([node], "g", ins, [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_an_empty_input_with_a_non_empty_output_is_refused_not_left_unwritten():
    """GridSample of a 0-high image with a real grid: the output has elements the C must write."""
    from onnx import helper
    from .graphs import model
    m = model([helper.make_node("GridSample", ["x", "g"], ["y"], name="gs")],
              [("x", (1, 1, 0, 4)), ("g", (1, 2, 2, 2))], [("y", (1, 1, 2, 2))])
    with pytest.raises(codegen.UnsupportedError, match="empty input"):
        codegen.compile(m)


@pytest.mark.parametrize("op", ["Exp", "Tanh", "Erf"])
def test_fast_float_functions_over_their_range(op):
    """Exp (libm's: it overflows to inf), and Tanh and Erf through Kiln's branch-free kiln_tanhf / kiln_erff,
    against float64 over the range and its ends (exp within 2 ulp relatively, tanh within 2e-7 and erf
    within 3e-7 absolutely, erf within 2 ulp below 0.5), signed zeros, infinities and NaN."""
    import math
    x = np.concatenate([np.linspace(-12, 12, 24001), [0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.4999, 0.5, 0.5001, 86.9, -87.1,
                                                      88.7, -104, 1e30, -1e30, np.inf, -np.inf, np.nan]]).astype(np.float32)
    got = one_node(op, {"x": x})[0]
    x64 = x.astype(np.float64)
    want = {"Exp": np.exp, "Tanh": np.tanh, "Erf": np.vectorize(math.erf)}[op](x64)
    finite = np.isfinite(want) & (np.abs(x64) < 80)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    if op == "Exp":
        assert np.max(np.abs(got[finite] - want[finite]) / want[finite]) < 2 * 2.0 ** -23
        assert got[x == np.inf] == np.inf and got[x == -np.inf] == 0
    else:
        assert np.max(np.abs(got[finite] - want[finite])) < (2e-7 if op == "Tanh" else 3e-7)
        small = finite & (np.abs(x64) < 0.5) & (x64 != 0)
        if op == "Erf":
            assert np.max(np.abs(got[small] - want[small]) / np.abs(want[small])) < 2 * 2.0 ** -23
        assert np.array_equal(got[np.isinf(x)], np.sign(x[np.isinf(x)]))


@pytest.mark.parametrize("flags", [["-O0"], ["-O3", "-march=native"]], ids=["scalar", "vectorised"])
def test_kiln_expf_at_its_ends(tmp_path, flags):
    """kiln_expf (runtime_c/kiln_helpers.c) called directly, one element at a time and in a loop the
    compiler vectorises: within 2 ulp of exp on [-87, 87] (exp(87) standing for the rest up to FLT_MAX); +inf past FLT_MAX (88.7228394), 0 below
    the least denormal (-103.972084), exp(-87) standing for the denormal results between, NaN as NaN."""
    import cffi
    import subprocess
    from codegen.emit import used_helpers
    src = tmp_path / "e.c"
    src.write_text("#include <math.h>\n#include <stdint.h>\n#include <string.h>\n" + used_helpers("kiln_expf(")
                   + "\nvoid e(const float *restrict x, float *restrict y, int n)\n"
                     "{ for (int i = 0; i < n; ++i) y[i] = kiln_expf(x[i]); }\n")
    lib = tmp_path / "e.so"
    subprocess.run(["cc", *flags, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    ffi = cffi.FFI()
    ffi.cdef("void e(const float *x, float *y, int n);")
    f = ffi.dlopen(str(lib))
    top, bottom = np.float32(88.7228394), np.float32(-103.972084)
    x = np.concatenate([np.linspace(-87, 87, 40001), [top, np.nextafter(top, np.inf), bottom,
                        np.nextafter(bottom, -np.inf), -95.0, 1e30, -1e30, np.inf, -np.inf, np.nan, -np.nan,
                        0.0, -0.0]]).astype(np.float32)
    y = np.empty_like(x)
    f.e(ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y), x.size)
    want = np.exp(x[:40001].astype(np.float64))
    assert np.max(np.abs(y[:40001] - want) / want) < 2 * 2.0 ** -23
    ends = y[40001:]
    assert np.isfinite(ends[0]) and ends[1] == np.inf and 0 < ends[2] <= np.exp(np.float32(-87)) and ends[3] == 0
    assert ends[4] == np.float32(np.exp(np.float32(-87))) or abs(ends[4] / np.exp(-87.0) - 1) < 1e-6
    assert list(ends[5:9]) == [np.inf, 0.0, np.inf, 0.0] and np.isnan(ends[9:11]).all() and list(ends[11:]) == [1, 1]


@pytest.mark.parametrize("n", [16, 37, 64])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "LayerNormalization"])
def test_row_reductions_in_partial_results(op, n):
    """Rows of 16 or more reduce (max, sums) in 16 partial results (templates/c/_fold.j2), with a tail
    when n is no multiple of 16: against onnxruntime, on rows with a large offset (where a wrong max or
    mean shows)."""
    x = (RNG.standard_normal((3, 5, n)) * 4 + 50).astype(np.float32)
    consts = {"s": RNG.standard_normal(n).astype(np.float32), "b": RNG.standard_normal(n).astype(np.float32)} \
        if op == "LayerNormalization" else {}
    one_node(op, {"x": x}, consts, axis=-1)
