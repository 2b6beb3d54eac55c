"""IR + kernels + plan -> the C source and header, rendered from templates/c/."""
from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from .ir import Graph, Value
from .names import c_comment, c_identifier, c_string
from .ops import Kernel, is_splat
from .plan import ALIGN, Plan, align, scratch_name

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
RUNTIME_C = Path(__file__).resolve().parent.parent / "runtime_c"

# numpy dtype -> (C type, union member name); every buffer is one of these
C_TYPES = {
    "float32": ("float", "f32"), "float64": ("double", "f64"), "float16": ("uint16_t", "u16"),
    "bfloat16": ("uint16_t", "u16"),
    "int8": ("int8_t", "i8"), "uint8": ("uint8_t", "u8"), "int16": ("int16_t", "i16"),
    "uint16": ("uint16_t", "u16"), "int32": ("int32_t", "i32"), "uint32": ("uint32_t", "u32"),
    "int64": ("int64_t", "i64"), "uint64": ("uint64_t", "u64"), "bool": ("uint8_t", "u8"),
    # one byte per element, as numpy (ml_dtypes) holds them: the float8 / float4 bits, and int4 / int2
    # two's complement in the low bits
    "float8_e4m3fn": ("uint8_t", "u8"), "float8_e4m3fnuz": ("uint8_t", "u8"), "float8_e5m2": ("uint8_t", "u8"),
    "float8_e5m2fnuz": ("uint8_t", "u8"), "float8_e8m0fnu": ("uint8_t", "u8"), "float4_e2m1fn": ("uint8_t", "u8"),
    "int4": ("uint8_t", "u8"), "uint4": ("uint8_t", "u8"), "int2": ("uint8_t", "u8"), "uint2": ("uint8_t", "u8"),
}
MEMBERS = [("u8", "uint8_t", 1), ("i8", "int8_t", 1), ("u16", "uint16_t", 2), ("i16", "int16_t", 2),
           ("u32", "uint32_t", 4), ("i32", "int32_t", 4), ("u64", "uint64_t", 8), ("i64", "int64_t", 8),
           ("f32", "float", 4), ("f64", "double", 8)]


def c_type(dtype) -> tuple[str, str]:
    return C_TYPES[np.dtype(dtype).name]


def _helpers() -> dict[str, str]:
    """runtime_c/kiln_helpers.c as {function name: its text, with the comment above it}."""
    text = (RUNTIME_C / "kiln_helpers.c").read_text()
    found = re.finditer(r"^((?:/\*(?:[^*]|\*(?!/))*\*/\n)?static [^(\n]*\b(kiln_\w+)\(.*?^\}\n)", text, re.M | re.S)
    return {m.group(2): m.group(1) for m in found}


def used_helpers(code: str) -> str:
    """The helper functions `code` calls (and those they call), in the file's order."""
    helpers = _helpers()
    used, todo = set(), [code]
    while todo:
        calls = set(re.findall(r"\b(kiln_\w+)\(", todo.pop())) & helpers.keys()
        todo += [helpers[name] for name in calls - used]
        used |= calls
    return "".join("\n" + text for name, text in helpers.items() if name in used)


def _runtime(code: str) -> str:
    """The runtime header, the vector primitives when `code` uses them (their intrinsics headers are
    slow to parse), and the helper functions `code` calls."""
    simd = (RUNTIME_C / "kiln_simd.h").read_text() if re.search(r"\bkiln_v|\bKILN_TILE", code) else ""
    return (RUNTIME_C / "kiln_runtime.h").read_text() + simd + used_helpers(code)


@dataclass
class Sources:
    name: str
    c: str
    h: str
    weight_bytes: int          # bytes of weights as stored (splats are one element)


