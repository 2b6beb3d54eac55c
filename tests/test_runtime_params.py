"""Operator parameters (axes, K, pads, k, ...) fed as run-time inputs.

Where the static shapes fix a parameter, the layer checks the value it is given; where they do not,
the layer reads it. Either way a value that does not fit the compiled shapes makes `NAME_run`
return nonzero (the Runner raises), never a wrong output. Each test runs one compiled model on
several parameter values, against numpy (or the ONNX reference evaluator).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import codegen

from .conftest import TEST_CFLAGS

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _build(op, inputs, outputs, opset=18, **attrs):
    """One-node model: inputs/outputs as [(name, elem_type, shape)] (None: an omitted input)."""
    node = helper.make_node(op, [i[0] if i else "" for i in inputs], [n for n, _, _ in outputs], name="node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(*i) for i in inputs if i],
                              [helper.make_tensor_value_info(*o) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return codegen.compile(model, name="rt").build(TEST_CFLAGS)


def _rejects(run, *arrays):
    with pytest.raises(codegen.RunError, match="does not fit"):
        run(*arrays)


X = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5


def test_topk_checks_k():
    run = _build("TopK", [("x", F, [2, 3, 4]), ("k", I64, [1])], [("y", F, [2, 3, 2]), ("i", I64, [2, 3, 2])])
    y, i = run(X, np.array([2]))
    np.testing.assert_array_equal(y, -np.sort(-X, axis=-1)[..., :2])
    _rejects(run, X, np.array([3]))


def test_reduce_picks_the_axes_at_run_time():
    run = _build("ReduceSum", [("x", F, [3, 2, 2]), ("axes", I64, [1])], [("y", F, [3, 2])], keepdims=0)
    x = X.reshape(3, 2, 4)[..., :2].copy()
    for axes in ([1], [-2], [2], [-1]):
        np.testing.assert_allclose(run(x, np.array(axes))[0], x.sum(axis=axes[0]))
    for axes in ([0], [3], [-4]):
        _rejects(run, x, np.array(axes))


def test_reduce_keepdims_checks_the_axes():
    run = _build("ReduceMax", [("x", F, [2, 3, 4]), ("axes", I64, [2])], [("y", F, [2, 1, 1])], keepdims=1)
    for axes in ([1, 2], [-1, 1], [2, -2]):
        np.testing.assert_array_equal(run(X, np.array(axes))[0], X.max(axis=(1, 2), keepdims=True))
    for axes in ([1, 1], [0, 2], [1, 5]):
        _rejects(run, X, np.array(axes))


def test_cumsum_reads_the_axis():
    run = _build("CumSum", [("x", F, [2, 3, 4]), ("axis", I64, [])], [("y", F, [2, 3, 4])], reverse=1)
    for axis in (0, 1, 2, -1, -3):
        np.testing.assert_allclose(run(X, np.array(axis))[0], np.flip(np.cumsum(np.flip(X, axis), axis), axis))
    for axis in (3, -4):
        _rejects(run, X, np.array(axis))


@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_reads_k(upper):
    run = _build("Trilu", [("x", F, [2, 3, 4]), ("k", I64, [])], [("y", F, [2, 3, 4])], opset=14, upper=upper)
    for k in (-9, -3, -1, 0, 2, 4, 2**40, -2**62):
        want = np.triu(X, k) if upper else np.tril(X, k)
        np.testing.assert_array_equal(run(X, np.array(k))[0], want)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_reads_the_pads(mode):
    run = _build("Pad", [("x", F, [2, 3, 4]), ("pads", I64, [6])], [("y", F, [2, 8, 5])], mode=mode)
    begins = [(0, 0, 0), (0, 5, 1), (0, 2, 0), (0, 3, 1)]
    if mode == "constant":     # negative pads crop
        begins += [(0, 4, -1), (0, -2, 3), (0, 7, -2)]
    for begin in begins:
        end = [m - n - b for n, m, b in zip(X.shape, (2, 8, 5), begin)]
        got = run(X, np.array([*begin, *end]))[0]
        crop = tuple(slice(max(-b, 0), X.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(zip(begin, end)))
        want = np.pad(X[crop], [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)], mode=mode)
        np.testing.assert_array_equal(got, want, err_msg=str(begin))
    _rejects(run, X, np.array([0, 2, 0, 0, 2, 1]))          # 3 + 4 elements, not 8
    _rejects(run, X, np.array([0, 2**40, 0, 0, 5 - 2**40, 1]))
    if mode != "constant":
        _rejects(run, X, np.array([0, 6, -1, 0, -1, 2]))    # negative pads only crop in constant mode


def test_pad_reads_the_axes():
    run = _build("Pad", [("x", F, [2, 3, 4]), ("pads", I64, [2]), None, ("axes", I64, [1])], [("y", F, [2, 3, 7])])
    for axes, begin in (([2], 1), ([-1], 3)):
        want = np.pad(X, [(0, 0), (0, 0), (begin, 3 - begin)])
        np.testing.assert_array_equal(run(X, np.array([begin, 3 - begin]), np.array(axes))[0], want)
    _rejects(run, X, np.array([1, 2]), np.array([1]))      # axis 1 stays 3 long in Y
    _rejects(run, X, np.array([1, 2]), np.array([3]))


def test_slice_reads_starts_ends_axes_steps():
    ins = [("x", F, [2, 3, 4]), ("b", I64, [2]), ("e", I64, [2]), ("a", I64, [2]), ("s", I64, [2])]
    run = _build("Slice", ins, [("y", F, [2, 2, 2])])
    big = 2**63 - 1
    for b, e, a, s in [([0, 1], [2, 3], [1, 2], [1, 1]), ([1, 3], [-big, 0], [-2, 2], [-1, -2]),
                       ([-5, 0], [2, big], [1, 2], [1, 3]), ([1, 0], [3, 4], [1, 2], [1, 2]),
                       ([3, 1], [-big - 1, -big - 1], [2, 1], [-2, -1])]:
        want = X
        for start, end, axis, step in zip(b, e, a, s):
            index = [slice(None)] * 3
            index[axis] = slice(max(start, -big), end, step)
            want = want[tuple(index)]
        got = run(X, *map(np.array, (b, e, a, s)))[0]
        np.testing.assert_array_equal(got, want, err_msg=str((b, e, a, s)))
    _rejects(run, X, *map(np.array, ([0, 0], [2, 3], [1, 2], [1, 1])))       # 3 along axis 2, not 2
    _rejects(run, X, *map(np.array, ([0, 0], [2, 2], [1, 2], [1, 0])))       # a step of 0
    _rejects(run, X, *map(np.array, ([0, 0], [2, 2], [1, 3], [1, 1])))       # no axis 3
    one = [ins[0]] + [(name, I64, [1]) for name in "beas"]
    run = _build("Slice", one, [("y", F, [2, 1, 4])])
    for step in (-2**63, -2**62, 2**62, 2**63 - 1):      # one index, however long the step
        got = run(X, np.array([1]), np.array([-9 if step < 0 else 9]), np.array([1]), np.array([step]))[0]
        np.testing.assert_array_equal(got, X[:, 1:2])


def test_derived_parameters_are_checked():
    run = _build("Tile", [("x", F, [2, 3, 4]), ("r", I64, [3])], [("y", F, [4, 3, 8])])
    np.testing.assert_array_equal(run(X, np.array([2, 1, 2]))[0], np.tile(X, (2, 1, 2)))
    _rejects(run, X, np.array([2, 1, 3]))
    run = _build("Expand", [("x", F, [3, 1]), ("s", I64, [2])], [("y", F, [3, 4])])
    x = X[0, :, :1].copy()
    for shape in ([3, 4], [1, 4]):
        np.testing.assert_array_equal(run(x, np.array(shape))[0], np.broadcast_to(x, (3, 4)))
    _rejects(run, x, np.array([3, 5]))
    run = _build("Split", [("x", F, [2, 3, 4]), ("s", I64, [2])], [("a", F, [2, 3, 1]), ("b", F, [2, 3, 3])], axis=2)
    a, b = run(X, np.array([1, 3]))
    np.testing.assert_array_equal(np.concatenate([a, b], axis=2), X)
    _rejects(run, X, np.array([2, 2]))


def test_compress_counts_then_reads_the_condition():
    run = _build("Compress", [("x", F, [2, 3, 4]), ("c", TensorProto.BOOL, [4])], [("y", F, [2, 3, 2])], axis=2)
    for cond in ([1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]):
        cond = np.array(cond, dtype=bool)
        np.testing.assert_array_equal(run(X, cond)[0], np.compress(cond, X, axis=2))
    _rejects(run, X, np.array([1, 1, 1, 0], dtype=bool))


def test_center_crop_pad_checks_the_shape():
    run = _build("CenterCropPad", [("x", F, [2, 3, 4]), ("s", I64, [2])], [("y", F, [2, 2, 6])], axes=[1, 2])
    np.testing.assert_array_equal(run(X, np.array([2, 6]))[0], np.pad(X[:, 0:2], [(0, 0), (0, 0), (1, 1)]))
    _rejects(run, X, np.array([2, 5]))


def test_col2im_checks_the_block_shape():
    ins = [("x", F, [1, 4, 9]), ("image", I64, [2]), ("block", I64, [2])]
    run = _build("Col2Im", ins, [("y", F, [1, 1, 4, 4])])
    x = np.arange(36, dtype=np.float32).reshape(1, 4, 9)
    want = np.zeros((1, 1, 4, 4), dtype=np.float32)
    for k in range(4):                      # block position (k // 2, k % 2), 3 x 3 windows
        want[0, 0, k // 2:k // 2 + 3, k % 2:k % 2 + 3] += x[0, k].reshape(3, 3)
    np.testing.assert_array_equal(run(x, np.array([4, 4]), np.array([2, 2]))[0], want)
    _rejects(run, x, np.array([4, 4]), np.array([4, 1]))


@pytest.mark.parametrize("mode, ctm, extra", [
    ("nearest", "half_pixel", dict(nearest_mode="round_prefer_floor")),
    ("nearest", "asymmetric", dict(nearest_mode="ceil")),
    ("nearest", "align_corners", dict(nearest_mode="round_prefer_ceil")),
    ("linear", "half_pixel", {}), ("linear", "pytorch_half_pixel", {}), ("linear", "half_pixel_symmetric", {}),
    ("cubic", "align_corners", {}), ("cubic", "half_pixel", dict(cubic_coeff_a=-0.5, exclude_outside=1)),
])
def test_resize_reads_the_scales(mode, ctm, extra):
    from onnx.reference import ReferenceEvaluator
    ins = [("x", F, [1, 2, 4, 5]), None, ("s", F, [2])]
    node = dict(mode=mode, coordinate_transformation_mode=ctm, axes=[2, 3], **extra)
    run = _build("Resize", ins, [("y", F, [1, 2, 7, 3])], opset=19, **node)
    ref = ReferenceEvaluator(helper.make_model(helper.make_graph(
        [helper.make_node("Resize", ["x", "", "s"], ["y"], **node)], "g",
        [helper.make_tensor_value_info(*i) for i in ins if i], [helper.make_tensor_value_info("y", F, None)]),
        opset_imports=[helper.make_opsetid("", 19)]))
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5)).astype(np.float32)
    for scales in ([1.75, 0.6], [1.9, 0.79], [1.99, 0.7]):        # all give 7 x 3
        s = np.array(scales, dtype=np.float32)
        np.testing.assert_allclose(run(x, s)[0], ref.run(None, {"x": x, "s": s})[0], rtol=1e-6, atol=1e-6)
    for scales in ([2.0, 0.8], [1.7, 0.6], [-1.75, 0.6], [np.nan, 0.6]):
        _rejects(run, x, np.array(scales, dtype=np.float32))


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_sizes_with_a_policy_give_one_scale(policy):
    from onnx.reference import ReferenceEvaluator
    ins = [("x", F, [1, 1, 4, 6]), None, None, ("s", I64, [2])]
    node = dict(mode="nearest", axes=[2, 3], keep_aspect_ratio_policy=policy)
    out = [1, 1, 6, 9] if policy == "not_larger" else [1, 1, 8, 12]
    run = _build("Resize", ins, [("y", F, out)], opset=19, **node)
    ref = ReferenceEvaluator(helper.make_model(helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "s"], ["y"], **node)], "g",
        [helper.make_tensor_value_info(*i) for i in ins if i], [helper.make_tensor_value_info("y", F, None)]),
        opset_imports=[helper.make_opsetid("", 19)]))
    x = np.arange(24, dtype=np.float32).reshape(1, 1, 4, 6)
    good = [[8, 9], [7, 9], [6, 100]] if policy == "not_larger" else [[8, 9], [8, 1], [2, 12]]
    for sizes in good:
        s = np.array(sizes)
        np.testing.assert_array_equal(run(x, s)[0], ref.run(None, {"x": x, "s": s})[0])
    _rejects(run, x, np.array([8, 8] if policy == "not_larger" else [9, 9]))
    _rejects(run, x, np.array([-8, 9]))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_reads_the_roi(mode):
    from onnx.reference import ReferenceEvaluator
    ins = [("x", F, [1, 1, 4, 5]), ("roi", F, [4]), ("s", I64, [2])]
    node = dict(mode=mode, coordinate_transformation_mode="tf_crop_and_resize", axes=[2, 3], extrapolation_value=7.0)
    run = _build("Resize", [ins[0], ins[1], None, ins[2]], [("y", F, [1, 1, 3, 6])], opset=19, **node)
    ref = ReferenceEvaluator(helper.make_model(helper.make_graph(
        [helper.make_node("Resize", ["x", "roi", "", "s"], ["y"], **node)], "g",
        [helper.make_tensor_value_info(*i) for i in ins], [helper.make_tensor_value_info("y", F, None)]),
        opset_imports=[helper.make_opsetid("", 19)]))
    x = np.random.default_rng(1).standard_normal((1, 1, 4, 5)).astype(np.float32)
    s = np.array([3, 6])
    for roi in ([0.0, 0.0, 1.0, 1.0], [0.4, 0.6, 0.6, 0.8], [-0.5, 0.2, 1.2, 0.3], [0.25, 0.9, 0.25, 1.7]):
        roi = np.array(roi, dtype=np.float32)
        want = ref.run(None, {"x": x, "roi": roi, "s": s})[0]
        np.testing.assert_allclose(run(x, roi, s)[0], want, rtol=1e-6, atol=1e-6, err_msg=str(roi))
    _rejects(run, x, np.array([0, 0, 1, 1], dtype=np.float32), np.array([3, 5]))
