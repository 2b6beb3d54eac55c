"""The `kiln` command: compile, verify, bench, inspect. User mistakes: one sentence, exit 2."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from .errors import KilnError
from .targets import CORES, TARGETS

CALIBRATION_CHECKS = 16     # verify --int8 without --inputs: the calibration samples it checks


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", nargs="?", help="the ONNX model file")
    common.add_argument("--name", help="C name prefix (default: from the file name)")
    common.add_argument("--target", default="c", choices=TARGETS,
                        help="c (default: the host), or a Cortex-M core: verify then also runs the C there, "
                             "under QEMU (cortex-m0plus and cortex-m3 have no FPU: int8 only)")
    common.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "fp16"),
                        help="--target cuda: fp32 (default), or the tensor cores in the convolutions and matrix "
                             "products with tf32 or fp16 operands (float32 sums; verified at a 1e-2 tolerance)")
    common.add_argument("--memory", choices=("fast", "lean"),
                        help="fast: the quickest kernels, some with working memory in the arena (default on the "
                             "host); lean: the kernels that need the least RAM (default for Cortex-M targets)")
    common.add_argument("--ram-limit", metavar="SIZE",
                        help="refuse the model when its arena plus an estimated stack exceeds SIZE (e.g. 64K)")
    common.add_argument("--flash-limit", metavar="SIZE",
                        help="refuse the model when its weights exceed SIZE (e.g. 512K)")
    common.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS",
                        help="fix an input's shape, e.g. data=1x3x224x224 (repeatable)")
    common.add_argument("-O", dest="opt_level", type=int, default=2, choices=(0, 1, 2),
                        help="graph optimisation level (default 2: fold, clean up and fuse)")
    common.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                        help="switch one pass off (cleanup, fold_weights, remove_zero_channels, fold, fuse)")
    common.add_argument("--prune-threshold", type=float, metavar="T", help="zero weights with |w| <= T (lossy)")
    common.add_argument("--prune-sparsity", type=float, metavar="S",
                        help="zero the fraction S of smallest weights (lossy; see --prune-scope)")
    common.add_argument("--prune-scope", choices=("global", "layer"), default="global",
                        help="--prune-sparsity over all layers at once (default) or per layer")
    common.add_argument("--prune-channels", type=float, metavar="S",
                        help="remove the fraction S of output channels with the smallest L1 norm (lossy)")
    common.add_argument("--calibration", metavar="FILE.npz",
                        help="representative inputs (as --inputs); channel pruning uses their mean activations")
    common.add_argument("--int8", action="store_true",
                        help="quantise to int8 (post-training, static): needs --calibration")
    common.add_argument("--calibration-method", choices=("minmax", "percentile", "entropy"), default="minmax",
                        help="how --int8 turns calibration data into activation ranges (default minmax)")
    common.add_argument("--percentile", type=float, default=99.99,
                        help="the percentile of |x| kept by --calibration-method percentile (default 99.99)")
    common.add_argument("--max-arena-bytes", type=int, default=1 << 30, metavar="N",
                        help="refuse models whose arena exceeds N bytes (default 1 GiB)")
    common.add_argument("--max-weight-bytes", type=int, default=1 << 31, metavar="N",
                        help="refuse models whose weights exceed N bytes (default 2 GiB)")
    common.add_argument("--weights-encoding", choices=("string", "hex"), default="string",
                        help="string (default: one string literal, fastest to compile) or hex "
                             "(uint32 words, for compilers that cap string literal length)")
    common.add_argument("--tune", action="store_true",
                        help="time every kernel (tactic) of each layer that has several on this machine and "
                             "keep the fastest; the choices and times go into the report")
    common.add_argument("--tactics", metavar="FILE",
                        help="replay tactic choices without timing: a NAME.json or a {layer: tactic} JSON")
    common.add_argument("--cflags", help="compiler flags for building (default: -O3 -march=native, "
                                         "or $KILN_CFLAGS)")
    p = argparse.ArgumentParser(prog="kiln", description="Compile ONNX models to one self-contained C file.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", parents=[common], help="write NAME.c, NAME.h and NAME.json")
    c.add_argument("-o", "--output", default=".", help="output directory (default: .)")
    v = sub.add_parser("verify", parents=[common], help="build, run and compare with onnxruntime")
    v.add_argument("--inputs", help=".npz of inputs (by input name; 'y'/'labels' for accuracy)")
    v.add_argument("--layers", action="store_true", help="compare every layer and name the first that diverges; "
                                                         "with a Cortex-M target, count each layer's instructions")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    b = sub.add_parser("bench", parents=[common], help="time the C against onnxruntime (1 thread)")
    b.add_argument("--inputs", help=".npz of inputs")
    b.add_argument("--runs", type=int, default=0, help="timed pairs of runs (default: fit ~4 s)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--suite", action="store_true",
                   help="time the benchmark suite (no MODEL): PyTorch exports and onnx's light zoo; one table")
    b.add_argument("--models-dir", default="bench_models",
                   help="where the suite's PyTorch exports are (default bench_models/)")
    b.add_argument("--only", help="comma-separated suite model names")
    b.add_argument("--json-out", metavar="FILE", help="with --suite: also write the rows as JSON")
    b.add_argument("--layers", action="store_true",
                   help="time every layer (a profiling build): ms, share, GFLOP/s and share of the core's peak")
    b.add_argument("--top", type=int, default=0, metavar="N", help="with --layers: only the N slowest layers")
    b.add_argument("--peak-gflops", type=float, metavar="X",
                   help="with --layers: the core's peak GFLOP/s (default: worked out from the target and clock)")
    pr = sub.add_parser("prune-report", parents=[common],
                        help="sweep magnitude and channel pruning: size, MACs, error, accuracy")
    pr.add_argument("--inputs", help=".npz of inputs ('y'/'labels' for accuracy)")
    pr.add_argument("--json", action="store_true", help="print the rows as JSON")
    i = sub.add_parser("inspect", parents=[common], help="per-layer table: ops, shapes, MACs, params, arena")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _compile(args):
    from . import compile as kiln_compile
    from .frontend import load_proto
    if not args.model:
        raise KilnError(f"kiln {args.command} needs a MODEL (an .onnx file).")
    if args.tune and args.tactics:
        raise KilnError("--tune times the tactics and --tactics replays them: give one of the two.")
    if args.tune and args.target == "cuda":
        raise KilnError("--tune times the C kernels on this CPU: it does not apply to --target cuda.")
    limits = _limits(args)
    proto, _ = load_proto(args.model)
    t0 = time.perf_counter()
    options = dict(name=args.name, input_shapes=args.input_shape,
                   opt_level=args.opt_level, disable_passes=args.disable_pass,
                   prune_threshold=args.prune_threshold, prune_sparsity=args.prune_sparsity,
                   prune_scope=args.prune_scope, prune_channels=args.prune_channels,
                   calibration=args.calibration,
                   int8=args.calibration_method if args.int8 else None, percentile=args.percentile,
                   max_arena_bytes=args.max_arena_bytes,
                   max_weight_bytes=args.max_weight_bytes,
                   weights_encoding=args.weights_encoding,
                   backend="cuda" if args.target == "cuda" else "c",
                   memory=args.memory or ("lean" if args.target in CORES else "fast"))
    model = proto if args.name else args.model
    if args.tune:
        from .tune import tune
        compiled = tune(model, cflags=_cflags(args), progress=lambda m: print(f"kiln: {m}", file=sys.stderr),
                        **options)
        _print_tuning(compiled)
    else:
        compiled = kiln_compile(model, tactics=args.tactics, **options)
    from .limits import check_limits
    from .targets.cortex_m import check_target
    check_target(args.target, compiled)
    check_limits(compiled, *limits)
    return compiled, proto, time.perf_counter() - t0


def _limits(args):
    from .limits import parse_size
    return (parse_size(args.ram_limit, "--ram-limit") if args.ram_limit else None,
            parse_size(args.flash_limit, "--flash-limit") if args.flash_limit else None)


def _print_tuning(compiled) -> None:
    """One line to stderr: what --tune changed and what it gained, by the measured layer times."""
    tactics = compiled.tactics.values()
    default = sum(t["ms"][t["candidates"][0]] for t in tactics)
    tuned = sum(t["ms"][t["chosen"]] for t in tactics)
    changed = sum(t["chosen"] != t["candidates"][0] for t in tactics)
    print(f"kiln: tuned {len(tactics)} layer(s) with several kernels, {changed} changed from the default: "
          f"{default:.3f} ms -> {tuned:.3f} ms (the sum of their median times)", file=sys.stderr)


def _cflags(args):
    return shlex.split(args.cflags) if args.cflags else None


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KilnError as err:
        print(f"kiln: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_compile(args) -> int:
    compiled, _, seconds = _compile(args)
    if args.target == "cuda":
        from .cuda import save
        paths = save(compiled, args.output, args.precision)
        print(f"wrote {paths['cu']}, {paths['h']}, {paths['json']} in {seconds:.2f} s; build it with "
              f"nvcc -O3 -arch=sm_90 -Xcompiler -fPIC --shared {compiled.name}.cu")
        return 0
    paths = compiled.save(args.output)
    r = compiled.report
    print(f"wrote {paths['c']}, {paths['h']}, {paths['json']} in {seconds:.2f} s: {len(r['layers'])} layers, "
          f"arena {r['arena_bytes']} bytes (lower bound {r['arena_lower_bound']}), weights {r['weight_bytes']} bytes"
          + (f" (float32: arena {r['float32']['arena_bytes']}, weights {r['float32']['weight_bytes']})"
             if "float32" in r else ""))
    if args.target != "c":
        from .targets.cortex_m import CFLAGS
        print(f"for {args.target}: arm-none-eabi-gcc {' '.join(CORES[args.target].flags + CFLAGS)} -c "
              f"{compiled.name}.c (weights in .rodata, the arena in .bss)")
    return 0


def cmd_verify(args) -> int:
    from .verify import load_inputs, random_inputs, verify
    compiled, proto, seconds = _compile(args)
    on_host = args.target == "c"            # with a target, --cflags are for the cross compiler
    host_cflags = _cflags(args) if on_host else None
    samples, labels = (None, None)
    if args.inputs:
        samples, labels = load_inputs(args.inputs, compiled.build(host_cflags).inputs)
    elif args.int8 and args.calibration:    # random normal inputs would lie outside the calibrated ranges
        samples = load_inputs(args.calibration, compiled._io_specs()[0])[0][:CALIBRATION_CHECKS]
        print(f"kiln: no --inputs: checking on the first {len(samples)} calibration sample(s)", file=sys.stderr)
    t0 = time.perf_counter()
    if args.target == "cuda":
        return _verify_cuda(compiled, proto, samples or [random_inputs(compiled._io_specs()[0])], args)
    result = verify(compiled, proto, samples, labels, layers=args.layers, cflags=host_cflags)
    target = None
    if not on_host:
        from .targets.cortex_m import verify_on_target
        target = verify_on_target(compiled, proto, samples or [random_inputs(compiled._io_specs()[0])], args.target,
                                  _cflags(args), layers=args.layers)
        _check_measured(target, *_limits(args))
    ok = result.ok and (target is None or target["ok"])
    if args.json:
        print(json.dumps(dict(model=compiled.name, compile_s=seconds, check_s=time.perf_counter() - t0,
                              **result.as_dict(), **({"target": target} if target else {}), all_ok=ok), indent=1))
        return 0 if ok else 1
    from rich.console import Console
    from rich.table import Table
    console = Console()
    table = Table(title=f"{compiled.name}: generated C vs {result.reference} ({result.samples} sample(s))")
    for col in ("output", "max abs error", "max error / scale", "result"):
        table.add_column(col)
    for c in result.outputs:
        table.add_row(c.name, f"{c.max_abs:.3g}", f"{c.max_rel:.3g}", "ok" if c.ok else "MISMATCH")
    console.print(table)
    if result.integer:
        i = result.integer
        bad = i["first_mismatch"]
        console.print(f"integer layers: {i['checked']} checked against the numpy model of their arithmetic, " +
                      ("all bit-exact" if i["exact"] else
                       f"first mismatch in {bad['layer']!r} ({bad['op']}): {bad['mismatches']} of {bad['of']} "
                       f"elements, off by up to {bad['max_diff']}"))
    for name, d in (result.lsb or {}).items():
        console.print(f"{name}: {100 * d['within_1']:.2f}% of elements within one quantisation step "
                      f"({d['step']:.3g}) of {result.reference}, {100 * d['exact']:.2f}% identical, "
                      f"at most {d['max']:.2f} steps off")
    if result.accuracy:
        a = result.accuracy
        console.print(f"accuracy: kiln {100 * a['kiln']:.2f}%, {result.reference} {100 * a['reference']:.2f}%, "
                      f"predictions agree on {100 * a['agree']:.2f}% of {result.samples} samples")
    if result.first_bad_layer is not None:
        first = result.first_bad_layer["first"]
        if first:
            console.print(f"first layer that diverges: {first['layer']!r} ({first['op']}), value {first['value']!r}, "
                          f"max abs error {first['max_abs']:.3g}")
        else:
            console.print(f"all {result.first_bad_layer['compared']} compared layers agree")
    if target:
        _print_target(console, target)
    console.print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _check_measured(t, ram_limit, flash_limit):
    """With a target build the sizes are known: check them, not the estimates, against the limits."""
    for what, have, limit in (("RAM", t["ram_bytes"], ram_limit), ("flash", t["flash_bytes"], flash_limit)):
        if limit is not None and have > limit:
            t["ok"] = False
            t.setdefault("errors", []).append(f"{what} {have:,} bytes measured on {t['target']}, over the "
                                              f"--{what.lower()}-limit {limit:,}")


def _print_target(console, t):
    m = t["model_sections"]
    console.print(f"{t['target']} (qemu-system-arm -M {t['board']}), {t['samples']} sample(s): outputs "
                  f"{'bit-identical to' if t['bit_identical_to_host'] else 'DIFFERENT from'} the host build "
                  f"({t['host_build']})")
    for c in t["outputs"]:
        console.print(f"  {c['name']}: max abs error vs onnxruntime {c['max_abs']:.3g} "
                      f"(/ scale {c['max_rel']:.3g}){'' if c['ok'] else ' MISMATCH'}")
    console.print("  first sample's outputs on the target: "
                  + "; ".join(", ".join(f"{x:.6g}" for x in o) for o in t["first_outputs"]))
    console.print(f"  flash {t['flash_bytes']:,} bytes: code {m['code']:,} + weights {m['weights']:,} + data "
                  f"{m['data']:,} (kiln's weights: {t['kiln_weight_bytes']:,}); the whole test program "
                  f"{t['program']['flash']:,}")
    console.print(f"  RAM {t['ram_bytes']:,} bytes: bss {m['bss']:,} (kiln's arena: {t['kiln_arena_bytes']:,}) + "
                  f"data {m['data']:,} + stack high-water mark {t['stack_bytes']:,}")
    n = t["instructions"]
    console.print("  instructions per inference: " + (f"{n:,} (to 40; SysTick under qemu -icount)" if n is not None
                                                     else "over 671 million, not counted"))
    for layer in t["layers"] or []:
        n, macs = layer["instructions"], layer["macs"]
        console.print(f"    {n:>12,} instructions" + (f" ({n / macs:5.2f} per MAC)" if macs else " " * 16) +
                      f"  {layer['layer']} ({' + '.join(layer['ops'])})")
    for name, good in t["checks"].items():
        if not good:
            console.print(f"  check failed: {name.replace('_', ' ')}")
    for err in t.get("errors", []):
        console.print(f"  {err}")


def _verify_cuda(compiled, proto, samples, args) -> int:
    """--target cuda: the .cu built with nvcc, run on the GPU, against onnxruntime on the CPU."""
    from .cuda import run_and_time
    r = run_and_time(compiled, proto, samples, precision=args.precision)
    if args.json:
        print(json.dumps(dict(model=compiled.name, target="cuda", **r), indent=1))
    else:
        for c in r["outputs"]:
            print(f"{c['name']}: max abs error {c['max_abs']:.3g}, max error / scale {c['max_rel']:.3g}, "
                  f"{'ok' if c['ok'] else 'MISMATCH'}")
        print(f"{compiled.name} on the GPU: {r['samples']} sample(s), {r['ms']:.3f} ms per inference (median, CUDA "
              f"events)\n{'PASS' if r['ok'] else 'FAIL'}")
    return 0 if r["ok"] else 1


def cmd_bench(args) -> int:
    from .bench import bench
    if args.target == "cuda":
        from .verify import random_inputs
        compiled, proto, _ = _compile(args)
        return _verify_cuda(compiled, proto, [random_inputs(compiled._io_specs()[0])], args)
    if args.suite:
        return _bench_suite(args)
    if args.int8:
        return _bench_int8(args)
    from .verify import load_inputs
    compiled, proto, _ = _compile(args)
    arrays = None
    if args.inputs:
        arrays = load_inputs(args.inputs, compiled.build(_cflags(args)).inputs)[0][0]
    if args.layers:
        from .bench import layers
        r = layers(compiled, arrays, runs=args.runs, cflags=_cflags(args), peak_gflops=args.peak_gflops)
        if args.json:
            print(json.dumps(r, indent=1))
        else:
            _print_layers(r, args.top)
        return 0
    r = bench(compiled, proto, arrays, runs=args.runs, cflags=_cflags(args))
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"{r['model']}: kiln {r['kiln_ms']:.3f} ms, {r['reference']} {r['reference_ms']:.3f} ms, "
              f"ratio {r['ratio']:.2f} (kiln / reference), {r['gflops']:.2f} GFLOP/s, median of {r['runs']} runs")
    return 0


def _bench_int8(args) -> int:
    """Kiln int8 vs onnxruntime int8 (quantize_static QDQ) and Kiln float32 vs onnxruntime float32."""
    from .bench import bench_int8
    from .verify import load_inputs
    if not args.model:
        raise KilnError("kiln bench --int8 needs a MODEL (an .onnx file), or --suite.")
    samples = None
    if args.calibration:
        from . import compile as kiln_compile
        specs = kiln_compile(args.model, input_shapes=args.input_shape).build(_cflags(args)).inputs
        samples = load_inputs(args.calibration, specs)[0]
    r = bench_int8(args.model, samples, args.calibration_method, cflags=_cflags(args), input_shapes=args.input_shape)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"{r['model']}: kiln int8 {r['kiln_int8_ms']:.3f} ms, onnxruntime int8 {r['ort_int8_ms']:.3f} ms "
              f"(ratio {r['ratio']:.2f}); kiln float32 {r['kiln_float_ms']:.3f} ms, onnxruntime float32 "
              f"{r['ort_float_ms']:.3f} ms; int8 is {r['int8_speedup']:.2f}x kiln float32; weights "
              f"{r['weight_bytes']:,} B (float32 {r['float_weight_bytes']:,}), arena {r['arena_bytes']:,} B "
              f"(float32 {r['float_arena_bytes']:,}); median of {r['runs']} runs")
    return 0


def _print_layers(r: dict, top: int = 0) -> None:
    """The per-layer table of bench.layers(), the slowest `top` layers only when top > 0."""
    from rich.console import Console
    from rich.table import Table
    rows = sorted(r["layers"], key=lambda row: -row["ms"])[:top] if top > 0 else r["layers"]
    table = Table(title=f"{r['model']}: time per layer, median of {r['runs']} runs" +
                  (f" (the {len(rows)} slowest)" if top > 0 else ""))
    for col in ("#", "layer", "op(s)", "kernel", "output shape", "MACs", "ms", "%", "GFLOP/s", "% of peak"):
        table.add_column(col, justify="left" if col in ("layer", "op(s)", "kernel") else "right")
    for row in rows:
        kernel = row["kernel"] + (f" ({row['tactic']})" if row["tactic"] else "")
        table.add_row(str(row["step"]), row["name"], "+".join(row["ops"]), kernel,
                      "x".join(map(str, row["shape"])), f"{row['macs']:,}", f"{row['ms']:.4f}", f"{row['percent']:.1f}",
                      f"{row['gflops']:.1f}" if row["macs"] else "", f"{row['percent_peak']:.1f}" if row["macs"] else "")
    console = Console()
    console.print(table)
    console.print(f"sum of the layers {r['layers_ms']:.3f} ms; whole model {r['model_ms']:.3f} ms (the shipped build, "
                  "with the call from Python)")
    console.print(f"peak {r['peak_gflops']:.1f} GFLOP/s per core: {r['peak_assumed']}")


def _bench_suite(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .bench import run_suite
    console = Console(stderr=True)
    only = args.only.split(",") if args.only else None
    rows = run_suite(args.models_dir, only, cflags=_cflags(args), per_layer=args.layers, peak_gflops=args.peak_gflops,
                     progress=lambda name: console.print(f"[dim]{name}...[/dim]"), int8=args.int8)
    if args.int8:
        return _int8_table(rows, args)
    table = Table(title="Kiln vs onnxruntime (1 thread), median latency")
    for col in ("model", "kiln ms", "onnxruntime ms", "ratio", "GFLOP/s", "max error / scale"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["model"], "-", "-", "-", "-", r["error"][:60])
        elif "kiln_ms" in r:
            table.add_row(r["model"], f"{r['kiln_ms']:.3f}", f"{r['reference_ms']:.3f}", f"{r['ratio']:.2f}",
                          f"{r['gflops']:.1f}", f"{r['max_rel_error']:.1e}" + ("" if r["ok"] else " MISMATCH"))
        else:
            table.add_row(r["model"], "", "", f"{r['ratio']:.2f}", "", f"slower on {r['slower']} of {r['timed']}")
    Console().print(table)
    for r in rows:
        if "layers" in r:
            _print_layers(r["layers"], args.top)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r.get("ok", True) for r in rows) else 1


def _int8_table(rows, args) -> int:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="Kiln int8 vs onnxruntime int8 (quantize_static QDQ, 1 thread), median latency")
    for col in ("model", "kiln int8 ms", "onnxruntime int8 ms", "ratio", "kiln float32 ms", "int8 speed-up",
                "weights int8 / float32"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["model"], "-", "-", "-", "-", "-", r["error"][:60])
        elif "kiln_int8_ms" in r:
            table.add_row(r["model"], f"{r['kiln_int8_ms']:.3f}", f"{r['ort_int8_ms']:.3f}", f"{r['ratio']:.2f}",
                          f"{r['kiln_float_ms']:.3f}", f"{r['int8_speedup']:.2f}",
                          f"{r['weight_bytes']:,} / {r['float_weight_bytes']:,}")
        else:
            table.add_row(r["model"], "", "", f"{r['ratio']:.2f}", "", f"{r['int8_speedup']:.2f}",
                          f"slower on {r['slower']} of {r['timed']}")
    Console().print(table)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def cmd_inspect(args) -> int:
    compiled, _, _ = _compile(args)
    r = compiled.report
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{r['name']} (opset {r['opset']})")
    for col in ("#", "layer", "op(s)", "output shape", "MACs", "params", "buffer"):
        table.add_column(col, justify="right" if col in ("#", "MACs", "params") else "left")
    for layer in r["layers"]:
        out = layer["outputs"][0] if layer["outputs"] else None
        where = "" if out is None else (f"arena+{out['offset']}" if out["buffer"] == "arena" else out["buffer"])
        table.add_row(str(layer["step"]), layer["name"], " + ".join(layer["ops"]) + (" (view)" if layer["code"] == "view" else ""),
                      "x".join(map(str, out["shape"])) if out else "", f"{layer['macs']:,}", f"{layer['params']:,}", where)
    console = Console()
    console.print(table)
    console.print(f"arena {r['arena_bytes']:,} bytes (lower bound {r['arena_lower_bound']:,}), "
                  f"weights {r['weight_bytes']:,} bytes, {r['macs']:,} MACs")
    if "float32" in r:
        f = r["float32"]
        console.print(f"int8 vs float32: weights {r['weight_bytes']:,} vs {f['weight_bytes']:,} bytes "
                      f"({f['weight_bytes'] / max(1, r['weight_bytes']):.2f}x smaller), arena {r['arena_bytes']:,} vs "
                      f"{f['arena_bytes']:,} bytes ({f['arena_bytes'] / max(1, r['arena_bytes']):.2f}x smaller)")
    for p in r["passes"]:
        console.print(f"pass {p['name']}: {p['nodes_before']} -> {p['nodes_after']} nodes, weights "
                      f"{p['weight_bytes_before']:,} -> {p['weight_bytes_after']:,} bytes" +
                      "".join(f"\n    {line}" for line in p["log"]))
    return 0


def cmd_prune_report(args) -> int:
    from .prune_report import prune_report
    from .verify import load_inputs
    compiled, _, _ = _compile(args)
    samples, labels = (None, None)
    if args.inputs:
        samples, labels = load_inputs(args.inputs, compiled.build(_cflags(args)).inputs)
    rows = prune_report(args.model, samples, labels, args.calibration, _cflags(args),
                        dict(input_shapes=args.input_shape, opt_level=args.opt_level))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{compiled.name}: pruning sweep" + (" (mean replacement from --calibration)"
                                                              if args.calibration else ""))
    cols = ["method", "strength", "weight bytes", "non-zero weights", "MACs", "max error / scale"]
    cols += ["accuracy"] if labels is not None else []
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        cells = [r["method"], f"{r['strength']:.3g}", f"{r['weight_bytes']:,}", f"{r['nonzero_weights']:,}",
                 f"{r['macs']:,}", f"{r['max_error']:.3g}"]
        cells += [f"{100 * r['accuracy']:.2f}%"] if "accuracy" in r else []
        table.add_row(*cells)
    Console().print(table)
    return 0


COMMANDS = {"compile": cmd_compile, "verify": cmd_verify, "bench": cmd_bench, "inspect": cmd_inspect,
            "prune-report": cmd_prune_report}

if __name__ == "__main__":
    sys.exit(main())
