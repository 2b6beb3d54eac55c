"""cleanup: no-op views, transpose pairs and dead nodes disappear; outputs never change."""
import numpy as np
from onnx import helper

from ..graphs import model, pass_log, same_function


def test_identity_dropout_and_noop_reshape_vanish():
    nodes = [helper.make_node("Identity", ["x"], ["a"], name="id"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Dropout", ["b"], ["c"], name="drop"),
             helper.make_node("Reshape", ["c", "shape"], ["y"], name="reshape")]
    m = model(nodes, [("x", (2, 6))], [("y", (2, 6))], {"shape": np.array([2, 6], np.int64)})
    compiled = same_function(m, opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Relu"]
    assert compiled.graph.nodes[0].outputs == ["y"]
    assert len(pass_log(compiled, "cleanup")) == 3


def test_transpose_pair_composes_to_nothing():
    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 1], name="t1"),
             helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1], name="t2"),
             helper.make_node("Sigmoid", ["b"], ["y"], name="sig")]
    compiled = same_function(model(nodes, [("x", (2, 3, 4))], [("y", (2, 3, 4))]), opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Sigmoid"]


def test_transpose_pair_composes_into_one():
    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0, 2], name="t1"),
             helper.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 1], name="t2")]
    compiled = same_function(model(nodes, [("x", (2, 3, 4))], [("y", (3, 4, 2))]), opt_level=1)
    assert [n.op for n in compiled.graph.nodes] == ["Transpose"]


def test_dead_nodes_are_removed():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="used"),
             helper.make_node("Sigmoid", ["x"], ["unused"], name="dead")]
    compiled = same_function(model(nodes, [("x", (4,))], [("y", (4,))]), opt_level=1)
    assert [n.name for n in compiled.graph.nodes] == ["used"]
    assert any("dead" in line for line in pass_log(compiled, "cleanup"))


def test_refuses_when_a_graph_output_would_lose_its_writer():
    """y = Identity(x) with x a graph input: the copy must stay (the output buffer must be written)."""
    compiled = same_function(model([helper.make_node("Identity", ["x"], ["y"], name="id")],
                                   [("x", (3,))], [("y", (3,))]), opt_level=1)
    assert len(compiled.graph.nodes) == 1


def test_a_training_mode_dropout_inside_a_graph_is_refused_not_dropped():
    import numpy as np
    import pytest
    from onnx import TensorProto, helper, numpy_helper
    import codegen
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Dropout", ["a", "r", "t"], ["b"], name="drop"),
             helper.make_node("Relu", ["b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))],
                              [numpy_helper.from_array(np.array(0.5, np.float32), "r"),
                               numpy_helper.from_array(np.array(True), "t")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(codegen.UnsupportedError, match="'drop' \\(Dropout\\): Dropout in training mode"):
        codegen.compile(m)
