"""Pruning: the seed's P(x) = 1 if |x| > threshold else 0, made real.

Lossless (-O1 and up):
    remove_zero_channels: an output channel of a Conv/Gemm whose weights and bias are all zero is
    zero everywhere; if every op between it and the next Conv/Gemm keeps zeros zero (Relu, Clip
    around 0, pools, per-channel Mul, Flatten of 1x1 planes), the channel and the matching input
    channel of that consumer are removed: the same outputs, fewer MACs, smaller weights.

Lossy (opt-in):
    magnitude(threshold=T | sparsity=S, scope="global" | "layer"): weights with |w| <= T are set
    to zero (S: T is the S-quantile of |w|, over all layers or per layer);
    channels(fraction=S): in each Conv/Gemm whose channels can be removed as above, the fraction
    S of output channels with the smallest L1 norm is zeroed; remove_zero_channels then removes them.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .fold_weights import _set_inputs

# ops between a layer and its consumer that map a zero channel to a zero channel
KEEPS_ZERO = {"Relu", "LeakyRelu", "HardSwish", "Tanh", "MaxPool", "AveragePool", "GlobalAveragePool",
              "GlobalMaxPool"}
LAYERS = ("Conv", "Gemm")


def _const(g, name):
    v = g.values.get(name) if name else None
    return None if v is None or not v.is_const else v.const


def _weights(g: Graph, node: Node):
    """(W as (channels, ...), bias) of a Conv/Gemm with constant weights, channels first; or None."""
    w = _const(g, node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or node.epilogue:
        return None
    b = _const(g, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if len(node.inputs) > 2 and node.inputs[2] and b is None:
        return None
    if node.op == "Gemm":
        if node.attrs.get("transA", 0) or (b is not None and b.ndim > 1 and b.shape[0] != 1):
            return None
        w = w if node.attrs.get("transB", 0) else w.T
        b = None if b is None else np.broadcast_to(b.reshape(-1), (w.shape[0],)) * node.attrs.get("beta", 1.0)
    elif node.attrs.get("group", 1) != 1:
        return None
    return w, (np.zeros(w.shape[0], w.dtype) if b is None else b)


def _channel_path(g: Graph, node: Node, users):
    """Nodes from `node`'s output to the consumers that read its channels as inputs: (path, sinks)
    or None when a zero channel would not stay zero or its consumers cannot drop it."""
    path, sinks, frontier = [], [], [node.outputs[0]]
    while frontier:
        value = frontier.pop()
        if value in g.outputs:
            return None
        for user in users.get(value, []):
            if user.op == "Conv" and user.inputs[0] == value and user.attrs.get("group", 1) == 1 \
                    and _weights(g, user) is not None and value not in user.inputs[1:]:
                sinks.append(user)
            elif user.op == "Gemm" and user.inputs[0] == value and _weights(g, user) is not None \
                    and not user.attrs.get("transA", 0) and len(g.values[value].shape) == 2:
                sinks.append(user)
            elif user.op in KEEPS_ZERO or _keeps_zero(g, user, value):
                if len(g.values[user.outputs[0]].shape) < 2 or not all(
                        i == value or _per_channel_const(g, i, g.values[value].shape) is not None or not i
                        for i in user.inputs):
                    return None
                path.append(user)
                frontier.append(user.outputs[0])
            elif user.op in ("Flatten", "Reshape") and _flattens_channels(g, user):
                path.append(user)
                frontier.append(user.outputs[0])
            else:
                return None
    return path, sinks


def _per_channel_const(g, name, shape):
    c = _const(g, name)
    if c is None:
        return None
    full = (1,) * (len(shape) - c.ndim) + c.shape
    if len(full) != len(shape) or any(d != 1 for i, d in enumerate(full) if i != 1):
        return None
    return c


def _keeps_zero(g, node, value):
    if node.op == "Clip" and node.inputs[0] == value:
        bounds = [node.inputs[k] if len(node.inputs) > k else "" for k in (1, 2)]
        if any(name and _const(g, name) is None for name in bounds):
            return False
        lo, hi = (_const(g, name) if name else None for name in bounds)
        return (lo is None or lo <= 0) and (hi is None or hi >= 0)
    return node.op == "Mul" and len(node.inputs) == 2     # per-channel constant checked by the caller


def _flattens_channels(g, node):
    x, y = g.values[node.inputs[0]], g.values[node.outputs[0]]
    return len(x.shape) >= 2 and len(y.shape) == 2 and x.shape[0] == y.shape[0] and \
        int(np.prod(x.shape[2:])) == 1


def _resize(g: Graph, name: str, keep: np.ndarray) -> None:
    v = g.values[name]
    shape = list(v.shape)
    shape[1] = len(keep)
    g.values[name] = Value(name, tuple(shape), v.dtype, v.const)


def remove_zero_channels(graph: Graph) -> tuple[Graph, list[str]]:
    g = graph.copy()
    log = []
    for node in list(g.nodes):
        if node.op not in LAYERS:
            continue
        wb = _weights(g, node)
        if wb is None:
            continue
        w, b = wb
        dead = np.all(w.reshape(w.shape[0], -1) == 0, axis=1) & (b == 0)
        if not dead.any() or dead.all():
            continue
        found = _channel_path(g, node, g.consumers())
        if found is None:
            continue
        path, sinks = found
        keep = np.flatnonzero(~dead)
        _keep_outputs(g, node, w, b, keep)
        for p in path:
            for i in p.inputs[1:]:
                c = _per_channel_const(g, i, g.values[p.inputs[0]].shape) if i else None
                if c is not None and c.size > 1:
                    full = (1,) * (len(g.values[p.inputs[0]].shape) - c.ndim) + c.shape
                    _set_inputs(g, p, {p.inputs.index(i): np.take(c.reshape(full), keep, axis=1)})
            _resize(g, p.outputs[0], keep)
        for sink in sinks:
            _keep_inputs(g, sink, keep)
        log.append(f"removed {int(dead.sum())} zero channel(s) of {node.op} {node.name!r} "
                   f"and the matching inputs of {', '.join(repr(s.name) for s in sinks)}")
    return g, log


def _keep_outputs(g, node, w, b, keep):
    if node.op == "Conv":
        _set_inputs(g, node, {1: w[keep], 2: b[keep]})
    else:
        node.attrs.update(transB=1, beta=1.0)
        _set_inputs(g, node, {1: w[keep], 2: b[keep].astype(w.dtype)})
    _resize(g, node.outputs[0], keep)


def _keep_inputs(g, sink, keep):
    w = _const(g, sink.inputs[1])
    if sink.op == "Conv":
        _set_inputs(g, sink, {1: w[:, keep]})
    elif sink.attrs.get("transB", 0):
        _set_inputs(g, sink, {1: w[:, keep]})
    else:
        _set_inputs(g, sink, {1: w[keep]})


# ---- lossy ------------------------------------------------------------------------------------------

def magnitude(graph: Graph, threshold: float | None = None, sparsity: float | None = None,
              scope: str = "global") -> tuple[Graph, list[str]]:
    g = graph.copy()
    layers = [n for n in g.nodes if n.op in LAYERS and _const(g, n.inputs[1]) is not None]
    weights = {n.name: _const(g, n.inputs[1]) for n in layers}
    if sparsity is not None and scope == "global" and layers:
        threshold = float(np.quantile(np.abs(np.concatenate([w.reshape(-1) for w in weights.values()])), sparsity))
    log, total, zeros = [], 0, 0
    for n in layers:
        w = weights[n.name]
        t = float(np.quantile(np.abs(w), sparsity)) if sparsity is not None and scope == "layer" else threshold
        pruned = np.where(np.abs(w) <= t, np.zeros_like(w), w)
        _set_inputs(g, n, {1: pruned})
        total += w.size
        zeros += int((pruned == 0).sum())
    log.append(f"magnitude pruning: {zeros} of {total} weights are zero ({100 * zeros / max(total, 1):.1f}%)")
    return g, log


def channels(graph: Graph, fraction: float, calibration=None) -> tuple[Graph, list[str]]:
    """Zero the `fraction` of output channels with the smallest L1 norm in every layer that can lose
    them. With calibration data, each layer that reads the removed channels is refitted to the
    remaining ones by least squares on its calibration inputs, so that its output changes as little
    as possible (the reconstruction step of ThiNet / He et al. 2017, no retraining); where its input
    is not available, its bias takes the removed channels' mean contribution instead."""
    g = graph.copy()
    log = []
    users = g.consumers()
    for node in list(g.nodes):
        if node.op not in LAYERS:
            continue
        wb = _weights(g, node)
        found = None if wb is None else _channel_path(g, node, users)
        if found is None:
            continue
        w, b = wb
        count = int(fraction * w.shape[0])
        if count < 1 or count >= w.shape[0]:
            continue
        norms = np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
        drop = np.sort(np.argsort(norms, kind="stable")[:count])
        w2, b2 = w.copy(), b.copy()
        w2[drop] = 0
        b2[drop] = 0
        _keep_outputs(g, node, w2, b2, np.arange(w.shape[0]))
        how = {s.name: _refit(g, s, drop, calibration) for s in found[1]} if calibration is not None else {}
        done = [f"{name!r} ({what})" for name, what in how.items() if what]
        log.append(f"channel pruning: zeroed {count} of {w.shape[0]} channels of {node.op} {node.name!r}"
                   + (f"; refitted {', '.join(done)}" if done else ""))
    return g, log


