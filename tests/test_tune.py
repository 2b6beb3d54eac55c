"""Tactics (several correct kernels per layer), their replay, `--tune`, and the per-layer profile
of `kiln bench --layers`. No timing is asserted: --tune's timer is replaced by a fixed one."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess

import numpy as np
import pytest
from onnx import helper

import codegen
from codegen import bench, emit
from codegen.cli import main
from codegen.peak import peak
from codegen.tune import tune
from codegen.verify import Reference, compare, random_inputs

from .conftest import FIXTURES, TEST_CFLAGS
from .graphs import model
from .test_static_analysis import CLANG_FLAGS

RNG = np.random.default_rng(11)
CFLAGS = ["--cflags=" + " ".join(TEST_CFLAGS)]


def _conv(x_shape, m, k, *, group=1, density=1.0, **attrs):
    """Conv(x, w, b) -> Relu, with seeded weights (a fraction `density` of them non-zero)."""
    c = x_shape[1]
    w = RNG.standard_normal((m, c // group, *k)).astype(np.float32)
    w[RNG.random(w.shape) >= density] = 0
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group, **attrs),
             helper.make_node("Relu", ["c"], ["y"])]
    inits = dict(w=w, b=RNG.standard_normal(m).astype(np.float32))
    out = Reference(model(nodes[:1], [("x", x_shape)], [("c", None)], inits))(
        {"x": np.zeros(x_shape, np.float32)})["c"].shape
    return model(nodes, [("x", x_shape)], [("y", out)], inits)


def _gemm(m, k, n, density=1.0, **attrs):
    w = RNG.standard_normal((n, k) if attrs.get("transB") else (k, n)).astype(np.float32)
    w[RNG.random(w.shape) >= density] = 0
    x_shape = (k, m) if attrs.get("transA") else (m, k)
    return model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], **attrs), helper.make_node("Sigmoid", ["g"], ["y"])],
                 [("x", x_shape)], [("y", (m, n))], dict(w=w, b=RNG.standard_normal(n).astype(np.float32)))


def _matmul(a_shape, n, density=1.0):
    w = RNG.standard_normal((a_shape[-1], n)).astype(np.float32)
    w[RNG.random(w.shape) >= density] = 0
    return model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", a_shape)], [("y", (*a_shape[:-1], n))],
                 dict(w=w))


MODELS = {   # odd sizes: channels not multiples of 8 or 16, strides, dilations, every pad, groups, 1x1, 7x7
    "conv3x3_pads": lambda: _conv((2, 5, 9, 11), 7, (3, 3), pads=[1, 0, 2, 1]),
    "conv3x3_stride_dilation": lambda: _conv((1, 6, 13, 12), 19, (3, 3), strides=[2, 1], dilations=[2, 2],
                                             pads=[2, 2, 2, 2]),
    "conv1x1": lambda: _conv((1, 13, 7, 5), 17, (1, 1)),
    "conv7x7_stride2": lambda: _conv((1, 3, 23, 21), 10, (7, 7), strides=[2, 2], pads=[3, 3, 3, 3]),
    "conv_sparse": lambda: _conv((1, 9, 8, 8), 12, (3, 3), density=0.3, pads=[1, 1, 1, 1]),
    "conv_depthwise": lambda: _conv((1, 6, 10, 9), 6, (3, 3), group=6, strides=[2, 2], pads=[1, 0, 1, 2]),
    "gemm": lambda: _gemm(13, 29, 19, transB=1),
    "gemm_transA_alpha_beta": lambda: _gemm(7, 10, 33, transA=1, alpha=0.5, beta=2.0),
    "gemm_sparse": lambda: _gemm(3, 40, 20, density=0.2),
    "matmul_batched": lambda: _matmul((2, 5, 17), 23),
}


def _tactics(compiled) -> dict[str, list[str]]:
    return {layer: t["candidates"] for layer, t in compiled.tactics.items()}


@pytest.mark.parametrize("name", MODELS)
def test_every_tactic_agrees_with_onnxruntime(name):
    """Build i uses every layer's i-th tactic (as --tune does): each tactic is built and checked."""
    m = MODELS[name]()
    candidates = _tactics(codegen.compile(m))
    assert candidates and all(len(c) >= 2 for c in candidates.values())
    seen = set()
    for i in range(max(map(len, candidates.values()))):
        pick = {layer: names[i] for layer, names in candidates.items() if i < len(names)}
        compiled = codegen.compile(m, tactics=pick)
        assert {layer: compiled.kernels[layer].tactic for layer in pick} == pick
        runner = compiled.build(TEST_CFLAGS)
        x = random_inputs(runner.inputs, seed=i)
        got, want = runner(*x)[0], Reference(m)({"x": x[0]})["y"]
        assert compare("y", got, want).ok, (pick, compare("y", got, want))
        seen |= {compiled.kernels[layer].template for layer in pick}
    expected = {"conv_depthwise": {"conv_depthwise", "conv"},
                "conv_sparse": {"conv_planes", "conv_packed", "conv_sparse", "conv"}}
    assert seen >= expected.get(name, {"conv_planes", "conv_packed", "conv"} if name.startswith("conv")
                                else {"gemm_packed", "gemm"})


