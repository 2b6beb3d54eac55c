"""Every elementwise op in every dtype its schema allows and Kiln supports, on edge values (integer
limits, zero divisors, out-of-range shifts, inf, NaN, -0, subnormals), against onnx's reference
evaluator: integers and booleans bit-exact, floats within a few ulps. One model (one C build) per
dtype; operands arrive as arrays, as float literals and as integer splat constants. Then fused
chains that change dtype on the way, and the float -> integer conversions the reference leaves to
the platform (Kiln saturates).
"""
from __future__ import annotations

import math
import warnings

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import codegen
from codegen import emit as emit_mod, frontend, ops, plan as plan_mod
from codegen.compiler import CompiledModel
from codegen.ir import ACC, Node, Value
from codegen.ops import Kernel, Unsupported
from codegen.ops.elementwise import attach_epilogue, chain_code

from .conftest import TEST_CFLAGS

SHAPE = (4, 12)
BF16 = np.dtype(helper.tensor_dtype_to_np_dtype(onnx.TensorProto.BFLOAT16))
DTYPES = [np.dtype(d) for d in ("float32", "float64", "float16", "int8", "int16", "int32", "int64",
                                "uint8", "uint16", "uint32", "uint64", "bool")] + [BF16]
# rtol, atol; float16 ops compute in float, the reference rounds every step to float16
TOLERANCE = {"float16": (2e-3, 1e-3), "bfloat16": (1.6e-2, 1e-2), "float32": (1e-5, 1e-6), "float64": (1e-12, 1e-14)}
LOSSY = {"Erf", "Gelu"}     # the reference's erf is float32 even for float64, and Gelu's constants too

UNARY = ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Floor", "Ceil", "Round", "Sign", "Sin",
         "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Relu", "Sigmoid",
         "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softsign", "ThresholdedRelu", "Gelu",
         "Shrink", "IsNaN", "IsInf", "Not", "BitwiseNot", "LeakyRelu", "Swish"]
BINARY = ["Add", "Sub", "Mul", "Div", "Mod", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
          "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu", "Max", "Min", "Sum", "Mean"]
ATTRS = [("Gelu", dict(approximate="tanh")), ("IsInf", dict(detect_negative=0)),
         ("IsInf", dict(detect_positive=0)), ("Elu", dict(alpha=0.5)), ("Celu", dict(alpha=2.0)),
         ("Shrink", dict(bias=1.5, lambd=1.0)), ("HardSigmoid", dict(alpha=0.3, beta=0.4)),
         ("LeakyRelu", dict(alpha=0.2)), ("Swish", dict(alpha=0.5))]
SMOOTH = {"Softplus", "Mish"}        # the reference overflows exp(x) for large x; Kiln does not


def allowed(op_type: str, dtype: np.dtype, index: int = 0) -> bool:
    schema = onnx.defs.get_schema(op_type, 28)
    param = schema.inputs[index].type_str
    constraint = next((c for c in schema.type_constraints if c.type_param_str == param), None)
    types = constraint.allowed_type_strs if constraint else [param]
    name = {"float32": "float", "float64": "double"}.get(dtype.name, dtype.name)
    return f"tensor({name})" in types


def kind(dtype: np.dtype) -> str:
    return "f" if dtype.name in TOLERANCE else dtype.kind


def edge_values(dtype: np.dtype, rng, n: int) -> np.ndarray:
    if dtype == bool:
        return rng.integers(0, 2, n).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        edges = [info.min, info.min + 1, info.max - 1, info.max, 0, 1, 2, 3, 7, 8, 9] + \
            ([-1, -2, -7, -8] if dtype.kind == "i" else [])
        rand = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        small = rng.integers(max(info.min, -20), 20, n).astype(dtype)
        vals = np.concatenate([np.array(edges, dtype), rand, small])
    else:
        finfo = ml_dtypes.finfo(dtype)
        big = float(finfo.max) / 4
        edges = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, np.inf, -np.inf, np.nan, big, -big,
                 float(finfo.smallest_subnormal), 1e-3, 0.999, -0.999]
        vals = np.concatenate([np.array(edges, dtype), (rng.standard_normal(n) * 3).astype(dtype)])
    return rng.permutation(vals)[:n]


