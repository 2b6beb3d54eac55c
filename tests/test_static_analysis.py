"""The generated C under other eyes: one model per kernel template (conformance cases, a fixture and a
sparse layer) compiled by clang with -Weverything (less four warnings that contradict the design),
and checked by clang's static analyzer and cppcheck. Skips, saying why, where the tools are missing
(Debian: apt-get install clang cppcheck)."""
from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
from onnx import helper

import codegen
from codegen.emit import TEMPLATES

from .conftest import FIXTURES
from .graphs import model

# one conformance case for each kernel template it exercises first
CASES = ["test_abs", "test_argmax_no_keepdims_example", "test_attention_4d", "test_averagepool_2d_precomputed_pads",
         "test_batchnorm_example", "test_col2im", "test_convtranspose", "test_cumprod_1d", "test_einsum_transpose",
         "test_eyelike_without_dtype", "test_gather_0", "test_gather_elements_0", "test_gathernd_example_int32",
         "test_group_normalization_example", "test_gru_defaults", "test_hardmax_example", "test_lrn", "test_nllloss_NC",
         "test_rms_normalization_4d_axis0", "test_rotary_embedding", "test_triu",
         "test_attention_4d_with_past_and_present_expanded", "test_causal_conv_with_state_kernel_size_one_expanded",
         "test_attention_4d_diff_heads_mask4d_padded_kv_expanded", "test_matmulinteger", "test_convinteger_with_padding",
         "test_qlinearconv", "test_qlinearmatmul_3D_uint8_float16", "test_dynamicquantizelinear",
         "test_quantizelinear_blocked_asymmetric", "test_quantizelinear_int4", "test_dequantizelinear_e4m3fn_float16",
         "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ", "test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_FLOAT_to_FLOAT4E2M1",
         "test_cast_e8m0_FLOAT_to_FLOAT8E8M0", "test_cast_e8m0_FLOAT8E8M0_to_FLOAT", "test_cast_INT4_to_FLOAT",
         "test_affine_grid_2d", "test_compress_0", "test_basic_deform_conv_with_padding", "test_det_2d", "test_dft_opset19",
         "test_dropout_default_mask", "test_gridsample", "test_maxunpool_export_without_output_shape", "test_onehot_without_axis", "test_resize_upsample_scales_nearest",
         "test_reversesequence_time", "test_roialign_aligned_false", "test_slice", "test_tensorscatter", "test_top_k",
         "test_causal_conv_with_state_silu_with_past_state", "test_linear_attention_decode_step",
         "test_flexattention_causal_mask"]

# and, from tests/test_constant_inputs.py, cases whose shape inputs are made constants
CONSTANT_CASES = ["test_cumsum_1d", "test_onehot_without_axis", "test_resize_upsample_scales_nearest", "test_top_k",
                  "test_expand_dim_changed"]

CLANG_FLAGS = ["-std=c99", "-O2", "-Weverything", "-Werror",
               "-Wno-declaration-after-statement",   # C99 allows it; clang flags it for C89 compatibility
               "-Wno-float-equal",                    # Equal, Where and -inf masks compare floats on purpose
               "-Wno-unused-macros",                  # the runtime header defines macros only some kernels use
               "-Wno-padded"]


def _mvn():
    return model([helper.make_node("MeanVarianceNormalization", ["x"], ["y"], axes=[0, 2, 3])],
                 [("x", (2, 3, 4, 4))], [("y", (2, 3, 4, 4))])


def _sparse_conv():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) > 0.05] = 0
    return model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                 [("x", (1, 8, 6, 6))], [("y", (1, 8, 6, 6))], dict(w=w))


def _packed_conv():
    """The register-tiled conv that is no longer the default (a --tune tactic)."""
    w = np.random.default_rng(2).standard_normal((5, 3, 3, 3)).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 1, 2], strides=[1, 2])],
              [("x", (1, 3, 7, 9))], [("y", (1, 5, 7, 5))], dict(w=w))
    return m, dict(tactics={"Conv_0": "packed_bm8"})