def test_tile_sizes_are_tactics():
    compiled = codegen.compile(MODELS["conv1x1"]())
    assert _tactics(compiled) == {next(iter(compiled.tactics)): [
        "planes_bm8", "planes_bm6", "planes_bm4", "packed_bm4", "packed_bm8", "packed_bm16", "generic"]}
    tiled = codegen.compile(MODELS["conv1x1"](), tactics={next(iter(compiled.tactics)): "packed_bm16"})
    assert "Wp is [2][13][1][1][16]" in tiled.sources.c
    assert set(next(iter(_tactics(codegen.compile(MODELS["gemm_sparse"]())).values()))) == {
        "sparse", "packed_mr4", "packed_mr6", "packed_mr8", "packed_mr12", "generic"}


def test_the_default_tactics_replayed_give_the_same_c():
    m = codegen.compile(FIXTURES / "resnet_mini.onnx")
    defaults = {layer: t["candidates"][0] for layer, t in m.tactics.items()}
    assert defaults == {layer: t["chosen"] for layer, t in m.tactics.items()}
    assert codegen.compile(FIXTURES / "resnet_mini.onnx", tactics=defaults).sources.c == m.sources.c


def _fake_times(compiled, cflags=None, arrays=None, runs=0, budget_s=0.0, shipped=True):
    """A fixed timer: generic 3 ms, the largest tile fastest (its size back in the name), sparse 0.5 ms."""
    def ms(tactic):
        if tactic is None:
            return 0.01
        return {"generic": 3.0, "sparse": 0.5, "depthwise": 1.0, "rows": 1.5, "plane": 1.5}.get(tactic) or 2.0 / int(tactic.split("_")[1][2:])
    layers = np.array([ms(compiled.kernels[n.name].tactic) for n in compiled.graph.nodes])
    return layers, float(layers.sum()), 1


def test_tune_picks_the_fastest_and_the_choices_replay(tmp_path):
    """Depthwise Conv -> Conv -> Gemm, each with several tactics; the fixed timer decides."""
    w = {"w1": RNG.standard_normal((6, 1, 3, 3)), "w2": RNG.standard_normal((4, 6, 3, 3)),
         "w3": RNG.standard_normal((400, 5))}
    m = model([helper.make_node("Conv", ["x", "w1"], ["a"], group=6, pads=[1, 1, 1, 1]),
               helper.make_node("Conv", ["a", "w2"], ["z"], pads=[1, 1, 1, 1]),
               helper.make_node("Flatten", ["z"], ["f"]),
               helper.make_node("Gemm", ["f", "w3"], ["out"])],
              [("x", (1, 6, 10, 10))], [("out", (1, 5))], {k: v.astype(np.float32) for k, v in w.items()})
    tuned = tune(m, measure=lambda compiled, cflags: _fake_times(compiled)[0])
    chosen = {layer: t["chosen"] for layer, t in tuned.tactics.items()}
    assert sorted(chosen.values()) == ["depthwise", "packed_bm16", "packed_mr12"]
    for t in tuned.tactics.values():
        assert set(t["ms"]) == set(t["candidates"]) and t["ms"][t["chosen"]] == min(t["ms"].values())
    paths = tuned.save(tmp_path / "tuned")
    for replay in (json.loads(paths["json"].read_text()), paths["json"], chosen):
        assert codegen.compile(m, tactics=replay).sources.c == tuned.sources.c
    (tmp_path / "plain.json").write_text(json.dumps(chosen))
    assert codegen.compile(m, tactics=str(tmp_path / "plain.json")).sources.c == tuned.sources.c
    assert codegen.compile(m).sources.c != tuned.sources.c


