"""Hostile input: a bounded, seeded fuzz run over mutated real models, the corpus of past crashers,
and the size limits. Every input either compiles or raises a KilnError."""
import numpy as np
import pytest

import codegen

from .conftest import FIXTURES
from .fuzz.fuzz_models import CORPUS, check, run


def test_two_thousand_mutated_models_raise_nothing_but_kiln_errors(tmp_path):
    tried, crashes = run(count=2000, seconds=None, seed=0, workdir=tmp_path)
    assert tried == 2000
    assert crashes == [], crashes[0]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.onnx")), ids=lambda p: p.name)
def test_past_crashers(path):
    assert check(path) is None


def test_enormous_tensors_are_refused_before_anything_is_allocated():
    from onnx import helper
    from .graphs import model
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", (1 << 20, 1 << 20))], [("y", (1 << 20, 1 << 20))])
    with pytest.raises(codegen.LimitError, match="over the limit"):
        codegen.compile(m)


def test_arena_and_weight_limits_name_the_biggest_tensors():
    with pytest.raises(codegen.LimitError, match="the largest buffers: the working memory of layer '/layer2/conv1/Conv' "
                                                 r"\(87,040 bytes\), the working memory of layer '/layer1/conv1/Conv'"):
        codegen.compile(FIXTURES / "resnet_mini.onnx", max_arena_bytes=1000)
    with pytest.raises(codegen.LimitError, match="--max-weight-bytes"):
        codegen.compile(FIXTURES / "resnet_mini.onnx", max_weight_bytes=1000)


def test_duplicate_node_names_get_distinct_layers():
    from onnx import helper
    from .graphs import model
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="same"),
             helper.make_node("Sigmoid", ["a"], ["y"], name="same")]
    compiled = codegen.compile(model(nodes, [("x", (4,))], [("y", (4,))]), opt_level=0)
    x = np.linspace(-2, 2, 4).astype(np.float32)
    np.testing.assert_allclose(compiled.build(["-O1"])(x)[0], 1 / (1 + np.exp(-np.maximum(x, 0))), rtol=1e-6)