class Graph:
    """A model under construction: inputs with data, constants, nodes, one output per node."""

    def __init__(self, rng):
        self.rng, self.inputs, self.feeds, self.inits, self.nodes, self.outputs = rng, [], {}, [], [], []

    def input(self, name, values):
        values = np.asarray(values).reshape(SHAPE)
        self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values.dtype), SHAPE))
        self.feeds[name] = values
        return name

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type, inputs, **attrs):
        out = f"y{len(self.nodes)}_{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        self.outputs.append(helper.make_empty_tensor_value_info(out))
        return out

    def model(self):
        graph = helper.make_graph(self.nodes, "sweep", self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)])
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def sweep_graph(dtype: np.dtype, rng) -> Graph:
    g = Graph(rng)
    n = int(np.prod(SHAPE))
    a = g.input("a", edge_values(dtype, rng, n))
    b = g.input("b", edge_values(dtype, rng, n))
    cond = g.input("cond", rng.integers(0, 2, n).astype(bool))
    consts = [g.const("k0", np.array(edge_values(dtype, rng, 1)[0], dtype)), g.const("k1", np.array(3, dtype))]
    if dtype.kind == "i":
        consts.append(g.const("k2", np.array(-1, dtype)))
    if dtype.kind in "iu":
        consts += [g.const("k3", np.array(0, dtype)), g.const("k4", np.array(np.iinfo(dtype).max, dtype))]
    # the reference computes integer Shrink in float64 and converts back: keep that exact
    exact = g.input("exact", rng.integers(-100 if dtype.kind == "i" else 0, 100, n).astype(dtype)) \
        if dtype.kind in "iu" else a
    smooth = g.input("smooth", np.clip(edge_values(dtype, rng, n), -60, 60)) if kind(dtype) == "f" else a
    for op_type, attrs in [(o, {}) for o in UNARY + sorted(SMOOTH)] + ATTRS:
        if allowed(op_type, dtype):
            g.node(op_type, [smooth if op_type in SMOOTH else exact if op_type == "Shrink" else a], **attrs)
    for op_type in BINARY:
        if allowed(op_type, dtype):
            for other in [b, *consts]:
                g.node(op_type, [a, other])
                if op_type not in ("Max", "Min", "Sum", "Mean", "PRelu"):   # Mean(scalar, x) fails in the reference
                    g.node(op_type, [other, a])
                if op_type == "Mod":
                    g.node(op_type, [a, other], fmod=1)
    for op_type in ("Max", "Min", "Sum", "Mean"):
        if allowed(op_type, dtype):
            g.node(op_type, [a, b, consts[0]])
            g.node(op_type, [a, b, a, consts[1]])
            g.node(op_type, [b])
    if allowed("Clip", dtype):
        g.node("Clip", [a, consts[1], consts[0]])
        g.node("Clip", [a, "", consts[1]])
        g.node("Clip", [a, b])
        g.node("Clip", [a])
    g.node("Where", [cond, a, b])
    g.node("Where", [cond, consts[0], a])
    if dtype.kind in "iu":
        width = 8 * dtype.itemsize
        shifts = g.input("shift", rng.integers(-3 if dtype.kind == "i" else 0, width + 3, n).astype(dtype))
        for direction in ("LEFT", "RIGHT"):
            g.node("BitShift", [a, shifts], direction=direction)
            g.node("BitShift", [b, g.const(f"k_{direction}", np.array(width - 1, dtype))], direction=direction)
    if allowed("Pow", dtype):
        if kind(dtype) == "f":
            exponents = (np.int64, np.int32, np.uint8, np.float64, np.float32, dtype)
            for exponent in dict.fromkeys(np.dtype(e) for e in exponents):
                e = g.input(f"e_{np.dtype(exponent).name}", edge_values(np.dtype(exponent), rng, n)
                            if np.dtype(exponent).kind == "f" else rng.integers(0, 9, n).astype(exponent))
                g.node("Pow", [a, e])
                g.node("Pow", [b, g.const(f"ke_{np.dtype(exponent).name}", np.array(2, exponent))])
        else:
            base = g.input("pow_base", rng.integers(0, 6, n).astype(dtype))
            for exponent in (np.int64, np.int32, np.uint8, np.uint64):
                # numpy computes int ** uint64 in float64 (its conversion back is the platform's when out
                # of range): there, a small base; else integer powers that wrap
                wraps = exponent != np.uint64
                e = g.input(f"e_{np.dtype(exponent).name}", rng.integers(0, 70 if wraps else 9, n).astype(exponent))
                g.node("Pow", [a if wraps else base, e])
            for exponent in (np.float32, np.float64):
                g.node("Pow", [base, g.input(f"e_{np.dtype(exponent).name}", rng.uniform(0, 4, n).astype(exponent))])
    # casts: to every type; float -> integer only inside every integer type's range (else see below)
    in_range = g.input("in_range", rng.uniform(-0.99, 127, n).astype(dtype)) if kind(dtype) == "f" else a
    for target in DTYPES:
        source = in_range if kind(dtype) == "f" and target.kind in "iu" else a
        g.node("Cast", [source], to=helper.np_dtype_to_tensor_dtype(target))
        g.node("CastLike", [source, g.const(f"like_{target.name}", np.zeros((2,), target))])
    return g


