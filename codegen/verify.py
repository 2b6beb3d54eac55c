"""Compare the generated C with a reference (onnxruntime, 1 thread; onnx's reference evaluator
where onnxruntime cannot run the model), per output and, on request, per layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .errors import KilnError

# One table of tolerances. float32: |c - ref| <= atol * scale + rtol * |ref|, where scale is
# max(1, max |ref|) of that output, so deep nets with large activations are judged on their scale.
# float16 and bfloat16: about two units in the last place (Kiln computes them in float, rounding once).
TOLERANCES = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-9, atol=1e-12),
              "float16": dict(rtol=2e-3, atol=1e-3), "bfloat16": dict(rtol=1.6e-2, atol=8e-3)}
EXACT = dict(rtol=0.0, atol=0.0)


def tolerance(dtype) -> dict:
    return TOLERANCES.get(np.dtype(dtype).name, EXACT)


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float         # max |c - ref| / scale
    ok: bool


def compare(name: str, got: np.ndarray, ref: np.ndarray, tol: dict | None = None) -> Comparison:
    tol = tol or tolerance(ref.dtype)
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return Comparison(name, float("inf"), float("inf"), False)
    if ref.size == 0:
        return Comparison(name, 0.0, 0.0, True)
    if np.dtype(ref.dtype).name not in TOLERANCES:            # integers and bool: exact
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        return Comparison(name, float(diff.max()), float(diff.max()), bool(np.all(got == ref)))
    g, r = got.astype(np.float64), ref.astype(np.float64)
    same_special = (np.isnan(g) & np.isnan(r)) | (np.isinf(r) & (g == r))
    finite = np.isfinite(r)
    scale = max(1.0, float(np.max(np.abs(r[finite]))) if finite.any() else 1.0)
    diff = np.where(same_special, 0.0, np.abs(g - r))
    diff = np.where(np.isnan(diff), np.inf, diff)
    ok = bool(np.all(diff <= tol["atol"] * scale + tol["rtol"] * np.abs(np.where(finite, r, 0))))
    return Comparison(name, float(diff.max()), float(diff.max() / scale), ok)


# ---- references -------------------------------------------------------------------------------------

class Reference:
    """Runs the original ONNX model; `outputs` may name intermediate tensors as well."""

    def __init__(self, proto: onnx.ModelProto, outputs: list[str] | None = None):
        proto = _with_outputs(proto, outputs) if outputs else proto
        self.output_names = [o.name for o in proto.graph.output]
        self.kind = "onnxruntime"
        try:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            self._run = lambda feeds: self.session.run(self.output_names, feeds)
        except Exception:
            from onnx.reference import ReferenceEvaluator
            self.kind = "onnx reference evaluator"
            evaluator = ReferenceEvaluator(proto)
            self._run = lambda feeds: evaluator.run(self.output_names, feeds)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._run(feeds)))


def _with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The model with extra graph outputs (intermediate tensors), typed by shape inference."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    known = {vi.name: vi for vi in inferred.graph.value_info}
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have and name in known:
            model.graph.output.append(known[name])
            have.add(name)
    return model


# ---- inputs -----------------------------------------------------------------------------------------

def random_inputs(specs, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for _, shape, dtype in specs:
        if np.issubdtype(dtype, np.floating):
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype == np.bool_:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 10, shape).astype(dtype))
    return arrays


def _read_arrays(path) -> dict[str, np.ndarray]:
    """An .npz's arrays; or a directory's .npy files: NAME.npy by input name, or, for a one-input
    model, one sample (or a stack of them) per file, in file-name order."""
    from pathlib import Path
    path = Path(path)
    try:
        if not path.is_dir():
            return dict(np.load(path))
        files = sorted(path.glob("*.npy"))
        if not files:
            raise ValueError("the directory holds no .npy files")
        return {f.stem: np.load(f) for f in files}
    except Exception as err:
        raise KilnError(f"--inputs {path}: cannot read it as .npz or a directory of .npy ({err}).") from None


def load_inputs(path, specs) -> tuple[list[list[np.ndarray]], np.ndarray | None]:
    """An .npz (or a directory of .npy) -> (list of samples, each a list of input arrays; labels or None).

    Arrays are found by input name, or by position (arr_0...), or, for a one-input model, as the
    only array besides labels ("y" or "labels"), or (a directory) as every file stacked in name order.
    An array with a leading dimension of N where the model's input has batch 1 is split into N samples."""
    data = _read_arrays(path)
    names = [name for name, _, _ in specs]
    shape0 = tuple(specs[0][1]) if specs else ()
    if len(names) == 1 and names[0] not in data and len(data) > 1 and all(
            k not in ("y", "labels") for k in data):     # a directory of samples of the one input
        data = {names[0]: np.concatenate([a.reshape((-1,) + shape0[1:]) if shape0 else a.reshape(-1)
                                          for a in data.values()])}
    labels = None
    for key in ("labels", "y"):
        if key in data and key not in names:
            labels = data.pop(key)
            break
    arrays = []
    for i, name in enumerate(names):
        if name in data:
            arrays.append(data[name])
        elif f"arr_{i}" in data:
            arrays.append(data[f"arr_{i}"])
        elif len(names) == 1 and len(data) == 1:
            arrays.append(next(iter(data.values())))
        else:
            raise KilnError(f"--inputs {path}: no array for input {name!r} (arrays: {sorted(data)}).")
    samples = None
    for arr, (name, shape, dtype) in zip(arrays, specs):
        if tuple(arr.shape) == tuple(shape):
            count = 1
        elif shape and shape[0] == 1 and tuple(arr.shape[1:]) == tuple(shape[1:]):
            count = arr.shape[0]
        else:
            raise KilnError(f"--inputs {path}: array for {name!r} has shape {arr.shape}, the model wants {shape}.")
        if samples is not None and count != samples:
            raise KilnError(f"--inputs {path}: arrays hold different numbers of samples.")
        samples = count
    batches = [[np.ascontiguousarray(arr.reshape((samples,) + tuple(shape))[i:i + 1].reshape(shape), dtype=dtype)
                for arr, (_, shape, dtype) in zip(arrays, specs)] for i in range(samples or 1)]
    return batches, labels


