"""Cortex-M targets: the generated C cross-compiled with arm-none-eabi-gcc and run under QEMU's mps2
boards. int8 outputs must be bit-identical to the host build of the same C; float outputs within
tolerance of onnxruntime. Also the --ram-limit / --flash-limit errors (these need no tools)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import codegen
from codegen import cli
from codegen.limits import STACK_ESTIMATE, check_limits, parse_size
from codegen.targets import cortex_m
from codegen.verify import load_inputs, random_inputs

from .graphs import model

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"
MISSING = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(t)]
needs_tools = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed "
                                 f"(apt-get install {cortex_m.PACKAGES})")


def _digits(int8: bool):
    return codegen.compile(DIGITS / "digits.onnx", **(dict(calibration=DIGITS / "digits_calibration.npz",
                                                           int8="minmax") if int8 else {}))


def _digit_samples(compiled, n=3):
    return load_inputs(DIGITS / "digits_test.npz", compiled._io_specs()[0])[0][:n]


def _check(result, compiled):
    assert result["ok"], result
    assert result["checks"] == dict(weights_in_rodata=True, arena_in_bss=True, stack_within_the_harness=True)
    # the model object holds the weights in .rodata and the arena in .bss, and nothing else in RAM
    assert result["model_sections"]["weights"] == compiled.sources.weight_bytes
    assert result["model_sections"]["bss"] == compiled.plan.arena_bytes
    assert result["model_sections"]["data"] == 0
    assert 0 < result["stack_bytes"] <= STACK_ESTIMATE
    assert result["instructions"] > 0


@needs_tools
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_digits_int8_bit_identical_to_host(target):
    compiled = _digits(int8=True)
    samples = _digit_samples(compiled)
    result = cortex_m.verify_on_target(compiled, codegen.frontend.load_proto(DIGITS / "digits.onnx")[0],
                                       samples, target)
    _check(result, compiled)
    assert result["bit_identical_to_host"]
    # and the predictions are the digits' labels
    labels = np.load(DIGITS / "digits_test.npz")["y"][:3]
    run = cortex_m.run(compiled, samples, target)
    assert [int(np.argmax(o[0])) for o in run.outputs] == list(labels)


@needs_tools
def test_digits_float_on_cortex_m4():
    compiled = _digits(int8=False)
    result = cortex_m.verify_on_target(compiled, codegen.frontend.load_proto(DIGITS / "digits.onnx")[0],
                                       _digit_samples(compiled, 2), "cortex-m4")
    _check(result, compiled)
    assert all(c["ok"] for c in result["outputs"])


def _conv():
    rng = np.random.default_rng(1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2])
    return model([node, helper.make_node("Relu", ["y"], ["z"])], [("x", (1, 3, 9, 9))], [("z", (1, 4, 5, 5))],
                 {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                  "b": rng.standard_normal(4).astype(np.float32)})


def _gemm():
    rng = np.random.default_rng(2)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)
    return model([node], [("x", (2, 24))], [("y", (2, 7))],
                 {"w": rng.standard_normal((7, 24)).astype(np.float32),
                  "b": rng.standard_normal(7).astype(np.float32)})


def _pool():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    return model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 3, 4, 4))])


def _elementwise():
    nodes = [helper.make_node("Add", ["x", "c"], ["s"]), helper.make_node("Sigmoid", ["s"], ["t"]),
             helper.make_node("Mul", ["t", "x"], ["y"])]
    return model(nodes, [("x", (2, 3, 5))], [("y", (2, 3, 5))], {"c": np.linspace(-1, 1, 5, dtype=np.float32)})


@needs_tools
@pytest.mark.parametrize("family", [_conv, _gemm, _pool, _elementwise], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_one_op_family_on_cortex_m4(family, int8):
    m = family()
    specs = codegen.compile(m)._io_specs()[0]
    calibration = [random_inputs(specs, seed) for seed in range(8)]
    compiled = codegen.compile(m, **(dict(calibration=calibration, int8="minmax") if int8 else {}))
    result = cortex_m.verify_on_target(compiled, m, [random_inputs(specs, 100)], "cortex-m4")
    assert result["ok"], result
    if int8:
        assert result["bit_identical_to_host"]


def _ds_cnn():
    """MLPerf Tiny's DS-CNN (small) keyword spotter, random weights: a 10x4 stride-2 conv to 64 channels,
    four depthwise-separable blocks, global average pooling (ReduceMean, as PyTorch exports it), 12 classes."""
    rng = np.random.default_rng(7)
    w = lambda *shape: (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=[10, 4], strides=[2, 2], pads=[4, 1, 5, 2]),
             helper.make_node("Relu", ["c0"], ["r0"])]
    inits = {"w0": w(64, 1, 10, 4), "b0": w(64, 1)[:, 0]}
    for i in range(1, 5):
        nodes += [helper.make_node("Conv", [f"r{2 * i - 2}", f"dw{i}", f"db{i}"], [f"d{i}"], group=64, pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"d{i}"], [f"r{2 * i - 1}"]),
                  helper.make_node("Conv", [f"r{2 * i - 1}", f"pw{i}", f"pb{i}"], [f"p{i}"]),
                  helper.make_node("Relu", [f"p{i}"], [f"r{2 * i}"])]
        inits.update({f"dw{i}": w(64, 1, 3, 3), f"db{i}": w(64, 1)[:, 0], f"pw{i}": w(64, 64, 1, 1),
                      f"pb{i}": w(64, 1)[:, 0]})
    nodes += [helper.make_node("ReduceMean", ["r8"], ["m"], axes=[2, 3], keepdims=0),
              helper.make_node("Gemm", ["m", "fc", "fb"], ["y"], transB=1)]
    inits.update(fc=w(12, 64), fb=w(12, 1)[:, 0])
    return model(nodes, [("x", (1, 1, 49, 10))], [("y", (1, 12))], inits)


@needs_tools
def test_ds_cnn_int8_on_cortex_m4_at_the_activation_lower_bound():
    m = _ds_cnn()
    specs = codegen.compile(m)._io_specs()[0]
    compiled = codegen.compile(m, calibration=[random_inputs(specs, seed) for seed in range(8)], int8="minmax")
    # two int8 maps live, and the working memory (Kernel.scratch) of the convolution running between them
    scratch = max(b.size for b in compiled.plan.buffers if "/scratch:" in b.values[0])
    assert compiled.plan.arena_bytes == compiled.plan.lower_bound <= 2 * 64 * 25 * 5 + scratch
    result = cortex_m.verify_on_target(compiled, m, [random_inputs(specs, 100)], "cortex-m4")
    _check(result, compiled)
    assert result["bit_identical_to_host"]


def test_float_model_refused_on_cores_without_fpu():
    compiled = _digits(int8=False)
    for target in ("cortex-m0plus", "cortex-m3"):
        with pytest.raises(codegen.KilnError, match="no FPU.*--int8"):
            cortex_m.check_target(target, compiled)
    cortex_m.check_target("cortex-m4", compiled)
    cortex_m.check_target("cortex-m0plus", _digits(int8=True))


def test_missing_tools_name_the_debian_packages(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(codegen.KilnError, match="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"):
        cortex_m.tools()


# ---- limits -----------------------------------------------------------------------------------------

def test_parse_size():
    assert [parse_size(s) for s in ("2048", "64K", "64k", "512KB", "1M")] == [2048, 65536, 65536, 524288, 1 << 20]
    with pytest.raises(codegen.KilnError, match="not a size"):
        parse_size("64Q")


def test_cortex_m_builds_take_the_kernels_that_need_the_least_ram(tmp_path, capsys):
    """The planes convolution copies bands of padded input into the arena (fast with vectors); a Cortex-M
    build (memory="lean") takes the packed kernel instead, and the arena is the tensors' lower bound."""
    fast, lean = _digits(int8=False), codegen.compile(DIGITS / "digits.onnx", memory="lean")
    assert "/scratch:P" in " ".join(v for b in fast.plan.buffers for v in b.values)
    assert lean.plan.arena_bytes == lean.plan.lower_bound == 12_288 < fast.plan.arena_bytes
    assert [k.tactic for k in lean.kernels.values() if k.template.startswith("conv")] == ["packed_bm8"] * 3
    base = ["compile", str(DIGITS / "digits.onnx"), "-o", str(tmp_path)]
    for flags, arena in (([], fast.plan.arena_bytes), (["--target", "cortex-m4"], 12_288),
                         (["--target", "cortex-m4", "--memory", "fast"], fast.plan.arena_bytes)):
        assert cli.main(base + flags) == 0, flags
        capsys.readouterr()
        assert json.loads((tmp_path / "digits.json").read_text())["arena_bytes"] == arena, flags
    with pytest.raises(codegen.KilnError, match="memory must be one of fast, lean"):
        codegen.compile(DIGITS / "digits.onnx", memory="small")


