"""Cleanup: remove what computes nothing.

    Identity(x) -> x            Dropout(x) -> x  (inference)
    Reshape(x) -> x             when the shape does not change (also Flatten, Squeeze, Unsqueeze)
    Transpose(Transpose(x, p), q) -> Transpose(x, p∘q), or x when that is the identity
    nodes whose outputs nobody reads -> removed
"""
from __future__ import annotations

from ..ir import Graph, reads
from .rules import Rule, apply_rules, prune_values, rename

VIEWS = frozenset({"Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _noop_check(g, _, b):
    x, y = g.values[b.inputs[0]], g.values[b.outputs[0]]
    if b.op == "Dropout" and len([o for o in b.outputs if o]) > 1:
        return "the mask output is used"
    if b.op == "Dropout" and _training(g, b):
        return "it may drop in training mode (its lowering decides)"
    if tuple(x.shape) != tuple(y.shape):
        return "it changes the shape"
    if b.outputs[0] in g.outputs and (b.inputs[0] in g.inputs or x.is_const or b.inputs[0] in g.outputs):
        return "a graph output must be written by a node"
    return None


def _training(g, node) -> bool:
    """Dropout whose training_mode is not a constant false and whose ratio is not a constant 0."""
    ins = node.inputs + ["", ""]
    mode, ratio = (g.values.get(ins[2]) if ins[2] else None), (g.values.get(ins[1]) if ins[1] else None)
    if mode is None or (mode.is_const and not bool(mode.const)):
        return False
    return not (ratio is not None and ratio.is_const and float(ratio.const) == 0)


def _noop_rewrite(g, _, b):
    x, y = b.inputs[0], b.outputs[0]
    g.nodes = [n for n in g.nodes if n is not b]
    if y in g.outputs:           # keep the output's name: the producer of x writes it instead
        producer = next(n for n in g.nodes if x in n.outputs)
        producer.outputs = [y if o == x else o for o in producer.outputs]
        producer.sources = producer.sources + b.sources
        rename(g, x, y)
    else:
        rename(g, y, x)


def _perm(node, rank):
    return list(node.attrs.get("perm") or range(rank)[::-1])


def _transpose_check(g, a, b):
    return None


def _transpose_rewrite(g, a, b):
    rank = len(g.values[a.inputs[0]].shape)
    p, q = _perm(a, rank), _perm(b, rank)
    composed = [p[i] for i in q]
    a.attrs["perm"] = composed
    a.outputs = list(b.outputs)
    a.sources = a.sources + b.sources
    g.nodes = [n for n in g.nodes if n is not b]
    if composed == list(range(rank)):
        a.op = "Identity"
        a.attrs = {}


RULES = [
    Rule("drop_noop", "Identity(x) -> x; Reshape(x) -> x when shapes agree", None, VIEWS, _noop_check, _noop_rewrite),
    Rule("transpose_pair", "Transpose(Transpose(x, p), q) -> Transpose(x, p o q)", frozenset({"Transpose"}),
         frozenset({"Transpose"}), _transpose_check, _transpose_rewrite),
]


def remove_dead(graph: Graph) -> tuple[Graph, list[str]]:
    g = graph.copy()
    needed = set(g.outputs)
    keep, log = [], []
    for node in reversed(g.nodes):
        if any(o in needed for o in node.outputs) or any(s.outputs[0] in needed for s in node.epilogue):
            keep.append(node)
            needed.update(reads(node))
        else:
            log.append(f"dead: {node.op} {node.name!r}")
    g.nodes = keep[::-1]
    prune_values(g)
    return g, log[::-1]


def cleanup(graph: Graph) -> tuple[Graph, list[str]]:
    g, log = apply_rules(graph, RULES)
    g, dead = remove_dead(g)
    prune_values(g)
    return g, log + dead