# ---- verification -------------------------------------------------------------------------------------

@dataclass
class Result:
    reference: str
    outputs: list[Comparison]
    samples: int
    accuracy: dict | None = None          # {"kiln": .., "reference": .., "agree": ..}
    first_bad_layer: dict | None = None   # per-layer diff
    integer: dict | None = None           # int8 models: integer_check of the first sample
    lsb: dict | None = None               # int8 models: per output, agreement in units of its last bit

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.outputs) and (self.integer is None or self.integer["exact"])

    def as_dict(self) -> dict:
        return dict(ok=self.ok, reference=self.reference, samples=self.samples,
                    outputs=[c.__dict__ for c in self.outputs], accuracy=self.accuracy,
                    first_bad_layer=self.first_bad_layer, integer=self.integer, lsb=self.lsb)


# An int8 model's outputs against the float model's: a sanity bound (wrong scales give errors near 1),
# as a fraction of the output's scale max(1, max |ref|); int8 keeps ~2 digits and errors compound over layers.
INT8_TOLERANCE = dict(rtol=0.0, atol=0.5)
LSB_SLACK = 1.001       # "within one step", allowing the float rounding of the dequantised value


def output_steps(compiled) -> dict[str, float]:
    """Output name -> its quantisation step, for outputs an int8 model dequantises."""
    g = compiled.graph
    steps = {}
    for node in g.nodes:
        if node.op == "DequantizeLinear" and node.outputs[0] in g.outputs and g.values[node.inputs[1]].is_const \
                and g.values[node.inputs[1]].size == 1:
            steps[node.outputs[0]] = float(g.values[node.inputs[1]].const)
    return steps


def verify(compiled, proto: onnx.ModelProto, samples=None, labels=None, layers: bool = False, cflags=None) -> Result:
    runner = compiled.build(cflags)
    quantized = bool(compiled.options.get("int8") or compiled.options.get("qdq"))
    in_specs = runner.inputs
    samples = samples or [random_inputs(in_specs)]
    reference = Reference(proto)
    ref_names = reference.output_names
    imported = bool(compiled.options.get("qdq")) and not compiled.options.get("int8")
    steps = output_steps(compiled) if quantized else {}
    worst, off = {}, {n: [] for n in steps}
    kiln_pred, ref_pred = [], []
    for arrays in samples:
        got = runner(*arrays)
        ref = reference({n: a for (n, _, _), a in zip(in_specs, arrays)})
        for i, (name, g) in enumerate(zip(ref_names, got)):
            r = ref[name].reshape(g.shape) if ref[name].size == g.size else ref[name]
            c = compare(name, g, r, INT8_TOLERANCE if quantized and not imported and g.dtype == np.float32 else None)
            if name in steps:
                off[name].append((np.abs(g.astype(np.float64) - r) / steps[name]).reshape(-1))
                if imported:    # a QDQ model against onnxruntime running it: 99 % within one step
                    c.ok = bool(np.mean(np.concatenate(off[name]) <= LSB_SLACK) >= 0.99)
            if name not in worst or (not c.ok, c.max_rel) > (not worst[name].ok, worst[name].max_rel):
                worst[name] = c
        if labels is not None:
            kiln_pred.append(int(np.argmax(got[0])))
            ref_pred.append(int(np.argmax(ref[ref_names[0]])))
    result = Result(reference.kind, [worst[n] for n in ref_names], len(samples))
    if labels is not None:
        y = np.asarray(labels).reshape(-1)[:len(samples)]
        result.accuracy = dict(kiln=float(np.mean(np.array(kiln_pred) == y)),
                               reference=float(np.mean(np.array(ref_pred) == y)),
                               agree=float(np.mean(np.array(kiln_pred) == np.array(ref_pred))))
    if quantized:
        result.integer = integer_check(compiled, samples[0], cflags)
        result.lsb = {}
        for name, parts in off.items():
            d = np.concatenate(parts)
            result.lsb[name] = dict(step=steps[name], within_1=float(np.mean(d <= LSB_SLACK)),
                                    exact=float(np.mean(d <= LSB_SLACK - 1)), max=float(d.max()))
    if (layers or not result.ok) and not quantized:
        result.first_bad_layer = layer_diff(compiled, proto, samples[0], cflags)
    return result