MAX_ROWS = 1 << 16     # calibration rows used to refit one layer (a deterministic subsample beyond)


def _refit(g: Graph, sink: Node, drop: np.ndarray, calibration) -> str:
    """Refit `sink` without its input channels `drop`: least squares on its calibration inputs, or
    (without them) mean replacement. Returns what was done, "" for nothing."""
    x = calibration.activations(sink.inputs[0])
    w, bias = _weights(g, sink)
    if sink.op == "Gemm":
        w = w * sink.attrs.get("alpha", 1.0)
    if x is None or x.shape[1] != w.shape[1]:
        stats = calibration.get(sink.inputs[0])
        if stats is None or stats.mean.shape[0] != w.shape[1]:
            return ""
        flat = w.astype(np.float64).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
        _store(g, sink, w, bias + flat[:, drop] @ stats.mean[drop])
        return "mean replacement"
    feats = _features(sink, x, w.shape[2:])
    per = int(np.prod(w.shape[2:], dtype=np.int64))
    keep = np.ones(w.shape[1], bool)
    keep[drop] = False
    cols = np.append(np.repeat(keep, per), True)                    # kept features and the bias column
    xa = np.hstack([feats, np.ones((len(feats), 1))])
    m = xa.T @ xa / len(xa)                                         # second moments of [x, 1]
    full = np.hstack([w.reshape(w.shape[0], -1), bias.reshape(-1, 1)]).astype(np.float64)
    a = m[np.ix_(cols, cols)]
    a += np.eye(len(a)) * (1e-6 * np.trace(a) / len(a))             # ridge: keeps collinear inputs stable
    fitted = np.linalg.solve(a, m[cols] @ full.T).T                 # (outputs, kept features + 1)
    new = np.zeros_like(full)
    new[:, cols] = fitted
    _store(g, sink, new[:, :-1].reshape(w.shape), new[:, -1])
    return "least squares"


