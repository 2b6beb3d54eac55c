"""The packed kernels' vector paths (runtime_c/kiln_simd.h), each on real numbers against onnx's reference:
AVX-512 and AVX2+FMA intrinsics where this CPU has them, the GCC/clang vector types and plain floats on any
host, NEON cross-compiled for aarch64 and run under qemu user mode; and every path compiled warning-free by
gcc and clang (and the Arm compilers) for the targets that select it. Skips, saying why, where a CPU feature
or a tool is missing (Debian: apt-get install gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import codegen
from codegen.build import WARNINGS
from codegen.verify import Reference, compare, random_inputs

from .conftest import FIXTURES
from .graphs import model
from .test_static_analysis import CLANG_FLAGS


def _weights(rng, *shape):
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def _convs():
    """Planes (or packed) and depthwise convolutions (planes, rows, tiles) where the tile meets every edge: channels and widths
    that are no multiple of the vector width, unequal pads on every side, strides, dilations, 1x1 and 7x7."""
    rng = np.random.default_rng(0)
    inits = dict(w1=_weights(rng, 11, 5, 3, 3), b1=_weights(rng, 11), w2=_weights(rng, 11, 1, 3, 3),
                 w3=_weights(rng, 11, 1, 3, 3), w4=_weights(rng, 13, 11, 1, 1), w5=_weights(rng, 9, 13, 7, 7),
                 w6=_weights(rng, 6, 9, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 0, 2, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], group=11, strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "w3"], ["d"], group=11, dilations=[2, 2], pads=[2, 2, 2, 2]),
             helper.make_node("Conv", ["d", "w4"], ["e"]),
             helper.make_node("Conv", ["e", "w5"], ["f"], strides=[2, 2], pads=[3, 3, 3, 3]),
             helper.make_node("Conv", ["f", "w6"], ["y"], strides=[1, 2], dilations=[2, 2], pads=[2, 2, 2, 2])]
    return model(nodes, [("x", (1, 5, 13, 19))], [("y", (1, 6, 4, 3))], inits)


def _gemms():
    """Packed Gemm (transposed A, alpha, beta) and batched MatMul: rows that leave a partial tile, columns
    that leave a zero-padded panel."""
    rng = np.random.default_rng(1)
    inits = dict(w1=_weights(rng, 19, 37), c1=_weights(rng, 37), w2=_weights(rng, 19, 37))
    nodes = [helper.make_node("Gemm", ["a", "w1", "c1"], ["y1"], transA=1, alpha=0.5, beta=2.0),
             helper.make_node("MatMul", ["b", "w2"], ["y2"])]
    return model(nodes, [("a", (19, 13)), ("b", (2, 13, 19))], [("y1", (13, 37)), ("y2", (2, 13, 37))], inits)


def _with_tactic(make, tactic):
    """A model whose layers that have `tactic` take it (not their default)."""
    def made():
        m = make()
        kernels = codegen.compile(m).kernels
        return m, dict(tactics={n: tactic for n, k in kernels.items() if tactic in k.tactics})
    return made


MODELS = {"convs": _convs, "convs_packed": _with_tactic(_convs, "packed_bm8"),   # the default before the planes
          "convs_tiles": _with_tactic(_convs, "depthwise"), "convs_rows": _with_tactic(_convs, "rows"),
          "gemms": _gemms,
          "resnet_mini": lambda: onnx.load(FIXTURES / "resnet_mini.onnx"),
          "mobilenet_v2_mini": lambda: onnx.load(FIXTURES / "mobilenet_v2_mini.onnx")}

# path: (flags that select it, the kiln_vfma it defines, lanes)
PATHS = {"avx512": (["-mavx512f", "-mfma"], "_mm512_fmadd_ps(a, b, acc)", 16),
         "avx2": (["-mavx2", "-mfma"], "_mm256_fmadd_ps(a, b, acc)", 8),
         "vector_types": (["-DKILN_NO_INTRINSICS"], "((acc) + (a) * (b))", 8),
         "floats": (["-DKILN_NO_VECTORS"], "((acc) + (a) * (b))", 1)}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """name: (the model, its CompiledModel saved under a directory of its own)"""
    root = tmp_path_factory.mktemp("simd")
    out = {}
    for name, make in MODELS.items():
        m, options = (lambda made: made if isinstance(made, tuple) else (made, {}))(make())
        c = codegen.compile(m, name="m", **options)
        c.save(root / name)
        out[name] = (m, c, root / name)
    templates = {k.template for _, c, _ in out.values() for k in c.kernels.values()}
    assert {"conv_planes", "conv_packed", "conv_depthwise", "conv_depthwise_rows", "gemm_packed"} <= templates
    return out


def _chosen(cc, flags, directory):
    """(kiln_vfma's definition, KILN_LANES) as the preprocessor of `cc` sees them under `flags`."""
    proc = subprocess.run([cc, "-std=c99", *flags, "-dM", "-E", "m.c"], cwd=directory, capture_output=True,
                          text=True, check=True)
    macros = dict(re.findall(r"^#define (\w+)(?:\([^)]*\))? (.*)$", proc.stdout, re.M))
    return macros["kiln_vfma"], int(macros["KILN_LANES"])


def _cpu_has(*features):
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        return False
    return set(features) <= flags


def _check(name, m, got):
    inputs, outputs = got
    ref = Reference(m)(dict(inputs))
    for out, (ref_name, want) in zip(outputs, ref.items()):
        assert compare(ref_name, out, want).ok, (name, compare(ref_name, out, want))


@pytest.mark.parametrize("path", PATHS)
def test_each_host_path_matches_the_reference(compiled, path):
    flags, fma, lanes = PATHS[path]
    if path.startswith("avx") and not _cpu_has(*(f.removeprefix("-m") for f in flags)):
        pytest.skip(f"this CPU lacks {' '.join(flags)}")
    for name, (m, c, directory) in compiled.items():
        assert _chosen("cc", flags, directory) == (fma, lanes)
        run = c.build(["-O2", *flags])
        inputs = random_inputs(run.inputs, 0)
        _check(name, m, ([(n, a) for (n, _, _), a in zip(run.inputs, inputs)], run(*inputs)))


HARNESS = """#include <stdio.h>
#include "m.h"
{arrays}
int main(void) {{
    const void *inputs[] = {{{ins}}};
    void *outputs[] = {{{outs}}};
    if ({reads} || m_run(inputs, outputs)) return 1;
    return {writes};
}}
"""


def _harness(n_in, n_out):
    """main() reads every input from stdin, runs the model and writes every output to stdout."""
    x = [f"x{i}" for i in range(n_in)]
    y = [f"y{i}" for i in range(n_out)]
    return HARNESS.format(
        arrays="\n".join([f"static float x{i}[M_INPUT_{i}_SIZE];" for i in range(n_in)]
                         + [f"static float y{i}[M_OUTPUT_{i}_SIZE];" for i in range(n_out)]),
        ins=", ".join(x), outs=", ".join(y),
        reads=" || ".join(f"fread({v}, sizeof {v}, 1, stdin) != 1" for v in x),
        writes=" || ".join(f"fwrite({v}, sizeof {v}, 1, stdout) != 1" for v in y))


def test_neon_path_under_qemu(compiled):
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed "
                    "(Debian: apt-get install gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross)")
    for name, (m, c, directory) in compiled.items():
        assert _chosen("aarch64-linux-gnu-gcc", [], directory) == ("vfmaq_f32(acc, a, b)", 4)
        run = c.build(["-O2"])          # for the inputs' names, shapes and the output shapes
        (directory / "main.c").write_text(_harness(len(run.inputs), len(run.outputs)))
        subprocess.run(["aarch64-linux-gnu-gcc", *WARNINGS, "-O2", "-static", "m.c", "main.c", "-o", "m_neon",
                        "-lm"], cwd=directory, check=True, capture_output=True)
        inputs = random_inputs(run.inputs, 0)
        proc = subprocess.run(["qemu-aarch64", str(directory / "m_neon")], capture_output=True, check=True,
                              input=b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in inputs))
        flat = np.frombuffer(proc.stdout, np.float32)
        sizes = [int(np.prod(shape)) for _, shape, _ in run.outputs]
        assert flat.size == sum(sizes)
        outs = [part.reshape(shape) for part, (_, shape, _) in
                zip(np.split(flat, np.cumsum(sizes)[:-1]), run.outputs)]
        _check(name, m, ([(n, a) for (n, _, _), a in zip(run.inputs, inputs)], outs))


