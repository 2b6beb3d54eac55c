"""Compressed sparse weights: pruned Conv/Gemm/MatMul layers switch to the sparse kernels below
the density where those pay (codegen/ops/sparse.py), keep the epilogue, and agree with onnxruntime."""
import numpy as np
import pytest
from onnx import helper

import codegen

from .conftest import TEST_CFLAGS
from .graphs import model
from codegen.verify import Reference, compare

RNG = np.random.default_rng(7)


def _pruned(shape, density):
    w = RNG.standard_normal(shape).astype(np.float32)
    w[RNG.random(shape) > density] = 0
    return w


def _check(m, x, template, dense_template=None):
    compiled = codegen.compile(m)
    assert {k.template for k in compiled.kernels.values()} >= {template}
    got = compiled.build(TEST_CFLAGS)(x)[0]
    want = next(iter(Reference(m)({"x": x}).values()))
    assert compare("y", got, want).ok, compare("y", got, want)
    return compiled


@pytest.mark.parametrize("attrs", [dict(pads=[1, 1, 1, 1]), dict(pads=[0, 2, 1, 0], strides=[2, 2]),
                                   dict(pads=[2, 2, 2, 2], dilations=[2, 2]), dict(strides=[2, 1])])
def test_sparse_conv(attrs):
    w = _pruned((8, 6, 3, 3), 0.05)
    w[0] = 0                                           # an output channel with no taps at all
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    x = RNG.standard_normal((2, 6, 9, 10)).astype(np.float32)
    out = Reference(model(nodes[:1], [("x", x.shape)], [("c", None)], dict(w=w, b=np.ones(8, np.float32))))(
        {"x": x})["c"].shape
    m = model(nodes, [("x", x.shape)], [("y", out)], dict(w=w, b=RNG.standard_normal(8).astype(np.float32)))
    compiled = _check(m, x, "conv_sparse")
    assert compiled.report["macs"] < 0.1 * 2 * 8 * 6 * 9 * np.prod(out[2:])


@pytest.mark.parametrize("trans", [dict(transB=1), dict(transA=1, transB=0, alpha=0.5, beta=2.0)])
def test_sparse_gemm(trans):
    w = _pruned((40, 30) if trans.get("transB") else (30, 40), 0.05)
    x = RNG.standard_normal((30, 3) if trans.get("transA") else (3, 30)).astype(np.float32)
    m = model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], **trans), helper.make_node("Sigmoid", ["g"], ["y"])],
              [("x", x.shape)], [("y", (3, 40))], dict(w=w, b=RNG.standard_normal(40).astype(np.float32)))
    _check(m, x, "gemm")
    assert "Sp[n + 1]" in codegen.compile(m).sources.c


def test_sparse_matmul_with_a_batch_and_dense_above_the_threshold():
    x = RNG.standard_normal((2, 5, 64)).astype(np.float32)
    for density, sparse in ((0.04, True), (0.5, False)):
        m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", x.shape)], [("y", (2, 5, 16))],
                  dict(w=_pruned((64, 16), density)))
        compiled = _check(m, x, "gemm" if sparse else "gemm_packed")
        assert ("Sp[n + 1]" in compiled.sources.c) == sparse
