"""fold_weights: BatchNorm, per-channel Mul/Add/Sub/Div and Pad fold into Conv/Gemm weights."""
import numpy as np
from onnx import helper

from ..graphs import conv, model, pass_log, same_function

RNG = np.random.default_rng(0)
W = RNG.standard_normal((6, 3, 3, 3)).astype(np.float32)
B = RNG.standard_normal(6).astype(np.float32)


def _bn_inits():
    return dict(scale=RNG.uniform(0.5, 2, 6).astype(np.float32), bias=RNG.standard_normal(6).astype(np.float32),
                mean=RNG.standard_normal(6).astype(np.float32), var=RNG.uniform(0.5, 2, 6).astype(np.float32))


def test_conv_bn_folds():
    nodes = [conv("conv", "x", "w", "b", "c", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn")]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 6, 8, 8))], dict(w=W, b=B, **_bn_inits()))
    compiled = same_function(m, opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Conv"]
    assert compiled.graph.nodes[0].sources == [("Conv", "conv"), ("BatchNormalization", "bn")]


def test_per_channel_mul_add_sub_div_fold():
    c = RNG.uniform(0.5, 2, (1, 6, 1, 1)).astype(np.float32)
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["a", "c"], ["b1"], name="mul"),
             helper.make_node("Add", ["b1", "c"], ["b2"], name="add"),
             helper.make_node("Sub", ["b2", "s"], ["b3"], name="sub"),
             helper.make_node("Div", ["b3", "c"], ["y"], name="div")]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 6, 8, 8))], dict(w=W, b=B, c=c, s=np.float32(0.25)))
    compiled = same_function(m, opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Conv"]


def test_gemm_folds_per_column_mul_and_matmul_add_becomes_gemm():
    w = RNG.standard_normal((8, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
             helper.make_node("Add", ["a", "bias"], ["b"], name="add"),
             helper.make_node("Mul", ["b", "scale"], ["y"], name="mul")]
    m = model(nodes, [("x", (3, 8))], [("y", (3, 5))],
              dict(w=w, bias=RNG.standard_normal(5).astype(np.float32), scale=RNG.standard_normal(5).astype(np.float32)))
    compiled = same_function(m, opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Gemm"]


def test_pad_folds_into_conv():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"), conv("conv", "p", "w", "b", "y")]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 6, 9, 10))],
              dict(w=W, b=B, pads=np.array([0, 0, 1, 2, 0, 0, 2, 2], np.int64)))
    compiled = same_function(m, opt_level=1, baseline=False)   # checked against onnxruntime
    assert [n.op for n in compiled.graph.nodes] == ["Conv"]
    assert compiled.graph.nodes[0].attrs["pads"] == [1, 2, 2, 2]


def test_refuses_non_constant_and_non_channel_operands():
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["a", "full"], ["y"], name="mul")]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 6, 8, 8))],
              dict(w=W, b=B, full=RNG.standard_normal((1, 6, 8, 8)).astype(np.float32)))
    compiled = same_function(m, opt_level=1)
    assert len(compiled.graph.nodes) == 2
    assert any("not one value per channel" in line for line in pass_log(compiled, "fold_weights"))


def test_refuses_when_the_conv_output_has_other_readers():
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["a", "scale", "bias", "mean", "var"], ["bn"], name="bn"),
             helper.make_node("Add", ["a", "bn"], ["y"], name="add")]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 6, 8, 8))], dict(w=W, b=B, **_bn_inits()))
    compiled = same_function(m, opt_level=1)
    assert "BatchNormalization" in [n.op for n in compiled.graph.nodes]
