"""NaN, +-inf, +-0 and overflow through every float elementwise op, against onnxruntime: the same
NaNs, the same infinities with the same signs, the finite values within float tolerance. Unary ops
see each special value; binary ops see every pair (one model, one C build, per arity)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import codegen
from codegen.verify import Reference

from .conftest import TEST_CFLAGS

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 0.5], np.float32)
UNARY = ["Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
         "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
         "Softplus", "Softsign", "Elu", "Selu", "LeakyRelu", "HardSigmoid", "HardSwish", "Mish", "Gelu", "Celu",
         "ThresholdedRelu", "IsNaN", "IsInf", "Clip", "Identity"]
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
          "GreaterOrEqual"]


def _model(ops, binary):
    shape_a = (len(SPECIAL), 1) if binary else (len(SPECIAL),)
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape_a)]
    if binary:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, (1, len(SPECIAL))))
    nodes = [helper.make_node(op, ["a", "b"] if binary else ["a"], [op], name=op, **({"fmod": 1} if op == "Mod" else {}))
             for op in ops]
    graph = helper.make_graph(nodes, "specials", inputs, [helper.make_empty_tensor_value_info(op) for op in ops])
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]),
                                             strict_mode=True)


def _same(got, want, op):
    assert got.dtype == want.dtype, op
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=op)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{op}: NaN positions")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{op}: infinities")
    finite = ~np.isnan(want) & ~inf
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6, err_msg=op)


def _check(ops, binary):
    model = _model(ops, binary)
    feeds = {"a": SPECIAL.reshape(-1, 1) if binary else SPECIAL}
    if binary:
        feeds["b"] = SPECIAL.reshape(1, -1)
    want = Reference(model)(feeds)
    got = codegen.compile(model, name="specials").build(TEST_CFLAGS)(*feeds.values())
    for op, g in zip(ops, got):
        _same(g, want[op], op)


def test_unary_ops_on_special_values_match_onnxruntime():
    _check(UNARY, binary=False)


def test_binary_ops_on_every_pair_of_special_values_match_onnxruntime():
    _check(BINARY, binary=True)