def check(got, expected, name):
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, f"{name}: dtype {got.dtype} != {expected.dtype}"
    if expected.dtype.name in TOLERANCE:
        rtol, atol = TOLERANCE[expected.dtype.name]
        if name.split("_")[-1] in LOSSY:
            rtol, atol = max(rtol, 1e-6), max(atol, 1e-7)
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                                   err_msg=name)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=[d.name for d in DTYPES])
def test_sweep(dtype):
    g = sweep_graph(dtype, np.random.default_rng(7))
    model = g.model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ReferenceEvaluator(model).run(None, g.feeds)
    run = codegen.compile(model, name="sweep").build(TEST_CFLAGS)
    got = run(*[g.feeds[i.name] for i in model.graph.input])
    failures = []
    for out, x, e in zip(model.graph.output, got, expected):
        if out.name.endswith("_Clip") and kind(dtype) == "f":     # an omitted bound is the type's limit
            e = np.clip(e, ml_dtypes.finfo(dtype).min, ml_dtypes.finfo(dtype).max).astype(dtype)
        try:
            check(x, e, out.name)
        except AssertionError as err:
            failures.append(str(err).strip().splitlines()[:9])
    assert not failures, "\n".join("\n".join(f) for f in failures)


# ---- fused chains: the same expressions as one loop with typed temporaries ------------------------

def fused_build(model):
    """Compile `model` with all its nodes fused into one Fused node."""
    graph = frontend.load(model)
    external = list(dict.fromkeys(i for n in graph.nodes for i in n.inputs
                                  if i and i not in {o for m in graph.nodes for o in m.outputs}))
    inside = {o for n in graph.nodes for o in n.outputs[:1]} - {graph.nodes[-1].outputs[0]}
    graph.values = {k: v for k, v in graph.values.items() if k not in inside}
    graph.nodes = [Node("Fused", "chain", external, [graph.nodes[-1].outputs[0]], dict(body=graph.nodes),
                        sources=[n.name for n in graph.nodes])]
    kernels = ops.lower(graph)
    plan = plan_mod.make_plan(graph, kernels)
    sources = emit_mod.emit(graph, kernels, plan, {})
    return CompiledModel(graph, kernels, plan, sources).build(TEST_CFLAGS), sources.c


def chain_model(steps, inputs, inits=()):
    """steps: [(op, [inputs], attrs)], each step's output named t<k>; the last is the output."""
    nodes = [helper.make_node(o, ins, [f"t{k}"], name=f"n{k}", **attrs) for k, (o, ins, attrs) in enumerate(steps)]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                         for n, v in inputs.items()],
        [helper.make_empty_tensor_value_info(f"t{len(steps) - 1}")],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


