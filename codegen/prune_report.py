"""Sweep pruning strengths and measure what each buys and costs: weight bytes, non-zero weights,
MACs, and the error of the outputs (and the accuracy, with labels) against the unpruned model."""
from __future__ import annotations

import numpy as np

from .verify import compare, random_inputs

SWEEPS = {"magnitude": (0.0, 0.25, 0.5, 0.75, 0.9), "channels": (0.0, 0.125, 0.25, 0.375, 0.5)}


def _nonzero_weights(compiled) -> int:
    return int(sum(np.count_nonzero(compiled.graph.values[i].const) for n in compiled.graph.nodes
                   if n.op in ("Conv", "Gemm", "MatMul") for i in n.inputs[1:2] if i and compiled.graph.values[i].is_const))


def prune_report(model, samples=None, labels=None, calibration=None, cflags=None, compile_options=None,
                 sweeps=SWEEPS) -> list[dict]:
    import codegen
    options = dict(compile_options or {})
    base = codegen.compile(model, **options)
    base_run = base.build(cflags)
    samples = samples or [random_inputs(base_run.inputs, seed) for seed in range(8)]
    base_out = [base_run(*s) for s in samples]
    rows = []
    for method, strengths in sweeps.items():
        for strength in strengths:
            extra = {"prune_sparsity": strength} if method == "magnitude" else \
                {"prune_channels": strength, "calibration": calibration}
            compiled = codegen.compile(model, **options, **extra) if strength else base
            run = compiled.build(cflags) if strength else base_run
            outs = [run(*s) for s in samples] if strength else base_out
            err = max(compare("y", o[0], b[0]).max_rel for o, b in zip(outs, base_out))
            row = dict(method=method, strength=strength, weight_bytes=compiled.sources.weight_bytes,
                       nonzero_weights=_nonzero_weights(compiled), macs=compiled.report["macs"],
                       max_error=err, c_bytes=len(compiled.sources.c))
            if labels is not None:
                y = np.asarray(labels).reshape(-1)[:len(outs)]
                row["accuracy"] = float(np.mean([int(np.argmax(o[0])) for o in outs] == y))
            rows.append(row)
    return rows