class _Weights:
    """All constants in one aligned blob, deduplicated; splats stored as one element."""

    def __init__(self):
        self.chunks, self.offsets, self.size = [], {}, 0

    def add(self, arr: np.ndarray, splat: bool) -> int:
        arr = np.ascontiguousarray(arr)
        data = arr.reshape(-1)[:1].tobytes() if splat else arr.tobytes()
        key = (arr.dtype.str, hashlib.sha256(data).digest())
        if key not in self.offsets:
            self.offsets[key] = self.size
            self.chunks.append(data + bytes(align(len(data)) - len(data)))
            self.size += align(len(data))
        return self.offsets[key]

    def initializer(self, encoding: str) -> tuple[str, str]:
        """(union member the initializer fills, its text)."""
        blob = b"".join(self.chunks)
        if encoding == "string":
            return "u8", encode_string_literal(blob)
        if encoding == "hex":   # portable fallback for compilers that cap string literal length
            words = np.frombuffer(blob, dtype="<u4")
            lines = (", ".join(f"0x{w:08x}u" for w in words[i:i + 8]) for i in range(0, len(words), 8))
            return "u32", "{\n    " + ",\n    ".join(lines) + "\n    }"
        raise ValueError(f"unknown weights encoding {encoding!r}")


# each byte as it appears inside a C string literal: printable ASCII as itself, everything else
# (and the characters \ " ? that could form escapes or trigraphs) as a three-digit octal escape,
# which never swallows a following digit
_ESCAPES = {b: chr(b) if 32 <= b < 127 and chr(b) not in '\\"?' else f"\\{b:03o}" for b in range(256)}


def encode_string_literal(data: bytes, per_line: int = 64) -> str:
    """Bytes -> a C string literal, `per_line` bytes to a line (adjacent literals concatenate)."""
    lines = (data[i:i + per_line].decode("latin-1").translate(_ESCAPES) for i in range(0, len(data), per_line))
    return '"' + '"\n    "'.join(lines) + '"'


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / "c")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


WEIGHT_ENCODINGS = ("string", "hex")


