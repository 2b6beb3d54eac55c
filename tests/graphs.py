"""Tiny ONNX graphs built in code, for tests that need a specific shape of graph."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, inits=(), opset=17, name="g"):
    """inputs/outputs: [(name, shape)] float32; inits: {name: array}."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def chain(shape=(1, 4, 8, 8), ops=("Relu", "Sigmoid", "Tanh")):
    """x -> op0 -> op1 -> ... -> y"""
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        nodes.append(helper.make_node(op, [prev], [out], name=f"{op.lower()}{i}"))
        prev = out
    return model(nodes, [("x", shape)], [("y", shape)])


def same_function(m, seed=0, cflags=("-O1",), baseline=True, **options):
    """Compile with `options` (and at -O0 unless baseline=False); every build must agree with
    onnxruntime on seeded inputs. Returns the optimised CompiledModel."""
    import codegen
    from codegen.verify import Reference, compare, random_inputs
    optimised = codegen.compile(m, **options)
    runs = [optimised.build(list(cflags))]
    if baseline:
        runs.append(codegen.compile(m, opt_level=0).build(list(cflags)))
    inputs = random_inputs(runs[0].inputs, seed)
    ref = Reference(m)({n: a for (n, _, _), a in zip(runs[0].inputs, inputs)})
    for run in runs:
        for got, (name, want) in zip(run(*inputs), ref.items()):
            assert compare(name, got, want).ok, (name, compare(name, got, want))
    return optimised


def pass_log(compiled, name):
    return next(p["log"] for p in compiled.passes if p["name"] == name)


def conv(name, x, w, b, y, **attrs):
    return helper.make_node("Conv", [x, w, b], [y], name=name, **attrs)
