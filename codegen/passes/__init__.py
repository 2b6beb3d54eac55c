"""Graph -> Graph passes, one per file; each returns a new Graph and a log of what it did.

    -O0   none (constants are still folded by the frontend: shapes depend on them)
    -O1   cleanup (no-op views, transpose pairs, dead nodes), fold_weights (BatchNorm, per-channel
          Mul/Add and Pad into Conv/Gemm; MatMul + Add -> Gemm)
          and remove_zero_channels (lossless channel pruning)
    -O2   and fuse (epilogues into anchors, elementwise chains into one loop)     [default]
    opt-in, lossy: prune_magnitude (prune_threshold or prune_sparsity [prune_scope]) and
          prune_channels (a fraction of each layer's channels, by L1 norm)

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
from .prune import channels, magnitude, remove_zero_channels
from .quantize import quantize


def _fold(graph: Graph) -> tuple[Graph, list[str]]:
    before = len(graph.nodes)
    g = fold_constants(graph, keep_output_writers=True)
    return g, [f"folded {before - len(g.nodes)} node(s)"] if before != len(g.nodes) else []


def _quantize(graph: Graph, o: dict):
    from ..quant import activation_qparams
    from ..ranges import activation_ranges
    qparams = dict(graph.quant)
    if o.get("int8"):
        calibration = o["calibration"]      # tensors the passes made are not in it: those stay float
        names = [n for n, v in graph.values.items() if not v.is_const and v.dtype == "float32"
                 and calibration.get(n) is not None]
        ranges = activation_ranges(calibration, names, method=o["int8"], percentile=o.get("percentile", 99.99))
        # the model's outputs keep their whole range: clipping them is output error by design
        ranges.update(activation_ranges(calibration, [n for n in graph.outputs if n in ranges], method="minmax"))
        for name, (lo, hi) in ranges.items():
            qparams.setdefault(name, activation_qparams(lo, hi))
    return quantize(graph, qparams, graph.quant)


@dataclass
class Pass:
    name: str
    run: Callable[[Graph, dict], tuple[Graph, list[str]]]
    level: int                          # the lowest -O level that runs it
    doc: str
    wanted: Callable[[dict], bool] = lambda options: True    # opt-in passes look at the options


def _magnitude(graph, o):
    return magnitude(graph, o.get("prune_threshold"), o.get("prune_sparsity"), o.get("prune_scope", "global"))


PASSES = [
    Pass("cleanup", lambda g, o: cleanup(g), 1, "remove no-op views, transpose pairs and dead nodes"),
    Pass("fold_weights", lambda g, o: fold_weights(g), 1,
         "fold BatchNorm / per-channel Mul, Add / Pad into Conv and Gemm"),
    Pass("prune_magnitude", _magnitude, 0, "zero small weights (--prune-threshold / --prune-sparsity)",
         lambda o: o.get("prune_threshold") is not None or o.get("prune_sparsity") is not None),
    Pass("prune_channels", lambda g, o: channels(g, o["prune_channels"], o.get("calibration")), 0,
         "zero the output channels with the smallest L1 norm (--prune-channels)",
         lambda o: bool(o.get("prune_channels"))),
    Pass("remove_zero_channels", lambda g, o: remove_zero_channels(g), 1,
         "remove all-zero output channels and the inputs that read them (lossless)"),
    Pass("fold", lambda g, o: _fold(g), 1, "fold nodes whose inputs became constants"),
    Pass("quantize", lambda g, o: _quantize(g, o), 0,
         "int8: layers with quantisation parameters (calibrated, or imported) compute in integers",
         lambda o: bool(o.get("int8") or o.get("qdq"))),
    Pass("fuse", lambda g, o: fuse(g), 2, "epilogues into anchors, elementwise chains into one loop"),
]
NAMES = [p.name for p in PASSES]


def _weight_bytes(graph: Graph) -> int:
    """Bytes of the constants the nodes read (before deduplication and splat storage)."""
    from ..ir import reads
    names = {n for node in graph.nodes for n in reads(node)}
    return sum(graph.values[n].nbytes for n in names if n in graph.values and graph.values[n].is_const)


def run_passes(graph: Graph, level: int = 2, disabled=(), options=None) -> tuple[Graph, list[dict]]:
    unknown = set(disabled) - set(NAMES)
    if unknown:
        raise KilnError(f"--disable-pass {', '.join(sorted(unknown))}: no such pass (passes: {', '.join(NAMES)}).")
    if level not in (0, 1, 2):
        raise KilnError(f"-O{level}: the levels are -O0, -O1 and -O2.")
    options = options or {}
    report = []
    for p in PASSES:
        if p.level > level or p.name in disabled or not p.wanted(options):
            continue
        before, weights = len(graph.nodes), _weight_bytes(graph)
        graph, log = p.run(graph, options)
        report.append(dict(name=p.name, nodes_before=before, nodes_after=len(graph.nodes), weight_bytes_before=weights,
                           weight_bytes_after=_weight_bytes(graph), log=log))
    return graph, report
