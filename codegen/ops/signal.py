"""Signal processing: DFT (forward, one-sided, inverse of a one-sided spectrum, any dft_length) as a direct sum over a
compile-time table of twiddles, computed in double as numpy's FFT computes; the axis may arrive at
run time (one loop nest per axis that gives the output's shape)."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_const, require_dtype


def _twiddles(L: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi j / L for j in [0, L): the kernel indexes them by (k * t) mod L."""
    angle = 2 * np.pi * np.arange(L) / L
    return np.cos(angle), np.sin(angle)


@op("DFT")
def dft(outs, input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    (Y,) = outs
    require_dtype(input, Y)
    rank = len(input.shape)
    if rank < 3 or input.shape[-1] not in (1, 2):
        raise Unsupported("the input must be [batch, ..., signal, 1 or 2]")
    if inverse and not onesided:
        raise Unsupported("the inverse of a two-sided spectrum is not supported: computed in double, it "
                          "misses the float32 rounding noise its conformance cases expect beyond their atol")
    length = require_const(dft_length, "dft_length")
    if axis is not None and axis.is_const:
        axes = [int(axis.const.reshape(-1)[0])]
    else:
        axes = list(range(1, rank - 1))       # -2 when absent, or whichever the run time gives
        axes = [rank - 2] if axis is None else axes
    cases = []
    for a in axes:
        if not -rank <= a < rank or a % rank in (0, rank - 1):
            raise Unsupported(f"axis {a} is not a signal axis")
        a %= rank
        n = input.shape[a]
        L = int(length.reshape(-1)[0]) if length is not None else 2 * (n - 1) if inverse and onesided else n
        if L < 1:
            raise Unsupported("dft_length must be positive")
        K = L // 2 + 1 if onesided and not inverse else L
        out_shape = input.shape[:a] + (K,) + input.shape[a + 1:-1] + (1 if inverse and onesided else 2,)
        if tuple(out_shape) != tuple(Y.shape):
            continue
        T = min(n, L // 2 + 1) if inverse and onesided else min(n, L)
        cases.append(dict(axis=a, L=L, outer=int(np.prod(input.shape[:a], dtype=np.int64)), n=n, K=K, T=T,
                          inner=int(np.prod(input.shape[a + 1:-1], dtype=np.int64))))
    if not cases:
        raise Unsupported("no axis gives the output's shape")
    Ls = {c["L"] for c in cases}
    if len(Ls) != 1:
        raise Unsupported("the axis must be a constant (the axes it may be need different lengths)")
    (L,) = Ls
    if input.size == 0 and Y.size:
        raise Unsupported("the DFT of an empty input")
    cos, sin = _twiddles(L)
    kind = "irfft" if inverse else "forward"
    inputs = {"X": input}
    if len(cases) > 1:
        inputs["A"] = axis
    return Kernel("dft", inputs, {"Y": Y}, consts={"COS": cos, "SIN": sin},
                  params=dict(cases=cases, rank=rank, L=L, kind=kind, cin=input.shape[-1], cout=Y.shape[-1],
                              scale=1.0 / L if inverse else None, runtime_axis=len(cases) > 1),
                  macs=Y.size * max(c["T"] for c in cases),
                  math=f"Y[k] = {'1/L ' if inverse else ''}sum_t X[t] e^({'+' if inverse else '-'}2 pi i k t / L), "
                       f"L = {L}{' (one-sided)' if onesided else ''}")


# window name -> its value at n of a window of period N (in double, as the reference's formulas)
WINDOWS = {
    "HannWindow": lambda n, N: np.sin(np.pi * n / N) ** 2,
    "HammingWindow": lambda n, N: 25 / 46 - (1 - 25 / 46) * np.cos(2 * np.pi * n / N),
    "BlackmanWindow": lambda n, N: 0.42 - 0.5 * np.cos(2 * np.pi * n / N) + 0.08 * np.cos(4 * np.pi * n / N),
}


def _window(name):
    def lower(outs, size, *, output_datatype=1, periodic=1):
        """The window depends on its length only, which is the output's static shape: a constant."""
        (Y,) = outs
        (length,) = Y.shape
        if size.is_const and int(size.const.reshape(-1)[0]) != length:
            raise Unsupported("size disagrees with the output's shape")
        if np.dtype(Y.dtype).kind != "f" or np.dtype(Y.dtype).name not in ("float32", "float64"):
            raise Unsupported(f"output dtype {Y.dtype} not supported")
        with np.errstate(divide="ignore", invalid="ignore"):
            window = WINDOWS[name](np.arange(length, dtype=np.float64), length if periodic else length - 1)
        return Kernel("copy", {}, {"Y": Y}, consts={"X": window.astype(Y.dtype)}, params=dict(nbytes=Y.nbytes),
                      math=f"Y = {name}({length}{', periodic' if periodic else ''}), computed at compile time")
    lower.__name__ = name
    return lower


for _name in WINDOWS:
    op(_name)(_window(_name))
