"""Fuzz the compiler with mutated real models: bytes flipped, truncated and spliced, and structural
edits of the protobuf (dims, dtypes, attributes, op types, inputs, node order, opsets, names).

Every mutant must either compile or raise a codegen.KilnError; anything else is a crash. With
--verify, mutants that compile and that onnxruntime also accepts are built and compared with it.

    python -m tests.fuzz.fuzz_models --seconds 3600 [--verify] [--seed 1]

Crashers are written to tests/fuzz/corpus/ (the test suite replays every file there).
"""
from __future__ import annotations

import argparse
import hashlib
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import onnx

import codegen

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
SEEDS = [ROOT / "tests" / "fixtures" / "mlp.onnx", ROOT / "examples" / "digits" / "digits.onnx",
         ROOT / "tests" / "fixtures" / "lenet_avgpool.onnx", ROOT / "tests" / "fixtures" / "resnet_mini.onnx"]
OPS = ["Relu", "Conv", "Gemm", "Add", "Softmax", "MaxPool", "Reshape", "Concat", "Transpose", "Nope", "", "Loop"]


def mutate_bytes(data: bytes, rng) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:                                   # flip a few bytes
        for _ in range(int(rng.integers(1, 8))):
            buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
    elif kind == 1:                                 # truncate
        buf = buf[: int(rng.integers(len(buf)))]
    elif kind == 2:                                 # splice a chunk elsewhere
        a, b = sorted(int(x) for x in rng.integers(len(buf), size=2))
        at = int(rng.integers(len(buf)))
        buf[at:at] = buf[a:b]
    else:                                           # random garbage inside
        at = int(rng.integers(len(buf)))
        buf[at:at] = rng.bytes(int(rng.integers(1, 64)))
    return bytes(buf)


def mutate_model(proto: onnx.ModelProto, rng) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(10))
        nodes = list(g.node)
        node = nodes[int(rng.integers(len(nodes)))] if nodes else None
        if kind == 0 and g.input:                   # an input dimension: 0, negative, huge, symbolic
            dims = g.input[int(rng.integers(len(g.input)))].type.tensor_type.shape.dim
            if dims:
                d = dims[int(rng.integers(len(dims)))]
                choice = rng.integers(4)
                if choice == 3:
                    d.dim_param = "n"
                else:
                    d.dim_value = [0, 1 << 40, int(rng.integers(1, 9))][choice]
        elif kind == 1 and g.input:                 # an input dtype
            g.input[int(rng.integers(len(g.input)))].type.tensor_type.elem_type = int(rng.integers(0, 25))
        elif kind == 2 and node is not None and node.attribute:   # an attribute value
            a = node.attribute[int(rng.integers(len(node.attribute)))]
            if a.ints:
                a.ints[int(rng.integers(len(a.ints)))] = int(rng.integers(-3, 9))
            elif a.type == onnx.AttributeProto.INT:
                a.i = int(rng.integers(-3, 9))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = float(rng.choice([0.0, -1.0, np.inf, np.nan, 1e30]))
        elif kind == 3 and node is not None:        # an op type
            node.op_type = str(rng.choice(OPS))
        elif kind == 4 and node is not None and node.input:   # an input renamed
            node.input[int(rng.integers(len(node.input)))] = str(rng.choice(["", "nowhere", g.input[0].name]))
        elif kind == 5 and len(nodes) > 1:          # node order
            i, j = (int(x) for x in rng.integers(len(nodes), size=2))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[j])
            g.node[i].CopyFrom(b)
            g.node[j].CopyFrom(a)
        elif kind == 6 and node is not None:        # duplicate or empty names
            node.name = str(rng.choice(["", nodes[0].name, "*/ x /*"]))
            if node.output and rng.random() < 0.3:
                node.output[0] = nodes[0].output[0]
        elif kind == 7:                             # opset
            m.opset_import[0].version = int(rng.choice([1, 6, 9, 13, 17, 28, 29, 1000]))
        elif kind == 8 and g.initializer:           # an initializer's dims
            t = g.initializer[int(rng.integers(len(g.initializer)))]
            if t.dims:
                t.dims[int(rng.integers(len(t.dims)))] = int(rng.integers(0, 70))
        elif kind == 9 and nodes:                   # drop a node
            del g.node[int(rng.integers(len(nodes)))]
    return m


def check(model, verify: bool = False) -> str | None:
    """None if the compiler behaved (compiled, or raised KilnError); else the traceback. With
    verify, a model that compiles and that onnxruntime runs must give onnxruntime's outputs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = codegen.compile(model, name="fuzz")
            if verify:
                return _lies(compiled, model)
    except codegen.KilnError:
        return None
    except Exception:
        return traceback.format_exc()
    return None


def _lies(compiled, model) -> str | None:
    from codegen.verify import Reference, compare, random_inputs
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    try:
        import onnxruntime as ort
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        reference = Reference(proto)
    except Exception:
        return None                                  # onnxruntime rejects it too: nothing to compare
    run = compiled.build(["-O1"])
    inputs = random_inputs(run.inputs)
    try:
        want = reference({n: a for (n, _, _), a in zip(run.inputs, inputs)})
    except Exception:
        return None
    for got, (name, ref) in zip(run(*inputs), want.items()):
        c = compare(name, got, np.asarray(ref).reshape(got.shape) if np.size(ref) == got.size else ref)
        if not c.ok:
            return f"wrong output {name!r}: {c}"
    return None


def mutants(count: int, seed: int):
    """Seeded mutants: half byte-level (as bytes written to a file), half structural (protos)."""
    rng = np.random.default_rng(seed)
    seeds = [p.read_bytes() for p in SEEDS]
    protos = [onnx.load_from_string(b) for b in seeds]
    for i in range(count):
        k = int(rng.integers(len(seeds)))
        yield ("bytes", mutate_bytes(seeds[k], rng)) if i % 2 == 0 else ("proto", mutate_model(protos[k], rng))


def run(count: int | None, seconds: float | None, seed: int, workdir: Path, verify: bool = False):
    start, tried, crashes = time.time(), 0, []
    workdir.mkdir(parents=True, exist_ok=True)
    for kind, mutant in mutants(count or 10**12, seed):
        if seconds is not None and time.time() - start > seconds:
            break
        if kind == "bytes":
            path = workdir / "mutant.onnx"
            path.write_bytes(mutant)
            problem, data = check(path, verify), mutant
        else:
            problem = check(mutant, verify)
            data = mutant.SerializeToString()
        tried += 1
        if problem:
            CORPUS.mkdir(exist_ok=True)
            (CORPUS / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.onnx").write_bytes(data)
            crashes.append(problem)
    return tried, crashes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--verify", action="store_true", help="build what compiles and compare with onnxruntime")
    args = p.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tried, crashes = run(None, args.seconds, args.seed, Path(tmp), args.verify)
    print(f"{tried} mutants tried, {len(crashes)} crash(es)")
    for c in crashes[:5]:
        print(c)


if __name__ == "__main__":
    main()
