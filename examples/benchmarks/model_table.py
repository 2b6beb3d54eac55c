"""Compile, build, verify and time a list of models; print one table (and JSON with --json).

    python examples/benchmarks/model_table.py MODEL.onnx [MODEL.onnx ...] [--json out.json]

For each model: max error vs onnxruntime (relative to the output's scale), arena bytes vs the lower
bound, weight bytes, kiln compile seconds, C compiler seconds, and the median latency of the C and
of onnxruntime (1 thread) with their ratio. Inputs: MODEL_io.npz beside the model if present
(array `x`), else seeded random data.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx

import codegen
from codegen import build as build_mod
from codegen.bench import bench
from codegen.verify import Reference, compare, random_inputs


def measure(path: Path, cflags=None) -> dict:
    t0 = time.perf_counter()
    compiled = codegen.compile(path)
    t1 = time.perf_counter()
    build_mod.cache_dir()
    runner = compiled.build(cflags)
    t2 = time.perf_counter()
    io = path.with_name(path.stem + "_io.npz")
    arrays = [np.load(io)["x"]] if io.exists() else random_inputs(runner.inputs)
    proto = onnx.load(str(path))
    ref = Reference(proto)({n: a for (n, _, _), a in zip(runner.inputs, arrays)})
    got = runner(*arrays)
    errors = [compare(n, g, r.reshape(g.shape)) for (n, g), r in zip(zip(ref, got), ref.values())]
    timing = bench(compiled, proto, arrays, cflags=cflags, budget_s=3.0)
    r = compiled.report
    return dict(model=path.stem, ok=all(e.ok for e in errors), max_rel_error=max(e.max_rel for e in errors),
                arena_bytes=r["arena_bytes"], lower_bound=r["arena_lower_bound"], weight_bytes=r["weight_bytes"],
                compile_s=t1 - t0, cc_s=t2 - t1, kiln_ms=timing["kiln_ms"], ort_ms=timing["reference_ms"],
                ratio=timing["ratio"], gflops=timing["gflops"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = []
    print(f"{'model':<28}{'ok':>4}{'err/scale':>11}{'arena':>11}{'bound':>11}{'weights':>11}"
          f"{'kiln s':>8}{'cc s':>7}{'C ms':>9}{'ort ms':>9}{'ratio':>7}")
    for path in args.models:
        row = measure(path)
        rows.append(row)
        print(f"{row['model']:<28}{'yes' if row['ok'] else 'NO':>4}{row['max_rel_error']:>11.2g}"
              f"{row['arena_bytes']:>11,}{row['lower_bound']:>11,}{row['weight_bytes']:>11,}{row['compile_s']:>8.2f}"
              f"{row['cc_s']:>7.2f}{row['kiln_ms']:>9.3f}{row['ort_ms']:>9.3f}{row['ratio']:>7.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
