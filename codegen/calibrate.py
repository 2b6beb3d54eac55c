"""Activation statistics from calibration data: the reference runs the original model with every
intermediate tensor exposed, and each float tensor (graph inputs included) gets its per-channel mean
(axis 1), min, max and smallest magnitude. `Calibration.activations` gives a tensor's values over all
samples, computed on first use; `Calibration.outputs` streams them one sample at a time. Used by
channel pruning (mean replacement and weight reconstruction) and by int8 ranges (ranges.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .errors import KilnError


@dataclass
class Stats:
    mean: np.ndarray      # per channel (axis 1), or one value for tensors of rank < 2
    min: float
    max: float
    absmin: float         # the smallest |x|: where onnxruntime's histogram of |x| starts (ranges.py)


def load_samples(calibration, input_specs) -> list[list[np.ndarray]]:
    """A path to .npz (see verify.load_inputs) or a list of samples (each a list of arrays)."""
    if isinstance(calibration, (str, bytes)) or hasattr(calibration, "__fspath__"):
        from .verify import load_inputs
        return load_inputs(calibration, input_specs)[0]
    samples = [list(s) if isinstance(s, (list, tuple)) else [s] for s in calibration]
    if not samples:
        raise KilnError("calibration data holds no samples.")
    return samples


class Calibration:
    """The original model run on calibration samples: `stats[name]` for every float tensor, and
    `activations(name)`: the tensor over all samples, concatenated along axis 0."""

    def __init__(self, proto: onnx.ModelProto, samples, input_names):
        self.proto, self.samples, self.input_names = proto, samples, list(input_names)
        self._cache: dict[str, np.ndarray] = {}
        self.stats = activation_stats(proto, samples, input_names)

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, name: str) -> Stats | None:
        return self.stats.get(name)

    def activations(self, name: str) -> np.ndarray | None:
        if name not in self._cache:
            parts = [values[name] for values in self.outputs([name]) if name in values]
            if not parts:
                return None
            self._cache[name] = np.concatenate(parts, axis=0)
        return self._cache[name]

    def outputs(self, names):
        """Yields, sample by sample, {name: value} for those of `names` that are graph inputs or
        tensors the reference can expose: one sample's tensors in memory at a time."""
        return run_samples(self.proto, self.samples, self.input_names, names)


def run_samples(proto: onnx.ModelProto, samples, input_names, names):
    from .verify import Reference
    inner = [n for n in names if n not in input_names]
    reference = Reference(proto, inner) if inner else None
    for sample in samples:
        feeds = dict(zip(input_names, sample))
        values = {**reference(feeds), **feeds} if reference else feeds
        yield {n: np.asarray(values[n]) for n in names if n in values}


def activation_stats(proto: onnx.ModelProto, samples, input_names) -> dict[str, Stats]:
    names = list(input_names) + [o for n in proto.graph.node for o in n.output if o]
    sums, counts, lows, highs, smallest = {}, {}, {}, {}, {}
    for values in run_samples(proto, samples, input_names, names):
        for name, arr in values.items():
            if arr.dtype.kind != "f" or arr.size == 0:
                continue
            per = arr.astype(np.float64).swapaxes(0, 1).reshape(arr.shape[1], -1) if arr.ndim >= 2 \
                else arr.astype(np.float64).reshape(1, -1)
            sums[name] = sums.get(name, 0) + per.sum(axis=1)
            counts[name] = counts.get(name, 0) + per.shape[1]
            lows[name] = min(lows.get(name, np.inf), float(arr.min()))
            highs[name] = max(highs.get(name, -np.inf), float(arr.max()))
            smallest[name] = min(smallest.get(name, np.inf), float(np.abs(arr).min()))
    return {n: Stats(sums[n] / counts[n], lows[n], highs[n], smallest[n]) for n in sums}
