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


# ---- per layer: `kiln bench --layers` ---------------------------------------------------------------

def layer_times(compiled, cflags=None, arrays=None, runs: int = 0, budget_s: float = 2.0, shipped: bool = True):
    """(every layer's median time in ms, the whole model's median ms, runs) from the profiling
    build; each profiled run alternates with a run of the shipped build, which gives the whole
    model's time (None when not `shipped`: --tune needs the layers only)."""
    profiled = compiled.build_profiled(cflags)
    runner = compiled.build(cflags) if shipped else None
    arrays = arrays or random_inputs(profiled.inputs)
    whole_run = (lambda: runner(*arrays)) if shipped else (lambda: None)     # noqa: E731
    for _ in range(2):                                  # warm both up
        whole_run()
        profiled.run_profiled(*arrays)
    if not runs:
        t0 = time.perf_counter()
        whole_run()
        profiled.run_profiled(*arrays)
        runs = int(min(200, max(5, budget_s / max(time.perf_counter() - t0, 1e-6))))
    layers, whole = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        whole_run()
        whole.append(time.perf_counter() - t0)
        layers.append(profiled.run_profiled(*arrays))
    return np.median(layers, axis=0), 1e3 * float(np.median(whole)) if shipped else None, runs


def layers(compiled, arrays=None, runs: int = 0, cflags=None, peak_gflops=None, budget_s: float = 4.0) -> dict:
    """The per-layer table: each layer's median ms, share, GFLOP/s and share of the core's peak."""
    from .peak import peak
    ms, whole_ms, runs = layer_times(compiled, cflags, arrays, runs, budget_s)
    top = peak(cflags, peak_gflops)
    total = float(ms.sum())
    rows = []
    for layer, t in zip(compiled.report["layers"], map(float, ms)):
        out = layer["outputs"][0]["shape"] if layer["outputs"] else []
        gflops = 2 * layer["macs"] / (t * 1e6) if t > 0 else 0.0
        rows.append(dict(step=layer["step"], name=layer["name"], ops=layer["ops"], kernel=layer["code"],
                         tactic=compiled.kernels[layer["name"]].tactic, shape=out, macs=layer["macs"], ms=t,
                         percent=100 * t / total if total else 0.0, gflops=gflops,
                         percent_peak=100 * gflops / top["gflops"]))
    return dict(model=compiled.name, runs=runs, layers=rows, layers_ms=total, model_ms=whole_ms,
                peak_gflops=top["gflops"], peak_assumed=top["assumed"])


# ---- the benchmark suite: `kiln bench --suite` ------------------------------------------------------

LIGHT_ZOO = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
             "vgg19", "zfnet512"]
# PyTorch exports with seeded random weights, written by tests/fixtures/make_fixtures.py --bench-only
EXPORTS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "squeezenet1_1", "ds_cnn", "resnet8",
           "mlp_autoencoder", "transformer_encoder", "speech_lstm"]
SUITE = EXPORTS + [f"light_{name}" for name in LIGHT_ZOO]


def suite_paths(models_dir, only=None) -> dict:
    """Suite model name -> path; a KilnError naming the script when the exports are missing."""
    from pathlib import Path

    import onnx.backend.test

    from .errors import KilnError
    light = Path(onnx.backend.test.__file__).parent / "data" / "light"
    paths = {name: light / f"{name}.onnx" if name.startswith("light_") else Path(models_dir) / f"{name}.onnx"
             for name in SUITE if not only or name in only}
    unknown = set(only or ()) - set(SUITE)
    if unknown:
        raise KilnError(f"--only names {', '.join(sorted(unknown))}, not in the suite: {', '.join(SUITE)}.")
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise KilnError(f"{len(missing)} suite model(s) missing, e.g. {missing[0]}; write them with "
                        "`pip install torch==2.14.1 torchvision==0.29.1 && python tests/fixtures/make_fixtures.py "
                        f"--bench-only --bench-dir {models_dir}`.")
    return paths


def run_suite(models_dir, only=None, cflags=None, budget_s: float = 3.0, progress=None, per_layer: bool = False,
              peak_gflops=None) -> list[dict]:
    """Compile, check and time every suite model; one row each (an error row where a model fails),
    with its per-layer table (see layers()) under "layers" when asked."""
    import onnx

    import codegen

    from .verify import compare
    rows = []
    for name, path in suite_paths(models_dir, only).items():
        if progress:
            progress(name)
        try:
            compiled = codegen.compile(path)
            proto = onnx.load(str(path))
            io = path.with_name(path.stem + "_io.npz")
            arrays = [np.load(io)["x"]] if io.is_file() else None
            row = bench(compiled, proto, arrays, cflags=cflags, budget_s=budget_s)
            runner = compiled.build(cflags)
            arrays = arrays or random_inputs(runner.inputs)
            want = Reference(proto)({n: a for (n, _, _), a in zip(runner.inputs, arrays)})
            errors = [compare(n, g, w) for g, (n, w) in zip(runner(*arrays), want.items())]
            row.update(model=name, ok=all(e.ok for e in errors), max_rel_error=max(e.max_rel for e in errors))
            if per_layer:
                row["layers"] = layers(compiled, arrays, cflags=cflags, peak_gflops=peak_gflops,
                                       budget_s=budget_s)
        except codegen.KilnError as err:
            row = dict(model=name, error=str(err).splitlines()[0])
        rows.append(row)
    ok = [r for r in rows if "ratio" in r]
    if ok:
        rows.append(dict(model="geometric mean", ratio=float(np.exp(np.mean([np.log(r["ratio"]) for r in ok]))),
                     slower=sum(r["ratio"] > 1 for r in ok), timed=len(ok)))
    return rows
