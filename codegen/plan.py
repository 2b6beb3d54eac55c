"""Memory plan: which buffer every value lives in, and one static arena for the rest.

Algorithm (after TensorFlow Lite Micro's greedy planner):
1. Values that are views of another (Reshape, Flatten, Identity...) share its buffer; so does the
   output of an elementwise op whose input dies there (in place). Graph inputs and outputs are the
   caller's buffers; a view that would join two caller buffers becomes a copy instead. A Concat whose
   inputs are whole slices of its output (nothing outside the axis but 1s) and that its layers write
   (no caller buffer, constant or shared buffer) has them planned in place, each at its offset in the
   output: the producers write the concatenation, and the Concat runs no code.
2. Each remaining buffer is live from the step that writes it to the last step that reads it.
3. Buffers are placed one by one, each at the lowest aligned offset that does not overlap a placed
   buffer live at the same time: largest first (TFLite Micro's order), and in three other orders
   (size x lifetime, lifetime, first use), each first-fit and best-fit; the smallest arena wins.
4. If that arena is above the lower bound, a seeded local search moves one buffer at a time to
   another place in the winning order, keeping moves that do not grow the arena, until the bound
   is reached or SEARCH_MOVES moves are spent (densenet121: 5.6% over the bound -> at the bound).
Limits: the order of execution is the graph's order (no reordering to lower the peak), and the
greedy placement can exceed the lower bound (the largest sum of simultaneously live buffers).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from .ir import Graph
from .ops import Kernel

ALIGN = 64   # bytes: a cache line, and the widest vector load (AVX-512)


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    kind: str                  # "arena", "input", "output" or "const"
    index: int = 0             # graph input/output position
    offset: int = 0            # arena byte offset
    size: int = 0              # bytes (aligned) for arena buffers
    first: int = 0             # step that writes it
    last: int = 0              # last step that reads it
    values: list[str] = field(default_factory=list)


@dataclass
class Plan:
    buffers: list[Buffer]
    where: dict[str, Buffer]          # value name -> its buffer
    copies: set[str]                  # view nodes that must copy (they join two caller buffers)
    offsets: dict[str, int]           # value name -> its byte offset in its buffer (a Concat's inputs; else 0)
    concats: set[str]                 # Concat nodes planned in place: no code
    arena_bytes: int
    lower_bound: int
    steps: int

    def timeline(self, width: int = 48) -> list[str]:
        """One line per arena buffer: offset, size, and its lifetime as a bar."""
        scale = max(1, -(-self.steps // width))
        lines = []
        for b in sorted((b for b in self.buffers if b.kind == "arena"), key=lambda b: (b.offset, b.first)):
            bar = "".join("#" if b.first // scale <= t <= b.last // scale else "."
                          for t in range(-(-self.steps // scale)))
            lines.append(f"{b.offset:>10} {b.size:>10} |{bar}| {b.values[0]}")
        return lines


class _Groups:
    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, n):
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a, b):
        self.parent[self.find(b)] = self.find(a)


# Orders in which buffers are placed; the plan keeps whichever gives the smallest arena.
PLACEMENT_ORDERS = {
    "size": lambda b: (-b.size, b.first, b.values[0]),                         # TFLite Micro's
    "size x lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.first, b.values[0]),
    "lifetime": lambda b: (-(b.last - b.first), -b.size, b.values[0]),
    "first use": lambda b: (b.first, -b.size, b.values[0]),
}


SEARCH_MOVES = 1000


def _place(ordered: list[Buffer], best_fit: bool) -> dict[int, int]:
    """Each buffer, in the given order, at the lowest offset free over its whole lifetime
    (first fit), or in the smallest such gap (best fit)."""
    placed, offsets = [], {}
    for b in ordered:
        busy = sorted((offsets[id(p)], offsets[id(p)] + p.size) for p in placed if p.first <= b.last and b.first <= p.last)
        gaps, offset = [], 0
        for lo, hi in busy:
            if lo - offset >= b.size:
                gaps.append((lo - offset, offset))
            offset = max(offset, hi)
        gaps.append((float("inf"), offset))
        offsets[id(b)] = min(gaps)[1] if best_fit else gaps[0][1]
        placed.append(b)
    return offsets


def _search(arena: list[Buffer], lower_bound: int) -> dict[int, int]:
    """The best greedy placement over PLACEMENT_ORDERS, then improved by moving buffers in its order."""
    size = lambda offsets: max((offsets[id(b)] + b.size for b in arena), default=0)   # noqa: E731
    tried = [(sorted(arena, key=key), fit) for key in PLACEMENT_ORDERS.values() for fit in (False, True)]
    best, i = min((size(_place(o, f)), i) for i, (o, f) in enumerate(tried))
    order, fit = tried[i]
    rng = random.Random(0)                # seeded: the same model always gets the same plan
    for _ in range(SEARCH_MOVES if len(arena) > 1 else 0):
        if best <= lower_bound:
            break
        moved = list(order)
        moved.insert(rng.randrange(len(moved)), moved.pop(rng.randrange(len(moved))))
        arena_size = size(_place(moved, fit))
        if arena_size <= best:
            best, order = arena_size, moved
    return _place(order, fit)


def scratch_name(layer: str, arg: str) -> str:
    """The plan's name for a layer's scratch buffer (Kernel.scratch)."""
    return f"{layer}/scratch:{arg}"


def make_plan(graph: Graph, kernels: dict[str, Kernel]) -> Plan:
    values = graph.values
    groups = _Groups(values)
    binding = {}                                    # group root -> (kind, index)
    for i, name in enumerate(graph.inputs):
        binding[name] = ("input", i)
    for i, name in enumerate(graph.outputs):
        binding[name] = ("output", i)
    for name, v in values.items():
        if v.is_const:
            binding[name] = ("const", 0)

    def bound(name):
        return binding.get(groups.find(name))

    nbytes = {name: v.nbytes for name, v in values.items()}   # group root -> its largest member

    def join(keep, other):
        a, b = groups.find(keep), groups.find(other)
        if a != b:
            tag = binding.pop(b, None) or binding.pop(a, None)
            size = max(nbytes[a], nbytes[b])
            groups.union(a, b)
            nbytes[a] = size
            if tag:
                binding[a] = tag

    # 1. views share their input's buffer unless that would join two caller buffers
    copies = set()
    for node in graph.nodes:
        k = kernels[node.name]
        if not k.alias:
            continue
        (x,), (y,) = [v.name for v in k.inputs.values()], [v.name for v in k.outputs.values()]
        if bound(x) and bound(y) or (bound(x) or ("",))[0] == "const":
            copies.add(node.name)
        else:
            join(x, y)

    # 1b. concatenations in place: each input a slice of the output's buffer
    slices, concats = {}, set()        # value -> byte offset in its Concat's output; Concats in place
    members = {}
    for name in values:
        members.setdefault(groups.find(name), []).append(name)
    for node in graph.nodes:
        k = kernels[node.name]
        if k.template != "concat" or k.params["outer"] != 1:
            continue
        (y,) = [v.name for v in k.outputs.values()]
        parts = [(k.inputs[p["name"]].name, p["offset"]) for p in k.params["parts"]]
        names = [x for x, _ in parts]
        if bound(y) or len(set(names)) != len(names) or any(
                bound(x) or len(members[groups.find(x)]) != 1 or x in slices or off % ALIGN for x, off in parts):
            continue
        for x, off in parts:
            join(y, x)
            slices[x] = off
        members[groups.find(y)] = [y, *names]
        concats.add(node.name)

    # 2. lifetimes per group, then in-place reuse where an input dies at an elementwise op
    step_of = {node.name: s for s, node in enumerate(graph.nodes)}
    first, last = {}, {}

    def touch(name, step):
        root = groups.find(name)
        first[root] = min(first.get(root, step), step)
        last[root] = max(last.get(root, step), step)

    for s, node in enumerate(graph.nodes):
        for v in kernels[node.name].outputs.values():
            touch(v.name, s)
        for v in kernels[node.name].inputs.values():
            if v is not None:
                touch(v.name, s)
    end = len(graph.nodes)
    for name in graph.outputs:
        touch(name, end)
    for node in graph.nodes:
        k = kernels[node.name]
        if not k.inplace or len(k.outputs) != 1 or k.alias:
            continue
        (y,) = [v.name for v in k.outputs.values()]
        for arg in k.inplace:
            x = k.inputs[arg].name
            rx, ry = groups.find(x), groups.find(y)
            if rx == ry or last[rx] != step_of[node.name] or bound(x) or nbytes[rx] != nbytes[ry] \
                    or x in slices or y in slices:        # a Concat's slices stay where they are
                continue
            f, l = min(first[rx], first[ry]), max(last[rx], last[ry])
            join(y, x)
            root = groups.find(y)
            first[root], last[root] = f, l
            break

    # 3. buffers: caller's, constants, and arena ones placed greedily by size
    buffers, where = {}, {}
    for name in values:
        root = groups.find(name)
        if root not in first and not values[name].is_const:
            continue                      # no kernel reads or writes it (a value inside a fused layer)
        if root not in buffers:
            kind, index = binding.get(root, ("arena", 0))
            buffers[root] = Buffer(kind, index, size=align(nbytes[root]),
                                   first=first.get(root, 0), last=last.get(root, 0))
        buffers[root].values.append(name)
        where[name] = buffers[root]
    for s, node in enumerate(graph.nodes):            # each layer's working memory, live for that layer
        for arg, (dtype, count) in kernels[node.name].scratch.items():
            name = scratch_name(node.name, arg)
            buffers[name] = Buffer("arena", size=align(count * np.dtype(dtype).itemsize), first=s, last=s, values=[name])
            where[name] = buffers[name]
    arena = [b for b in buffers.values() if b.kind == "arena" and b.size]
    lower_bound = max((sum(b.size for b in arena if b.first <= t <= b.last) for t in range(end + 1)), default=0)
    offsets = _search(arena, lower_bound)
    for b in arena:
        b.offset = offsets[id(b)]
    arena_bytes = max((b.offset + b.size for b in arena), default=0)
    return Plan(list(buffers.values()), where, copies, slices, concats, arena_bytes, lower_bound, end)

