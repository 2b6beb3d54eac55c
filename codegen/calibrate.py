"""Activation statistics from calibration data: the reference runs the original model with every
intermediate tensor exposed, and each float tensor gets its per-channel mean (axis 1), min and max.
`Calibration.activations` gives a tensor's values over all samples, computed on first use. Used by
channel pruning (mean replacement and weight reconstruction) and, later, by int8 calibration."""
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
            from .verify import Reference
            if name in self.input_names:
                parts = [s[self.input_names.index(name)] for s in self.samples]
            else:
                reference = Reference(self.proto, [name])
                if name not in reference.output_names:
                    return None
                parts = [reference(dict(zip(self.input_names, s)))[name] for s in self.samples]
            self._cache[name] = np.concatenate([np.asarray(p) for p in parts], axis=0)
        return self._cache[name]


def activation_stats(proto: onnx.ModelProto, samples, input_names) -> dict[str, Stats]:
    from .verify import Reference
    names = [o for n in proto.graph.node for o in n.output if o]
    reference = Reference(proto, names)
    sums, counts, lows, highs = {}, {}, {}, {}
    for sample in samples:
        feeds = {n: a for n, a in zip(input_names, sample)}
        values = {**feeds, **reference(feeds)}
        for name, arr in values.items():
            arr = np.asarray(arr)
            if arr.dtype.kind != "f" or arr.size == 0:
                continue
            per = arr.astype(np.float64).swapaxes(0, 1).reshape(arr.shape[1], -1) if arr.ndim >= 2 \
                else arr.astype(np.float64).reshape(1, -1)
            sums[name] = sums.get(name, 0) + per.sum(axis=1)
            counts[name] = counts.get(name, 0) + per.shape[1]
            lows[name] = min(lows.get(name, np.inf), float(arr.min()))
            highs[name] = max(highs.get(name, -np.inf), float(arr.max()))
    return {n: Stats(sums[n] / counts[n], lows[n], highs[n]) for n in sums}


def activation_ranges(calibration: Calibration, names, method: str = "minmax", percentile: float = 99.99) -> dict:
    """{name: (lo, hi)} for the tensors of `names` the calibration saw."""
    if method != "minmax":
        raise KilnError(f"calibration method {method!r} is not available")
    return {n: (calibration.stats[n].min, calibration.stats[n].max) for n in names if n in calibration.stats}
