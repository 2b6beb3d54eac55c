"""ONNX -> IR: load, check, convert to one opset, infer static shapes, fold constants (re-inferring
shapes as constants appear), and give float kernels float32 copies of half-precision operands
(passes/widen.py).

This is the only module that touches ONNX protobufs (with control_flow.py, which inlines If, Scan
and Loop bodies, and apart from the reference runners in verify.py, which execute the original model).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference, version_converter

from .errors import LimitError, ModelError, ShapeError, UnsupportedError
from .ir import Graph, Node, Value
from .names import c_identifier

TARGET_OPSET = 28          # every model is converted to this one opset before lowering
MAX_TENSOR_BYTES = 1 << 31  # no single tensor of a model we compile may be larger (2 GiB)
DEFAULT_DOMAINS = ("", "ai.onnx")
PREVIEW_OPS = {"FlexAttention"}   # the ops of domain ai.onnx.preview that Kiln compiles


def parse_input_shapes(specs) -> dict[str, tuple[int, ...]]:
    """['data=1x3x224x224', ...] or {'data': (1, 3, 224, 224)} -> dict."""
    if isinstance(specs, dict):
        return {k: tuple(int(d) for d in v) for k, v in specs.items()}
    shapes = {}
    for spec in specs or ():
        name, sep, dims = spec.rpartition("=")
        if not sep or not re.fullmatch(r"\d+(x\d+)*", dims):
            raise ShapeError(f"--input-shape {spec!r} is not NAME=DIMS, e.g. --input-shape data=1x3x224x224.")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


def load_proto(model) -> tuple[onnx.ModelProto, str]:
    """A path or a ModelProto -> (ModelProto with external data loaded, default name)."""
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "model"
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the file is empty, not an ONNX model.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ModelError(f"{path}: not a valid ONNX model ({type(err).__name__}: {err}).") from None
    _load_external_data(proto, path.parent)
    return proto, path.stem


def _load_external_data(proto: onnx.ModelProto, base: Path) -> None:
    """Load external weights, refusing files outside the model's folder (path traversal)."""
    root = base.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        target = (root / info.get("location", "")).resolve()
        if root not in target.parents:
            raise ModelError(f"tensor {tensor.name!r} points to external data outside the model's folder: "
                             f"{info.get('location')!r}.")
        if not target.is_file():
            raise ModelError(f"tensor {tensor.name!r}: external data file {info.get('location')!r} is missing.")
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(root))
    except Exception as err:
        raise ModelError(f"could not read external data: {err}.") from None


