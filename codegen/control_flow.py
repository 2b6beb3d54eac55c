"""Control flow with a compile-time structure, inlined into plain nodes (part of the frontend).

Kiln's IR has no subgraphs, so the frontend replaces each If, Scan and Loop by the nodes of its body:

    If(c) with c a constant               -> the taken branch's nodes
    If(c) with c known at run time only   -> both branches' nodes, Where(c, then_i, else_i) per output
    Scan(s..., x...) over T steps         -> T copies of the body; step t reads Gather(x, t, axis),
                                             scan outputs are Concat(Unsqueeze(y_t, axis) for all t)
    Loop(M, cond, v...) with M a constant  -> M copies of the body, when the loop cannot stop early
                                             (cond absent or constant true, and passed through)

Every copied value gets a fresh name; outer-scope values keep theirs. Unrolling stops at
MAX_UNROLLED_NODES nodes in all, with an UnsupportedError: a static-shape compiler can afford the
common exports (a few steps over a short sequence), not a loop over thousands of tokens.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import UnsupportedError
from .ir import Graph, Node, Value
from .onnx_bridge import outer_names, subgraphs
from .passes.fold import fold_constants

CONTROL_FLOW = ("If", "Scan", "Loop")
MAX_UNROLLED_NODES = 4096


class _NotYet(Exception):
    """The node cannot be inlined (yet); the message says why."""


def _renamed(body: onnx.GraphProto, mapping: dict[str, str]) -> onnx.GraphProto:
    """A copy of a nested subgraph whose reads of outer values follow `mapping` (unless shadowed)."""
    local = {i.name for i in body.input} | {t.name for t in body.initializer} | \
        {o for n in body.node for o in n.output}
    mapping = {k: v for k, v in mapping.items() if k not in local}
    g = onnx.GraphProto()
    g.CopyFrom(body)
    for n in g.node:
        n.input[:] = [mapping.get(i, i) for i in n.input]
        for sub in subgraphs(n):
            sub.CopyFrom(_renamed(sub, mapping))
    for o in g.output:
        o.name = mapping.get(o.name, o.name)
    return g


class _Builder:
    """Appends nodes and fresh values to a graph being inlined into."""

    def __init__(self, graph: Graph, node: Node, taken: set[str]):
        self.g, self.node, self.nodes, self.taken = graph, node, [], taken   # taken: the node names in use
        self.selects = []       # (then, else, output) of an If with a run-time condition

    def fresh(self, base: str, const=None) -> str:
        name, k = f"{self.node.name}/{base}", 1
        while name in self.g.values:
            name, k = f"{self.node.name}/{base}_{k}", k + 1
        if const is None:
            self.g.values[name] = Value(name, None, None)
        else:
            self.g.values[name] = Value(name, tuple(const.shape), const.dtype, const)
        return name

    def node_name(self, base: str) -> str:
        name, k = f"{self.node.name}/{base}", 1
        while name in self.taken:
            name, k = f"{self.node.name}/{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def add(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [self.fresh(op.lower())]
        self.nodes.append(Node(op, self.node_name(op), inputs, outputs, attrs))
        return outputs[0]

    def body(self, body: onnx.GraphProto, bound: dict[str, str], step: str) -> list[str]:
        """Copy the body's nodes with its inputs bound to `bound`; returns its outputs' new names."""
        from .frontend import _attr
        mapping = dict(bound)
        for t in body.initializer:
            mapping[t.name] = self.fresh(f"{step}/{t.name}", numpy_helper.to_array(t))
        for n in body.node:
            inputs = [mapping.get(i, i) for i in n.input]
            for o in n.output:
                if o:
                    mapping[o] = self.fresh(f"{step}/{o}")
            attrs = {a.name: _attr(a) for a in n.attribute}
            attrs = {k: _renamed(v, mapping) if isinstance(v, onnx.GraphProto) else v for k, v in attrs.items()}
            self.nodes.append(Node(n.op_type, self.node_name(f"{step}/{n.name or n.op_type}"), inputs,
                                   [mapping[o] if o else "" for o in n.output], attrs))
        return [mapping.get(o.name, o.name) for o in body.output]

    def finish(self, results: list[str]) -> None:
        """The node's outputs become copies of the inlined results."""
        for out, res in zip(self.node.outputs, results):
            if out:
                self.add("Identity", [res], [out])


def _const(g: Graph, name: str, what: str) -> np.ndarray:
    v = g.value(name)
    if v is None or not v.is_const:
        raise _NotYet(f"its {what} is not a compile-time constant")
    return v.const


def _tensors_only(body: onnx.GraphProto) -> None:
    for vi in list(body.input) + list(body.output):
        if vi.type.WhichOneof("value") not in (None, "tensor_type"):
            raise _NotYet("sequence and optional values are not supported")


def _graph_attr(node: Node, name: str) -> onnx.GraphProto:
    body = node.attrs.get(name)
    if not isinstance(body, onnx.GraphProto):
        raise _NotYet(f"it has no {name} graph")
    _tensors_only(body)
    return body


