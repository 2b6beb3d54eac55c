"""ONNX node conformance cases re-run with their shape-defining inputs made constants.

The conformance cases feed every input at run time, so they exercise the kernels that check or
read a parameter input (Slice's starts, Pad's pads, TopK's k...) at run time. Here the same cases
get those inputs as initializers holding the case's own data, so the compile-time-constant paths
are checked against the expected outputs as well.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import codegen
from codegen.ops import REGISTRY

from .conftest import TEST_CFLAGS

# op -> positions of the inputs that Kiln needs at compile time
CONSTANT_INPUTS = {
    "Slice": (1, 2, 3, 4), "Split": (1,), "Expand": (1,), "Tile": (1,), "Pad": (1, 3), "Trilu": (1,),
    "TopK": (1,), "CumSum": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "OneHot": (1,), "Range": (0, 1, 2),
}


def _constant_case(case):
    """(model with the inputs made initializers, remaining inputs, expected outputs) or None."""
    graph = case.model.graph
    names = {i.name for i in graph.input}
    fixed = {n.input[k] for n in graph.node for k in CONSTANT_INPUTS.get(n.op_type, ())
             if k < len(n.input) and n.input[k] in names}
    if not fixed or len(case.data_sets) != 1:
        return None
    inputs, expected = case.data_sets[0]
    order = [i.name for i in graph.input]
    values = dict(zip(order, inputs))
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    keep = [i for i in model.graph.input if i.name not in fixed]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(values[n]), n) for n in sorted(fixed))
    return model, [values[i.name] for i in keep], expected


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        cases = collect_testcases()
    out = []
    for c in cases:
        ops = {n.op_type for n in c.model.graph.node}
        if ops <= set(REGISTRY) and ops & set(CONSTANT_INPUTS):
            made = _constant_case(c)
            if made is not None:
                out.append((c.name, c.rtol, c.atol, *made))
    return out


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_with_constant_inputs(case):
    name, rtol, atol, model, inputs, expected = case
    try:
        compiled = codegen.compile(model, name="case")
    except codegen.KilnError as err:
        assert str(err)
        pytest.skip(f"rejected: {str(err).splitlines()[-1].strip()}")
    got = compiled.build(TEST_CFLAGS)(*inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.dtype == e.dtype, f"dtype {g.dtype} != {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
