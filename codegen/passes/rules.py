"""Rewrite rules as data: a pattern of two nodes, a check that may refuse with a reason, a rewrite.

    Rule("conv_bn", "BatchNormalization(Conv(x, w, b)) -> Conv(x, w', b')",
         first={"Conv"}, second={"BatchNormalization"}, check=..., rewrite=...)

`first` produces a value that `second` reads and nobody else does (so the pair can become one
node). A rule with `first=None` matches `second` alone. `rewrite(g, a, b)` edits the graph copy
`g` in place and returns the node that replaces the pair; the engine removes the other one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Graph, Node, reads


@dataclass
class Rule:
    name: str
    doc: str
    first: frozenset[str] | None
    second: frozenset[str]
    check: Callable[[Graph, Node | None, Node], str | None]
    rewrite: Callable[[Graph, Node | None, Node], None]


def single_consumer(g: Graph, value: str, users) -> bool:
    return value not in g.outputs and len(users.get(value, [])) == 1


def apply_rules(graph: Graph, rules: list[Rule]) -> tuple[Graph, list[str]]:
    """Apply rules until none fires. Returns the new graph and a log line per rewrite or refusal."""
    g = graph.copy()
    log, refused = [], set()
    changed = True
    while changed:
        changed = False
        users = g.consumers()
        producers = g.producers()
        for b in list(g.nodes):
            for rule in rules:
                if b.op not in rule.second:
                    continue
                candidates = [None] if rule.first is None else [
                    producers[i] for i in dict.fromkeys(b.inputs) if i in producers
                    and producers[i].op in rule.first and not producers[i].epilogue
                    and single_consumer(g, i, users)]
                for a in candidates:
                    reason = rule.check(g, a, b)
                    key = (rule.name, a.name if a else None, b.name)
                    if reason:
                        if key not in refused and rule.first is not None:
                            refused.add(key)
                            log.append(f"{rule.name}: refused {_names(a, b)}: {reason}")
                        continue
                    rule.rewrite(g, a, b)
                    log.append(f"{rule.name}: {_names(a, b)}")
                    changed = True
                    break
                if changed:
                    break
            if changed:
                break
    return g, log


def _names(a: Node | None, b: Node) -> str:
    return (f"{a.op} {a.name!r} + " if a else "") + f"{b.op} {b.name!r}"


def merge_into(g: Graph, keep: Node, gone: Node) -> None:
    """`keep` takes over `gone`'s outputs and ONNX sources; `gone` leaves the graph."""
    keep.outputs = list(gone.outputs)
    keep.sources = keep.sources + gone.sources
    g.nodes = [n for n in g.nodes if n is not gone]


def rename(g: Graph, old: str, new: str) -> None:
    """Every reader of `old` reads `new` instead (epilogues included)."""
    for node in g.nodes:
        node.inputs = [new if i == old else i for i in node.inputs]
        for step in node.epilogue:
            step.inputs = [new if i == old else i for i in step.inputs]


def prune_values(g: Graph) -> None:
    """Drop values that no node reads or writes and that are not graph inputs or outputs."""
    live = set(g.inputs) | set(g.outputs)
    for node in g.nodes:
        live.update(reads(node))
        live.update(o for o in node.outputs if o)
    g.values = {k: v for k, v in g.values.items() if k in live}