def _inline_if(b: _Builder, g: Graph, node: Node, budget: int, select: bool = False) -> None:
    cond = g.value(node.inputs[0])
    if not select or cond is None or cond.is_const:
        taken = "then" if bool(np.asarray(_const(g, node.inputs[0], "condition")).reshape(-1)[0]) else "else"
        b.finish(b.body(_graph_attr(node, f"{taken}_branch"), {}, taken))
        return
    if cond.shape is None or None in cond.shape or cond.size != 1:
        raise _NotYet("its condition is not one element of static shape")
    then = b.body(_graph_attr(node, "then_branch"), {}, "then")
    other = b.body(_graph_attr(node, "else_branch"), {}, "else")
    scalar = b.add("Reshape", [node.inputs[0], b.fresh("scalar", np.zeros(0, np.int64))])
    for out, t, e in zip(node.outputs, then, other):
        if out:
            b.add("Where", [scalar, t, e], [out])
            b.selects.append((t, e, out))


def _stack(b: _Builder, steps: list[str], axis: int) -> str:
    """Concat(Unsqueeze(y_t, axis) for each step t), the scan-output layout."""
    axes = b.fresh("axes", np.array([axis], dtype=np.int64))
    return b.add("Concat", [b.add("Unsqueeze", [y, axes]) for y in steps], axis=axis)


def _check_budget(body: onnx.GraphProto, steps: int, budget: int) -> None:
    if steps < 1:
        raise _NotYet("it runs zero times (its outputs would have no static shape)")
    if steps * (len(body.node) + 2) > budget:
        raise _NotYet(f"unrolling {steps} steps of {len(body.node)} nodes would exceed the limit of "
                      f"{MAX_UNROLLED_NODES} unrolled nodes in a model")


def _inline_scan(b: _Builder, g: Graph, node: Node, budget: int) -> None:
    body = _graph_attr(node, "body")
    m = node.attrs.get("num_scan_inputs", 0)
    n = len(node.inputs) - m
    k = len(body.output) - n
    if m < 1 or n < 0 or k < 0 or len(body.input) != n + m or len(node.outputs) > n + k:
        raise _NotYet("its inputs and outputs do not match its body")
    xs = [g.value(x) for x in node.inputs[n:]]
    in_axes = list(node.attrs.get("scan_input_axes", [0] * m))
    in_dirs = list(node.attrs.get("scan_input_directions", [0] * m))
    out_axes = list(node.attrs.get("scan_output_axes", [0] * k))
    out_dirs = list(node.attrs.get("scan_output_directions", [0] * k))
    if None in xs or any(x.shape is None or None in x.shape for x in xs):
        raise _NotYet("its scan inputs have no static shape")
    if len(in_axes) != m or len(in_dirs) != m or len(out_axes) != k or len(out_dirs) != k or \
            not all(-len(x.shape) <= a < len(x.shape) for x, a in zip(xs, in_axes)):
        raise _NotYet("its scan axes or directions do not match its inputs")
    lengths = {x.shape[a] for x, a in zip(xs, in_axes)}
    if len(lengths) != 1:
        raise _NotYet("its scan inputs have different sequence lengths")
    steps = lengths.pop()
    _check_budget(body, steps, budget)
    states, outs = list(node.inputs[:n]), [[] for _ in range(k)]
    for t in range(steps):
        slices = [b.add("Gather", [x.name, b.fresh("t", np.array(steps - 1 - t if d else t, np.int64))], axis=a)
                  for x, a, d in zip(xs, in_axes, in_dirs)]
        results = b.body(body, dict(zip([i.name for i in body.input], states + slices)), f"step{t}")
        states = results[:n]
        for j in range(k):
            outs[j].append(results[n + j])
    scanned = [_stack(b, ys[::-1] if d else ys, a) for ys, a, d in zip(outs, out_axes, out_dirs)]
    b.finish(states + scanned)


def _passes_condition_through(body: onnx.GraphProto) -> bool:
    """Whether the body's condition output is its condition input (through Identity) or constant true."""
    producers = {o: n for n in body.node for o in n.output}
    name = body.output[0].name
    while name in producers:
        n = producers[name]
        if n.op_type == "Identity":
            name = n.input[0]
        elif n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            value = numpy_helper.to_array(n.attribute[0].t)
            return value.size == 1 and bool(value.reshape(-1)[0])
        else:
            return False
    return name == body.input[1].name


