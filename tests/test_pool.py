"""2-D float pooling kernels against onnxruntime: `planes` (the default: a plane at a time, padded and split
by stride phase, templates/c/pool_planes.c.j2) and `rows` (one output row at a time, the lean tactic,
templates/c/pool_rows.c.j2), on strides 1 to 3, asymmetric pads, ceil_mode (windows that end, or lie
wholly, in the padding), windows wider than the plane and a fused epilogue."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import codegen
from codegen.verify import Reference, compare

from .conftest import TEST_CFLAGS
from .graphs import model


def _pool(op, x_shape, relu=False, **attrs):
    node = helper.make_node(op, ["x"], ["p" if relu else "y"], **attrs)
    out = Reference(model([node], [("x", x_shape)], [("p", None)] if relu else [("y", None)]))(
        {"x": np.zeros(x_shape, np.float32)})["p" if relu else "y"].shape
    nodes = [node] + ([helper.make_node("Relu", ["p"], ["y"])] if relu else [])
    return model(nodes, [("x", x_shape)], [("y", out)])


CASES = {
    "max_3x3_stride2_squeezenet": lambda op: _pool(op, (1, 5, 27, 27), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    "3x3_stride2_pad1_resnet": lambda op: _pool(op, (2, 3, 16, 15), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "asymmetric_pads_stride1": lambda op: _pool(op, (1, 4, 7, 9), kernel_shape=[3, 2], pads=[2, 0, 1, 1]),
    "stride3_ceil": lambda op: _pool(op, (1, 3, 11, 10), kernel_shape=[2, 3], strides=[3, 3], ceil_mode=1,
                                     pads=[0, 1, 1, 0]),
    "2x2_stride2_odd_plane_relu": lambda op: _pool(op, (1, 6, 13, 5), relu=True, kernel_shape=[2, 2], strides=[2, 2]),
    "window_wider_than_plane": lambda op: _pool(op, (1, 2, 3, 2), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    "strides_2x1": lambda op: _pool(op, (1, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1]),
}


def _check(m, tactic, x):
    compiled = codegen.compile(m)
    layer = next(name for name, k in compiled.kernels.items() if k.template.startswith("pool"))
    compiled = codegen.compile(m, tactics={layer: tactic})
    assert compiled.kernels[layer].template == f"pool_{tactic}"
    (got,) = compiled.build(TEST_CFLAGS)(x)
    (want,) = Reference(m)({"x": x}).values()
    assert compare("y", got, want).ok, (tactic, compare("y", got, want))


@pytest.mark.parametrize("tactic", ["planes", "rows"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("name", CASES)
def test_pooling_agrees_with_onnxruntime(name, op, tactic):
    m = CASES[name](op)
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(len(name)).standard_normal(shape).astype(np.float32)
    _check(m, tactic, x)


def test_planes_is_the_default_and_rows_the_lean_one():
    m = CASES["3x3_stride2_pad1_resnet"]("MaxPool")
    (kernel,) = codegen.compile(m).kernels.values()
    assert kernel.tactic == "planes" and kernel.params["phases"][0][:2] == (0, 0) and len(kernel.params["phases"]) == 4
    (lean,) = codegen.compile(m, memory="lean").kernels.values()
    assert lean.tactic == "rows"
