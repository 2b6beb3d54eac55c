"""Fusion: a layer is an anchor plus an epilogue; elementwise chains become one loop.

    Act(Conv(x, w, b))            -> Conv(x, w, b, epilogue=[Act])
    Add(Relu(Conv(x, w, b)), r)   -> Conv(x, w, b, epilogue=[Relu, Add(., r)])   residual in the store
    Mul(y, Sigmoid(y)), y = Gemm  -> Gemm(..., epilogue=[Sigmoid, Mul])          SiLU, and any diamond
    Relu(Add(Mul(x, s), t))       -> Fused(x, s, t)                              one loop, no temporaries

From each anchor (a node whose kernel takes an epilogue) or elementwise node, the region grows
over the elementwise nodes downstream of it: the largest set, closed under "is an input of", whose
values other than the last are read only inside the region, and whose outside operands the
anchor can read in its store (scalars, same-shape tensors, per-channel constants) and that exist
when the anchor runs. A layer keeps its anchor's place in the order; a fused elementwise chain
takes its last node's place, so every operand is computed before it.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import ACC, Graph, Node
from ..ops.elementwise import EXPRESSIONS, operand_mode
from .rules import prune_values

FLOAT = np.dtype(np.float32)


def _epilogue_modes(g: Graph, node: Node):
    if node.epilogue or node.op in EXPRESSIONS or node.op == "Fused":
        return None
    try:
        return ops.lower_node(g, node).epilogue_modes
    except ops.Unsupported:
        return None


def _is_step(g: Graph, node: Node) -> bool:
    outs = [o for o in node.outputs if o]
    return (node.op in EXPRESSIONS and not node.epilogue and len(outs) == 1 and len(node.outputs) == 1
            and all(g.values[v].dtype == FLOAT for v in outs + [i for i in node.inputs if i]))


def _grow(g: Graph, start: Node, modes, users, order) -> list[Node]:
    """The largest valid set of elementwise nodes to fuse after `start` (in graph order)."""
    out_shape = tuple(g.values[start.outputs[0]].shape)
    produced_by = {o: n for n in g.nodes for o in n.outputs if o}
    # candidates: elementwise nodes reachable from start through elementwise nodes
    cand, frontier = {}, [start.outputs[0]]
    while frontier:
        value = frontier.pop()
        for user in users.get(value, []):
            if id(user) in cand or user is start or not _is_step(g, user):
                continue
            if modes is not None and tuple(g.values[user.outputs[0]].shape) != out_shape:
                continue
            cand[id(user)] = user
            frontier.append(user.outputs[0])
    best = []
    for final in sorted(cand.values(), key=lambda n: order[id(n)]):
        region = _ancestors_within(final, cand, produced_by)
        if len(region) > len(best) and _valid(g, start, region, final, modes, users, produced_by, out_shape, order):
            best = region
    return sorted(best, key=lambda n: order[id(n)])


def _ancestors_within(final, cand, produced_by):
    region, stack = {}, [final]
    while stack:
        n = stack.pop()
        if id(n) in region:
            continue
        region[id(n)] = n
        for i in n.inputs:
            p = produced_by.get(i)
            if p is not None and id(p) in cand:
                stack.append(p)
    return list(region.values())


def _valid(g, start, region, final, modes, users, produced_by, out_shape, order) -> bool:
    members = {id(n) for n in region} | {id(start)}
    inside = {start.outputs[0]} | {n.outputs[0] for n in region}
    for node in [start] + region:
        if node is final:
            continue
        value = node.outputs[0]
        if value in g.outputs or any(id(u) not in members for u in users.get(value, [])):
            return False
    for node in region:
        for name in node.inputs:
            if not name or name in inside:
                continue
            p = produced_by.get(name)
            if p is not None and id(p) in members:
                return False
            if modes is not None:
                # the layer runs where its anchor stood, so operands must already exist there
                if p is not None and order[id(p)] > order[id(start)]:
                    return False
                if operand_mode(g.values[name], out_shape, "chan" in modes) is None:
                    return False
    return True


def fuse(graph: Graph) -> tuple[Graph, list[str]]:
    g = graph.copy()
    log = []
    k = 0
    while k < len(g.nodes):
        start = g.nodes[k]
        modes = _epilogue_modes(g, start)
        if modes is None and not _is_step(g, start):
            k += 1
            continue
        users = g.consumers()
        order = {id(n): i for i, n in enumerate(g.nodes)}
        region = _grow(g, start, modes, users, order)
        if not region:
            k += 1
            continue
        final = region[-1]
        if modes is not None:
            fused = start.copy()
            fused.epilogue = [n.copy() for n in region]
            for step in fused.epilogue:        # the anchor's own output lives only in a register now
                step.inputs = [ACC if i == start.outputs[0] else i for i in step.inputs]
        else:
            steps = [start] + region
            inside = {n.outputs[0] for n in steps}
            leaves = list(dict.fromkeys(i for n in steps for i in n.inputs if i and i not in inside))
            fused = Node("Fused", start.name, leaves, [], {"body": [n.copy() for n in steps]})
            fused.sources = []
        fused.outputs = [final.outputs[0]]
        fused.sources = fused.sources + [s for n in ([start] if modes is None else []) + region for s in n.sources]
        try:
            ops.lower_node(g, fused)
        except ops.Unsupported as why:
            log.append(f"fuse: refused {start.op} {start.name!r} + {len(region)} node(s): {why}")
            k += 1
            continue
        gone = {id(start)} | {id(n) for n in region}
        at = start if modes is not None else final     # a layer stays where its anchor was
        g.nodes = [fused if n is at else n for n in g.nodes if n is at or id(n) not in gone]
        log.append(f"fuse: {start.op} {start.name!r} <- " + ", ".join(f"{n.op} {n.name!r}" for n in region))
    prune_values(g)
    return g, log
