"""When do compressed sparse weights pay? One Gemm and one 3x3 convolution, magnitude-pruned to a
range of densities, compiled once with the sparse kernel and once with the dense one (Kiln picks
between them by density: codegen/ops/sparse.py), timed with the flags a user builds with.

    python examples/benchmarks/sparse_layers.py
"""
from __future__ import annotations

import time
from unittest import mock

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import codegen
from codegen.ops import sparse

RNG = np.random.default_rng(0)
DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)


def _model(kind: str, density: float):
    if kind == "gemm":
        w = RNG.standard_normal((1024, 1024)).astype(np.float32)
        x, shape_x, shape_y = "x", (1, 1024), (1, 1024)
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
        b = RNG.standard_normal(1024).astype(np.float32)
    else:
        w = RNG.standard_normal((64, 64, 3, 3)).astype(np.float32)
        x, shape_x, shape_y = "x", (1, 64, 56, 56), (1, 64, 56, 56)
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
        b = RNG.standard_normal(64).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), 1 - density)] = 0
    graph = helper.make_graph([node, helper.make_node("Relu", ["y"], ["r"])], kind,
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape_x)],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, shape_y)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shape_x


def _time(run, x, reps=30) -> float:
    run(x)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main():
    print(f"{'layer':<6}{'density':>8}{'dense ms':>10}{'sparse ms':>11}{'speed-up':>10}{'dense B':>10}{'sparse B':>10}")
    for kind in ("gemm", "conv"):
        for density in DENSITIES:
            model, shape = _model(kind, density)
            x = RNG.standard_normal(shape).astype(np.float32)
            with mock.patch.dict(sparse.MAX_DENSITY, {kind: 0.0}):
                dense = codegen.compile(model)
            with mock.patch.dict(sparse.MAX_DENSITY, {kind: 1.0}):
                sparse_ = codegen.compile(model)
            a, b = dense.build(), sparse_.build()
            np.testing.assert_allclose(b(x)[0], a(x)[0], rtol=1e-4, atol=1e-4)
            td, ts = _time(a, x), _time(b, x)
            print(f"{kind:<6}{density:>8.2f}{td:>10.3f}{ts:>11.3f}{td / ts:>10.2f}"
                  f"{dense.sources.weight_bytes:>10,}{sparse_.sources.weight_bytes:>10,}")


if __name__ == "__main__":
    main()
