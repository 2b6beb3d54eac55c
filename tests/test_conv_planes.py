"""The planes convolution (codegen/ops/conv.py `_planes`, templates/c/conv_planes.c.j2) against onnxruntime
on odd sizes: channels not a multiple of the block, strides 2 and 3, dilations, pads on every side (and
asymmetric), 1x1 (read in place, with a partial last block; or with fewer positions than a block), 7x7, widths 1 to 20, batches of 2, splat
weights, a fused epilogue (Add of a same-shape input, then Relu) on both store paths, and planes large
enough to take several chunks (bands of rows); grouped and depthwise convolutions (a group's planes at a time)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import codegen
from codegen.verify import Reference, compare, random_inputs

from .conftest import TEST_CFLAGS
from .graphs import model

RNG = np.random.default_rng(5)
BMS = ("planes_bm8", "planes_bm6", "planes_bm4")


def _conv(x_shape, m, k, *, residual=False, splat=False, **attrs):
    """Conv(x, w, b) [-> Add(r) -> Relu]: the output shape from onnxruntime."""
    c = x_shape[1] // attrs.get("group", 1)
    w = np.full((m, c, *k), 0.25, np.float32) if splat else RNG.standard_normal((m, c, *k)).astype(np.float32)
    inits = dict(w=w, b=RNG.standard_normal(m).astype(np.float32))
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)
    out = Reference(model([conv], [("x", x_shape)], [("c", None)], inits))(
        {"x": np.zeros(x_shape, np.float32)})["c"].shape
    if not residual:
        return model([conv], [("x", x_shape)], [("c", out)], inits)
    nodes = [conv, helper.make_node("Add", ["c", "r"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    return model(nodes, [("x", x_shape), ("r", out)], [("y", out)], inits)


CASES = {
    "3x3_asymmetric_pads": lambda: _conv((1, 5, 9, 11), 7, (3, 3), pads=[1, 0, 2, 1]),
    "3x3_stride2_batch2": lambda: _conv((2, 9, 13, 12), 19, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    "stride3_dilation2": lambda: _conv((1, 6, 17, 16), 13, (3, 3), strides=[3, 3], dilations=[2, 2],
                                       pads=[2, 1, 0, 2]),
    "stride_2x1_dilation_1x3": lambda: _conv((1, 4, 12, 15), 10, (2, 3), strides=[2, 1], dilations=[1, 3]),
    "1x1_few_positions_batch2": lambda: _conv((2, 13, 7, 5), 17, (1, 1)),     # 35 positions: fewer than a block
    "1x1_exact_block": lambda: _conv((1, 3, 8, 8), 8, (1, 1)),                # 64 positions: whole blocks
    "1x1_stride2": lambda: _conv((1, 10, 9, 11), 9, (1, 1), strides=[2, 2]),
    "1x1_padded": lambda: _conv((1, 3, 4, 5), 5, (1, 1), pads=[1, 2, 0, 1]),
    "7x7_stride2": lambda: _conv((1, 3, 23, 21), 10, (7, 7), strides=[2, 2], pads=[3, 3, 3, 3]),
    "many_channels": lambda: _conv((1, 70, 6, 6), 33, (3, 3), pads=[1, 1, 1, 1]),
    "same_upper": lambda: _conv((1, 4, 10, 7), 6, (4, 4), auto_pad="SAME_UPPER", strides=[2, 2]),
    "splat_weights": lambda: _conv((1, 5, 8, 9), 11, (3, 3), splat=True, pads=[1, 1, 1, 1]),
    "bands_of_rows": lambda: _conv((1, 64, 40, 40), 5, (3, 3), residual=True, pads=[1, 1, 1, 1]),   # 3 chunks
    "bands_stride2": lambda: _conv((1, 40, 61, 61), 3, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),   # 4 chunks
    "1x1_chunks_batch2": lambda: _conv((2, 64, 40, 40), 3, (1, 1)),        # 2 chunks, read in place, a partial block
    "residual_relu_dropped_columns": lambda: _conv((2, 6, 9, 10), 9, (3, 3), residual=True, pads=[1, 1, 1, 1]),
    "residual_relu_one_run": lambda: _conv((1, 12, 5, 7), 14, (1, 1), residual=True),
}


# grouped convolutions: (model, tactic); blocks are at most a group's output channels
GROUPED = {
    "depthwise_25x5": (lambda: _conv((1, 64, 25, 5), 64, (3, 3), group=64, pads=[1, 1, 1, 1]), "planes_bm1"),
    "depthwise_stride2_odd": (lambda: _conv((1, 19, 11, 14), 19, (3, 3), group=19, strides=[2, 2],
                                            pads=[1, 0, 1, 2]), "planes_bm1"),
    "depthwise_5x5_residual": (lambda: _conv((2, 7, 9, 6), 7, (5, 5), group=7, pads=[2, 2, 2, 2],
                                             residual=True), "planes_bm1"),
    "depthwise_dilated_wide_residual": (lambda: _conv((1, 3, 6, 40), 3, (3, 3), group=3, dilations=[2, 2],
                                                      pads=[2, 2, 2, 2], residual=True), "planes_bm1"),
    "depth_multiplier_2": (lambda: _conv((1, 6, 7, 7), 12, (3, 3), group=6, pads=[1, 1, 1, 1]), "planes_bm2"),
    "groups_3_partial_blocks": (lambda: _conv((1, 12, 9, 8), 15, (3, 3), group=3, pads=[1, 1, 1, 1]), "planes_bm4"),
    "groups_2_1x1_in_place": (lambda: _conv((1, 8, 8, 8), 16, (1, 1), group=2), "planes_bm8"),
    "groups_4_splat_bands": (lambda: _conv((1, 16, 48, 48), 8, (3, 3), group=4, splat=True, strides=[2, 2],
                                           pads=[1, 1, 1, 1]), "planes_bm2"),
}


def _check(m, tactic):
    compiled = codegen.compile(m)
    layer = next(name for name, k in compiled.kernels.items() if k.template.startswith("conv"))
    compiled = codegen.compile(m, tactics={layer: tactic})
    assert compiled.kernels[layer].template == "conv_planes"
    runner = compiled.build(TEST_CFLAGS)
    inputs = random_inputs(runner.inputs, seed=3)
    want = Reference(m)({n: a for (n, _, _), a in zip(runner.inputs, inputs)})
    for got, (name, ref) in zip(runner(*inputs), want.items()):
        assert compare(name, got, ref).ok, (tactic, compare(name, got, ref))
    return compiled


@pytest.mark.parametrize("name", CASES)
def test_planes_agree_with_onnxruntime(name):
    _check(CASES[name](), BMS[list(CASES).index(name) % len(BMS)])


@pytest.mark.parametrize("name", GROUPED)
def test_grouped_planes_agree_with_onnxruntime(name):
    factory, tactic = GROUPED[name]
    _check(factory(), tactic)


def test_depthwise_takes_planes_but_wide_strided_inputs_rows():
    narrow = codegen.compile(GROUPED["depthwise_25x5"][0]())
    (kernel,) = narrow.kernels.values()
    assert kernel.tactic == "planes_bm1" and kernel.params["G"] == 64 and "64 groups of 1" in narrow.sources.c
    assert kernel.scratch["P"][1] == kernel.params["PLANE"]           # one group's band at a time
    wide = codegen.compile(_conv((1, 4, 8, 70), 4, (3, 3), group=4, pads=[1, 1, 1, 1]))
    assert [k.tactic for k in wide.kernels.values()] == ["planes_bm1"]
    strided = codegen.compile(_conv((1, 4, 8, 70), 4, (3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1]))
    assert [k.tactic for k in strided.kernels.values()] == ["rows"]
    grouped = codegen.compile(GROUPED["groups_3_partial_blocks"][0]())
    assert [k.tactic for k in grouped.kernels.values()] == ["planes_bm5"]


def test_widths_1_to_20():
    """Rows shorter and longer than a vector and than a block, strides 1 to 3, each block size."""
    for width in range(1, 21):
        stride = 1 + width % 3
        _check(_conv((1, 3, 5, width), 5, (3, 3), strides=[stride, stride], pads=[1, 1, 1, 1]),
               BMS[width % len(BMS)])


def test_planes_is_the_default_and_reads_1x1_in_place():
    planes = codegen.compile(CASES["3x3_asymmetric_pads"]())
    assert [k.tactic for k in planes.kernels.values()] == ["planes_bm8"]
    assert "scratch:P" in planes.sources.c
    direct = codegen.compile(CASES["1x1_chunks_batch2"]())          # X itself: no scratch memory
    (kernel,) = direct.kernels.values()
    assert kernel.params["direct"] and kernel.params["Q"] % kernel.params["BQ"] and "scratch:" not in direct.sources.c
    one_phase = _check(CASES["1x1_stride2"](), "planes_bm8")       # 1 of the 4 stride phases is read
    assert "[1 phase" not in one_phase.sources.c and "phase (0, 0)" in one_phase.sources.c
    assert "phase (1, 1)" not in one_phase.sources.c
    for name, chunks in (("bands_of_rows", 3), ("bands_stride2", 4), ("1x1_chunks_batch2", 2)):
        (kernel,) = [k for k in codegen.compile(CASES[name]()).kernels.values() if k.template == "conv_planes"]
        assert -(-kernel.params["Q"] // kernel.params["CHUNK"]) == chunks, name
    splat = codegen.compile(CASES["splat_weights"]())     # W (11x5x3x3) stored as one float, the bias as 16
    assert [k.template for k in splat.kernels.values()] == ["conv_planes"] and splat.sources.weight_bytes <= 2 * 64


def test_grouped_band_padding_over_a_dead_buffer():
    """The band's zero padding is written for every group: with the band planned over an earlier, non-zero
    buffer, a group that skipped it would read that."""
    w = RNG.standard_normal((6, 1, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Transpose", ["s"], ["u"], perm=[0, 1, 3, 2]),
             helper.make_node("Conv", ["u", "w"], ["y"], group=6, pads=[1, 1, 1, 1])]
    m = model(nodes, [("x", (1, 6, 5, 7))], [("y", (1, 6, 7, 5))], {"w": w})
    compiled = _check(m, "planes_bm1")
    layer = next(name for name, k in compiled.kernels.items() if k.template == "conv_planes")
    where = compiled.plan.where
    assert where[f"{layer}/scratch:P"].offset == where["s"].offset      # the band lies over Sigmoid's output


@pytest.mark.parametrize("x_shape, k", [((2, 37, 1, 1), (1, 1)), ((1, 5, 3, 4), (3, 4))])
def test_a_window_over_the_whole_plane_is_a_matrix_product(x_shape, k):
    """Squeeze-excite's 1x1 convs on 1x1 planes (and any conv whose one window is the whole plane) run as
    the packed matrix product, a per-channel epilogue (Mul by a [M,1,1] constant, then Relu) fused."""
    m_out = 19
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"])
    nodes = [conv, helper.make_node("Mul", ["c", "s"], ["d"]), helper.make_node("Relu", ["d"], ["y"])]
    inits = dict(w=RNG.standard_normal((m_out, x_shape[1], *k)).astype(np.float32),
                 b=RNG.standard_normal(m_out).astype(np.float32), s=RNG.standard_normal((m_out, 1, 1)).astype(np.float32))
    m = model(nodes, [("x", x_shape)], [("y", (x_shape[0], m_out, 1, 1))], inits)
    compiled = codegen.compile(m)
    assert [k.template for k in compiled.kernels.values()] == ["gemm_packed"]      # Mul and Relu fused
    runner = compiled.build(TEST_CFLAGS)
    (x,) = random_inputs(runner.inputs, seed=4)
    (got,) = runner(x)
    assert compare("y", got, Reference(m)({"x": x})["y"]).ok


def test_the_host_build_of_resnet18s_14x14_conv():
    """With the host's default flags (-O3 -march=native), not the tests' -O2: GCC 12 miscompiled an earlier
    band copy (padding rows skipped by `continue`) of this 256 x 14 x 14 3x3 convolution under AVX-512."""
    m = _conv((1, 256, 14, 14), 256, (3, 3), pads=[1, 1, 1, 1])
    runner = codegen.compile(m).build()
    inputs = random_inputs(runner.inputs, seed=3)
    (got,) = runner(*inputs)
    assert compare("c", got, Reference(m)({"x": inputs[0]})["c"]).ok
