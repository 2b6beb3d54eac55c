"""Time the generated C against onnxruntime (1 thread): same inputs, alternating runs, medians."""
from __future__ import annotations

import time

import numpy as np

from .verify import Reference, random_inputs


def bench(compiled, proto, arrays=None, runs: int = 0, budget_s: float = 4.0, cflags=None) -> dict:
    runner = compiled.build(cflags)
    arrays = arrays or random_inputs(runner.inputs)
    reference = Reference(proto)
    feeds = {n: a for (n, _, _), a in zip(runner.inputs, arrays)}
    for _ in range(2):                                  # warm both up
        runner(*arrays)
        reference(feeds)
    if not runs:                                        # as many pairs as fit the budget, 5..200
        t0 = time.perf_counter()
        runner(*arrays)
        reference(feeds)
        pair = time.perf_counter() - t0
        runs = int(min(200, max(5, budget_s / max(pair, 1e-6))))
    kiln, ref = [], []
    for _ in range(runs):                               # alternate so drift hits both equally
        t0 = time.perf_counter()
        runner(*arrays)
        t1 = time.perf_counter()
        reference(feeds)
        t2 = time.perf_counter()
        kiln.append(t1 - t0)
        ref.append(t2 - t1)
    kiln_ms, ref_ms = 1e3 * float(np.median(kiln)), 1e3 * float(np.median(ref))
    macs = compiled.report["macs"]
    return dict(model=compiled.name, runs=runs, kiln_ms=kiln_ms, reference_ms=ref_ms, reference=reference.kind,
                ratio=kiln_ms / ref_ms, gflops=2 * macs / (kiln_ms * 1e6) if kiln_ms else 0.0, macs=macs)
