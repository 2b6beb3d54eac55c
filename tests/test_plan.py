"""The memory plan: exact offsets, no overlap of live buffers, in-place reuse, the lower bound."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

import codegen
from codegen.plan import ALIGN

from .conftest import FIXTURES
from .graphs import chain, model


def _arena(compiled):
    return [b for b in compiled.plan.buffers if b.kind == "arena" and b.size]


def _assert_no_overlap(compiled):
    bufs = _arena(compiled)
    for i, a in enumerate(bufs):
        assert a.offset % ALIGN == 0
        assert a.offset + a.size <= compiled.plan.arena_bytes
        for b in bufs[i + 1:]:
            live_together = a.first <= b.last and b.first <= a.last
            disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
            assert not live_together or disjoint, (a, b)


def test_elementwise_chain_runs_in_place():
    """x -> Relu -> Sigmoid -> Tanh -> y: each op works in place, and since y is the caller's
    buffer the whole chain runs inside it: no arena at all."""
    compiled = codegen.compile(chain(), opt_level=0)
    assert _arena(compiled) == []
    assert compiled.plan.where["t0"] is compiled.plan.where["y"]
    assert compiled.plan.arena_bytes == compiled.plan.lower_bound == 0
    assert "kiln_arena" not in compiled.sources.c


def test_exact_offsets_of_a_branching_graph():
    """x -> a=Relu(x) -> b=Sigmoid(a) and c=Tanh(a) -> y=Add(b, c): a dies at c, so c reuses
    a's buffer in place; b dies at the Add, so it is computed in the caller's output buffer."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Sigmoid", ["a"], ["b"], name="sig"),
             helper.make_node("Tanh", ["a"], ["c"], name="tanh"),
             helper.make_node("Add", ["b", "c"], ["y"], name="add")]
    compiled = codegen.compile(model(nodes, [("x", (1, 64))], [("y", (1, 64))]), opt_level=0)
    where = compiled.plan.where
    assert where["a"] is where["c"]
    assert where["b"] is where["y"] and where["y"].kind == "output"
    assert where["a"].kind == "arena" and where["a"].offset == 0
    assert compiled.plan.arena_bytes == compiled.plan.lower_bound == 256
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    (y,) = compiled.build(["-O1"])(x)
    a = np.maximum(x, 0)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-a)) + np.tanh(a), rtol=1e-6, atol=1e-6)


def test_no_live_buffers_overlap_in_real_models():
    for name in ("resnet_mini", "mobilenet_v2_mini", "squeezenet_mini"):
        compiled = codegen.compile(FIXTURES / f"{name}.onnx")
        _assert_no_overlap(compiled)
        assert compiled.plan.lower_bound <= compiled.plan.arena_bytes <= 1.05 * compiled.plan.lower_bound


def test_local_search_reaches_the_bound_without_overlaps():
    """densenet121's concatenations (and the convolutions' working memory) leave every greedy order 5.6% or
    more above the lower bound; the local search reaches it."""
    import onnx.backend.test
    light = Path(onnx.backend.test.__file__).parent / "data" / "light"
    compiled = codegen.compile(light / "light_densenet121.onnx")
    _assert_no_overlap(compiled)
    assert compiled.plan.arena_bytes == compiled.plan.lower_bound


def test_views_share_buffers_and_outputs_are_the_callers():
    compiled = codegen.compile(FIXTURES / "mlp.onnx")
    out = compiled.graph.outputs[0]
    assert compiled.plan.where[out].kind == "output"
    inputs = compiled.graph.inputs
    assert compiled.plan.where[inputs[0]].kind == "input"


def test_timeline_has_one_line_per_arena_buffer():
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx")
    assert len(compiled.plan.timeline()) == len(_arena(compiled))
    assert "memory plan" in compiled.sources.c


def test_concat_inputs_are_planned_in_place():
    """Two convolutions whose outputs are concatenated write straight into the Concat's output, which runs
    no code; a Concat of a graph input, or of a slice another Concat already holds, copies as before.
    Each matches onnxruntime."""
    from codegen.verify import verify
    rng = np.random.default_rng(0)
    w = {f"w{i}": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) for i in range(3)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w1"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),         # in place
             helper.make_node("Relu", ["ab"], ["r"]),
             helper.make_node("Conv", ["x", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["b", "c"], ["bc"], axis=1),         # b is the first Concat's: copies
             helper.make_node("Concat", ["x", "r"], ["xr"], axis=1),         # x is the caller's: copies
             helper.make_node("Add", ["bc", "bc"], ["y1"])]
    m = model(nodes, [("x", (1, 3, 8, 8))], [("y1", (1, 8, 8, 8)), ("xr", (1, 11, 8, 8))], w)
    compiled = codegen.compile(m, opt_level=0)
    plan = compiled.plan
    concats = [n.name for n in compiled.graph.nodes if n.op == "Concat"]
    assert plan.concats == {concats[0]}
    assert plan.where["a"] is plan.where["b"] is plan.where["ab"]
    assert plan.offsets["a"] == 0 and plan.offsets["b"] == 4 * 8 * 8 * 4
    assert f"layer_{[n.name for n in compiled.graph.nodes].index(concats[0])}" not in compiled.sources.c.split(
        "_run(")[-1]     # no call: the layer runs no code
    _assert_no_overlap(compiled)
    assert verify(compiled, m).ok
