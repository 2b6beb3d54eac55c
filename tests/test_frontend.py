"""Loading models: constants, shapes, opsets, and a clear KilnError for every kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import codegen
from codegen import frontend

from .conftest import FIXTURES
from .graphs import chain, model


def test_initializers_listed_as_inputs_are_constants():
    """Opset-9 models list weights among graph inputs; they are not the caller's inputs."""
    w = np.ones((4, 3), np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (2, 4)), ("w", (4, 3))], [("y", (2, 3))],
              {"w": w}, opset=9)
    g = frontend.load(m)
    assert g.inputs == ["x"] and g.values["w"].is_const


def test_converted_to_one_opset():
    g = frontend.load(FIXTURES / "mobilenet_v2_mini_opset11.onnx")
    assert g.opset == frontend.TARGET_OPSET


def test_shape_subgraphs_fold_to_constants():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as PyTorch exports a flatten."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    m = model(nodes, [("x", (2, 3, 4))], [("y", (2, 12))],
              {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64)})
    g = frontend.load(m)
    assert [n.op for n in g.nodes] == ["Reshape"]
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(codegen.compile(m).build(["-O1"])(x)[0], x.reshape(2, 12))


def test_input_shape_option_fixes_symbolic_dims():
    g = frontend.load(FIXTURES / "dynamic_batch_mlp.onnx", input_shapes=["x=5x64"])
    assert g.values["x"].shape == (5, 64)
    assert g.values[g.outputs[0]].shape == (5, 10)


@pytest.mark.parametrize("spec, message", [
    (["x=5"], "rank 2"), (["nope=1x64"], "model's inputs are"), (["x=1by64"], "NAME=DIMS")])
def test_bad_input_shape_option(spec, message):
    with pytest.raises(codegen.ShapeError, match=message):
        frontend.load(FIXTURES / "dynamic_batch_mlp.onnx", input_shapes=spec)


def test_every_unsupported_node_listed_in_one_message():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("LpNormalization", ["a"], ["b"], name="first_bad", p=3),
             helper.make_node("Relu", ["b"], ["c"], name="fine"),
             helper.make_node("RandomUniformLike", ["c"], ["y"], name="second_bad")]
    with pytest.raises(codegen.UnsupportedError) as err:
        codegen.compile(model(nodes, [("x", (2, 3))], [("y", (2, 3))]))
    assert [(n, op) for n, op, _ in err.value.problems] == [("first_bad", "LpNormalization"), ("second_bad", "RandomUniformLike")]
    assert "first_bad" in str(err.value) and "RandomUniformLike" in str(err.value)


def test_foreign_domain_is_unsupported():
    node = helper.make_node("Scaler", ["x"], ["y"], domain="ai.onnx.ml", name="scale")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(codegen.UnsupportedError, match="Scaler"):
        codegen.compile(m)


def test_missing_file(tmp_path):
    with pytest.raises(codegen.ModelError, match="no such file"):
        codegen.compile(tmp_path / "missing.onnx")


def test_garbage_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00 this is not a protobuf \x12\x99")
    with pytest.raises(codegen.KilnError):
        codegen.compile(bad)
    data = (FIXTURES / "mlp.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(codegen.KilnError):
        codegen.compile(cut)


def test_checker_failure_is_a_model_error():
    m = chain()
    m.graph.node[1].input[0] = "does_not_exist"
    with pytest.raises(codegen.KilnError):
        codegen.compile(m)


def test_future_opset():
    m = chain()
    m.opset_import[0].version = 99
    with pytest.raises(codegen.KilnError, match="opset"):
        codegen.compile(m)


def test_data_dependent_shape_names_the_tensor():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"])], [("x", (2, 6))], [("y", ("d0", "d1"))])
    m.graph.input.append(helper.make_tensor_value_info("s", TensorProto.INT64, (2,)))
    with pytest.raises(codegen.ShapeError, match="'y'"):
        codegen.compile(m)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    (tmp_path / "escape.bin").write_bytes(np.ones((4, 3), np.float32).tobytes())
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (2, 4))], [("y", (2, 3))])
    w = m.graph.initializer.add()
    w.name, w.data_type, w.data_location = "w", TensorProto.FLOAT, TensorProto.EXTERNAL
    w.dims.extend([4, 3])
    w.external_data.add(key="location", value="../escape.bin")
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(codegen.ModelError, match="outside"):
        codegen.compile(path)


def _reference(m, *xs):
    from onnx.reference import ReferenceEvaluator
    ref = ReferenceEvaluator(m)
    return ref.run(None, dict(zip([i.name for i in m.graph.input], xs)))