def _int8_net():
    """Every integer kernel: conv (+ fused Relu), table, add, mul, requantised concat, pools, matmul."""
    rng = np.random.default_rng(0)
    w = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4), "k": np.array(3.0),
         "wf": rng.standard_normal((4, 5))}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["s"]), helper.make_node("Mul", ["s", "k"], ["m"]),
             helper.make_node("Add", ["m", "r"], ["a"]), helper.make_node("Concat", ["a", "s"], ["cat"], axis=1),
             helper.make_node("MaxPool", ["cat"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Slice", ["f", "st", "en", "ax"], ["f4"]), helper.make_node("MatMul", ["f4", "wf"], ["mm"]),
             helper.make_node("Softmax", ["mm"], ["y"])]
    w.update(st=np.array([0]), en=np.array([4]), ax=np.array([1]))
    m = model(nodes, [("x", (1, 3, 6, 6))], [("y", (1, 5))],
              {k: v.astype(np.int64 if k in ("st", "en", "ax") else np.float32) for k, v in w.items()})
    calibration = [[rng.standard_normal((1, 3, 6, 6)).astype(np.float32)] for _ in range(8)]
    return m, dict(int8="minmax", calibration=calibration)


def _generate(root):
    """Writes every model's C under root; returns the .c files and the templates they use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        cases = {c.name: c.model for c in collect_testcases() if c.name in CASES}
    from .test_constant_inputs import CASES as WITH_CONSTANTS
    constant = {c[0] + "_constant": c[3] for c in WITH_CONSTANTS if c[0] in CONSTANT_CASES}
    models = {**cases, **constant, "resnet_mini": FIXTURES / "resnet_mini.onnx",
              "mobilenet_v2_mini": FIXTURES / "mobilenet_v2_mini.onnx", "sparse_conv": _sparse_conv(),
              "mvn": _mvn(), "int8_net": _int8_net(), "int8": _int8_kernels(), "packed_conv": _packed_conv(),
              "mobilenet_v2_mini_tiled": _other_tactic(FIXTURES / "mobilenet_v2_mini.onnx", "planes_bm1", "depthwise"),
              "mobilenet_v2_mini_rows": _other_tactic(FIXTURES / "mobilenet_v2_mini.onnx", "planes_bm1", "rows"),
              "resnet_mini_lean": (FIXTURES / "resnet_mini.onnx", dict(memory="lean")),
              "averagepool_rows": (cases["test_averagepool_2d_precomputed_pads"], dict(memory="lean"))}
    templates = set()
    for name, m in models.items():
        m, options = m if isinstance(m, tuple) else (m, {})
        compiled = codegen.compile(m, name="m", **options)
        compiled.save(root / name)
        templates |= {k.template for k in compiled.kernels.values()}
    return sorted(root.glob("*/m.c")), templates


def _other_tactic(path, default: str, other: str):
    """A model whose layers of tactic `default` take their tactic `other` instead."""
    kernels = codegen.compile(path).kernels
    return path, dict(tactics={name: other for name, k in kernels.items() if k.tactic == default and other in k.tactics})


def _int8_kernels():
    """The packed integer kernels: packed conv, depthwise conv, packed matmul, batch matmul."""
    rng = np.random.default_rng(1)
    w = lambda *shape: rng.standard_normal(shape).astype(np.float32)      # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=6),
             helper.make_node("Flatten", ["c2"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["m"]),
             helper.make_node("Transpose", ["m"], ["mt"]),
             helper.make_node("MatMul", ["mt", "m"], ["o"]),          # two run-time tensors
             helper.make_node("Sigmoid", ["o"], ["y"])]
    calibration = [[rng.standard_normal((1, 4, 9, 9)).astype(np.float32)] for _ in range(4)]
    return (model(nodes, [("x", (1, 4, 9, 9))], [("y", (3, 3))], dict(w1=w(6, 4, 3, 3), w2=w(6, 1, 3, 3), w3=w(150, 3))),
            dict(int8="minmax", calibration=calibration))


def _clean(cmd, cwd=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0 and not proc.stderr.strip(), (cmd[-3:], proc.stderr[-3000:])


def test_generated_c_passes_clang_weverything_its_analyzer_and_cppcheck(tmp_path):
    files, templates = _generate(tmp_path)
    every = {p.name.removesuffix(".c.j2") for p in (TEMPLATES / "c").glob("*.c.j2")} - {"model"}
    assert every - templates == set(), "add a model that uses these templates to CASES"
    missing = [tool for tool in ("clang", "cppcheck") if shutil.which(tool) is None]
    if "clang" not in missing:
        for c in files:
            _clean(["clang", *CLANG_FLAGS, "-c", str(c), "-o", "/dev/null"], c.parent)
        # the int8 kernels' and the float convolutions' SIMD paths
        for simd in (["-mavx2"], ["-mavx2", "-mfma"], ["-mavx2", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]):
            for path in ("int8", "resnet_mini", "packed_conv"):
                _clean(["clang", *CLANG_FLAGS, *simd, "-c", str(tmp_path / path / "m.c"), "-o", "/dev/null"])
            _clean(["clang", "--analyze", "-std=c99", "-Xanalyzer", "-analyzer-werror", str(c), "-o", "/dev/null"],
                   c.parent)
    if "cppcheck" not in missing:
        _clean(["cppcheck", "--error-exitcode=1", "--enable=warning,portability,performance", "--std=c99", "--quiet",
                *map(str, files)])
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt-get install clang cppcheck)")