def layer_diff(compiled, proto, arrays, cflags=None) -> dict | None:
    """Run every layer of the C and every tensor of the reference; name the first layer that disagrees."""
    runner, probe_values = compiled.build_probed(cflags)
    names = [v.name for v in probe_values if v is not None]
    reference = Reference(proto, names)
    ref = reference({n: a for (n, _, _), a in zip(runner.inputs, arrays)})
    _, probes = runner.run_probed(*arrays)
    table = []
    first = None
    for node, value, got in zip(compiled.graph.nodes, probe_values, probes):
        if value is None or value.name not in ref:
            continue
        r = ref[value.name]
        c = compare(value.name, got, r.reshape(got.shape) if r.size == got.size else r)
        row = dict(layer=node.name, ops=[f"{op} {name}" for op, name in node.sources], op=node.op, value=value.name, max_abs=c.max_abs,
                   max_rel=c.max_rel, ok=c.ok)
        table.append(row)
        if not c.ok and first is None:
            first = row
    return dict(first=first, layers=table, compared=len(table))


# ---- int8: every integer layer against the numpy model of its arithmetic ------------------------------

INTEGER = ("int8", "uint8")


def integer_check(compiled, arrays, cflags=None) -> dict:
    """Run the C with every layer's output exposed, recompute each layer whose output is int8 / uint8
    from the C's own inputs to it (ops/qint.py's numpy models; onnx's reference evaluator for the ops
    that only move integers), and count the layers that agree bit for bit."""
    from . import onnx_bridge
    from .ir import Value
    from .ops.qint import REFERENCE
    runner, probe_values = compiled.build_probed(cflags)
    _, probes = runner.run_probed(*arrays)
    g = compiled.graph
    known = {n: np.asarray(a) for n, a in zip(g.inputs, arrays)}
    known.update({n: v.const for n, v in g.values.items() if v.is_const})
    checked, first = 0, None
    for node, value, got in zip(g.nodes, probe_values, probes):
        if value is None:
            continue
        if np.dtype(value.dtype).name in INTEGER and all(not i or i in known for i in node.inputs):
            ins = [known[i] if i else None for i in node.inputs]
            if node.op in REFERENCE:
                want = REFERENCE[node.op](node.attrs, *ins)
            elif node.op == "Fused" and all(s.op in REFERENCE for s in node.attrs["body"]):
                want = _fused_reference(node, dict(zip(node.inputs, ins)))
            else:
                probe = g.copy()
                for name, arr in zip(node.inputs, ins):
                    if name:
                        probe.values[name] = Value(name, arr.shape, arr.dtype, arr)
                want = onnx_bridge.evaluate(probe, node)[0]
            checked += 1
            want = np.asarray(want).reshape(got.shape).astype(got.dtype)
            if first is None and not np.array_equal(want, got):
                bad = want != got
                first = dict(layer=node.name, op=node.op, mismatches=int(bad.sum()), of=int(bad.size),
                             max_diff=int(np.abs(want.astype(np.int64) - got.astype(np.int64)).max()))
        known[value.name] = got
    return dict(checked=checked, exact=first is None, first_mismatch=first)


def _fused_reference(node, values: dict) -> np.ndarray:
    from .ops.qint import REFERENCE
    out = None
    for step in node.attrs["body"]:
        out = REFERENCE[step.op](step.attrs, *[values[i] for i in step.inputs])
        values[step.outputs[0]] = out
    return out
