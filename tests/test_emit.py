"""The generated C as a product: deterministic, contract macros, names are data, weights exact."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
from onnx import helper

import codegen
from codegen.emit import encode_string_literal
from codegen.verify import Reference, compare

from .conftest import FIXTURES, ROOT, TEST_CFLAGS
from .graphs import model

HOSTILE = ['*/ system("x"); /*', 'quote " and back\\slash', "new\nline", "tri??/graph", "ünïcödé ✓",
           "x" * 10_000, "123starts_with_digit", ""]


def test_byte_identical_across_processes_and_hash_seeds(tmp_path):
    script = ("import codegen, sys; m = codegen.compile(sys.argv[1]); m.save(sys.argv[2])")
    outs = []
    for seed in ("0", "12345"):
        out = tmp_path / seed
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-c", script, str(FIXTURES / "resnet_mini.onnx"), str(out)],
                       check=True, env=env, cwd=ROOT)
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1]
    assert set(outs[0]) == {"resnet_mini.c", "resnet_mini.h", "resnet_mini.json"}


def test_header_contract():
    compiled = codegen.compile(FIXTURES / "mlp.onnx", name="net")
    h, c = compiled.sources.h, compiled.sources.c
    for macro in ("NET_NUM_INPUTS 1", "NET_NUM_OUTPUTS 1", "NET_ARENA_BYTES", "NET_WEIGHT_BYTES",
                  "NET_INPUT_0_SIZE 64", "NET_OUTPUT_0_SIZE 10", "NET_INPUT_0_SHAPE { 1, 64 }"):
        assert f"#define {macro}" in h
    assert "int net_run(const void *const inputs[], void *const outputs[]);" in h
    includes = {line for line in c.splitlines() if line.startswith("#include")}
    intrinsics = {"#include <immintrin.h>", "#include <arm_neon.h>"}   # behind #if on the target's own macros
    assert includes - intrinsics == {'#include "net.h"', "#include <math.h>", "#include <stddef.h>",
                                     "#include <stdint.h>", "#include <string.h>"}
    for banned in ("malloc", "printf", "stdio", "free("):
        assert banned not in c


def test_one_comment_per_layer_naming_its_node():
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx")
    for step, node in enumerate(compiled.graph.nodes):
        assert f"/* ---- layer {step}/{len(compiled.graph.nodes)}: {node.op} " in compiled.sources.c


def test_string_literal_round_trips_every_byte(tmp_path):
    data = bytes(range(256)) * 3 + b"0123?\"\\??/7\x00" + np.random.default_rng(0).bytes(5000)
    src = tmp_path / "t.c"
    src.write_text("#include <stdio.h>\nstatic const unsigned char a[] = " + encode_string_literal(data, 37) +
                   ";\nint main(void) { fwrite(a, 1, sizeof a - 1, stdout); return 0; }\n")
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wpedantic", "-Wno-overlength-strings", str(src), "-o",
                    str(tmp_path / "t")], check=True)
    assert subprocess.run([str(tmp_path / "t")], capture_output=True, check=True).stdout == data


def test_hostile_names_are_only_data():
    """Every hostile string as model, node and tensor name: the C compiles and computes the same."""
    w = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    for evil in HOSTILE:
        t = evil + "_t" if evil else ""
        nodes = [helper.make_node("MatMul", ["x", evil + "_w"], [t or "t"], name=evil),
                 helper.make_node("Relu", [t or "t"], [evil + "_y"], name=evil + "relu")]
        m = model(nodes, [("x", (2, 8))], [(evil + "_y", (2, 4))], {evil + "_w": w}, name=evil or "g")
        compiled = codegen.compile(m, name=evil or None)
        for text in (compiled.sources.c, compiled.sources.h):
            code = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)    # what the compiler sees outside comments
            assert 'system("' not in code and "??/" not in text and "new\nline" not in text
        x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
        (got,) = compiled.build(TEST_CFLAGS)(x)
        np.testing.assert_allclose(got, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-6)


def test_splat_weights_are_stored_once_and_read_right():
    """A constant whose elements are all equal is one element in the blob, broadcast by the kernel."""
    w = np.full((16, 8, 3, 3), 0.25, np.float32)
    b = np.full((16,), -0.5, np.float32)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")],
              [("x", (1, 8, 10, 10))], [("y", (1, 16, 10, 10))], {"w": w, "b": b})
    compiled = codegen.compile(m)
    assert compiled.sources.weight_bytes <= 2 * 64
    x = np.random.default_rng(3).standard_normal((1, 8, 10, 10)).astype(np.float32)
    (got,) = compiled.build(TEST_CFLAGS)(x)
    (ref,) = Reference(m)({"x": x}).values()
    assert compare("y", got, ref).ok


def test_hex_weights_encoding_gives_the_same_results():
    x = np.load(FIXTURES / "resnet_mini_io.npz")["x"]
    outs = []
    for encoding in ("string", "hex"):
        compiled = codegen.compile(FIXTURES / "resnet_mini.onnx", weights_encoding=encoding)
        assert bool(re.search(r"0x[0-9a-f]{8}u, 0x", compiled.sources.c)) == (encoding == "hex")
        outs.append(compiled.build(TEST_CFLAGS)(x)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