def emit(graph: Graph, kernels: dict[str, Kernel], plan: Plan, options: dict, probes: bool = False,
         profile: bool = False, context: bool = False) -> Sources | dict:
    """probes: also NAME_run_probed, which copies out every layer's output; profile: NAME_run calls
    kiln_profile_mark(i) as layer i starts (see runtime_c/kiln_profile.c); context: the values the
    templates render instead of the C (the CUDA backend renders the same layers its own way)."""
    env = _env()
    name = graph.name
    weights = _Weights()
    layers = []
    for step, node in enumerate(graph.nodes):
        kernel = kernels[node.name]
        alias_only = kernel.alias and node.name not in plan.copies or node.name in plan.concats
        args, splat, const_args = [], set(), {}
        buffers_used = {}
        entries = [(n, v, False) for n, v in kernel.inputs.items() if v is not None] + \
                  [(n, v, True) for n, v in kernel.outputs.items()] + \
                  [(n, Value(scratch_name(node.name, n), (count,), np.dtype(dt)), True)    # working memory
                   for n, (dt, count) in kernel.scratch.items()]
        for arg, v, is_out in entries:
            buf = plan.where[v.name]
            buffers_used.setdefault(id(buf), []).append(arg)
        for arg, arr in kernel.consts.items():
            entries.append((arg, arr, False))
        for arg, v, is_out in entries:
            arr = v if isinstance(v, np.ndarray) else v.const
            ctype, member = c_type(arr.dtype if arr is not None else v.dtype)
            if arr is not None and arr.size == 0:
                expr, shared = f"(const {ctype} *)0", False          # nothing to read
            elif arr is not None:
                is_s = arg in kernel.splat_ok and is_splat(arr)
                if is_s:
                    splat.add(arg)
                off = weights.add(arr, is_s)
                expr = f"kiln_weights.{member} + {off // np.dtype(arr.dtype).itemsize}"
                const_args.setdefault(off, []).append(arg)
                shared = False
            elif v.size == 0:
                expr, shared = f"({'' if is_out else 'const '}{ctype} *)0", False    # no element to touch
            else:
                buf = plan.where[v.name]
                shared = len(buffers_used[id(buf)]) > 1
                if buf.kind == "input":
                    expr = f"({'const ' if not is_out else ''}{ctype} *)inputs[{buf.index}]"
                elif buf.kind == "output":
                    expr = f"({ctype} *)outputs[{buf.index}]"
                else:
                    expr = f"kiln_arena.{member} + {(buf.offset + plan.offsets.get(v.name, 0)) // np.dtype(v.dtype).itemsize}"
            qual = "" if is_out else "const "
            restrict = "" if shared else "restrict "
            args.append(dict(name=arg, decl=f"{qual}{ctype} *{restrict}{arg}", expr=expr,
                             value=None if isinstance(v, np.ndarray) else v, is_out=is_out))
        for same in const_args.values():      # deduplicated weights: one pointer, so no restrict
            if len(same) > 1:
                for a in args:
                    if a["name"] in same:
                        a["decl"] = a["decl"].replace("*restrict ", "*")
        idx = (lambda a, e, s=frozenset(splat): "0" if a in s else e)
        render = lambda extra: env.get_template(f"{kernel.template}.c.j2").render(   # noqa: E731
            **{**kernel.params, **extra}, idx=idx)
        body = "" if alias_only else _guarded(kernel.cases, render) if kernel.cases else \
            render({}) + ("    return 0;\n" if kernel.fails else "")
        outs = [a for a in args if a["is_out"]]
        layers.append(dict(
            step=step, func=f"layer_{step}_{c_identifier(node.name, node.op.lower())}", kernel=kernel, splat=splat,
            ops=" + ".join(f'{op} "{c_comment(name)}"' for op, name in node.sources), math=kernel.math,
            args=args, body=body, alias_only=alias_only, fails=bool(kernel.cases) or kernel.fails,
            io=[f'{c_comment(a["value"].name)} {c_type(a["value"].dtype)[0]}{list(a["value"].shape)} '
                f'{_where(plan, a["value"].name)}' for a in args if a["value"] is not None],
            probe=outs[0] if outs else None))
    ctx = dict(
        name=name, NAME=name.upper(), doc={k: c_comment(str(v)) for k, v in graph.doc.items()},
        opset=graph.opset, options=c_comment(str(sorted(options.items()))), layers=layers,
        arena_bytes=plan.arena_bytes, lower_bound=plan.lower_bound, weight_bytes=weights.size,
        timeline=[c_comment(line) for line in plan.timeline()], members=MEMBERS, align=ALIGN,
        probes=probes, profile=profile,
        inputs=[_io(graph, n) for n in graph.inputs], outputs=[_io(graph, n) for n in graph.outputs],
        runtime=_runtime("".join(la["body"] for la in layers)),
    )
    if weights.size:
        first, ctx["weights_init"] = weights.initializer(options.get("weights_encoding", "string"))
        ctx["weight_members"] = sorted(MEMBERS, key=lambda m: m[0] != first)   # the initialised one first
    if context:
        return ctx
    c = env.get_template("model.c.j2").render(**ctx)
    h = env.get_template("model.h.j2").render(**ctx)
    return Sources(name, c, h, weights.size)


def _guarded(cases: list[tuple[str, dict]], render) -> str:
    """The kernel's body for each case of its run-time parameters, under that case's condition;
    when no condition holds the parameters are invalid and the layer returns 1."""
    code = " else ".join(f"if ({cond}) {{\n" + textwrap.indent(render(extra), "    ") + "    }"
                         for cond, extra in cases)
    return f"    {code} else {{\n        return 1;   /* a parameter input does not fit the static shapes */\n" \
        "    }\n    return 0;\n"


def _where(plan: Plan, value: str) -> str:
    buf = plan.where[value]
    return {"arena": f"@arena+{buf.offset + plan.offsets.get(value, 0)}", "input": f"@input[{buf.index}]",
            "output": f"@output[{buf.index}]", "const": "@weights"}[buf.kind]


def _io(graph: Graph, name: str) -> dict:
    v = graph.values[name]
    return dict(name=c_string(name), comment=c_comment(name), ctype=c_type(v.dtype)[0], dtype=np.dtype(v.dtype).name,
                shape=list(v.shape), size=v.size, nbytes=v.nbytes)