def _features(sink: Node, x: np.ndarray, kernel) -> np.ndarray:
    """The vectors `sink` multiplies by its weight rows: x's rows (Gemm) or its convolution patches."""
    x = x.astype(np.float64)
    if sink.op == "Gemm":
        rows = x.reshape(len(x), -1)
    else:
        from ..ops.conv import resolve_pads
        n = len(kernel)
        strides = sink.attrs.get("strides") or [1] * n
        dil = sink.attrs.get("dilations") or [1] * n
        begin, end = resolve_pads(sink.attrs.get("auto_pad", "NOTSET"), x.shape[2:], kernel, strides, dil,
                                  sink.attrs.get("pads"))
        x = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end)))
        span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
        win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + n)))
        win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
                  + tuple(slice(None, None, d) for d in dil)]
        # (batch, C, out..., k...) -> (batch, out..., C, k...) -> one row per output position
        win = np.moveaxis(win, 1, 1 + n)
        rows = win.reshape(-1, int(np.prod(win.shape[1 + n:])))
    step = -(-len(rows) // MAX_ROWS)
    return rows[::step]


def _store(g: Graph, sink: Node, w: np.ndarray, bias: np.ndarray) -> None:
    """New weights (channels first, Gemm rows already scaled by alpha) and bias for `sink`."""
    if sink.op == "Gemm":
        sink.attrs.update(alpha=1.0, beta=1.0, transB=1)
    dtype = _const(g, sink.inputs[1]).dtype
    _set_inputs(g, sink, {1: w.astype(dtype), 2: np.asarray(bias, dtype).reshape(-1)})
