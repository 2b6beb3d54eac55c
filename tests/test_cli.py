"""The kiln command: files written, exit codes, one-sentence errors, JSON, per-layer diff."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import codegen
from codegen.cli import main
from codegen.verify import layer_diff

from .conftest import FIXTURES, ROOT, TEST_CFLAGS

DIGITS = ROOT / "examples" / "digits"
CFLAGS = ["--cflags=" + " ".join(TEST_CFLAGS)]


def test_compile_writes_c_h_json(tmp_path, capsys):
    assert main(["compile", str(FIXTURES / "mlp.onnx"), "-o", str(tmp_path), "--name", "net"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"net.c", "net.h", "net.json"}
    report = json.loads((tmp_path / "net.json").read_text())
    assert report["arena_bytes"] >= report["arena_lower_bound"] and report["weight_bytes"] > 0
    assert "wrote" in capsys.readouterr().out


def test_verify_digits_with_inputs_and_labels(capsys):
    code = main(["verify", str(DIGITS / "digits.onnx"), "--inputs", str(DIGITS / "digits_test.npz"), "--json",
                 *CFLAGS])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"] and result["samples"] == 450
    assert result["accuracy"]["kiln"] == result["accuracy"]["reference"] > 0.95


def test_verify_layers_compares_every_layer(capsys):
    assert main(["verify", str(FIXTURES / "resnet_mini.onnx"), "--layers", "--json", *CFLAGS]) == 0
    diff = json.loads(capsys.readouterr().out)["first_bad_layer"]
    assert diff["first"] is None and diff["compared"] >= 10


def test_layer_diff_names_the_first_broken_layer():
    """Break one layer's maths on purpose: the diff must point at exactly that layer."""
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx", opt_level=0)
    victim = next(n for n in compiled.graph.nodes if n.op == "Relu" and n is not compiled.graph.nodes[1])
    params = compiled.kernels[victim.name].params
    params["result"] = f"(0.5f * {params['result']})"
    x = np.load(FIXTURES / "resnet_mini_io.npz")["x"]
    diff = layer_diff(compiled, onnx.load(str(FIXTURES / "resnet_mini.onnx")), [x], TEST_CFLAGS)
    assert diff["first"]["layer"] == victim.name and diff["first"]["op"] == "Relu"


def test_bench_prints_a_ratio(capsys):
    assert main(["bench", str(FIXTURES / "mlp.onnx"), "--runs", "5", "--json", *CFLAGS]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 5 and result["ratio"] > 0 and result["kiln_ms"] > 0


def test_inspect_table(capsys):
    assert main(["inspect", str(FIXTURES / "resnet_mini.onnx")]) == 0
    out = capsys.readouterr().out
    assert "Conv" in out and "MACs" in out and "arena" in out


@pytest.mark.parametrize("args, message", [
    (["compile", "missing.onnx"], "no such file"),
    (["compile", str(FIXTURES / "dynamic_batch_mlp.onnx")], "--input-shape x="),
    (["compile", str(FIXTURES / "mlp.onnx"), "--target", "avr"], "--target"),
    (["verify", str(FIXTURES / "mlp.onnx"), "--inputs", "nope.npz"], "--inputs"),
    (["bench"], "needs a MODEL"),
    (["bench", "--suite", "--models-dir", "nowhere"], "make_fixtures.py --bench-only"),
    (["bench", "--suite", "--only", "resnet9000"], "not in the suite"),
])
def test_user_mistakes_exit_2_with_one_sentence(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "codegen.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.c"))
