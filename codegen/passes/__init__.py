"""Graph -> Graph passes, one per file; each returns a new Graph and a log of what it did.

    -O0   none (constants are still folded by the frontend: shapes depend on them)
    -O1   cleanup (no-op views, transpose pairs, dead nodes), fold_weights (BatchNorm, per-channel
          Mul/Add and Pad into Conv/Gemm; MatMul + Add -> Gemm)
    -O2   and fuse (epilogues into anchors, elementwise chains into one loop)     [default]

`--disable-pass NAME` switches one off. Every pass keeps the function the graph computes; the
tests check that on hand-built and random graphs against the graph with the pass switched off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import KilnError
from ..ir import Graph
from .cleanup import cleanup
from .fold import fold_constants
from .fold_weights import fold_weights
from .fuse import fuse


def _fold(graph: Graph) -> tuple[Graph, list[str]]:
    before = len(graph.nodes)
    g = fold_constants(graph, keep_output_writers=True)
    return g, [f"folded {before - len(g.nodes)} node(s)"] if before != len(g.nodes) else []


@dataclass
class Pass:
    name: str
    run: Callable[[Graph], tuple[Graph, list[str]]]
    level: int
    doc: str


PASSES = [
    Pass("cleanup", cleanup, 1, "remove no-op views, transpose pairs and dead nodes"),
    Pass("fold_weights", fold_weights, 1, "fold BatchNorm / per-channel Mul, Add / Pad into Conv and Gemm"),
    Pass("fold", _fold, 1, "fold nodes whose inputs became constants"),
    Pass("fuse", fuse, 2, "epilogues into anchors, elementwise chains into one loop"),
]
NAMES = [p.name for p in PASSES]


def run_passes(graph: Graph, level: int = 2, disabled=()) -> tuple[Graph, list[dict]]:
    unknown = set(disabled) - set(NAMES)
    if unknown:
        raise KilnError(f"--disable-pass {', '.join(sorted(unknown))}: no such pass (passes: {', '.join(NAMES)}).")
    if level not in (0, 1, 2):
        raise KilnError(f"-O{level}: the levels are -O0, -O1 and -O2.")
    report = []
    for p in PASSES:
        if p.level > level or p.name in disabled:
            continue
        before = len(graph.nodes)
        graph, log = p.run(graph)
        report.append(dict(name=p.name, nodes_before=before, nodes_after=len(graph.nodes), log=log))
    return graph, report
