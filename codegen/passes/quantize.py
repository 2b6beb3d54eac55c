"""int8: a float graph whose tensors have quantisation parameters becomes an integer graph.

The parameters come from calibration (`--int8`: activations asymmetric per tensor from their
calibrated range, weights symmetric per output channel) or from the model itself (an imported
QDQ model: frontend.absorb_qdq recorded them in `graph.quant`). Each float node becomes integer
nodes of ops/qint.py where it can:

    Conv / Gemm / MatMul (constant weights)   -> KilnQConv / KilnQMatMul, a following Relu or Clip
                                                  folded into the output clamp
    Add, Mul                                   -> KilnQAdd, KilnQMul (a following Relu / Clip too)
    MatMul of two run-time tensors             -> KilnQBatchMatMul (attention)
    AveragePool, GlobalAveragePool, ReduceMean -> KilnQAvgPool (ReduceMean: over the spatial axes)
    Softmax                                    -> KilnQSoftmax (exp by table, one division per element)
    Relu, Clip, Sigmoid, Tanh, HardSwish, ...  -> KilnLUT (the function tabulated over 256 inputs; also
      Div, Sub, Pow by a constant scalar)
    Concat                                     -> Concat, with KilnRequant on inputs of other scales
    MaxPool, Reshape, Transpose, Gather, ...   -> the same op on int8 (parameters pass through)

and stays float otherwise. An integer tensor keeps its float name with the suffix "__q";
QuantizeLinear / DequantizeLinear are inserted only where a float tensor meets an integer layer
or the other way round (at the model's inputs and outputs, and around layers that stay float,
which the log names with the reason).
"""
from __future__ import annotations

import numpy as np

from .. import onnx_bridge, quant
from ..ir import Graph, Node, Value
from ..quant import QParams

VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "MaxPool", "GlobalMaxPool",
         "DepthToSpace", "SpaceToDepth", "Slice", "Split", "Gather"}
TABULATED = {"Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu",
             "Gelu", "Softplus", "Softsign", "Mish", "Erf", "Exp", "Abs", "Neg", "ThresholdedRelu", "Swish",
             "Div", "Sub", "Pow"}     # the last with a constant scalar second operand: a function of one input
CLAMPS = {"Relu", "Clip"}


