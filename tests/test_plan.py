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
    """densenet121's concatenations leave every greedy order 5.6% or more above the lower bound. With the
    convolutions' working memory (the planes tactic's bands, live one step each) the search stops 5.6%
    above it (a limit of the search, noted in the issue); with the packed tactic (no working memory) it
    reaches the bound."""
    import onnx.backend.test
    light = Path(onnx.backend.test.__file__).parent / "data" / "light"
    compiled = codegen.compile(light / "light_densenet121.onnx")
    _assert_no_overlap(compiled)
    assert compiled.plan.arena_bytes <= 1.06 * compiled.plan.lower_bound
    packed = {layer: "packed_bm8" for layer, t in compiled.tactics.items() if "packed_bm8" in t["candidates"]}
    compiled = codegen.compile(light / "light_densenet121.onnx", tactics=packed)
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
