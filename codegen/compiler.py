"""The pipeline in one place: frontend -> passes -> lower -> plan -> emit, and the result object."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import build as build_mod
from . import emit as emit_mod
from . import frontend, ops, passes, plan as plan_mod, tune as tune_mod
from .errors import KilnError, LimitError
from .ir import Graph
from .names import c_identifier
from .runtime import Runner

# per backend, the tactics its layers take where a node has several (the first one it has; else its default):
# the CUDA kernels read the weights in their ONNX layout, which the generic C kernels use too
BACKEND_TACTICS = {"c": (), "cuda": ("depthwise", "generic")}
# memory="lean" (the default for Cortex-M targets): each layer takes its tactic that needs the least working
# memory (Tactics.lean) where the default copies bands of padded input into the arena (faster with vectors)
MEMORY = ("fast", "lean")

INT8_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class CompiledModel:
    graph: Graph
    kernels: dict
    plan: plan_mod.Plan
    sources: emit_mod.Sources
    options: dict = field(default_factory=dict)
    passes: list = field(default_factory=list)     # per pass: nodes before/after and what it did
    float32: dict | None = None     # an int8 model: the same model's sizes compiled in float32
    tactic_ms: dict = field(default_factory=dict)  # --tune's timings: {layer: {tactic: ms}}

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def report(self) -> dict:
        g, plan = self.graph, self.plan
        layers = []
        for step, node in enumerate(g.nodes):
            k = self.kernels[node.name]
            outs = list(k.outputs.values())
            layers.append(dict(
                step=step, name=node.name, ops=[op for op, _ in node.sources],
                sources=[name for _, name in node.sources],
                inputs=[dict(name=v.name, shape=list(v.shape), dtype=str(np.dtype(v.dtype)))
                        for v in k.inputs.values() if v is not None],
                outputs=[dict(name=v.name, shape=list(v.shape), dtype=str(np.dtype(v.dtype)),
                              buffer=plan.where[v.name].kind,
                              offset=plan.where[v.name].offset + plan.offsets.get(v.name, 0)) for v in outs],
                macs=int(k.macs), params=int(sum(v.size for v in k.inputs.values() if v is not None and v.is_const)
                                             + sum(a.size for a in k.consts.values())),
                code="view" if k.alias and node.name not in plan.copies else
                "in place" if node.name in plan.concats else k.template))
        return dict(name=self.name, opset=g.opset, options=self.options, passes=self.passes, layers=layers,
                    tactics=self.tactics,
                    arena_bytes=plan.arena_bytes,
                    arena_lower_bound=plan.lower_bound, weight_bytes=self.sources.weight_bytes,
                    macs=sum(layer["macs"] for layer in layers),
                    inputs=[_io(g, n) for n in g.inputs], outputs=[_io(g, n) for n in g.outputs],
                    **({"float32": self.float32} if self.float32 else {}))

    @property
    def tactics(self) -> dict:
        """{layer: {"chosen": tactic, "candidates": [default, ...], "ms": {tactic: ms} when tuned}} for
        every layer with several kernels; replayable by compile(tactics=...)."""
        return {name: dict(chosen=k.tactic, candidates=list(k.tactics),
                           **({"ms": self.tactic_ms[name]} if name in self.tactic_ms else {}))
                for name, k in self.kernels.items() if k.tactic}

    def save(self, directory) -> dict[str, Path]:
        """Write NAME.c, NAME.h and NAME.json into `directory`, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {"c": self.sources.c, "h": self.sources.h,
                 "json": json.dumps(self.report, indent=1, sort_keys=True) + "\n"}
        paths = {}
        for ext, text in files.items():
            path = directory / f"{self.name}.{ext}"
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
            paths[ext] = path
        return paths

    def build(self, cflags=None) -> Runner:
        lib = build_mod.build_shared(self.name, self.sources.c, self.sources.h, cflags)
        return Runner(lib, self.name, *self._io_specs())

    def build_probed(self, cflags=None) -> tuple[Runner, list]:
        """A build whose run_probed() also returns every layer's output; and which value each is."""
        sources = emit_mod.emit(self.graph, self.kernels, self.plan, self.options, probes=True)
        lib = build_mod.build_shared(self.name, sources.c, sources.h, cflags)
        probe_values = []
        for node in self.graph.nodes:
            outs = list(self.kernels[node.name].outputs.values())
            probe_values.append(outs[0] if outs else None)
        specs = [(tuple(v.shape), np.dtype(v.dtype)) if v is not None else (None, None) for v in probe_values]
        return Runner(lib, self.name, *self._io_specs(), probes=specs), probe_values

    def build_profiled(self, cflags=None) -> Runner:
        """A build whose NAME_run also records when each layer starts: see Runner.run_profiled."""
        from .emit import RUNTIME_C
        sources = emit_mod.emit(self.graph, self.kernels, self.plan, self.options, profile=True)
        marks = len(self.graph.nodes) + 1
        lib = build_mod.build_shared(self.name, sources.c, sources.h,
                                     [*(build_mod.default_cflags() if cflags is None else cflags),
                                      f"-DKILN_PROFILE_MARKS={marks}"],
                                     extra={"kiln_profile.c": (RUNTIME_C / "kiln_profile.c").read_text()})
        return Runner(lib, self.name, *self._io_specs(), marks=marks)

    def _io_specs(self):
        g = self.graph
        spec = lambda n: (n, tuple(g.values[n].shape), np.dtype(g.values[n].dtype))   # noqa: E731
        return [spec(n) for n in g.inputs], [spec(n) for n in g.outputs]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _io(g: Graph, name: str) -> dict:
    v = g.values[name]
    return dict(name=name, shape=list(v.shape), dtype=str(np.dtype(v.dtype)))


