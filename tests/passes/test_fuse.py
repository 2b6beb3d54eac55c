"""fuse: activations, residual adds, SiLU and per-channel operands go into the anchor's store;
elementwise chains become one loop; the generated C writes no tensor in between."""
import numpy as np
from onnx import helper

from ..graphs import conv, model, pass_log, same_function

RNG = np.random.default_rng(1)
W = RNG.standard_normal((4, 4, 3, 3)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)
X = ("x", (1, 4, 6, 6))
Y = ("y", (1, 4, 6, 6))


def test_activation_fuses_into_conv():
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["a"], ["y"], alpha=0.2, name="act")]
    compiled = same_function(model(nodes, [X], [Y], dict(w=W, b=B)))
    (layer,) = compiled.graph.nodes
    assert layer.op == "Conv" and [s.op for s in layer.epilogue] == ["LeakyRelu"]
    assert "const float e0 = " in compiled.sources.c         # applied in the conv's store
    assert "static void layer_1" not in compiled.sources.c        # one layer, not two
    assert 'Conv "conv" + LeakyRelu "act"' in compiled.sources.c


def test_residual_add_and_relu_fuse_into_the_store():
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "x"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    compiled = same_function(model(nodes, [X], [Y], dict(w=W, b=B)))
    (layer,) = compiled.graph.nodes
    assert [s.op for s in layer.epilogue] == ["Add", "Relu"]
    # nothing is written between conv and relu: the arena holds only the convolution's working memory
    assert all("/scratch:" in b.values[0] for b in compiled.plan.buffers if b.kind == "arena")


def test_silu_diamond_fuses():
    """Mul(a, Sigmoid(a)): a is read twice inside the epilogue, never stored."""
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
             helper.make_node("Mul", ["a", "s"], ["y"], name="silu")]
    compiled = same_function(model(nodes, [X], [Y], dict(w=W, b=B)))
    assert [s.op for s in compiled.graph.nodes[0].epilogue] == ["Sigmoid", "Mul"]


def test_per_channel_and_scalar_operands_in_gemm_epilogue():
    w = RNG.standard_normal((8, 5)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["a"], name="gemm"),
             helper.make_node("Mul", ["a", "gate"], ["b"], name="gate"),
             helper.make_node("Clip", ["b", "lo", "hi"], ["y"], name="clip")]
    m = model(nodes, [("x", (3, 8))], [("y", (3, 5))],
              dict(w=w, gate=RNG.standard_normal(5).astype(np.float32), lo=np.float32(-0.5), hi=np.float32(0.5)))
    compiled = same_function(m, disable_passes=["fold_weights"])
    assert [s.op for s in compiled.graph.nodes[0].epilogue] == ["Mul", "Clip"]


def test_elementwise_chain_is_one_loop():
    """The Gelu of PyTorch's exporter: x * 0.5 * (1 + erf(x / sqrt 2)) without Erf: a tanh form."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["a"], name="m1"),
             helper.make_node("Tanh", ["a"], ["b"], name="t"),
             helper.make_node("Add", ["b", "one"], ["c"], name="a1"),
             helper.make_node("Mul", ["x", "c"], ["y"], name="m2")]
    m = model(nodes, [X], [Y], dict(half=np.float32(0.5), one=np.float32(1.0)))
    compiled = same_function(m)
    (layer,) = compiled.graph.nodes
    assert layer.op == "Fused" and len(layer.attrs["body"]) == 4
    assert compiled.sources.c.count("const float e") >= 4


def test_refuses_when_an_intermediate_has_another_reader():
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w", "b"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Sigmoid", ["r"], ["s"], name="sig"),
             helper.make_node("Add", ["c2", "s"], ["y"], name="add")]
    compiled = same_function(model(nodes, [X], [Y], dict(w=W, b=B)))
    ops = [(n.op, [s.op for s in n.epilogue]) for n in compiled.graph.nodes]
    assert ops[0] == ("Conv", ["Relu"])            # r is read by conv2 and sig: it must be stored
    assert ("Fused" in [n.op for n in compiled.graph.nodes]) or any(e == ["Add"] for _, e in ops)


def test_a_broadcast_operand_is_not_read_in_an_epilogue():
    """Add of a (1, 1, 6, 6) tensor: neither per-channel nor same-shape: stays a separate loop."""
    nodes = [conv("conv", "x", "w", "b", "a", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "plane"], ["y"], name="add")]
    m = model(nodes, [X], [Y], dict(w=W, b=B, plane=RNG.standard_normal((1, 1, 6, 6)).astype(np.float32)))
    compiled = same_function(m)
    assert [n.op for n in compiled.graph.nodes] == ["Conv", "Add"]
    assert pass_log(compiled, "fuse") == []