F16, I32 = helper.np_dtype_to_tensor_dtype(np.dtype(np.float16)), helper.np_dtype_to_tensor_dtype(np.dtype(np.int32))
CHAINS = {
    # float32 -> float16 temporaries -> int32 -> bool -> Where back to float32
    "f16_int_bool": [("Cast", ["x"], dict(to=F16)), ("Mul", ["t0", "h"], {}), ("Max", ["t1", "t0", "h"], {}),
                     ("Cast", ["t2"], dict(to=I32)), ("BitShift", ["t3", "s"], dict(direction="LEFT")),
                     ("Greater", ["t4", "n"], {}), ("Where", ["t5", "t2", "t1"], {}), ("Cast", ["t6"], dict(to=1))],
    # CastLike reads only its target's dtype; the fold of Sum runs through temporaries
    "castlike_sum": [("CastLike", ["n", "x"], {}), ("Sum", ["t0", "x", "t0", "x"], {}), ("Sqrt", ["t1"], {}),
                     ("IsNaN", ["t2"], {}), ("Not", ["t3"], {}), ("Cast", ["t4"], dict(to=1))],
    # int8 wrapping arithmetic and division through int32 temporaries
    "int8_wrap": [("Cast", ["n"], dict(to=3)), ("Mul", ["t0", "t0"], {}), ("Add", ["t1", "t0"], {}),
                  ("Div", ["t2", "m"], {}), ("Neg", ["t3"], {}), ("Abs", ["t4"], {}), ("Cast", ["t5"], dict(to=1))],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_fused_chain(name):
    rng = np.random.default_rng(3)
    inputs = dict(x=edge_values(np.dtype(np.float32), rng, 48).reshape(SHAPE),
                  n=rng.integers(-300, 300, SHAPE).astype(np.int32),
                  s=rng.integers(-2, 40, SHAPE).astype(np.int32))
    inits = dict(h=np.array(1.5, np.float16), m=np.array([3, -1, 0, 7] * 3, np.int8))
    model = chain_model(CHAINS[name], inputs, inits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ReferenceEvaluator(model).run(None, inputs)
    run, c = fused_build(model)
    assert c.count("static void layer_") == 1
    check(run(*inputs.values())[0], expected[0], name)


def test_chain_code_types_each_temporary():
    steps = [Node("Cast", "c", ["x"], ["t0"], dict(to=10)), Node("Greater", "g", ["t0", "x"], ["t1"]),
             Node("Where", "w", ["t1", "t0", "t0"], ["t2"])]
    lines, result = chain_code(steps, lambda name: "X0[i]")        # an untyped leaf is float32
    assert lines == ["const uint16_t e0 = kiln_f2h((double)(X0[i]));",
                     "const uint8_t e1 = (kiln_h2f(e0) > X0[i]);",
                     "const uint16_t e2 = kiln_f2h((double)((e1 ? kiln_h2f(e0) : kiln_h2f(e0))));"]
    assert result == "e2"


def test_epilogue_typed_operands_and_refusal():
    f32 = np.dtype(np.float32)
    shape = (1, 4, 2, 2)
    values = {v.name: v for v in [
        Value("y", shape, f32), Value("r", shape, f32), Value("t1", shape, f32), Value("t2", shape, f32),
        Value("t3", shape, f32), Value("t4", shape, np.dtype(bool)),
        Value("b", (1, 4, 1, 1), f32, np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1))]}
    def anchor():
        return Kernel("conv", {"X": values["r"]}, {"Y": values["y"]}, epilogue_modes=("flat", "chan"))

    steps = [Node("Add", "bias", [ACC, "b"], ["t1"]), Node("Add", "residual", ["t1", "r"], ["t2"]),
             Node("Relu", "relu", ["t2"], ["t3"])]
    kernel = attach_epilogue(anchor(), steps, values)
    assert kernel.params["epilogue"].apply("acc", flat="f", chan="c") == (
        "{ const float e0 = (acc + E0[c]); const float e1 = (e0 + E1[f]); "
        "const float e2 = (e1 < 0.0f ? 0.0f : e1); acc = e2; }")
    assert kernel.outputs["Y"] is values["t3"]
    with pytest.raises(Unsupported, match="changes the dtype"):
        attach_epilogue(anchor(), [Node("Greater", "g", [ACC, "r"], ["t4"])], values)


@pytest.mark.parametrize("to", ["STRING"])     # the small types: tests/test_quantize.py
def test_cast_refuses_types_c_cannot_hold(to):
    x = np.zeros(SHAPE, np.float32)
    model = chain_model([("Cast", ["x"], dict(to=getattr(onnx.TensorProto, to)))], dict(x=x))
    with pytest.raises(codegen.KilnError, match="not supported"):
        codegen.compile(model)


# ---- float -> integer outside the target's range: undefined in C, saturated by Kiln ---------------

@pytest.mark.parametrize("target", [d for d in DTYPES if d.kind in "iu"], ids=lambda d: d.name)
def test_cast_saturates(target):
    info = np.iinfo(target)
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, float(info.max) * 2 + 10, float(info.min) * 2 - 10,
                  -0.75, 0.75, -1.5, 2.5, 100.5] * 4, np.float64).reshape(SHAPE)
    model = chain_model([("Cast", ["x"], dict(to=helper.np_dtype_to_tensor_dtype(target)))], dict(x=x))
    got = codegen.compile(model, name="sat").build(TEST_CFLAGS)(x)[0]
    def saturated(v: float) -> int:      # in Python integers: exact at the 64-bit ends too
        if math.isnan(v):
            return 0
        if math.isinf(v):
            return info.max if v > 0 else info.min
        return min(max(math.trunc(v), info.min), info.max)
    expected = np.array([saturated(v) for v in x.reshape(-1)], target).reshape(SHAPE)
    np.testing.assert_array_equal(got, expected)


