"""Every ONNX node conformance case (all 1884 of onnx 1.23).

A case either compiles, builds warning-free and matches the expected outputs with the case's own
tolerances, or is rejected with a KilnError naming the problem: a case with an op Kiln does not
register must be rejected as unsupported, naming that op. Registering an op switches its cases on;
there is no per-op test code.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

import codegen
from codegen.ops import REGISTRY

from .conftest import TEST_CFLAGS


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        cases = collect_testcases()
    return cases


def _array(x) -> np.ndarray:
    """Some cases (the Cast family) store their data as TensorProtos."""
    return numpy_helper.to_array(x) if isinstance(x, TensorProto) else np.asarray(x)


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance(case, record_property):
    ops = sorted({n.op_type for n in case.model.graph.node})
    record_property("conformance", (ops, "FAILED"))     # replaced below unless the case fails
    try:
        compiled = codegen.compile(case.model, name="case")
    except codegen.KilnError as err:
        assert str(err), "a rejection must say why"
        if set(ops) - set(REGISTRY):       # an op Kiln does not have: an UnsupportedError (not a shape error)
            assert isinstance(err, codegen.UnsupportedError), str(err)
        if isinstance(err, codegen.UnsupportedError):
            named = {(name, op) for name, op, _ in err.problems}
            assert all(op in str(err) for _, op in named)
        record_property("conformance", (ops, "rejected"))
        return
    run = compiled.build(TEST_CFLAGS)
    for inputs, expected in case.data_sets:
        got = run(*[_array(x) for x in inputs])
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            e = _array(e)
            assert g.dtype == e.dtype, f"dtype {g.dtype} != {e.dtype}"
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)
    record_property("conformance", (ops, "passed"))