class _Rewriter:
    def __init__(self, graph: Graph, qparams: dict[str, QParams], weights: dict[str, QParams],
                 keep_float: dict[str, str]):
        self.g = graph
        self.keep_float = keep_float    # node name -> why it stays float though it has an integer kernel
        self.origin: dict[str, str] = {}        # emitted node -> the node it computes (a layer made integer)
        self.float_nodes: set[str] = set()      # emitted nodes that stay float
        self.qparams = qparams          # float tensor name -> its activation parameters
        self.weights = weights          # constant name -> the parameters it was quantised with (imported)
        self.nodes: list[Node] = []
        self.int_of: dict[str, str] = {}         # float name -> its integer tensor
        self.qp: dict[str, QParams] = {}         # integer tensor -> its parameters
        self.float_ready = set(graph.inputs) | {n for n, v in graph.values.items() if v.is_const}
        self.users = graph.consumers()
        self.names: set[str] = set()            # node names emitted so far
        self.done = 0

    # ---- tensors -----------------------------------------------------------------------------------
    def _unique(self, name: str, taken=None) -> str:
        """`name`, or with a numeric suffix where a value (or a node, `taken`) has it already."""
        taken = self.g.values if taken is None else taken
        base, k = name, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        return name

    def const(self, name: str, arr: np.ndarray) -> str:
        name = self._unique(name)
        arr = np.asarray(arr)
        self.g.values[name] = Value(name, tuple(arr.shape), arr.dtype, arr)
        return name

    def new_int(self, float_name: str, qp: QParams) -> str:
        name = self._unique(f"{float_name}__q")
        self.g.values[name] = Value(name, self.g.values[float_name].shape, qp.dtype)
        self.int_of[float_name] = name
        self.qp[name] = qp
        return name

    def as_int(self, name: str) -> str | None:
        """The integer tensor holding `name`, quantising it (a QuantizeLinear) where it is float."""
        if name in self.int_of:
            return self.int_of[name]
        v = self.g.values[name]
        if np.dtype(v.dtype) != np.float32:
            return None
        qp = self.qparams.get(name)
        if v.is_const:
            qp = qp or quant.activation_qparams(v.const.min(initial=0), v.const.max(initial=0))
            q = self.const(f"{name}__q", qp.quantize(v.const))
            self.int_of[name], self.qp[q] = q, qp
            return q
        if qp is None:
            return None
        q = self.new_int(name, qp)
        self.emit("QuantizeLinear", f"quantize_{name}", [self.as_float(name), self.const(f"{name}__scale", np.float32(qp.s)),
                                                       self.const(f"{name}__zp", np.array(qp.zp, qp.dtype))], [q])
        return q

    def as_float(self, name: str) -> str:
        """`name` as a float tensor, dequantising its integer tensor where only that exists."""
        if name in self.float_ready or name not in self.int_of:
            return name
        q = self.int_of[name]
        qp = self.qp[q]
        self.emit("DequantizeLinear", f"dequantize_{name}", [q, self.const(f"{name}__scale", np.float32(qp.s)),
                                                           self.const(f"{name}__zp", np.array(qp.zp, qp.dtype))],
                  [name])
        return name

    def emit(self, op: str, name: str, inputs, outputs, attrs=None, sources=None) -> Node:
        name = self._unique(name, self.names)
        self.names.add(name)
        node = Node(op, name, list(inputs), list(outputs), dict(attrs or {}))
        if sources:
            node.sources = list(sources)
        self.nodes.append(node)
        self.float_ready |= {o for o in outputs if o in self.g.values and np.dtype(self.g.values[o].dtype) == np.float32
                             and o not in self.int_of.values()}
        return node

    # ---- the output clamp: a Relu / Clip that follows an integer layer folds into it ------------
    def clamp_after(self, node: Node):
        """(the name the layer's output takes, nodes absorbed, Relu/Clip bounds in float)."""
        out = node.outputs[0]
        users = self.users.get(out, [])
        # an imported model that quantises the layer's output itself rounds there: so must we
        if len(users) != 1 or out in self.g.outputs or users[0].op not in CLAMPS or out in self.weights:
            return out, [], (None, None)
        act = users[0]
        lo, hi = (0.0, None) if act.op == "Relu" else self._clip_bounds(act)
        if act.op == "Clip" and lo is None and hi is None:
            return out, [], (None, None)
        if act.outputs[0] not in self.qparams:
            return out, [], (None, None)
        return act.outputs[0], [act], (lo, hi)

    def _clip_bounds(self, act: Node):
        bounds = []
        for i in (1, 2):
            name = act.inputs[i] if len(act.inputs) > i else ""
            v = self.g.value(name)
            if name and (v is None or not v.is_const):
                return None, None
            bounds.append(float(v.const) if name else None)
        return tuple(bounds)

    @staticmethod
    def clamp_range(qp: QParams, lo: float | None, hi: float | None) -> tuple[int, int]:
        qlo, qhi = qp.qmin, qp.qmax
        if lo is not None:
            qlo = max(qlo, int(np.clip(qp.zp + np.rint(lo / qp.s), qp.qmin, qp.qmax)))
        if hi is not None:
            qhi = min(qhi, int(np.clip(qp.zp + np.rint(hi / qp.s), qp.qmin, qp.qmax)))
        return qlo, qhi

    # ---- the rules -----------------------------------------------------------------------------------
    def rewrite(self, node: Node) -> str | None:
        """Emit the integer form of `node`; None when done, else why it stays float."""
        if any(o and np.dtype(self.g.values[o].dtype) != np.float32 for o in node.outputs):
            return "it has outputs that are not float"
        if node.op in ("Conv", "Gemm", "MatMul"):
            return self.weighted(node)
        if node.op in ("Add", "Mul"):
            return self.binary(node)
        if node.op in ("AveragePool", "GlobalAveragePool") or node.op == "ReduceMean" and self._spatial_mean(node):
            return self.avg_pool(node)
        if node.op == "Concat":
            return self.concat(node)
        if node.op == "Softmax":
            return self.softmax(node)
        if node.op in VIEWS:
            return self.view(node)
        if node.op in TABULATED:
            return self.table(node)
        return f"{node.op} has no integer kernel"

    def _input(self, name: str):
        q = self.as_int(name)
        return (q, self.qp[q]) if q is not None else (None, None)

    def _output(self, node: Node):
        out, absorbed, bounds = self.clamp_after(node)
        qp = self.qparams.get(out)
        if qp is None:
            return None
        return out, absorbed, qp, self.clamp_range(qp, *bounds)

    def weighted(self, node: Node) -> str | None:
        g = self.g
        w = g.value(node.inputs[1])
        b = g.value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if node.op == "MatMul" and w is not None and not w.is_const:
            return self.batch_matmul(node)
        if w is None or not w.is_const or (b is not None and not b.is_const):
            return "its weights are not constants"
        x = g.values[node.inputs[0]]
        if node.op == "Conv":
            if len(x.shape) != 4 or node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
                return "only 2-D convolutions with explicit pads"
            weights, axis = w.const, 0
        elif node.op == "Gemm":
            a = node.attrs
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                return "Gemm with transA, alpha or beta"
            weights, axis = (w.const.T if a.get("transB", 0) else w.const), 1
        else:
            if len(w.shape) != 2:
                return "MatMul with a weight of rank other than 2"
            weights, axis = w.const, 1
        out = self._output(node)
        xq, xqp = self._input(node.inputs[0])
        if out is None or xq is None:
            return "an input or output has no quantisation parameters"
        out_name, absorbed, yqp, (lo, hi) = out
        wqp = self.weights.get(node.inputs[1])
        if wqp is None or np.any(wqp.zero_point != 0) or wqp.dtype != np.int8:
            wqp = quant.weight_qparams(weights, axis)
        channels = weights.shape[axis]
        wscale = np.broadcast_to(wqp.scale, (channels,))
        wq = QParams(wscale, np.zeros(channels, np.int64), np.int8, axis).quantize(weights)
        inputs = [xq, self.const(f"{node.inputs[1]}__q", wq)]
        if b is not None:
            bias = np.broadcast_to(b.const.reshape(-1), (channels,)).astype(np.float64)
            bq = np.clip(np.rint(bias / (xqp.s * wscale)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            inputs.append(self.const(f"{node.inputs[2]}__q", bq))
        scale = [float(v) for v in xqp.s * wscale / yqp.s]
        yq = self.new_int(out_name, yqp)
        sources = node.sources + [s for a in absorbed for s in a.sources]
        if node.op == "Conv":
            k = len(x.shape) - 2
            attrs = dict(pads=list(node.attrs.get("pads", [0] * 2 * k)), strides=list(node.attrs.get("strides", [1] * k)),
                         dilations=list(node.attrs.get("dilations", [1] * k)), group=node.attrs.get("group", 1),
                         x_zp=xqp.zp, y_zp=yqp.zp, lo=lo, hi=hi, scale=scale)
            self.emit("KilnQConv", node.name, inputs, [yq], attrs, sources)
        else:
            self.emit("KilnQMatMul", node.name, inputs, [yq],
                      dict(a_zp=xqp.zp, y_zp=yqp.zp, lo=lo, hi=hi, scale=scale), sources)
        self.absorbed |= {a.name for a in absorbed}
        return None

    def _two_operands(self, node: Node):
        """((A int, its parameters), (B int, its parameters), the output) for a node of two float
        operands, or why it stays float."""
        if len(node.inputs) != 2 or any(np.dtype(self.g.values[i].dtype) != np.float32 for i in node.inputs):
            return "not two float operands"
        out = self._output(node)
        a, b = self._input(node.inputs[0]), self._input(node.inputs[1])
        if out is None or a[0] is None or b[0] is None:
            return "an input or output has no quantisation parameters"
        return a, b, out

    def batch_matmul(self, node: Node) -> str | None:
        """MatMul of two run-time tensors: per-tensor parameters on both sides."""
        pair = self._two_operands(node)
        if isinstance(pair, str):
            return pair
        (aq, aqp), (bq, bqp), (out_name, absorbed, yqp, (lo, hi)) = pair
        yq = self.new_int(out_name, yqp)
        self.emit("KilnQBatchMatMul", node.name, [aq, bq], [yq],
                  dict(a_zp=aqp.zp, b_zp=bqp.zp, y_zp=yqp.zp, lo=lo, hi=hi, scale=[aqp.s * bqp.s / yqp.s]),
                  node.sources + [s for a in absorbed for s in a.sources])
        self.absorbed |= {a.name for a in absorbed}
        return None

    def binary(self, node: Node) -> str | None:
        pair = self._two_operands(node)
        if isinstance(pair, str):
            return pair
        (aq, aqp), (bq, bqp), (out_name, absorbed, yqp, (lo, hi)) = pair
        common = dict(a_zp=aqp.zp, b_zp=bqp.zp, y_zp=yqp.zp, lo=lo, hi=hi, to=yqp.dtype.name)
        if node.op == "Add":
            attrs = dict(common, scale=[aqp.s / yqp.s, bqp.s / yqp.s])
        else:
            attrs = dict(common, scale=[aqp.s * bqp.s / yqp.s])
        yq = self.new_int(out_name, yqp)
        self.emit(f"KilnQ{node.op}", node.name, [aq, bq], [yq], attrs, node.sources + [s for a in absorbed for s in a.sources])
        self.absorbed |= {a.name for a in absorbed}
        return None

    def _spatial_mean(self, node: Node) -> bool:
        """ReduceMean over every axis after the channels: a global average pool (and a reshape)."""
        x = self.g.values[node.inputs[0]]
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            v = self.g.values[node.inputs[1]]
            axes = v.const.tolist() if v.is_const else None
        rank = len(x.shape)
        return axes is not None and rank >= 3 and sorted(a % rank for a in axes) == list(range(2, rank))

    def avg_pool(self, node: Node) -> str | None:
        x = self.g.values[node.inputs[0]]
        n = len(x.shape) - 2
        if node.op in ("GlobalAveragePool", "ReduceMean"):
            kernel, strides, pads = list(x.shape[2:]), [1] * n, [0] * 2 * n
        else:
            a = node.attrs
            if a.get("auto_pad", "NOTSET") not in ("NOTSET", "") or any(d != 1 for d in a.get("dilations", [1])) \
                    or (a.get("ceil_mode", 0) and a.get("count_include_pad", 0)):
                return "auto_pad, dilations, or ceil_mode with count_include_pad"
            kernel, strides, pads = list(a["kernel_shape"]), list(a.get("strides", [1] * n)), list(a.get("pads", [0] * 2 * n))
            y = self.g.values[node.outputs[0]].shape[2:]     # ceil_mode: windows past the end hold fewer
            pads = pads[:n] + [max(pads[n + d], (y[d] - 1) * strides[d] + kernel[d] - x.shape[2 + d] - pads[d])
                               for d in range(n)]
        counted = int(any(pads) and not node.attrs.get("count_include_pad", 0))
        out = self._output(node)
        xq, xqp = self._input(node.inputs[0])
        if out is None or xq is None:
            return "an input or output has no quantisation parameters"
        out_name, absorbed, yqp, (lo, hi) = out
        yq = self.new_int(out_name, yqp)
        pooled_shape = tuple(x.shape[:2]) + (1,) * n
        pooled = yq
        if node.op == "ReduceMean" and tuple(self.g.values[out_name].shape) != pooled_shape:   # keepdims=0
            pooled = self._unique(f"{yq}__pooled")
            self.g.values[pooled] = Value(pooled, pooled_shape, yqp.dtype)
        self.emit("KilnQAvgPool", node.name, [xq], [pooled],
                  dict(x_zp=xqp.zp, y_zp=yqp.zp, lo=lo, hi=hi, scale=xqp.s / yqp.s, counted=counted,
                       kernel_shape=kernel, strides=strides, pads=pads),
                  node.sources + [s for a in absorbed for s in a.sources])
        if pooled != yq:
            shape = self.const(f"{out_name}__shape", np.array(self.g.values[out_name].shape, np.int64))
            self.emit("Reshape", f"{node.name}_squeeze", [pooled, shape], [yq])
        self.absorbed |= {a.name for a in absorbed}
        return None

    def requantised(self, name: str, target: QParams) -> str | None:
        q, qp = self._input(name)
        if q is None or qp.same(target):
            return q
        out = self._unique(f"{name}__rq")
        self.g.values[out] = Value(out, self.g.values[name].shape, target.dtype)
        self.qp[out] = target
        self.emit("KilnRequant", f"requantize_{name}", [q], [out],
                  dict(x_zp=qp.zp, y_zp=target.zp, lo=target.qmin, hi=target.qmax, scale=[qp.s / target.s],
                       to=target.dtype.name))
        return out

    def concat(self, node: Node) -> str | None:
        yqp = self.qparams.get(node.outputs[0])
        if yqp is None or any(self.as_int(i) is None for i in node.inputs):
            return "an input or output has no quantisation parameters"
        inputs = [self.requantised(i, yqp) for i in node.inputs]
        yq = self.new_int(node.outputs[0], yqp)
        self.emit("Concat", node.name, inputs, [yq], node.attrs, node.sources)
        return None

    def softmax(self, node: Node) -> str | None:
        xq, xqp = self._input(node.inputs[0])
        yqp = self.qparams.get(node.outputs[0])
        if xq is None or yqp is None:
            return "an input or output has no quantisation parameters"
        yq = self.new_int(node.outputs[0], yqp)
        self.emit("KilnQSoftmax", node.name, [xq], [yq],
                  dict(axis=node.attrs.get("axis", -1), x_scale=xqp.s, y_scale=yqp.s, y_zp=yqp.zp, lo=yqp.qmin,
                       hi=yqp.qmax), node.sources)
        return None

    def view(self, node: Node) -> str | None:
        """Ops that only move elements: the integer tensor goes through, with its parameters."""
        xq, xqp = self._input(node.inputs[0])
        if xq is None:
            return "its input has no quantisation parameters"
        outs = [self.new_int(o, xqp) if o else "" for o in node.outputs]
        self.emit(node.op, node.name, [xq] + node.inputs[1:], outs, node.attrs, node.sources)
        return None

    def table(self, node: Node) -> str | None:
        if any(i and not (self.g.values[i].is_const and self.g.values[i].const.size == 1) for i in node.inputs[1:]):
            return "an operand after the first that is not a constant scalar"
        if self.g.values[node.outputs[0]].shape != self.g.values[node.inputs[0]].shape:
            return "its output has another shape than its input"
        xq, xqp = self._input(node.inputs[0])
        yqp = self.qparams.get(node.outputs[0])
        if xq is None or yqp is None:
            return "an input or output has no quantisation parameters"
        codes = np.arange(xqp.qmin, xqp.qmax + 1)
        probe = self.g.copy()
        probe.values[node.inputs[0]] = Value(node.inputs[0], (256,), np.dtype(np.float32), xqp.dequantize(codes))
        probe.values[node.outputs[0]] = Value(node.outputs[0], (256,), np.dtype(np.float32))
        (y,) = onnx_bridge.evaluate(probe, node)[:1]
        yq = self.new_int(node.outputs[0], yqp)
        self.emit("KilnLUT", node.name, [xq], [yq], dict(table=yqp.quantize(y).tolist()), node.sources)
        return None

    def run(self) -> list[str]:
        self.absorbed: set[str] = set()
        log = []
        for node in self.g.nodes:
            if node.name in self.absorbed:
                continue
            state = (len(self.nodes), dict(self.int_of), dict(self.qp), set(self.float_ready))
            why = self.keep_float.get(node.name) or self.rewrite(node)
            if why is None:
                self.done += 1
                self.origin.update((n.name, node.name) for n in self.nodes[state[0]:])
                continue
            # a rule that gave up half way leaves nothing behind
            before, self.int_of, self.qp, self.float_ready = state
            del self.nodes[before:]
            float_node = node.copy()
            float_node.name = self._unique(node.name, self.names)
            self.names.add(float_node.name)
            float_node.inputs = [self.as_float(i) if i else i for i in node.inputs]
            self.nodes.append(float_node)
            self.float_nodes.add(float_node.name)
            self.float_ready |= set(node.outputs)
            log.append(f"kept float: {node.name!r} ({node.op}): {why}")
        for name in self.g.outputs:
            self.as_float(name)
        return log


MACS_PER_CONVERSION = 8     # an island of integer layers next to float layers must compute this much per
                            # element it quantises from them or dequantises for them, else it stays float


def _macs(g: Graph, node: Node) -> int:
    """Multiply-accumulates of an integer layer (0 for elementwise ops, tables and views)."""
    out = int(np.prod(g.values[node.outputs[0]].shape, dtype=np.int64))
    if node.op == "KilnQConv":
        return out * int(np.prod(g.values[node.inputs[1]].shape[1:], dtype=np.int64))
    if node.op in ("KilnQMatMul", "KilnQBatchMatMul"):
        return out * g.values[node.inputs[0]].shape[-1]
    return 0


def _conversion_islands(g: Graph, r: _Rewriter) -> dict[str, str]:
    """Connected integer layers ("islands") next to layers that stay float, which compute fewer than
    MACS_PER_CONVERSION multiply-accumulates per element converted between them and those float layers
    (a QuantizeLinear of a float layer's output, a DequantizeLinear for a float layer's input; the
    model's inputs and outputs are converted anyway): {the island's layers: why they stay float}."""
    layers = [n for n in g.nodes if n.name in r.origin and n.op not in ("QuantizeLinear", "DequantizeLinear")]
    island = {n.name: n.name for n in layers}

    def root(x):
        while island[x] != x:
            island[x] = island[island[x]]
            x = island[x]
        return x
    producer = {o: n for n in g.nodes for o in n.outputs}
    for n in layers:
        for i in n.inputs:
            p = producer.get(i)
            if p is not None and p.name in island:
                island[root(n.name)] = root(p.name)
    floats = {o for n in g.nodes if n.name in r.float_nodes for o in n.outputs}
    float_inputs = {i for n in g.nodes if n.name in r.float_nodes for i in n.inputs}
    converted: dict[str, int] = {}
    for n in g.nodes:
        size = int(np.prod(g.values[n.outputs[0]].shape, dtype=np.int64))
        near = [producer.get(n.inputs[0])] if n.op == "DequantizeLinear" and n.outputs[0] in float_inputs else \
            [u for u in g.nodes if n.outputs[0] in u.inputs] if n.op == "QuantizeLinear" and n.inputs[0] in floats else []
        for m in {root(u.name) for u in near if u is not None and u.name in island}:
            converted[m] = converted.get(m, 0) + size
    macs: dict[str, int] = {}
    for n in layers:
        macs[root(n.name)] = macs.get(root(n.name), 0) + _macs(g, n)
    return {r.origin[n.name]: f"in int8 it would only add conversions ({macs[root(n.name)]} MACs in its island of "
                              f"integer layers for {converted[root(n.name)]} elements converted to or from float layers)"
            for n in layers if macs[root(n.name)] < MACS_PER_CONVERSION * converted.get(root(n.name), 0)}


def quantize(graph: Graph, qparams: dict[str, QParams], weights: dict[str, QParams] | None = None):
    """The integer graph, and a log: how many layers became integer, and each one kept float. Islands
    of integer layers that would mostly convert to and from float layers (_conversion_islands) are
    kept float too, until none is left (keeping one float can leave its neighbours such an island);
    not in an imported model (`weights` given), whose quantisation points are its own."""
    keep_float: dict[str, str] = {}
    while True:
        g = graph.copy()
        r = _Rewriter(g, qparams, weights or {}, keep_float)
        kept = r.run()
        g.nodes = r.nodes
        more = {} if weights else _conversion_islands(g, r)
        if not more:
            break
        keep_float.update(more)
    from .cleanup import cleanup
    g, _ = cleanup(g)
    return g, [f"{r.done} node(s) now compute in int8, {len(kept)} stay float"] + kept