def _buffer_name(value: str) -> str:
    """A tensor by its name; a layer's working memory (plan.scratch_name) as such."""
    layer, scratch, _ = value.rpartition("/scratch:")
    return f"the working memory of layer {layer!r}" if scratch else repr(value)


def compile(model, *, name: str | None = None, input_shapes=None, opt_level: int = 2, disable_passes=(),
            prune_threshold: float | None = None, prune_sparsity: float | None = None, prune_scope: str = "global",
            prune_channels: float | None = None, calibration=None, int8: str | None = None,
            percentile: float = 99.99, weights_encoding: str = "string", tactics=None,
            max_arena_bytes: int = 1 << 30, max_weight_bytes: int = 1 << 31, backend: str = "c",
            memory: str = "fast") -> CompiledModel:
    """ONNX model (path or ModelProto) -> CompiledModel. Raises a KilnError subclass on bad input.

    name: C prefix (default: the file's name); input_shapes: {"x": (1, 3, 224, 224)} or
    ["x=1x3x224x224"]; opt_level 0, 1 or 2 and disable_passes: see codegen.passes; prune_*: lossy
    pruning (magnitude by threshold or sparsity, "global" or per "layer"; a fraction of channels);
    calibration: .npz path or list of input samples (channel pruning moves removed channels' mean
    activation into the next layer's bias);
    int8: quantise to int8 with ranges from `calibration` by this method ("minmax", "percentile"
    [percentile], "entropy"); a model with QuantizeLinear/DequantizeLinear pairs (QDQ) is compiled
    to integers with its own parameters without it;
    weights_encoding: "string" (one string literal) or "hex" (uint32 words); tactics: {layer: tactic}
    for layers with several kernels (see codegen.tune; a NAME.json's "tactics" works too); max_arena_bytes and
    max_weight_bytes: refuse (LimitError) a model whose arena or weights would be larger;
    backend: "c", or "cuda" (each layer takes the kernel the CUDA backend has, see codegen.cuda);
    memory: "fast", or "lean" (the kernels that need the least RAM; what Cortex-M targets take)."""
    if weights_encoding not in emit_mod.WEIGHT_ENCODINGS:
        raise KilnError(f"weights_encoding must be one of {emit_mod.WEIGHT_ENCODINGS}, not {weights_encoding!r}.")
    for option, value in (("prune_sparsity", prune_sparsity), ("prune_channels", prune_channels)):
        if value is not None and not 0 <= value < 1:
            raise KilnError(f"{option} must be in [0, 1), not {value}.")
    if prune_scope not in ("global", "layer"):
        raise KilnError(f"prune_scope must be 'global' or 'layer', not {prune_scope!r}.")
    if backend not in BACKEND_TACTICS:
        raise KilnError(f"backend must be one of {', '.join(BACKEND_TACTICS)}, not {backend!r}.")
    if memory not in MEMORY:
        raise KilnError(f"memory must be one of {', '.join(MEMORY)}, not {memory!r}.")
    options = dict(opt_level=opt_level, weights_encoding=weights_encoding)
    if backend != "c":
        options["backend"] = backend
    if memory != "fast":
        options["memory"] = memory
    if disable_passes:
        options["disable_passes"] = sorted(disable_passes)
    prune = dict(prune_threshold=prune_threshold, prune_sparsity=prune_sparsity, prune_channels=prune_channels)
    options.update({k: v for k, v in prune.items() if v is not None})
    if prune_sparsity is not None:
        options["prune_scope"] = prune_scope
    if int8 is not None:
        if int8 not in INT8_METHODS:
            raise KilnError(f"int8 calibration method must be one of {', '.join(INT8_METHODS)}, not {int8!r}.")
        if calibration is None:
            raise KilnError("int8 quantisation needs calibration data: pass --calibration FILE.npz (representative "
                            "inputs, as for --inputs).")
        options.update(int8=int8, **({"percentile": percentile} if int8 == "percentile" else {}))
    graph = frontend.load(model, input_shapes)
    if graph.quant:
        options["qdq"] = True
    pass_options = dict(options)
    if calibration is not None:
        from .calibrate import Calibration, load_samples
        specs = [(n, tuple(graph.values[n].shape), np.dtype(graph.values[n].dtype)) for n in graph.inputs]
        samples = load_samples(calibration, specs)
        pass_options["calibration"] = Calibration(frontend.load_proto(model)[0], samples, graph.inputs)
        options["calibration_samples"] = len(samples)
    graph, pass_report = passes.run_passes(graph, opt_level, disable_passes, pass_options)
    if name:
        graph.name = c_identifier(name, "model")
    kernels = ops.lower(graph, tune_mod.tactic_names(tactics), BACKEND_TACTICS[backend], lean=memory == "lean")
    plan = plan_mod.make_plan(graph, kernels)
    if plan.arena_bytes > max_arena_bytes:
        top = sorted((b for b in plan.buffers if b.kind == "arena"), key=lambda b: -b.size)[:3]
        raise LimitError(f"the arena needs {plan.arena_bytes:,} bytes, over the limit of {max_arena_bytes:,} "
                         f"(--max-arena-bytes); the largest buffers: " +
                         ", ".join(f"{_buffer_name(b.values[0])} ({b.size:,} bytes)" for b in top) + ".")
    shown = {k: v for k, v in options.items() if v is not None}
    if input_shapes:
        shown["input_shapes"] = frontend.parse_input_shapes(input_shapes)
    sources = emit_mod.emit(graph, kernels, plan, shown)
    if sources.weight_bytes > max_weight_bytes:
        raise LimitError(f"the weights need {sources.weight_bytes:,} bytes, over the limit of {max_weight_bytes:,} "
                         "(--max-weight-bytes).")
    float32 = None
    if (options.get("int8") or options.get("qdq")) and "quantize" not in disable_passes:   # float sizes, for the report
        plain = compile(model, input_shapes=input_shapes, opt_level=opt_level,
                        disable_passes=sorted(set(disable_passes) | {"quantize"}), prune_threshold=prune_threshold,
                        prune_sparsity=prune_sparsity, prune_scope=prune_scope, prune_channels=prune_channels,
                        calibration=calibration if prune_channels else None, weights_encoding=weights_encoding,
                        memory=memory)
        float32 = dict(weight_bytes=plain.sources.weight_bytes, arena_bytes=plain.plan.arena_bytes,
                       arena_lower_bound=plain.plan.lower_bound)
    return CompiledModel(graph, kernels, plan, sources, shown, pass_report, float32)