# ---- rounding to float16 and bfloat16: one rounding to nearest even, from float and from double ----

def _bf16_bits(x: float) -> int:
    """Round a double to bfloat16 bits, to nearest even, in exact arithmetic."""
    sign = 0x8000 if math.copysign(1.0, x) < 0 else 0
    a = abs(x)
    if math.isnan(x):
        return sign | 0x7FC0
    if a >= (2 - 2 ** -8) * 2.0 ** 127:
        return sign | 0x7F80
    if a < 2.0 ** -126:
        return sign | round(a * 2.0 ** 133)
    f, e = math.frexp(a)
    return sign + ((e + 126) << 7) + round(f * 256) - 128


def _rounding_cases(rng) -> np.ndarray:
    f16 = np.arange(0, 0x7C01, dtype=np.uint16).view(np.float16).astype(np.float64)
    bf16 = np.arange(0, 0x7F81, 97, dtype=np.uint32).astype(np.uint16).view(BF16).astype(np.float64)
    halfway = np.concatenate([(f16[1:] + f16[:-1]) / 2, (bf16[1:] + bf16[:-1]) / 2])
    near = np.concatenate([np.nextafter(halfway, np.inf), np.nextafter(halfway, -np.inf)])
    wild = np.ldexp(rng.uniform(0.5, 1, 4000), rng.integers(-150, 130, 4000))
    values = np.concatenate([f16, bf16, halfway, near, wild, [np.nan, np.inf, 65504, 65520, 65519.999]])
    values = np.concatenate([values, -values])
    return values[: values.size // 48 * 48].reshape(-1, 48)


@pytest.mark.parametrize("source", [np.float32, np.float64])
def test_rounding_to_16_bits(source):
    with np.errstate(over="ignore"):          # doubles beyond float32 become infinities
        x = _rounding_cases(np.random.default_rng(5)).astype(source)
    to = dict(half=onnx.TensorProto.FLOAT16, brain=onnx.TensorProto.BFLOAT16)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["x"], [name], to=t) for name, t in to.items()], "rounding",
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
        [helper.make_tensor_value_info(name, t, x.shape) for name, t in to.items()]),
        opset_imports=[helper.make_opsetid("", 28)])
    half, brain = codegen.compile(model, name="rounding").build(TEST_CFLAGS)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_half = x.astype(np.float16)          # numpy rounds float and double to half directly
    np.testing.assert_array_equal(half.view(np.uint16), expected_half.view(np.uint16))
    expected_brain = np.array([_bf16_bits(float(v)) for v in x.reshape(-1)], np.uint16).reshape(x.shape)
    np.testing.assert_array_equal(brain.view(np.uint16), expected_brain)