def test_ram_limit_names_the_tensors_live_at_the_peak():
    compiled = _digits(int8=False)       # 8,192 + 4,096 bytes live in the second conv (and its working memory)
    need = compiled.plan.arena_bytes + STACK_ESTIMATE
    check_limits(compiled, ram_limit=need, flash_limit=compiled.sources.weight_bytes)
    with pytest.raises(codegen.LimitError) as err:
        check_limits(compiled, ram_limit=need - 1)
    msg = str(err.value)
    assert f"needs {need:,} bytes of RAM" in msg and "estimate" in msg and "--memory lean" in msg
    assert "'/features/features.5/Relu_output_0' 8,192 bytes, '/features/features.2/Relu_output_0' 4,096" in msg


def test_flash_limit_names_the_largest_weights():
    compiled = _digits(int8=True)
    with pytest.raises(codegen.LimitError, match=r"weights need [0-9,]+ bytes of flash.*'features.7.weight__q' 9,216"):
        check_limits(compiled, flash_limit=15 * 1024)


def test_cli_limits_and_target_errors(tmp_path, capsys):
    base = ["compile", str(DIGITS / "digits.onnx"), "-o", str(tmp_path)]
    assert cli.main(base + ["--ram-limit", "8K"]) == 2
    assert "over --ram-limit 8,192" in capsys.readouterr().err
    assert cli.main(base + ["--flash-limit", "1M", "--ram-limit", "64K", "--target", "cortex-m4"]) == 0
    assert "-mcpu=cortex-m4" in capsys.readouterr().out
    assert cli.main(base + ["--target", "cortex-m0plus"]) == 2
    assert "no FPU" in capsys.readouterr().err
    assert cli.main(base + ["--ram-limit", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


@needs_tools
@pytest.mark.parametrize("inputs", [True, False], ids=["inputs", "calibration samples"])
def test_cli_verify_on_target(capsys, inputs):
    rc = cli.main(["verify", str(DIGITS / "digits.onnx"), "--target", "cortex-m4", "--int8", "--calibration",
                   str(DIGITS / "digits_calibration.npz")] +
                  (["--inputs", str(DIGITS / "digits_test.npz")] if inputs else ["--layers"]))
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out
    assert inputs or "checking on the first 16 calibration sample(s)" in captured.err
    assert inputs or "per MAC" in out          # --layers: each layer's instructions on the target
    words = " ".join(out.split())                  # the console wraps long lines
    for text in ("bit-identical", "flash", "RAM", "stack high-water", "instructions per inference", "PASS"):
        assert text in words


# ---- int8 edges without libm or double ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_linear_ties_and_specials_match_the_reference(dtype):
    from onnx import TensorProto, numpy_helper

    from codegen.verify import Reference
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 0.49999997, 126.5, 127.5, -128.5, 255.5, 1e10, -1e10,
                  np.inf, -np.inf, np.nan, 32767.5, -32768.5, 7.25, -7.75], np.float32)
    zp = numpy_helper.from_array(np.array(3, dtype), "zp")
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
    g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"])], "q",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), x.shape)],
                          initializer=[scale, zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    compiled = codegen.compile(m)
    assert "kiln_quantize_f32(" in compiled.sources.c and "nearbyint" not in compiled.sources.c
    reference = Reference(m)          # onnxruntime: saturates (onnx's evaluator wraps 1e10 and inf)
    assert reference.kind == "onnxruntime"
    np.testing.assert_array_equal(compiled.build()(x)[0], reference({"x": x})["y"])


@pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
def test_int8_object_needs_no_library_function(tmp_path):
    """No libm, no software double: nothing undefined but what <string.h> gives."""
    import subprocess
    _digits(int8=True).save(tmp_path)
    flags = [*cortex_m.CORES["cortex-m4"].flags, *cortex_m.CFLAGS]
    subprocess.run(["arm-none-eabi-gcc", *flags, "-c", "digits.c", "-o", "digits.o"], cwd=tmp_path, check=True)
    nm = subprocess.run(["arm-none-eabi-nm", "-u", "digits.o"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert set(nm.split()) - {"U"} <= {"memcpy", "memset"}, nm


@needs_tools
@pytest.mark.skipif(not shutil.which("make"), reason="make not installed")
def test_firmware_example_classifies_the_digits(tmp_path):
    import subprocess
    import sys
    firmware = DIGITS.parent / "firmware"
    kiln = f"{sys.executable} -m codegen.cli"
    result = subprocess.run(["make", "-C", str(firmware), f"KILN={kiln}", f"BUILD={tmp_path}", "run"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for i, label in enumerate((2, 0, 4)):
        assert f"image {i}: prediction {label} (label {label})" in result.stdout, result.stdout


@needs_tools
def test_per_layer_instructions_add_up_to_the_inference():
    compiled = _digits(int8=True)
    samples = _digit_samples(compiled, 1)
    shipped = cortex_m.run(compiled, samples)
    profiled = cortex_m.run(compiled, samples, profile=True)
    assert [np.array_equal(a, b) for a, b in zip(shipped.outputs[0], profiled.outputs[0])] == [True]
    layers = profiled.layers
    assert [layer["layer"] for layer in layers] == [node.name for node in compiled.graph.nodes]
    assert all(layer["instructions"] > 0 for layer in layers if layer["ops"] != ["Flatten"])
    total = sum(layer["instructions"] for layer in layers)
    assert abs(total - shipped.instructions) <= 0.01 * shipped.instructions      # the marks cost a few each
    convs = [layer for layer in layers if "Conv" in layer["ops"]]
    assert max(convs, key=lambda c: c["macs"]) is max(convs, key=lambda c: c["instructions"])