ARM32 = ["-O2", "-mthumb", "-mfloat-abi=hard"]
# (compiler, flags, kiln_vfma's expected definition, lanes): every path under the compilers that take it
TARGETS = [("gcc", ["-O2", *PATHS["avx512"][0]], "_mm512_fmadd_ps(a, b, acc)", 16),
           ("clang", ["-O2", *PATHS["avx512"][0]], "_mm512_fmadd_ps(a, b, acc)", 16),
           ("gcc", ["-O2", *PATHS["avx2"][0]], "_mm256_fmadd_ps(a, b, acc)", 8),
           ("clang", ["-O2", *PATHS["avx2"][0]], "_mm256_fmadd_ps(a, b, acc)", 8),
           ("gcc", ["-O2", "-mavx512f", "-mfma", "-DKILN_NO_INTRINSICS"], "((acc) + (a) * (b))", 16),
           ("aarch64-linux-gnu-gcc", ["-O2"], "vfmaq_f32(acc, a, b)", 4),
           ("clang", ["-O2", "--target=aarch64-linux-gnu"], "vfmaq_f32(acc, a, b)", 4),
           ("arm-none-eabi-gcc", [*ARM32, "-mcpu=cortex-a7", "-mfpu=neon-vfpv4"], "vfmaq_f32(acc, a, b)", 4),
           ("arm-none-eabi-gcc", [*ARM32, "-mcpu=cortex-a9", "-mfpu=neon"], "vmlaq_f32(acc, a, b)", 4),
           ("arm-none-eabi-gcc", [*ARM32, "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16"], "((acc) + (a) * (b))", 8)]


def test_every_path_compiles_warning_free(compiled):
    skipped = set()
    for cc, flags, fma, lanes in TARGETS:
        if shutil.which(cc) is None:
            skipped.add(cc)
            continue
        strict = [*CLANG_FLAGS, *flags[1:]] if cc == "clang" else [*WARNINGS, *flags]
        for _, _, directory in compiled.values():
            assert _chosen(cc, flags, directory) == (fma, lanes), (cc, flags)
            proc = subprocess.run([cc, *strict, "-c", "m.c", "-o", "/dev/null"], cwd=directory,
                                  capture_output=True, text=True)
            assert proc.returncode == 0 and not proc.stderr.strip(), (cc, flags, proc.stderr[-3000:])
            if cc == "clang":       # and its static analyzer, as tests/test_static_analysis.py on the default path
                proc = subprocess.run([cc, "--analyze", "-std=c99", *flags[1:], "-Xanalyzer", "-analyzer-werror",
                                       "m.c", "-o", "/dev/null"], cwd=directory, capture_output=True, text=True)
                assert proc.returncode == 0 and not proc.stderr.strip(), (cc, flags, proc.stderr[-3000:])
    if skipped:
        pytest.skip(f"{', '.join(sorted(skipped))} not installed")
