"""The IR: a Graph of Nodes over Values. Plain data; passes and stages live elsewhere.

Every Value has a static shape and a numpy dtype. A Value with `const` set is a
compile-time constant (a weight); all others are computed at run time. ONNX
protobuf objects never reach past the frontend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Value:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    const: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_const(self) -> bool:
        return self.const is not None


ACC = "@acc"   # how epilogue steps name the value their anchor computed


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]            # value names; "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: list[tuple[str, str]] = field(default_factory=list)   # (op, name) of the ONNX nodes it stands for
    epilogue: list["Node"] = field(default_factory=list)   # elementwise steps fused into the store

    def __post_init__(self):
        if not self.sources:
            self.sources = [(self.op, self.name)]

    def copy(self) -> "Node":
        return Node(self.op, self.name, list(self.inputs), list(self.outputs), dict(self.attrs),
                    list(self.sources), [s.copy() for s in self.epilogue])


@dataclass
class Graph:
    name: str
    values: dict[str, Value]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    opset: int
    doc: dict[str, Any] = field(default_factory=dict)   # provenance for the banner
    # float tensor or constant name -> the quant.QParams an imported QDQ model stored it with
    quant: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Value | None:
        return self.values[name] if name else None

    def consumers(self) -> dict[str, list[Node]]:
        """Value name -> the nodes that read it (epilogue operands included)."""
        users: dict[str, list[Node]] = {n: [] for n in self.values}
        for node in self.nodes:
            for name in reads(node):
                users[name].append(node)
        return users

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs if out}

    def copy(self) -> "Graph":
        return Graph(self.name, dict(self.values), [n.copy() for n in self.nodes],
                     list(self.inputs), list(self.outputs), self.opset, dict(self.doc), dict(self.quant))


def reads(node: Node) -> list[str]:
    """Every value a node reads from outside itself: its inputs and its epilogue's operands."""
    inside = set(node.outputs) | {s.outputs[0] for s in node.epilogue} | {ACC}
    names = [i for i in node.inputs if i]
    for step in node.epilogue:
        names += [i for i in step.inputs if i and i not in inside]
    return list(dict.fromkeys(names))
