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
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx", backend="cuda")
    a, b = cuda.emit_cuda(compiled), cuda.emit_cuda(codegen.compile(FIXTURES / "resnet_mini.onnx", backend="cuda"))
    assert a.cu == b.cu and a.h == b.h
    launches = re.findall(r"^    layer_\w+<<<", a.cu, re.M)
    assert len(launches) == sum(1 for node in compiled.graph.nodes if not compiled.kernels[node.name].alias)
    assert "malloc" not in a.cu.replace("cudaMalloc", "")
    for node in compiled.graph.nodes:
        assert any(name in a.cu for _, name in node.sources)
    # every convolution and the classifier are tiled products, not a thread per output
    products = sum(k.template in ("conv", "gemm") for k in compiled.kernels.values())
    assert products and len(re.findall(r"/\* grid: \d+, \d+, \d+; block: 256", a.cu)) == products


def test_the_cuda_backend_needs_its_own_compile():
    with pytest.raises(codegen.KilnError, match="backend='cuda'"):
        cuda.emit_cuda(codegen.compile(DIGITS))
    with pytest.raises(codegen.KilnError, match="precision"):
        cuda.emit_cuda(codegen.compile(DIGITS, backend="cuda"), precision="fp8")


@pytest.mark.parametrize("rows,cols,depth,groups,batches", [
    (64, 3136, 576, 1, 1), (512, 49, 4608, 1, 1), (1000, 1, 512, 1, 1), (10, 7, 3, 1, 1), (64, 12544, 147, 1, 1),
    (8, 100, 17, 4, 1), (16, 16, 16, 1, 12), (3, 5, 100000, 1, 1)])
def test_tiling_covers_the_depth_in_chunks_of_16(rows, cols, depth, groups, batches):
    t = cuda.tiling(rows, cols, depth, "fp32", groups, batches)
    assert t["kchunk"] % 16 == 0 and (t["splits"] - 1) * t["kchunk"] < depth <= t["splits"] * t["kchunk"]
    assert t["gx"] * 64 >= cols and t["row_tiles"] * 64 >= rows and t["gz"] == batches * t["splits"]
    tiles = t["gx"] * t["gy"] * batches
    assert t["splits"] == 1 or tiles * t["splits"] <= 2 * cuda.SMS + tiles     # split only to fill the GPU
    assert t["split_floats"] == (batches * t["splits"] * t["padded"] if t["splits"] > 1 else 0)


@needs_nvcc
@pytest.mark.parametrize("name", list(MODELS))
def test_nvcc_builds_the_cuda_file(name):
    path, options = MODELS[name]
    compiled = codegen.compile(path, backend="cuda", **options)
    assert cuda.build_cuda(cuda.emit_cuda(compiled)).is_file()


@needs_nvcc
@pytest.mark.parametrize("precision", ["tf32", "fp16"])
@pytest.mark.parametrize("name", ["resnet_mini", "transformer_encoder"])
def test_nvcc_builds_the_tensor_core_kernels(name, precision):
    path, options = MODELS[name]
    sources = cuda.emit_cuda(codegen.compile(path, backend="cuda", **options), precision)
    assert "wmma::mma_sync" in sources.cu
    assert cuda.build_cuda(sources).is_file()


@needs_gpu
@pytest.mark.parametrize("name,precision", [("digits", "fp32"), ("resnet_mini", "fp32"), ("transformer_encoder", "fp32"),
                                            ("int8_net", "fp32"), ("splat_conv", "fp32"), ("resnet_mini", "tf32"),
                                            ("mobilenet_v2_mini", "fp16")])
def test_the_cuda_build_matches_onnxruntime(name, precision):
    from codegen.verify import random_inputs
    path, options = MODELS[name]
    compiled = codegen.compile(path, backend="cuda", **options)
    proto = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path))
    r = cuda.run_and_time(compiled, proto, [random_inputs(compiled._io_specs()[0], seed) for seed in range(2)],
                          precision=precision)
    if options.get("int8"):       # integers: the same C bodies, so the same bits as the host build
        host = codegen.compile(path, **options).build()(*options["calibration"][0])
        assert np.array_equal(cuda.build(compiled)(*options["calibration"][0])[0], host[0])
    else:
        assert r["ok"], r


@needs_gpu
def test_the_conformance_cases_of_the_parallel_kernels_pass_on_the_gpu():
    """Every conformance case that compiles to a CUDA kernel other than elementwise/copy (the convolutions,
    products, pools, softmax, norms, reductions, gathers, ...) matches its expected outputs on the GPU;
    built 16 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from .test_conformance import CASES, _array
    picked = []
    for case in CASES:
        try:
            compiled = codegen.compile(case.model, name="case", backend="cuda")
        except codegen.KilnError:
            continue
        if any(cuda._parallel(k) and k.template not in ("elementwise", "copy") for k in compiled.kernels.values()):
            picked.append((case, compiled))
    with ThreadPoolExecutor(16) as pool:
        runners = list(pool.map(lambda c: cuda.build(c[1]), picked))
    failed = []
    for (case, _), run in zip(picked, runners):
        for inputs, expected in case.data_sets:
            got = run(*[_array(x) for x in inputs])
            for g, e in zip(got, expected):
                if not np.allclose(g, _array(e), rtol=case.rtol, atol=case.atol, equal_nan=True):
                    failed.append(case.name)
        run.close()
    print(f"{len(picked)} conformance cases on the GPU, {len(failed)} failed")
    assert len(picked) > 200 and not failed, failed


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