def test_loop_with_a_constant_trip_count_is_unrolled():
    """Loop(3, true, y): y += x[i] each step, reading an outer-scope x; the scan output stacks y."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
         helper.make_node("Add", ["y_in", "row"], ["y_out"]),
         helper.make_node("Identity", ["y_out"], ["s"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])])
    loop = helper.make_node("Loop", ["trips", "true", "y0"], ["y", "ys"], body=body)
    m = model([loop], [("x", (3, 4)), ("y0", (4,))], [("y", (4,)), ("ys", (3, 4))],
              {"trips": np.array(3, np.int64), "true": np.array(True)})
    assert all(n.op != "Loop" for n in frontend.load(m).nodes)
    rng = np.random.default_rng(0)
    x, y0 = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    for got, want in zip(codegen.compile(m).build(["-O1"])(x, y0), _reference(m, x, y0)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def _scan_model(length):
    """Scan over axis 1 of x, backwards, and stacking its output along axis 1 backwards too."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body", [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2]),
                 helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("y_t", TensorProto.FLOAT, [2])])
    scan = helper.make_node("Scan", ["s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1],
                            scan_output_axes=[-1], scan_output_directions=[1])
    return model([scan], [("s0", (2,)), ("x", (2, length))], [("s", (2,)), ("ys", (2, length))])


def test_scan_axes_and_directions():
    m = _scan_model(5)
    rng = np.random.default_rng(1)
    s0, x = rng.standard_normal(2).astype(np.float32), rng.standard_normal((2, 5)).astype(np.float32)
    state, ys = s0.copy(), np.zeros_like(x)
    for t in reversed(range(5)):       # onnx's reference evaluator runs forward scans only
        state = state + x[:, t]
        ys[:, t] = state * x[:, t]     # the backward output order puts step k at 4 - k: back at t
    got_s, got_ys = codegen.compile(m).build(["-O1"])(s0, x)
    np.testing.assert_allclose(got_s, state, rtol=1e-6)
    np.testing.assert_allclose(got_ys, ys, rtol=1e-6)


def test_unrolling_has_a_limit():
    with pytest.raises(codegen.UnsupportedError, match="limit of 4096 unrolled nodes"):
        frontend.load(_scan_model(10000))


def test_if_with_a_constant_condition_inlines_the_taken_branch():
    def branch(op):
        return helper.make_graph([helper.make_node(op, ["x"], ["r"])], op, [],
                                 [helper.make_tensor_value_info("r", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Size", ["s"], ["rank"]),
             helper.make_node("Equal", ["rank", "one"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("Neg"), else_branch=branch("Abs"))]
    m = model(nodes, [("x", (3,))], [("y", (3,))], {"one": np.array(1, np.int64)})
    assert [n.op for n in frontend.load(m).nodes if n.op != "Identity"] == ["Neg"]


def _runtime_if(then_shape, else_shape):
    def branch(name, shape):
        value = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + (1 if name == "t" else -1)
        return helper.make_graph([helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))],
                                 name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=branch("t", then_shape),
                                else_branch=branch("e", else_shape))], [("c", (1,))], [("y", then_shape)])
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.BOOL
    return m


def test_if_with_a_run_time_condition_computes_both_branches_and_selects():
    run = codegen.compile(_runtime_if((2, 3), (2, 3))).build(["-O1"])
    for c in (True, False):
        np.testing.assert_array_equal(run(np.array([c]))[0], np.arange(6).reshape(2, 3) + (1 if c else -1))


def test_if_with_a_run_time_condition_and_branches_of_different_shapes_is_refused():
    with pytest.raises(codegen.KilnError, match="different shapes|shape inference"):
        frontend.load(_runtime_if((2, 3), (1, 3)))


def test_nested_bodies_read_the_values_of_the_copy_they_are_in():
    """An If inside a Scan body reads the step's slice (renamed per copy) and an outer weight."""
    def out(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])
    then_b = helper.make_graph([helper.make_node("Mul", ["x_t", "w"], ["r"])], "t", [], [out("r")])
    else_b = helper.make_graph([helper.make_node("Neg", ["x_t"], ["r2"])], "e", [], [out("r2")])
    body = helper.make_graph([helper.make_node("If", ["c"], ["m"], then_branch=then_b, else_branch=else_b),
                              helper.make_node("Add", ["s_in", "m"], ["s_out"]),
                              helper.make_node("Identity", ["s_out"], ["y"])], "body",
                             [out("s_in"), out("x_t")], [out("s_out"), out("y")])
    scan = helper.make_node("Scan", ["s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1)
    m = model([scan], [("s0", (2,)), ("x", (3, 2))], [("s", (2,)), ("ys", (3, 2))],
              {"c": np.array(True), "w": np.array([2, 3], np.float32)})
    s0, x = np.array([1, 2], np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)
    for got, want in zip(codegen.compile(m).build(["-O1"])(s0, x), _reference(m, s0, x)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(codegen.ModelError, match="empty"):
        codegen.compile(tmp_path / "empty.onnx")


@pytest.mark.parametrize("elem, name", [(TensorProto.STRING, "string"), (TensorProto.COMPLEX64, "complex64")])
def test_unsupported_dtype_is_named(elem, name):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="same")], "g",
                              [helper.make_tensor_value_info("x", elem, (2,))],
                              [helper.make_tensor_value_info("y", elem, (2,))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(codegen.UnsupportedError, match=f"'same' \\(Identity\\): dtype {name} of 'x'"):
        codegen.compile(m)


def test_unsupported_op_with_a_data_dependent_shape_is_reported_as_unsupported():
    nodes = [helper.make_node("NonMaxSuppression", ["b", "s"], ["i"], name="nms"),
             helper.make_node("Relu", ["x"], ["y"], name="fine")]
    m = model(nodes, [("x", (2, 3)), ("b", (1, 3, 4)), ("s", (1, 1, 3))], [("y", (2, 3))])
    m.graph.output.append(helper.make_tensor_value_info("i", TensorProto.INT64, ("n", 3)))
    with pytest.raises(codegen.UnsupportedError, match="'nms' \\(NonMaxSuppression\\): op is not supported"):
        codegen.compile(m)
