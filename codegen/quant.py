"""The int8 arithmetic, in numpy: what the generated C computes, bit for bit.

Affine quantisation (ARCHITECTURE.md, "Numerics"): q = clamp(round(x / scale) + zero_point, qmin, qmax),
scale = (max - min) / (2^bits - 1). Weights are symmetric per output channel (zero point 0,
[-127, 127]), activations asymmetric per tensor. An integer layer accumulates in int32 and
requantises with an integer multiplier and shift -- no float at run time:

    y = clamp(zero_point + ((acc * m + 2^(s-1)) >> s), lo, hi)      (64-bit product, halves round up)

where m in [2^30, 2^31) and s are chosen at compile time so that m / 2^s approximates the real
factor (input scale * weight scale / output scale) to 31 significant bits. The C helpers
kiln_requant / kiln_requant2 (runtime_c/kiln_helpers.c) are the same formulas.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 62


@dataclass(frozen=True)
class QParams:
    """How a float tensor is stored as integers: x ~ (q - zero_point) * scale. `scale` and
    `zero_point` hold one value, or one per index along `axis` (weights)."""
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: np.dtype = np.dtype(np.int8)
    axis: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "scale", np.asarray(self.scale, np.float64).reshape(-1))
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point, np.int64).reshape(-1))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    @property
    def zp(self) -> int:
        """The zero point of a per-tensor QParams."""
        return int(self.zero_point[0])

    @property
    def s(self) -> float:
        return float(self.scale[0])

    def same(self, other: "QParams | None") -> bool:
        return other is not None and self.dtype == other.dtype and np.array_equal(self.scale, other.scale) \
            and np.array_equal(self.zero_point, other.zero_point)

    def _along(self, arr, shape):
        if self.axis is None or arr.size == 1:
            return arr.reshape(())
        view = [1] * len(shape)
        view[self.axis] = -1
        return arr.reshape(view)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """round half to even, as onnxruntime's QuantizeLinear."""
        x = np.asarray(x, np.float64)
        q = np.rint(x / self._along(self.scale, x.shape)) + self._along(self.zero_point, x.shape)
        return np.clip(q, self.qmin, self.qmax).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q).astype(np.int64)
        return ((q - self._along(self.zero_point, q.shape)) * self._along(self.scale, q.shape)).astype(np.float32)


def activation_qparams(lo: float, hi: float, dtype=np.int8) -> QParams:
    """Asymmetric per-tensor parameters for values in [lo, hi] (widened to hold 0, which must be
    exact: padding and ReLU produce it)."""
    info = np.iinfo(dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / (info.max - info.min)
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    zero_point = int(np.clip(np.rint(info.min - lo / scale), info.min, info.max))
    return QParams(np.float32(scale), zero_point, dtype)


def weight_qparams(w: np.ndarray, axis: int = 0) -> QParams:
    """Symmetric int8 per output channel (`axis`), range [-127, 127]."""
    moved = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    peak = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return QParams(scale, np.zeros_like(scale, np.int64), np.int8, axis)


def multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """(m, s) per element of `real` with m / 2^s ~ real: m in [2^30, 2^31) and 0 <= s <= 62, or a
    smaller m where real < 2^-32 needs more shift than that (m = 0 below 2^-63: the layer then
    outputs its zero point)."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    if np.any(~np.isfinite(real)) or np.any(real < 0) or np.any(real >= 2.0 ** 30):
        raise ValueError(f"requantisation factors must be in [0, 2^30): {real.min()} .. {real.max()}")
    _, exp = np.frexp(real)                          # real = frac * 2^exp, frac in [0.5, 1)
    s = np.clip(31 - exp.astype(np.int64), 0, MAX_SHIFT)
    m = np.rint(real * np.exp2(s)).astype(np.int64)  # scaling by a power of two is exact
    top = m == 1 << 31                               # frac rounded up to 1
    return np.where(top, 1 << 30, m), np.where(top, s - 1, s)


def rounding_shift(p: np.ndarray, s) -> np.ndarray:
    """round(p / 2^s), halves up, on int64 (what kiln_rshift_round computes)."""
    p = np.asarray(p, np.int64)
    s = np.asarray(s, np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(p + half, s)


def requant(acc, m, s, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """clamp(zero_point + round(acc * m / 2^s), lo, hi): kiln_requant."""
    acc = np.asarray(acc).astype(np.int64)
    return np.clip(rounding_shift(acc * np.asarray(m, np.int64), s) + zero_point, lo, hi)


def requant2(a, ma, b, mb, s, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """clamp(zero_point + round((a * ma + b * mb) / 2^s), lo, hi): kiln_requant2, the sum of two
    rescaled operands with a single rounding."""
    a = np.asarray(a).astype(np.int64)
    b = np.asarray(b).astype(np.int64)
    return np.clip(rounding_shift(a * ma + b * mb, s) + zero_point, lo, hi)


def pair_multiplier(real_a: float, real_b: float) -> tuple[int, int, int]:
    """(ma, mb, s): ma / 2^s ~ real_a and mb / 2^s ~ real_b with one shift (the larger multiplier
    in [2^30, 2^31)) -- the sum of two operands with different scales (Add, Concat)."""
    m, s = multiplier(max(real_a, real_b))
    s = int(s[0])
    ma, mb = (int(np.rint(r * 2.0 ** s)) for r in (real_a, real_b))
    return min(ma, int(m[0])), min(mb, int(m[0])), s