def test_compile_tune_and_replay_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "layer_times", _fake_times)
    model_path = str(FIXTURES / "resnet_mini.onnx")
    assert main(["compile", model_path, "--tune", "-o", str(tmp_path / "t"), *CFLAGS]) == 0
    assert "changed from the default" in capsys.readouterr().err
    report = json.loads((tmp_path / "t" / "resnet_mini.json").read_text())
    assert {t["chosen"] for t in report["tactics"].values()} == {"packed_bm16", "packed_mr12", "plane"}
    assert main(["compile", model_path, "--tactics", str(tmp_path / "t" / "resnet_mini.json"),
                 "-o", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "resnet_mini.c").read_text() == (tmp_path / "t" / "resnet_mini.c").read_text()
    assert main(["verify", model_path, "--tactics", str(tmp_path / "t" / "resnet_mini.json"), *CFLAGS]) == 0


@pytest.mark.parametrize("content, message", [
    ({"no such layer": "generic"}, "the model does not have, e.g. 'no such layer'"),
    ({"/layer1/conv1/Conv": "winograd"}, "has no tactic 'winograd'; its tactics are planes_bm8, planes_bm6"),
    ({"/layer1/conv1/Conv": 3}, "must be a tactic name, not 3"),
    ({"/layer1/conv1/Conv": {"ms": {}}}, "must be a tactic name"),
    (["generic"], "must map layer names to tactic names"),
    ("{not json", "is not JSON"),
    (None, "cannot read the tactics file"),
])
def test_a_bad_tactics_file_is_one_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "tactics.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["compile", str(FIXTURES / "resnet_mini.onnx"), "--tactics", str(path), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.c"))


def test_a_layer_with_one_kernel_has_no_tactic(capsys):
    layer = next(n.name for n in codegen.compile(FIXTURES / "mlp.onnx").graph.nodes if n.op == "Softmax")
    with pytest.raises(codegen.KilnError, match="has one kernel only"):
        codegen.compile(FIXTURES / "mlp.onnx", tactics={layer: "generic"})
    assert main(["compile", str(FIXTURES / "mlp.onnx"), "--tune", "--tactics", "x.json"]) == 2
    assert "give one of the two" in capsys.readouterr().err


def test_the_profiling_build_times_every_layer_and_ships_nothing():
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx")
    assert "kiln_profile" not in compiled.sources.c
    profiled = emit.emit(compiled.graph, compiled.kernels, compiled.plan, compiled.options, profile=True).c
    assert f"kiln_profile_mark({len(compiled.graph.nodes)});" in profiled and "kiln_profile_mark(0);" in profiled
    x = np.load(FIXTURES / "resnet_mini_io.npz")["x"]
    runner = compiled.build_profiled(TEST_CFLAGS)
    ms = runner.run_profiled(x)
    assert ms.shape == (len(compiled.graph.nodes),) and np.all(ms >= 0) and ms.sum() > 0
    np.testing.assert_array_equal(runner(x)[0], compiled.build(TEST_CFLAGS)(x)[0])
    table = bench.layers(compiled, [x], runs=3, cflags=TEST_CFLAGS, peak_gflops=100.0)
    assert [row["name"] for row in table["layers"]] == [n.name for n in compiled.graph.nodes]
    assert table["layers_ms"] == pytest.approx(sum(row["ms"] for row in table["layers"]))
    assert sum(row["percent"] for row in table["layers"]) == pytest.approx(100)
    conv = table["layers"][1]
    assert conv["gflops"] == pytest.approx(2 * conv["macs"] / (conv["ms"] * 1e6))
    assert conv["percent_peak"] == pytest.approx(conv["gflops"])         # of a 100 GFLOP/s peak
    assert table["peak_assumed"] == "given with --peak-gflops"


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_the_profiling_build_passes_clang_weverything(tmp_path):
    compiled = codegen.compile(FIXTURES / "resnet_mini.onnx", name="m")
    sources = emit.emit(compiled.graph, compiled.kernels, compiled.plan, compiled.options, profile=True)
    (tmp_path / "m.c").write_text(sources.c)
    (tmp_path / "m.h").write_text(sources.h)
    for c in (tmp_path / "m.c", emit.RUNTIME_C / "kiln_profile.c"):
        proc = subprocess.run(["clang", *CLANG_FLAGS, "-DKILN_PROFILE_MARKS=13", "-c", str(c), "-o", "/dev/null"],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr[-3000:]


def test_bench_layers_from_the_command_line(capsys):
    assert main(["bench", str(FIXTURES / "mlp.onnx"), "--layers", "--runs", "3", "--json", *CFLAGS]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["layers"]) == 4 and r["model_ms"] > 0 and r["peak_gflops"] > 0
    assert main(["bench", str(FIXTURES / "mlp.onnx"), "--layers", "--runs", "3", "--top", "2",
                 "--peak-gflops", "50", *CFLAGS]) == 0
    out = capsys.readouterr().out
    assert "the 2 slowest" in out and "whole model" in out and "peak 50.0 GFLOP/s" in out.replace("\n", " ")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 flags")
def test_the_peak_is_worked_out_and_said():
    p = peak(["-O2", "-mavx2", "-mfma"])
    assert "8 lanes (AVX2)" in p["assumed"] and "2 FMA unit(s)" in p["assumed"] and p["gflops"] > 0
    assert "4 lanes" in peak(["-O2", "-mno-avx"])["assumed"]
