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
              peak_gflops=None, int8: bool = False) -> list[dict]:
    """Compile, check and time every suite model; one row each (an error row where a model fails),
    with its per-layer table (see layers()) under "layers" when asked; int8: Kiln int8 against
    onnxruntime int8 instead (bench_int8)."""
    import onnx

    import codegen

    from .verify import compare
    rows = []
    for name, path in suite_paths(models_dir, only).items():
        if progress:
            progress(name)
        try:
            if int8:
                rows.append(dict(bench_int8(path, cflags=cflags, budget_s=budget_s), model=name))
                continue
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
    if ok and int8:
        rows.append(dict(model="geometric mean", ratio=float(np.exp(np.mean([np.log(r["ratio"]) for r in ok]))),
                         int8_speedup=float(np.exp(np.mean([np.log(r["int8_speedup"]) for r in ok]))),
                         slower=sum(r["ratio"] > 1 for r in ok), timed=len(ok)))
    elif ok:
        rows.append(dict(model="geometric mean", ratio=float(np.exp(np.mean([np.log(r["ratio"]) for r in ok]))),
                     slower=sum(r["ratio"] > 1 for r in ok), timed=len(ok)))
    return rows


# ---- int8: `kiln bench --int8` -------------------------------------------------------------------

def quantize_with_onnxruntime(proto, samples, input_names):
    """The model as onnxruntime's quantize_static writes it: QDQ, int8 activations and weights,
    weights per channel, calibrated on `samples` (min/max)."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([dict(zip(input_names, s)) for s in samples])

        def get_next(self):
            return next(self.it, None)
    with tempfile.TemporaryDirectory(prefix="kiln-") as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(proto, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return onnx.load(dst)


def bench_int8(model, samples=None, method: str = "minmax", cflags=None, budget_s: float = 3.0, **options) -> dict:
    """Kiln int8 against onnxruntime running the same model quantised by quantize_static (1 thread),
    and Kiln float32 against onnxruntime float32, in one run. `samples` calibrate both quantisers
    (default: 8 seeded random inputs); the first is the timed input."""
    import logging

    import codegen
    from .frontend import load_proto
    proto, _ = load_proto(model)
    kiln32 = codegen.compile(model, **options)
    specs = kiln32._io_specs()[0]
    samples = samples or [random_inputs(specs, seed) for seed in range(8)]
    logging.getLogger().setLevel(logging.ERROR)          # quantize_static's advice on pre-processing
    ort8 = quantize_with_onnxruntime(proto, samples, [n for n, _, _ in specs])
    kiln8 = codegen.compile(model, calibration=samples, int8=method, **options)
    q = bench(kiln8, ort8, samples[0], cflags=cflags, budget_s=budget_s)
    f = bench(kiln32, proto, samples[0], cflags=cflags, budget_s=budget_s)
    return dict(model=kiln32.name, kiln_int8_ms=q["kiln_ms"], ort_int8_ms=q["reference_ms"], kiln_float_ms=f["kiln_ms"],
                ort_float_ms=f["reference_ms"], ratio=q["kiln_ms"] / q["reference_ms"],
                int8_speedup=f["kiln_ms"] / q["kiln_ms"], weight_bytes=kiln8.sources.weight_bytes,
                float_weight_bytes=kiln32.sources.weight_bytes, arena_bytes=kiln8.plan.arena_bytes,
                float_arena_bytes=kiln32.plan.arena_bytes, runs=q["runs"])
