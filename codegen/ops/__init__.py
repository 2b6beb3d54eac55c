"""The op registry: `@op` in codegen/ops/<family>.py is the only place an op is declared.

A lowering function's signature is the ONNX spec: the output Values first
(`outs`), then the inputs positionally (None for an omitted optional input),
then the attributes as keywords, spelled as ONNX spells them, with the spec's
defaults. An attribute the function does not name is refused automatically.
The function does all the arithmetic (shapes, strides, folded weights) and
returns a Kernel; the template only prints. Where several kernels compute the node correctly
(packed, generic, sparse, tile sizes...), it returns them as `Tactics` instead: one is picked by
name (the compile option `tactics`, which `--tune` fills from timings), else the default.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import KilnError, UnsupportedError
from ..ir import Graph, Node, Value


class Unsupported(Exception):
    """Raised by a lowering that cannot compile this node; the message is the reason."""


@dataclass
class Kernel:
    template: str                                   # templates/c/<template>.c.j2
    inputs: dict[str, Value | None]                 # C parameter name -> runtime or constant Value
    outputs: dict[str, Value]                       # C parameter name -> output Value
    params: dict = field(default_factory=dict)      # everything else the template prints
    consts: dict[str, np.ndarray] = field(default_factory=dict)   # weights the lowering derived
    splat_ok: tuple[str, ...] = ()  # constant inputs the template reads through idx() / zero strides
    inplace: tuple[str, ...] = ()   # inputs whose buffer the (single) output may reuse
    epilogue_modes: tuple[str, ...] | None = None   # operand reads the template offers an epilogue
    alias: bool = False             # output is a view of inputs[0]: no code, one buffer
    macs: int = 0
    math: str = ""                  # the contract line printed over the function
    # parameters that arrive at run time (see runtime_param): (C condition on the inputs, params
    # overriding `params`) -- the layer runs the first case whose condition holds, and fails (its
    # function returns nonzero, and so does the model's run) when none does
    cases: list[tuple[str, dict]] = field(default_factory=list)
    fails: bool = False             # the template itself returns 1 when a parameter it reads is invalid
    # working memory the layer needs while it runs: C parameter name -> (element dtype, count); the
    # plan places it in the arena, live for this layer only (so the stack stays small and RAM is known)
    scratch: dict = field(default_factory=dict)
    tactic: str | None = None       # the tactic this kernel is, where the node had several
    tactics: tuple[str, ...] = ()   # all the node's tactics (candidates), its default first


@dataclass
class Tactics:
    """Several correct kernels for one node, by name; each built only when picked. `lean`: the one that
    needs the least working memory, where the default needs more (what memory="lean" builds take)."""
    default: str
    candidates: dict[str, Callable[[], Kernel]]
    lean: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.default, *(n for n in self.candidates if n != self.default))

    def pick(self, name: str | None) -> Kernel:
        name = name or self.default
        kernel = self.candidates[name]()
        kernel.tactic, kernel.tactics = name, self.names
        return kernel


@dataclass
class OpDef:
    name: str
    lower: Callable


REGISTRY: dict[str, OpDef] = {}


def op(*names: str):
    """Register a lowering for one or more ONNX op types (the conformance suite picks it up)."""
    def register(fn):
        for name in names:
            REGISTRY[name] = OpDef(name, fn)
        return fn
    return register


def _load_families() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def lower_node(graph: Graph, node: Node, tactic: str | None = None, prefer: tuple[str, ...] = (),
               lean: bool = False) -> Kernel:
    opdef = REGISTRY.get(node.op)
    if opdef is None:
        raise Unsupported("op is not supported")
    sig = inspect.signature(opdef.lower)
    params = list(sig.parameters.values())
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    unknown = [] if takes_any else [a for a in node.attrs if a not in sig.parameters or params[0].name == a]
    if unknown:
        raise Unsupported(f"attribute(s) {', '.join(sorted(unknown))} not supported")
    outs = [graph.values[o] if o else None for o in node.outputs]
    ins = [graph.value(i) for i in node.inputs]
    positional = [p for p in params[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(ins) > len(positional) and not variadic:
        raise Unsupported(f"{len(ins)} inputs given, at most {len(positional)} supported")
    real = [v for v in outs if v is not None]
    if real and all(v.shape is not None and v.size == 0 for v in real):
        names = {f"Y{i}": v for i, v in enumerate(real)}     # nothing to compute into zero elements
        return Kernel("empty", {}, names, params=dict(names=list(names)), math="(zero-size output)")
    kernel = opdef.lower(outs, *ins, **node.attrs)
    if isinstance(kernel, Tactics):
        if tactic is not None and tactic not in kernel.candidates:
            raise KilnError(f"layer {node.name!r} has no tactic {tactic!r}; its tactics are "
                            f"{', '.join(kernel.names)} (the first is the default).")
        preferred = next((n for n in prefer if n in kernel.candidates), None)
        kernel = kernel.pick(tactic or preferred or (kernel.lean if lean else None))
    elif tactic is not None:
        raise KilnError(f"layer {node.name!r} ({node.op}) has one kernel only: no tactic to choose.")
    if node.epilogue:
        from .elementwise import attach_epilogue
        kernel = attach_epilogue(kernel, node.epilogue, graph.values)
    return kernel


def _dtype_name(dtype) -> str:
    return "string" if np.dtype(dtype).kind == "O" else np.dtype(dtype).name


def lower(graph: Graph, tactics: dict[str, str] | None = None, prefer: tuple[str, ...] = (),
          lean: bool = False) -> dict[str, Kernel]:
    """Lower every node, or raise one UnsupportedError listing every node that cannot be compiled.
    tactics: {layer (node) name: tactic name} for layers with several kernels (others: the first of
    `prefer` they have, else their lean tactic if `lean`, else their default)."""
    from ..emit import C_TYPES          # the element types a C buffer can hold
    tactics = tactics or {}
    unknown = sorted(set(tactics) - {node.name for node in graph.nodes})
    if unknown:
        raise KilnError(f"the tactics name {len(unknown)} layer(s) the model does not have, e.g. {unknown[0]!r}.")
    kernels, problems = {}, []
    for node in graph.nodes:
        odd = [(n, graph.value(n).dtype) for n in node.inputs + node.outputs
               if n and np.dtype(graph.value(n).dtype).name not in C_TYPES]
        if odd:
            problems.append((node.name, node.op, f"dtype {_dtype_name(odd[0][1])} of {odd[0][0]!r} is not supported"))
            continue
        try:
            kernels[node.name] = lower_node(graph, node, tactics.get(node.name), prefer, lean)
        except Unsupported as why:
            problems.append((node.name, node.op, str(why)))
    if problems:
        raise UnsupportedError(problems)
    return kernels


# ---- helpers shared by the lowerings -----------------------------------------------------------

FLOAT = np.dtype(np.float32)


def require_dtype(*values: Value | None, dtypes=(FLOAT,)) -> None:
    for v in values:
        if v is not None and (v.dtype is None or np.dtype(v.dtype) not in dtypes):
            raise Unsupported(f"dtype {v.dtype} of {v.name!r} not supported "
                              f"(only {', '.join(str(d) for d in dtypes)})")


def c_float(x) -> str:
    """A float32 literal that reads back bit-exactly (shortest round-trip digits)."""
    x = np.float32(x)
    if np.isnan(x):
        return "NAN"
    if np.isinf(x):
        return "INFINITY" if x > 0 else "(-INFINITY)"
    text = np.format_float_scientific(x, unique=True, trim="0") if abs(x) >= 1e16 or (0 < abs(x) < 1e-4) \
        else np.format_float_positional(x, unique=True, trim="0")
    text = text + "f" if any(c in text for c in ".e") else text + ".0f"
    return f"({text})" if text.startswith("-") else text


def require_const(v: Value | None, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if not v.is_const:
        raise Unsupported(f"{what} must be a compile-time constant")
    return v.const


def runtime_param(v: Value | None, derived=None) -> np.ndarray | None:
    """The value of a parameter input (axes, K, sizes, ...): its constant, or, when it arrives at run
    time, the value the static shapes fix (`derived`; None when they do not fix it). An input with no
    element is known whatever it holds. A derived value must be checked at run time: pass the
    kernel through `check_param`."""
    if v is None:
        return None
    if v.is_const:
        return v.const
    if v.size == 0:
        return np.zeros(v.shape, dtype=v.dtype)
    if derived is None:
        return None
    derived = np.asarray(derived).astype(v.dtype).reshape(-1)
    if derived.size != v.size:
        raise Unsupported(f"{v.name!r} holds {v.size} values where the shapes fix {derived.size}")
    return derived.reshape(v.shape)


def check_param(kernel: Kernel, arg: str, v: Value | None, expected) -> Kernel:
    """The kernel, also reading the parameter input `v` as `arg` when it arrives at run time, and
    failing then unless it holds `expected` (the value runtime_param derived from the shapes)."""
    if v is None or v.is_const or v.size == 0:
        return kernel
    return guarded(kernel, arg, v, [(c_equals(arg, expected, v.dtype), {})])


def c_equals(arg: str, values, dtype) -> str:
    """C condition: arg[0..] holds `values` (a floating-point one truncates to it, as ONNX casts)."""
    values = [int(x) for x in np.asarray(values).reshape(-1)]
    if np.dtype(dtype).kind == "f":
        return " && ".join(f"{arg}[{i}] >= {x} && {arg}[{i}] < {x + 1}" for i, x in enumerate(values)) or "1"
    return " && ".join(f"{arg}[{i}] == {x}" for i, x in enumerate(values)) or "1"


def guarded(kernel: Kernel, arg: str, v: Value, cases: list[tuple[str, dict]]) -> Kernel:
    """The kernel run under `cases` (see Kernel.cases), reading the parameter input `v` as `arg`;
    cases already there (another parameter's) combine with these."""
    if kernel.alias:          # a view runs no code: make it a copy, which can check
        kernel = Kernel("copy", dict(kernel.inputs), dict(kernel.outputs),
                        params=dict(nbytes=next(iter(kernel.outputs.values())).nbytes), math=kernel.math)
    kernel.inputs[arg] = v
    kernel.cases = [(f"({c}) && ({d})" if d else c, {**p, **q}) for c, p in cases
                    for d, q in (kernel.cases or [("", {})])]
    return kernel


def c_type(v: Value, bits: bool = False) -> str:
    """The C type of v's elements (what emit declares its pointers as); refuses dtypes C has none for.
    float16, bfloat16 and the small types (float8, float4, int4, int2) are stored as bits: only a
    kernel that just moves elements (`bits`) may take them (elementwise.py computes with them
    through conversions)."""
    from ..emit import C_TYPES
    from .elementwise import STORED
    name = np.dtype(v.dtype).name if v.dtype is not None else None
    if name not in C_TYPES or (name in STORED and not bits):
        raise Unsupported(f"dtype {v.dtype} of {v.name!r} not supported")
    return C_TYPES[name][0]


def wrapping_type(dtype) -> str | None:
    """The unsigned C type in which integer + and * of `dtype` wrap around instead of overflowing
    (signed overflow is undefined behaviour); None for floating-point dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iub":
        return None
    return "uint64_t" if dtype.itemsize == 8 else "uint32_t"


def is_splat(v: Value | np.ndarray | None) -> bool:
    """A constant whose elements are all equal: stored as one element, read with stride 0."""
    arr = v.const if isinstance(v, Value) else v
    if arr is None or arr.size <= 1:
        return False
    flat = arr.reshape(-1)
    return bool(np.all(flat == flat[0]))


def broadcast_strides(v: Value, out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of a row-major tensor broadcast (numpy rules) to `out_shape`;
    all zero for a splat constant, which is stored as a single element."""
    if is_splat(v):
        return [0] * len(out_shape)
    return shape_strides(v.shape, out_shape)


def shape_strides(shape: tuple[int, ...], out_shape) -> list[int]:
    """Element strides of a row-major `shape` broadcast to `out_shape` (0 along broadcast dims)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(0 if dim == 1 else step)
        step *= dim
    return strides[::-1]


_load_families()