def _inline_loop(b: _Builder, g: Graph, node: Node, budget: int) -> None:
    body = _graph_attr(node, "body")
    n = len(node.inputs) - 2
    k = len(body.output) - 1 - n
    if n < 0 or k < 0 or len(body.input) != n + 2 or len(node.outputs) > n + k:
        raise _NotYet("its inputs and outputs do not match its body")
    if not node.inputs[0]:
        raise _NotYet("it has no trip count (it runs until a run-time condition)")
    steps = int(np.asarray(_const(g, node.inputs[0], "trip count")).reshape(-1)[0])
    if node.inputs[1] and not bool(np.asarray(_const(g, node.inputs[1], "condition")).reshape(-1)[0]):
        steps = 0
    if not _passes_condition_through(body):
        raise _NotYet("its body computes the loop condition (the number of steps depends on data)")
    _check_budget(body, steps, budget)
    cond = node.inputs[1] or b.fresh("cond", np.array(True))
    states, outs = list(node.inputs[2:]), [[] for _ in range(k)]
    for t in range(steps):
        count = b.fresh("iteration", np.array(t, np.int64))
        results = b.body(body, dict(zip([i.name for i in body.input], [count, cond] + states)), f"step{t}")
        states = results[1:1 + n]
        for j in range(k):
            outs[j].append(results[1 + n + j])
    b.finish(states + [_stack(b, ys, 0) for ys in outs])


def _select_problem(g: Graph, names: list[str]) -> str | None:
    """Why Where(cond, then, else) -> output would not be the If it replaced, if it would not."""
    shapes = [g.values[x].shape for x in names]
    if any(s is None or None in s for s in shapes):
        return "the shapes of its outputs depend on run-time data"
    return None if len(set(shapes)) == 1 else "its branches give different shapes"


def inline_control_flow(graph: Graph) -> Graph:
    """Inline every If, Scan and Loop whose structure is known, then fold constants, and again while any
    was inlined (an inlined body may fix the condition of the next). Only when nothing else can be
    inlined does an If with a run-time condition become both branches and a Where per output (which
    must then have equal static shapes). Refuse the rest with reasons."""
    g, budget, select = graph, MAX_UNROLLED_NODES, False
    while True:
        new, nodes, problems, selects, inlined = g.copy(), [], [], [], False
        taken = {n.name for n in new.nodes}
        for node in new.nodes:
            if node.op not in CONTROL_FLOW:
                nodes.append(node)
                continue
            b = _Builder(new, node, taken)
            try:
                if node.op == "If":
                    _inline_if(b, new, node, budget, select)
                else:
                    (_inline_scan if node.op == "Scan" else _inline_loop)(b, new, node, budget)
                if len(b.nodes) > budget:
                    raise _NotYet(f"inlining it would exceed the limit of {MAX_UNROLLED_NODES} unrolled nodes "
                                  "in a model")
            except _NotYet as why:
                problems.append((node.name, node.op, str(why)))
                nodes.append(node)
                continue
            budget -= len(b.nodes)
            nodes += b.nodes
            selects += [(node, *s) for s in b.selects]
            inlined = True
        if not inlined and problems and not select:
            select = True           # nothing could be inlined: try run-time conditions
            continue
        if not inlined:
            if problems:
                raise UnsupportedError(problems)
            return g
        new.nodes, select = nodes, False
        g = fold_constants(new)
        unequal = [(n.name, n.op, why) for n, *names in selects if (why := _select_problem(g, names))]
        if unequal:
            raise UnsupportedError(unequal)


def _mod_graph(g: Graph, node: Node, body: onnx.GraphProto) -> Graph | None:
    """A FlexAttention modifier as an IR graph over the score tensor (B, Hq, L, S), constants folded;
    None if it does not have that form (the lowering then refuses it)."""
    from .frontend import _infer, to_ir
    Q, K = g.value(node.inputs[0]), g.value(node.inputs[1]) if len(node.inputs) > 1 else None
    if Q is None or K is None or Q.dtype is None or len(Q.shape or ()) != 4 or len(K.shape or ()) != 4 \
            or len(body.input) != 1 or len(body.output) != 1 or outer_names(body):
        return None
    precision = node.attrs.get("softmax_precision")
    dtype = np.dtype(np.float64) if precision == onnx.TensorProto.DOUBLE or (
        precision is None and np.dtype(Q.dtype) == np.float64) else np.dtype(np.float32)
    sub = onnx.GraphProto()
    sub.CopyFrom(body)
    tensor = sub.input[0].type.tensor_type
    tensor.elem_type = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    del tensor.shape.dim[:]
    for d in (Q.shape[0], Q.shape[1], Q.shape[2], K.shape[2]):
        tensor.shape.dim.add().dim_value = d
    proto = onnx.helper.make_model(sub, opset_imports=[onnx.helper.make_opsetid("", g.opset)])
    return fold_constants(to_ir(_infer(proto), "mod"))


def mod_graphs(graph: Graph) -> Graph:
    """FlexAttention's score_mod and prob_mod subgraphs become IR graphs (see _mod_graph)."""
    g = graph.copy()
    for node in g.nodes:
        if node.op == "FlexAttention":
            for attr in ("score_mod", "prob_mod"):
                if isinstance(node.attrs.get(attr), onnx.GraphProto):
                    node.attrs[attr] = _mod_graph(g, node, node.attrs[attr]) or node.attrs[attr]
    return g
