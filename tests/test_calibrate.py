"""int8 activation ranges (codegen/ranges.py) against onnxruntime's calibrators on the same samples.

Tolerance: where both see the same float values (an Identity/Relu model of the input) the ranges are
equal bit for bit. Through a conv model the reference runs onnxruntime with graph optimisation and
the calibrators without, so tensors may differ in the last float bit: there each end may differ by
1e-5 of the range's width (observed: 3e-7), far below one histogram bin (1/2048 of it)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

from codegen.calibrate import Calibration
from codegen.errors import KilnError
from codegen.ranges import activation_ranges

from .conftest import ROOT
from .graphs import conv, model

RNG = np.random.default_rng(7)
DIGITS = ROOT / "examples" / "digits"
PERCENTILE = 99.9      # not the default, so that the option must reach the method
METHODS = {"minmax": ("MinMax", {}),    # kiln method -> onnxruntime's, with the options that match
           "percentile": ("Percentile", dict(percentile=PERCENTILE, symmetric=True)),
           "entropy": ("Entropy", dict(num_quantized_bins=128, symmetric=False))}
TOLERANCE = 1e-5        # of the range's width, through a model (see above)


class _Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def _onnxruntime(proto, samples, input_names, method, bins, tmp_path):
    """onnxruntime's ranges, widened to contain 0 as its compute_scale_zp does."""
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)
    kind, extra = METHODS[method]
    with contextlib.redirect_stdout(io.StringIO()):         # the histogram calibrators print
        calibrator = create_calibrator(str(path), augmented_model_path=str(tmp_path / "augmented.onnx"),
                                       calibrate_method=getattr(CalibrationMethod, kind),
                                       extra_options=dict(extra, num_bins=bins))
        calibrator.collect_data(_Reader([dict(zip(input_names, s)) for s in samples]))
        data = calibrator.compute_data()
    ends = {k: [float(np.asarray(e).reshape(-1)[0]) for e in v.range_value] for k, v in data.items()}
    return {k: (min(lo, 0.0), max(hi, 0.0)) for k, (lo, hi) in ends.items()}


def _ours(proto, samples, input_names, names, method, bins):
    calibration = Calibration(proto, samples, input_names)
    got = activation_ranges(calibration, names, method, percentile=PERCENTILE, bins=bins)
    assert activation_ranges(calibration, names, method, percentile=PERCENTILE, bins=bins) == got
    assert not calibration._cache, "the histograms must stream, not keep every activation"
    return got


def _assert_close(got, want, tolerance):
    assert sorted(got) == sorted(want)
    for name, (lo, hi) in want.items():
        assert got[name][0] <= 0 <= got[name][1]
        slack = tolerance * (hi - lo)
        assert abs(got[name][0] - lo) <= slack and abs(got[name][1] - hi) <= slack, (name, got[name], (lo, hi))


def _conv_model():
    """x -> Conv -> Relu -> Conv -> Sigmoid: signed, post-ReLU and all-positive (0 < s < 1) tensors."""
    w1, b1 = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)
    w2, b2 = RNG.standard_normal((5, 4, 1, 1)).astype(np.float32), RNG.standard_normal(5).astype(np.float32)
    nodes = [conv("c1", "x", "w1", "b1", "a", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             conv("c2", "r", "w2", "b2", "y"), helper.make_node("Sigmoid", ["y"], ["s"])]
    return model(nodes, [("x", (1, 3, 8, 8))], [("s", (1, 5, 8, 8))], dict(w1=w1, b1=b1, w2=w2, b2=b2))


@pytest.mark.parametrize("count", [1, 12])
@pytest.mark.parametrize("method", METHODS)
def test_conv_model_matches_onnxruntime(method, count, tmp_path):
    proto = _conv_model()
    samples = [[RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)] for _ in range(count)]
    want = _onnxruntime(proto, samples, ["x"], method, 2048, tmp_path)
    assert sorted(want) == ["a", "r", "s", "x", "y"]
    _assert_close(_ours(proto, samples, ["x"], list(want), method, 2048), want, TOLERANCE)


@pytest.mark.parametrize("method", METHODS)
def test_digits_matches_onnxruntime(method, tmp_path):
    proto = onnx.load(DIGITS / "digits.onnx")
    images = np.load(DIGITS / "digits_test.npz")["x"][:64]
    samples = [[images[i:i + 1]] for i in range(len(images))]
    want = _onnxruntime(proto, samples, ["image"], method, 2048, tmp_path)
    assert len(want) == 11
    got = _ours(proto, samples, ["image"], list(want), method, 2048)
    _assert_close(got, want, TOLERANCE)
    if method != "minmax":      # the clipping methods do clip the wide tensors
        assert got["logits"][0] > _ours(proto, samples, ["image"], ["logits"], "minmax", 2048)["logits"][0]


DATA = {
    "signed, scales differ per sample": lambda: [RNG.standard_normal((2, 50)).astype(np.float32) * s
                                                 for s in (0.5, 1, 3, 0.1)],
    "heavy tail": lambda: [RNG.standard_t(2, (1, 400)).astype(np.float32) for _ in range(5)],
    "all positive": lambda: [RNG.uniform(1, 2, (1, 300)).astype(np.float32) for _ in range(3)],
    "constant": lambda: [np.full((1, 20), 0.75, np.float32) for _ in range(3)],
    "all zero": lambda: [np.zeros((1, 20), np.float32)],
    "single sample": lambda: [RNG.standard_normal((1, 1000)).astype(np.float32)],
}


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("method", METHODS)
def test_same_values_give_identical_ranges(method, data, tmp_path):
    """x -> Relu: both sides see identical floats, so the algorithms must agree to the bit."""
    arrays = DATA[data]()
    proto = model([helper.make_node("Relu", ["x"], ["r"])], [("x", arrays[0].shape)], [("r", arrays[0].shape)])
    samples = [[a] for a in arrays]
    want = _onnxruntime(proto, samples, ["x"], method, 512, tmp_path)
    got = _ours(proto, samples, ["x"], ["x", "r"], method, 512)
    assert got == want
    lo, hi = got["x"]
    if data == "all positive":
        assert lo == 0 < hi <= 2
    if data in ("constant", "all zero"):
        assert got["r"] == got["x"] == (0.0, 0.75 if data == "constant" else 0.0)


def test_refuses_what_it_cannot_do():
    proto = _conv_model()
    calibration = Calibration(proto, [[np.ones((1, 3, 8, 8), np.float32)]], ["x"])
    with pytest.raises(KilnError, match="not one of minmax, percentile, entropy"):
        activation_ranges(calibration, ["a"], "mse")
    with pytest.raises(KilnError, match="no float values for tensor 'w1'"):
        activation_ranges(calibration, ["w1"])
    with pytest.raises(KilnError, match="at least 128 bins"):
        activation_ranges(calibration, ["a"], "entropy", bins=64)
