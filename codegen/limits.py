"""--ram-limit / --flash-limit: refuse a model whose memory plan or weights do not fit a chip."""
from __future__ import annotations

import re

from .errors import KilnError, LimitError

# The stack NAME_run needs is not known before a build: this estimate is added to the arena. Measured
# on Cortex-M4 (kiln verify --target reports it): 90 to 250 bytes for int8 models, up to 1,300 for float ones
# (their vector kernels spill).
STACK_ESTIMATE = 2048
UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20}


def parse_size(text: str, option: str = "size") -> int:
    """'64K' -> 65536, '1M' -> 1048576, '2048' -> 2048."""
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in UNITS:
        raise KilnError(f"{option} {text!r} is not a size: write bytes, or a number with K or M (e.g. 64K).")
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def peak_tensors(plan, count: int = 3) -> tuple[int, list]:
    """The step at which the most arena bytes are live, and the largest buffers live then."""
    arena = [b for b in plan.buffers if b.kind == "arena" and b.size]
    if not arena:
        return 0, []
    live = lambda t: [b for b in arena if b.first <= t <= b.last]   # noqa: E731
    step = max(range(plan.steps + 1), key=lambda t: sum(b.size for b in live(t)))
    return step, sorted(live(step), key=lambda b: (-b.size, b.values[0]))[:count]


def check_limits(compiled, ram_limit: int | None = None, flash_limit: int | None = None,
                 stack: int = STACK_ESTIMATE) -> None:
    """Raise LimitError when arena + stack exceeds ram_limit or the weights exceed flash_limit."""
    plan = compiled.plan
    if ram_limit is not None and plan.arena_bytes + stack > ram_limit:
        step, top = peak_tensors(plan)
        layer = compiled.graph.nodes[step].name if step < len(compiled.graph.nodes) else "the outputs"
        raise LimitError(
            f"the model needs {plan.arena_bytes + stack:,} bytes of RAM, over --ram-limit {ram_limit:,}: the arena "
            f"{plan.arena_bytes:,} bytes (lower bound {plan.lower_bound:,}) plus {stack:,} bytes of stack (an "
            f"estimate; kiln verify --target measures it); the largest tensors live at the peak (layer {layer!r}): "
            + ", ".join(f"{b.values[0]!r} {b.size:,} bytes" for b in top) + "."
            + ("" if compiled.options.get("memory") == "lean" else
               " --memory lean takes the kernels that need the least RAM (the default for Cortex-M targets)."))
    weights = compiled.sources.weight_bytes
    if flash_limit is not None and weights > flash_limit:
        raise LimitError(f"the weights need {weights:,} bytes of flash, over --flash-limit {flash_limit:,} (code "
                         "not counted); the largest: " + ", ".join(
                             f"{n!r} {b:,} bytes" for n, b in largest_weights(compiled)) + ".")


def largest_weights(compiled, count: int = 3) -> list[tuple[str, int]]:
    consts = [(v.name, v.nbytes) for v in compiled.graph.values.values() if v.is_const]
    return sorted(consts, key=lambda x: (-x[1], x[0]))[:count]
