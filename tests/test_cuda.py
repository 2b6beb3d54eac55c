"""The CUDA backend: NAME.cu is generated for every kind of layer and builds with nvcc (where nvcc
is installed); it runs and matches onnxruntime only where a GPU is present (the device run in
examples/benchmarks/cuda_suite.py; here such tests skip)."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

import codegen
from codegen import cuda
from codegen.cli import main

from .conftest import FIXTURES
from .test_static_analysis import _int8_net

DIGITS = FIXTURES.parent.parent / "examples" / "digits" / "digits.onnx"
needs_nvcc = pytest.mark.skipif(cuda.nvcc() is None, reason="nvcc not installed (the CUDA toolkit)")
needs_gpu = pytest.mark.skipif(not cuda.gpu_present(), reason="no CUDA device here (nvidia-smi lists none)")


def _splat_conv():
    """Constant-filled weights: the planes tactic keeps them one float, which the GPU kernel reads too."""
    from onnx import helper
    from .graphs import model
    return model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [("x", (1, 3, 6, 7))],
                 [("y", (1, 10, 6, 7))], {"w": np.full((10, 3, 3, 3), 0.25, np.float32),
                                          "b": np.full(10, -0.5, np.float32)})


def _models():
    cases = {"digits": (DIGITS, {}), "int8_net": _int8_net(), "splat_conv": (_splat_conv(), {})}
    for name in ("resnet_mini", "mobilenet_v2_mini", "squeezenet_mini", "transformer_encoder", "gru_lstm",
                 "lenet_avgpool", "layernorm_classifier"):
        cases[name] = (FIXTURES / f"{name}.onnx", {})
    return cases


MODELS = _models()


def test_the_cuda_file_is_deterministic_and_names_every_layer():
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx")
    a, b = cuda.emit_cuda(compiled), cuda.emit_cuda(codegen.compile(FIXTURES / "resnet_mini.onnx"))
    assert a.cu == b.cu and a.h == b.h
    launches = re.findall(r"^    layer_\w+<<<", a.cu, re.M)
    assert len(launches) == sum(1 for node in compiled.graph.nodes if not compiled.kernels[node.name].alias)
    assert "malloc" not in a.cu.replace("cudaMalloc", "")
    for node in compiled.graph.nodes:
        assert any(name in a.cu for _, name in node.sources)


@needs_nvcc
@pytest.mark.parametrize("name", list(MODELS))
def test_nvcc_builds_the_cuda_file(name):
    path, options = MODELS[name]
    compiled = codegen.compile(path, **options)
    assert cuda.build_cuda(cuda.emit_cuda(compiled)).is_file()


@needs_gpu
@pytest.mark.parametrize("name", ["digits", "resnet_mini", "transformer_encoder", "int8_net", "splat_conv"])
def test_the_cuda_build_matches_onnxruntime(name):
    from codegen.verify import random_inputs
    path, options = MODELS[name]
    compiled = codegen.compile(path, **options)
    proto = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path))
    r = cuda.run_and_time(compiled, proto, [random_inputs(compiled._io_specs()[0], seed) for seed in range(2)])
    if options.get("int8"):       # integers: the same C bodies, so the same bits as the host build
        host = compiled.build()(*options["calibration"][0])
        assert np.array_equal(cuda.build(compiled)(*options["calibration"][0])[0], host[0])
    else:
        assert r["ok"], r


@pytest.mark.skipif(cuda.gpu_present(), reason="a GPU is present: verify --target cuda runs")
def test_verify_on_a_machine_without_a_gpu_says_so(capsys):
    assert main(["verify", str(DIGITS), "--target", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_compile_writes_the_cuda_file_and_header(tmp_path):
    assert main(["compile", str(DIGITS), "--target", "cuda", "-o", str(tmp_path)]) == 0
    cu = (tmp_path / "digits.cu").read_text()
    h = (tmp_path / "digits.h").read_text()
    assert "int digits_run(const void *const inputs[], void *const outputs[], cudaStream_t stream)" in h
    assert "digits_init" in cu and "digits_free" in cu and "__global__" in cu
