"""Per-tensor activation ranges for int8, from a `Calibration` (calibrate.py), by one of three methods
that follow onnxruntime.quantization.calibrate (1.32) step for step, so that a range here equals
onnxruntime's for the same values:

- minmax: the smallest and largest value over all samples (MinMaxCalibrater).
- percentile: a histogram of |x| (`bins` bins from min |x| to max |x|); the threshold is the first bin
  edge where the cumulative share reaches `percentile`, and the range (-threshold, threshold) is
  clipped to (min, max). This is create_calibrator's default (PercentileCalibrater, symmetric=True,
  what quantize_static uses); for a post-ReLU tensor it gives (min, threshold).
- entropy: TensorRT's KL-divergence calibrator as onnxruntime's EntropyCalibrater runs it: a histogram
  of x over (-t, t), t = max |x|, in `bins` bins; each candidate window of 2i+1 centre bins
  (i = 64 ... bins/2), outliers folded into its end bins, is merged into 128 levels and expanded
  back, and the window whose two distributions differ least (smoothed, KL) is the range, clipped to
  (min, max). onnxruntime's quirks are kept on purpose (expanded counts truncated to integers, empty
  bins inside a level not zeroed, the window one bin longer on the right) -- they choose the window.

Histograms stream: the min/max pass is the calibration's statistics; a second pass over the samples
adds one sample's histogram at a time with edges fixed by those statistics (numpy bins each value on
its own, so the sum equals onnxruntime's histogram of everything at once). Every range returned
contains 0, as onnxruntime's scale computation widens it; lo == hi only for an all-zero tensor."""
from __future__ import annotations

import numpy as np

from .errors import KilnError

METHODS = ("minmax", "percentile", "entropy")
ENTROPY_LEVELS = 128    # levels a candidate window is merged into (onnxruntime's num_quantized_bins)
SMOOTH_EPS = 1e-4       # mass moved onto empty bins before the KL divergence (onnxruntime's eps)


def activation_ranges(calibration, names, method: str = "minmax", percentile: float = 99.99,
                      bins: int = 2048) -> dict[str, tuple[float, float]]:
    """{name: (lo, hi)} for the float tensors `names` (graph inputs or intermediates) of the
    calibrated model, lo <= 0 <= hi."""
    if method not in METHODS:
        raise KilnError(f"calibration method {method!r} is not one of {', '.join(METHODS)}.")
    if not 0 <= percentile <= 100:
        raise KilnError(f"percentile {percentile} is not within [0, 100].")
    if bins < ENTROPY_LEVELS:
        raise KilnError(f"a calibration histogram needs at least {ENTROPY_LEVELS} bins, not {bins}.")
    names = list(dict.fromkeys(names))
    stats = {}
    for name in names:
        stats[name] = calibration.get(name)
        if stats[name] is None:
            raise KilnError(f"calibration data gives no float values for tensor {name!r}.")
    if method == "minmax":
        found = {n: (s.min, s.max) for n, s in stats.items()}
    else:
        outer = {n: _outer_edges(s, method) for n, s in stats.items()}
        hists, edges = {}, {}
        for values in calibration.outputs(names):
            for name, arr in values.items():
                arr = arr.reshape(-1)
                counts, edges[name] = np.histogram(np.abs(arr) if method == "percentile" else arr,
                                                   bins, range=outer[name])
                hists[name] = hists.get(name, 0) + counts
        pick = (lambda h, e: _percentile_threshold(h, e, percentile)) if method == "percentile" \
            else _entropy_threshold
        found = {n: _clip(pick(hists[n], edges[n]), stats[n]) for n in names}
    return {n: (min(float(lo), 0.0), max(float(hi), 0.0)) for n, (lo, hi) in found.items()}


def _outer_edges(stats, method) -> tuple[np.float32, np.float32]:
    """The histogram's outer edges, float32 as onnxruntime's (where numpy widens an empty range)."""
    if method == "percentile":
        first, last = np.float32(stats.absmin), np.float32(max(abs(stats.min), abs(stats.max)))
    else:
        last = np.float32(max(abs(stats.min), abs(stats.max)))
        first = -last
    return (first - np.float32(0.5), last + np.float32(0.5)) if first == last else (first, last)


def _clip(window, stats) -> tuple[float, float]:
    lo, hi = window
    return max(lo, np.float32(stats.min)), min(hi, np.float32(stats.max))


def _percentile_threshold(hist, edges, percentile):
    """(-t, t): t the first edge of |x| where the cumulative share reaches `percentile`."""
    cdf = np.cumsum(hist / hist.sum())
    threshold = edges[np.searchsorted(cdf, percentile / 100.0)]
    return -threshold, threshold


def _entropy_threshold(hist, edges):
    """The window (edges[z - i], edges[z + i + 1]) with the least KL divergence between its
    distribution p (outliers folded into the end bins) and p merged into ENTROPY_LEVELS levels."""
    n, levels = hist.size, ENTROPY_LEVELS
    zero = n // 2
    windows, divergences = [], []
    for i in range(levels // 2, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += hist[:start].sum()
        p[-1] += hist[end:].sum()
        width = sliced.size // levels                   # bins per level; the remainder joins the last
        merged = sliced[:levels * width].reshape(levels, width).sum(axis=1)
        merged[-1] += sliced[levels * width:].sum()
        norm = (p[:levels * width] != 0).reshape(levels, width).sum(axis=1)
        q = np.zeros(p.size, np.int64)                  # each level's count spread over its bins
        q[:levels * width] = np.repeat(np.where(norm > 0, merged // np.maximum(norm, 1), 0), width)
        windows.append((edges[start], edges[end]))
        divergences.append(_kl(_smooth(p), _smooth(q)))
    return windows[int(np.argmin(divergences))]


def _smooth(p):
    """p as float32 with SMOOTH_EPS on each empty bin, taken evenly off the others (None if empty)."""
    zeros = int((p == 0).sum())
    if zeros == p.size:
        return None
    eps1 = SMOOTH_EPS * zeros / (p.size - zeros)
    return p.astype(np.float32) + np.where(p == 0, np.float32(SMOOTH_EPS), np.float32(-eps1))


def _kl(p, q) -> np.float32:
    """KL(p || q) of the normalised distributions, in float32 as onnxruntime's `entropy`."""
    if p is None or q is None:
        return np.float32(np.inf)
    p, q = p / np.sum(p), q / np.sum(q)
    return np.sum(p * np.log(p / q))