def _fix_input_shapes(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    inits = {t.name for t in proto.graph.initializer}
    inputs = {i.name: i for i in proto.graph.input if i.name not in inits}
    for name, dims in shapes.items():
        if name not in inputs:
            raise ShapeError(f"--input-shape names {name!r}, but the model's inputs are {sorted(inputs)}.")
        shape = inputs[name].type.tensor_type.shape
        if len(shape.dim) and len(shape.dim) != len(dims):
            raise ShapeError(f"input {name!r} has rank {len(shape.dim)}, but --input-shape gives {len(dims)} dims.")
        for dim, new in zip(shape.dim, dims):
            if dim.HasField("dim_value") and dim.dim_value != new:
                raise ShapeError(f"input {name!r} has fixed dimension {dim.dim_value}, not {new}.")
        del shape.dim[:]
        for new in dims:
            shape.dim.add().dim_value = new


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ModelError(f"the model fails onnx.checker: {str(err).strip().splitlines()[0]}") from None
    g = proto.graph
    names = [g.name] + [x for n in g.node for x in (n.name, n.op_type, *n.input, *n.output)] + \
        [v.name for v in list(g.input) + list(g.output) + list(g.initializer)]
    if any(isinstance(x, bytes) for x in names):
        raise ModelError("the model holds a name that is not valid UTF-8.")


def _foreign_nodes(proto: onnx.ModelProto) -> list[tuple[str, str, str]]:
    return [(n.name, n.op_type, f"domain {n.domain!r} is not supported")
            for n in proto.graph.node if n.domain not in DEFAULT_DOMAINS
            and not (n.domain == "ai.onnx.preview" and n.op_type in PREVIEW_OPS)]


def _array(t: onnx.TensorProto) -> np.ndarray:
    """A tensor's data, or a ModelError when it does not match its shape and type."""
    try:
        return numpy_helper.to_array(t)
    except Exception:
        raise ModelError(f"tensor {t.name!r}: its data does not match its shape and type.") from None


def _lossy_resizes(proto: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """Upsample and opset-10 Resize map output to input coordinates asymmetrically (x / scale,
    floored); onnx's version converter turns them into a Resize-11+ that uses the default
    half_pixel coordinates instead. Both agree only for nearest mode with integer scales >= 1."""
    consts = {t.name: _array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = _array(n.attribute[0].t)
    problems = []
    for n in proto.graph.node:
        if n.op_type not in ("Upsample", "Resize"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        scales = attrs.get("scales")
        if scales is None and len(n.input) > 1:
            scales = consts.get(n.input[1])
        mode = attrs.get("mode", b"nearest")
        ok = mode in (b"nearest", "nearest") and scales is not None and \
            all(float(s) >= 1 and float(s).is_integer() for s in np.asarray(scales).reshape(-1))
        if not ok:
            problems.append((n.name, n.op_type, "before opset 11 it resizes with asymmetric coordinates, which the "
                             "conversion to a newer opset keeps only for nearest mode with constant integer scales"))
    return problems


def _convert(proto: onnx.ModelProto) -> onnx.ModelProto:
    version = next((o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS), None)
    if version is None:
        raise ModelError("the model imports no default-domain opset.")
    if version < 11 and _lossy_resizes(proto):
        raise UnsupportedError(_lossy_resizes(proto))
    if version < 9 and any(n.op_type == "Scan" for n in proto.graph.node):
        raise UnsupportedError([(n.name or f"Scan_{i}", n.op_type, "opset-8 Scan (with a batch axis and "
                                 "sequence_lens) loses its batch axis in onnx's version converter")
                                for i, n in enumerate(proto.graph.node) if n.op_type == "Scan"])
    if version > TARGET_OPSET:
        raise ModelError(f"the model uses opset {version}, newer than the newest Kiln knows ({TARGET_OPSET}).")
    if version == TARGET_OPSET:
        return proto
    try:
        return version_converter.convert_version(proto, TARGET_OPSET)
    except Exception as err:
        raise ModelError(f"onnx's version converter could not bring opset {version} to {TARGET_OPSET}: "
                         f"{str(err).strip().splitlines()[-1][:200]}") from None


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as err:
        raise ShapeError(f"onnx shape inference failed: {str(err).strip().splitlines()[-1][:300]}") from None


def np_dtype(elem_type: int):
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None   # no numpy equivalent (e.g. bfloat16, float8, string): ops will refuse it


def _value(vi: onnx.ValueInfoProto) -> Value:
    ttype = vi.type.tensor_type
    shape = None
    if ttype.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
    return Value(vi.name, shape, np_dtype(ttype.elem_type))


def _attr(a: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, onnx.TensorProto):
        return _array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value


def to_ir(proto: onnx.ModelProto, name: str) -> Graph:
    g = proto.graph
    values: dict[str, Value] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        values.setdefault(vi.name, _value(vi))
    for t in g.initializer:       # initializers listed as inputs too (opset-9 style) are constants
        arr = _array(t)
        values[t.name] = Value(t.name, tuple(arr.shape), arr.dtype, arr)
    nodes, taken = [], set()
    for i, n in enumerate(g.node):
        for out in n.output:
            if out and out not in values:
                values[out] = Value(out, None, None)
        node_name = n.name or f"{n.op_type}_{i}"
        while node_name in taken:         # node names are keys from here on: make them unique
            node_name = f"{node_name}_{i}"
        taken.add(node_name)
        nodes.append(Node(n.op_type, node_name, list(n.input), list(n.output),
                          {a.name: _attr(a) for a in n.attribute}))
    inputs = [i.name for i in g.input if not values[i.name].is_const]
    outputs = [o.name for o in g.output]
    opset = next(o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS)
    return Graph(c_identifier(name, "model"), values, nodes, inputs, outputs, opset,
                 doc={"source": name, "producer": f"{proto.producer_name} {proto.producer_version}".strip()})


def _require_static(graph: Graph) -> None:
    def static(v):
        return v.shape is not None and all(d is not None and d >= 0 for d in v.shape) and v.dtype is not None

    if not all(static(v) for v in graph.values.values()):
        from .ops import REGISTRY
        unknown = [(n.name, n.op, "op is not supported") for n in graph.nodes if n.op not in REGISTRY]
        if unknown:                  # the likelier cause (sequences, optionals...), and the more useful message
            raise UnsupportedError(unknown)
    for name in graph.inputs:
        v = graph.values[name]
        if v.shape is None or any(d is None or d < 0 for d in v.shape):
            dims = "x".join("?" if d is None else str(d) for d in (v.shape or ()))
            raise ShapeError(f"input {name!r} has no static shape ({dims or 'unknown'}); pass one with "
                             f"--input-shape {name}=" + "x".join(str(d or 1) for d in (v.shape or (1,))) + ".")
    for v in graph.values.values():
        if not static(v):
            raise ShapeError(f"tensor {v.name!r} has no static shape or dtype after shape inference and constant "
                             "folding (its shape depends on run-time data).")


def _check_sizes(graph: Graph) -> None:
    """Refuse tensors so large that no build could hold them (before anything allocates them)."""
    for v in graph.values.values():
        if v.shape is None or any(d is None for d in v.shape) or v.dtype is None:
            continue
        if any(d < 0 for d in v.shape):
            raise ShapeError(f"tensor {v.name!r} has a negative dimension {v.shape}.")
        nbytes = int(np.prod(v.shape, dtype=object)) * np.dtype(v.dtype).itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise LimitError(f"tensor {v.name!r} would take {nbytes:,} bytes, over the limit of "
                             f"{MAX_TENSOR_BYTES:,} for one tensor.")


def load(model, input_shapes=None) -> Graph:
    """Any ONNX model (path or ModelProto) -> IR with static shapes and folded constants."""
    from .control_flow import inline_control_flow, mod_graphs
    from .passes.fold import fold_constants   # the frontend needs constants folded to know shapes
    from .passes.widen import widen_half
    from . import qdq

    proto, name = load_proto(model)
    proto_copy = onnx.ModelProto()
    proto_copy.CopyFrom(proto)
    proto = proto_copy
    qdq.expand_qoperators(proto)
    _check(proto)
    foreign = _foreign_nodes(proto)
    if foreign:
        raise UnsupportedError(foreign)
    _fix_input_shapes(proto, parse_input_shapes(input_shapes))
    proto = _infer(_convert(proto))
    graph = qdq.absorb(to_ir(proto, name))
    _check_sizes(graph)
    graph = mod_graphs(inline_control_flow(fold_constants(graph)))
    _require_static(graph)
    _check_sizes(graph)
    return _materialise_outputs(widen_half(_drop_unused_outputs(graph)))


def _drop_unused_outputs(graph: Graph) -> Graph:
    """Optional outputs nobody reads (Dropout's mask, MaxPool's indices) become omitted ("")."""
    g = graph.copy()
    read = {i for n in g.nodes for i in n.inputs} | set(g.outputs)
    for node in g.nodes:
        node.outputs = [o if (o in read or k == 0) else "" for k, o in enumerate(node.outputs)]
        while len(node.outputs) > 1 and not node.outputs[-1]:
            node.outputs.pop()
    kept = {o for n in g.nodes for o in n.outputs} | {i for n in g.nodes for i in n.inputs} | set(g.inputs) | set(g.outputs)
    g.values = {k: v for k, v in g.values.items() if k in kept}
    return g


def _materialise_outputs(graph: Graph) -> Graph:
    """A graph output that is a constant, a graph input or listed twice gets its own copy node,
    so that every output is written by exactly one node into the caller's buffer."""
    g = graph.copy()
    seen = set()
    for i, name in enumerate(g.outputs):
        v = g.values[name]
        if not (v.is_const or name in g.inputs or name in seen):
            seen.add(name)
            continue
        source = f"{name}__kiln_source{i}"
        if v.is_const:          # rename the constant; the output name now belongs to the copy
            g.values[source] = Value(source, v.shape, v.dtype, v.const)
            g.values[name] = Value(name, v.shape, v.dtype)
            for node in g.nodes:
                node.inputs = [source if x == name else x for x in node.inputs]
            g.nodes.append(Node("Identity", f"output_{i}_copy", [source], [name]))
        else:                   # a second output (or an input) under the same name: copy into a new one
            copy = f"{name}__kiln_output{i}"
            g.values[copy] = Value(copy, v.shape, v.dtype)
            g.nodes.append(Node("Identity", f"output_{i}_copy", [name], [copy]))
            g.outputs[i] = copy
        seen.add(name)
    return g
