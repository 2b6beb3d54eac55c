"""Compressed sparse rows for pruned weights: kept only where the file gets smaller AND the layer
gets faster. Each output channel's non-zero weights are stored with the index of the input they
multiply; the kernel skips the zeros, so MACs fall with the density.

When: examples/benchmarks/sparse_layers.py times both kernels at a range of densities (AVX2 core,
-O3 -march=native). A 1024x1024 Gemm at batch 1 breaks even at 10% density (3.0x faster at 2%, 1.9x
at 5%); a 64-channel 3x3 convolution on 56x56 also at 10% (9.9x at 2%, 3.3x at 5%): above that, the
dense kernels' vector tiles beat skipping zeros. The file is smaller at any density below ~60%, so
speed decides: sparse at or below 8%.
"""
from __future__ import annotations

import numpy as np

MAX_DENSITY = {"gemm": 0.08, "conv": 0.08}


def density(w: np.ndarray) -> float:
    return float(np.count_nonzero(w)) / max(w.size, 1)


def worth_it(kind: str, w: np.ndarray) -> bool:
    return w.size >= 64 and density(w) <= MAX_DENSITY[kind]


def worth_timing(w: np.ndarray) -> bool:
    """Sparse enough that --tune should time the sparse kernel against the dense ones."""
    return w.size >= 64 and density(w) <= 0.5


def csr(rows: np.ndarray) -> dict[str, np.ndarray]:
    """rows (outputs, inputs) -> {"Sp": row starts (outputs + 1), "Si": input indices, "Sv": values}.
    Indices are 16-bit where the inputs fit, halving their bytes."""
    rows = rows.reshape(rows.shape[0], -1)
    out, col = np.nonzero(rows)
    starts = np.zeros(rows.shape[0] + 1, np.int32)
    np.cumsum(np.bincount(out, minlength=rows.shape[0]), out=starts[1:])
    index_type = np.uint16 if rows.shape[1] <= 1 << 16 else np.int32
    return {"Sp": starts, "Si": col.astype(index_type), "Sv": rows[out, col].astype(rows.dtype)}
