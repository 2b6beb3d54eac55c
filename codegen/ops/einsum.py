"""Einsum, any equation numpy accepts with letters and one ellipsis per term: transposes, sums,
diagonals, inner/outer products, (batched) matrix products and broadcasting over the ellipsis.

Each output element is one loop nest over the summed labels: a product of the operands read at
strides derived from the equation (a label repeated within a term reads the diagonal)."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, op, require_dtype
from .layout import contiguous_strides

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _labels(term: str, rank: int, ellipsis: list[str]) -> list[str]:
    """A term's labels, one per dim, the ellipsis replaced by the trailing labels of `ellipsis`."""
    if term.count("...") > 1:
        raise Unsupported("more than one ellipsis in a term")
    if "..." in term:
        head, tail = term.split("...")
        e = rank - len(head) - len(tail)
        if e < 0 or e > len(ellipsis):
            raise Unsupported("ellipsis does not fit the operand's rank")
        labels = list(head) + ellipsis[len(ellipsis) - e:] + list(tail)
    else:
        labels = list(term)
    if not all(c.isalpha() for c in labels if not c.startswith("...")) or len(labels) != rank:
        raise Unsupported(f"term {term!r} does not fit an operand of rank {rank}")
    return labels


@op("Einsum")
def einsum(outs, *Inputs, equation):
    (Y,) = outs
    require_dtype(Y, *Inputs, dtypes=FLOATS)
    if not Inputs or any(v.dtype != Y.dtype for v in Inputs):
        raise Unsupported("operands of different dtypes")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(Inputs):
        raise Unsupported(f"the equation names {len(terms)} operands, {len(Inputs)} given")
    e_rank = max(len(v.shape) - len(t.replace("...", "")) for t, v in zip(terms, Inputs) if "..." in t) \
        if "..." in lhs else 0
    ellipsis = [f"...{k}" for k in range(max(e_rank, 0))]
    labels = [_labels(t, len(v.shape), ellipsis) for t, v in zip(terms, Inputs)]
    sizes: dict[str, int] = {}
    for ls, v in zip(labels, Inputs):
        for label, dim in zip(ls, v.shape):
            old = sizes.get(label)
            if label.startswith("...") and old is not None and 1 in (old, dim):
                sizes[label] = max(old, dim)          # the ellipsis broadcasts
            elif old is not None and old != dim:
                raise Unsupported(f"label {label!r} has sizes {old} and {dim}")
            else:
                sizes[label] = dim
    if arrow:
        out = _labels(rhs, len(Y.shape), ellipsis) if "..." in rhs or len(rhs) == len(Y.shape) else None
        if out is None or len(set(out)) != len(out) or any(label not in sizes for label in out):
            raise Unsupported(f"output term {rhs!r} not supported")
    else:
        once = sorted(c for c in sizes if not c.startswith("...") and sum(ls.count(c) for ls in labels) == 1)
        out = ellipsis + once
    if tuple(sizes[label] for label in out) != tuple(Y.shape):
        raise Unsupported(f"output shape {Y.shape} does not match the equation")
    summed = [label for label in sizes if label not in out]
    inputs = {f"X{k}": v for k, v in enumerate(Inputs)}
    if any(sizes[label] == 0 for label in summed):
        raise Unsupported("sums over an empty axis")
    loop = {label: f"i{k}" for k, label in enumerate(out)} | {label: f"r{k}" for k, label in enumerate(summed)}
    reads = []
    for (name, v), ls in zip(inputs.items(), labels):
        strides = {}
        for label, dim, s in zip(ls, v.shape, contiguous_strides(v.shape)):
            if dim != 1:           # a broadcast dim (size 1) stays at index 0
                strides[label] = strides.get(label, 0) + s
        index = " + ".join(f"{loop[label]} * {s}" for label, s in strides.items()) or "0"
        reads.append(f"{name}[{index}]")
    return Kernel("einsum", inputs, {"Y": Y},
                  params=dict(out=[(loop[label], sizes[label]) for label in out],
                              summed=[(loop[label], sizes[label]) for label in summed],
                              product=" * ".join(reads), ctype=c_type(Y)),
                  macs=Y.size * int(np.prod([sizes[label] for label in summed], dtype=np.int64)),
                  math=f"Y = einsum({equation!r})")
