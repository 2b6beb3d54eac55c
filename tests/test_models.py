"""Whole models against onnxruntime: the onnx package's light model zoo, PyTorch exports, digits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import codegen
from codegen.ops import REGISTRY
from codegen.verify import Reference, compare, load_inputs

from .conftest import FIXTURES, ROOT, TEST_CFLAGS

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx"))


def _runtime_inputs(proto):
    inits = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def test_light_zoo_has_all_nine():
    assert len(LIGHT_MODELS) == 9


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_zoo(name):
    """The input onnx's own runner uses for these models; expected outputs ship beside them."""
    path = LIGHT / f"light_{name}.onnx"
    proto = onnx.load(str(path))
    (x,) = _runtime_inputs(proto)
    shape = tuple(d.dim_value for d in x.type.tensor_type.shape.dim)
    data = (np.arange(np.prod(shape)).reshape(shape) / np.prod(shape)).astype(np.float32)
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    compiled = codegen.compile(path)
    (got,) = compiled.build(TEST_CFLAGS)(data)
    assert compare("output", got, expected).ok
    ref = Reference(proto)({x.name: data})
    assert compare("output", got, next(iter(ref.values()))).ok
    assert compiled.plan.lower_bound <= compiled.plan.arena_bytes <= 1.05 * compiled.plan.lower_bound


FIXTURE_MODELS = ["resnet_mini", "mobilenet_v2_mini", "mobilenet_v2_mini_opset11", "squeezenet_mini", "mlp",
                  "lenet_avgpool", "gru_lstm", "layernorm_classifier",
                  pytest.param("transformer_encoder", marks=pytest.mark.skipif(
                      "Erf" not in REGISTRY, reason="its exact GELU needs the Erf op"))]


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_pytorch_fixture(name):
    """Seeded PyTorch exports (tests/fixtures/make_fixtures.py): C vs onnxruntime and vs torch."""
    path = FIXTURES / f"{name}.onnx"
    io = np.load(FIXTURES / f"{name}_io.npz")
    compiled = codegen.compile(path)
    (got,) = compiled.build(TEST_CFLAGS)(io["x"])
    proto = onnx.load(str(path))
    (ref,) = Reference(proto)({_runtime_inputs(proto)[0].name: io["x"]}).values()
    assert compare("output", got, ref).ok, compare("output", got, ref)
    assert compare("output", got, io["y"]).ok


def test_batch_norm_stays_a_layer_in_fixtures():
    """The fixtures keep BatchNormalization (exported with TrainingMode.PRESERVE), so it is exercised."""
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx", opt_level=0)
    assert any(n.op == "BatchNormalization" for n in compiled.graph.nodes)


def test_dynamic_batch_needs_and_takes_an_input_shape():
    path = FIXTURES / "dynamic_batch_mlp.onnx"
    with pytest.raises(codegen.ShapeError, match=r"--input-shape x=1x64"):
        codegen.compile(path)
    io = np.load(FIXTURES / "dynamic_batch_mlp_io.npz")
    compiled = codegen.compile(path, input_shapes=[f"x={'x'.join(map(str, io['x'].shape))}"])
    (got,) = compiled.build(TEST_CFLAGS)(io["x"])
    assert compare("y", got, io["y"]).ok


def test_digits_matches_onnxruntime_accuracy():
    path = ROOT / "examples" / "digits" / "digits.onnx"
    compiled = codegen.compile(path)
    run = compiled.build(TEST_CFLAGS)
    samples, labels = load_inputs(ROOT / "examples" / "digits" / "digits_test.npz", run.inputs)
    reference = Reference(onnx.load(str(path)))
    ours = [int(np.argmax(run(*s)[0])) for s in samples]
    theirs = [int(np.argmax(next(iter(reference({"image": s[0]}).values())))) for s in samples]
    assert len(samples) == len(labels) > 400
    acc_ours, acc_ref = np.mean(np.array(ours) == labels), np.mean(np.array(theirs) == labels)
    assert acc_ours == acc_ref and acc_ours > 0.95
