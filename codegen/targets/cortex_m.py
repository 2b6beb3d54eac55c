"""Cortex-M targets: cross-compile the generated C with arm-none-eabi-gcc into the bare-metal
harness of templates/embedded/, run it once under QEMU's mps2 boards (semihosting), and read back
the outputs (as bytes, to compare bit for bit), the sizes, the stack high-water mark and the
executed-instruction count of one inference."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from ..errors import BuildError, KilnError, RunError

HARNESS = Path(__file__).resolve().parent.parent.parent / "templates" / "embedded"
PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass(frozen=True)
class Core:
    flags: tuple[str, ...]
    board: str           # the QEMU machine that runs it
    fpu: bool


# QEMU 7.2 has no Cortex-M0+ board: ARMv6-M code runs unchanged on the M3 of mps2-an385, which has
# the same memory map as the M4's mps2-an386 (the instruction count is that of the M0+ code).
CORES = {
    "cortex-m4": Core(("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), "mps2-an386", True),
    "cortex-m3": Core(("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), "mps2-an385", False),
    "cortex-m0plus": Core(("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"), "mps2-an385", False),
}
# -std=c99 also keeps gcc from contracting a*b+c into an FMA (gnu99 would), as the host build does
# with -ffp-contract=off.
CFLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-ffunction-sections", "-fdata-sections")
LDFLAGS = ("-nostartfiles", "-Wl,--gc-sections", "--specs=nano.specs")
HOST_FLOAT_CFLAGS = ["-O2", "-ffp-contract=off"]     # the host build a float target build is compared with
INSTRUCTIONS_PER_TICK = 40     # -icount shift=0: 1 ns per instruction; SysTick runs at 25 MHz
STACK_BYTES = 64 * 1024        # the harness's stack: a model that uses all of it overflowed
TIMEOUT_S = 300


def is_quantized(compiled) -> bool:
    return bool(compiled.options.get("int8") or compiled.options.get("qdq"))


def check_target(target: str, compiled) -> None:
    """Refuse a float model on a core without an FPU: it would run in software floating point."""
    if target in CORES and not CORES[target].fpu and not is_quantized(compiled):
        raise KilnError(f"--target {target} has no FPU: Kiln builds only int8 models for it "
                        "(add --int8 --calibration FILE.npz), or use --target cortex-m4.")


def tools() -> dict[str, str]:
    found = {t: shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")}
    missing = [t for t, path in found.items() if not path]
    if missing:
        raise KilnError(f"{', '.join(missing)} not found: install the Debian packages {PACKAGES} "
                        f"(apt-get install --no-install-recommends {PACKAGES}).")
    return found


# ---- the harness ------------------------------------------------------------------------------------

def _words(arr: np.ndarray) -> list[str]:
    raw = np.ascontiguousarray(arr).tobytes()
    raw += b"\0" * (-len(raw) % 4)
    return [f"0x{w:08x}u" for w in np.frombuffer(raw, "<u4")] or ["0u"]


def harness(compiled, samples, profile: bool = False) -> str:
    """main.c that feeds `samples` (lists of input arrays) to NAME_run and prints the outputs;
    profile: also the SysTick count as each layer starts (the C emitted with profile=True)."""
    g = compiled.graph
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HARNESS), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    ins = [[dict(name=f"in_{s}_{i}", words=_words(a)) for i, a in enumerate(arrays)]
           for s, arrays in enumerate(samples)]
    outs = [dict(nbytes=g.values[n].nbytes, words=max(1, -(-g.values[n].nbytes // 8))) for n in g.outputs]
    return env.get_template("main.c.j2").render(name=compiled.name, samples=ins, outputs=outs,
                                                marks=len(g.nodes) + 1 if profile else 0)


# ---- build, run, parse ------------------------------------------------------------------------------

@dataclass
class TargetRun:
    target: str
    board: str
    outputs: list[list[np.ndarray]]       # per sample, per graph output
    instructions: int | None              # one inference (the first sample), to +-40; None if it overflowed
    stack_bytes: int                      # high-water mark of the first run, NAME_run's frames included
    model: dict                           # the model object's sections: code, weights, data, bss
    program: dict                         # the linked program (harness and inputs included): flash, ram
    log: str = ""
    stack_overflow: bool = False          # the run used the whole stack: stack_bytes is a lower bound
    layers: list | None = None            # profile=True: per layer, its name, ops, MACs and instructions

    @property
    def ram_bytes(self) -> int:
        """What the model needs in RAM: its static data (the arena) plus the stack it used."""
        return self.model["data"] + self.model["bss"] + self.stack_bytes

    @property
    def flash_bytes(self) -> int:
        return self.model["code"] + self.model["weights"] + self.model["data"]


def _run(cmd, cwd, what, timeout=None):
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"{what} did not finish within {timeout} s.") from None
    if result.returncode and what != "qemu":
        raise BuildError(f"{' '.join(cmd)} failed (a kiln bug, please report it):\n{result.stderr[-4000:]}")
    return result


def _sections(path, cwd, size) -> dict[str, int]:
    text = _run([size, "-A", str(path)], cwd, "size").stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", text, re.M)}


def _model_sizes(sections: dict[str, int]) -> dict:
    total = lambda prefix: sum(n for s, n in sections.items() if s == prefix or s.startswith(prefix + "."))  # noqa: E731
    return dict(code=total(".text"), weights=total(".rodata"), data=total(".data"), bss=total(".bss"))


def run(compiled, samples, target: str = "cortex-m4", cflags=None, keep: str | Path | None = None,
        profile: bool = False) -> TargetRun:
    """Cross-compile `compiled` with the harness, run it under QEMU, return what it printed.
    cflags replace the optimisation flags (-O2); keep: also copy the build directory there;
    profile: a build that also counts each layer's instructions (the marks add a few each)."""
    from .. import emit as emit_mod
    check_target(target, compiled)
    paths = tools()
    core = CORES[target]
    gcc, size = paths["arm-none-eabi-gcc"], paths["arm-none-eabi-size"]
    flags = [*core.flags, *(cflags if cflags is not None else CFLAGS[:1]), *CFLAGS[1:]]
    name = compiled.name
    with tempfile.TemporaryDirectory(prefix="kiln-arm-") as tmp:
        d = Path(tmp)
        sources = emit_mod.emit(compiled.graph, compiled.kernels, compiled.plan, compiled.options, profile=True) \
            if profile else compiled.sources
        (d / f"{name}.c").write_text(sources.c)
        (d / f"{name}.h").write_text(sources.h)
        (d / "main.c").write_text(harness(compiled, samples, profile))
        for f in ("startup.c", "semihost.c", "semihost.h", "counters.c", "counters.h", "mps2.ld"):
            shutil.copyfile(HARNESS / f, d / f)
        objects = []
        for src in (f"{name}.c", "main.c", "startup.c", "semihost.c", "counters.c"):
            obj = src[:-2] + ".o"
            _run([gcc, *flags, "-c", src, "-o", obj], d, "arm-none-eabi-gcc")
            objects.append(obj)
        _run([gcc, *core.flags, *LDFLAGS, "-T", "mps2.ld", f"-Wl,--defsym=STACK_SIZE={STACK_BYTES}",
              "-Wl,-Map=prog.map", *objects, "-lm", "-lc", "-lgcc", "-o", "prog.elf"], d, "arm-none-eabi-gcc")
        model = _model_sizes(_sections(f"{name}.o", d, size))
        prog = _sections("prog.elf", d, size)
        program = dict(flash=sum(n for s, n in prog.items() if s in (".isr_vector", ".text", ".rodata", ".ARM.exidx",
                                                                       ".data")),
                       ram=prog.get(".data", 0) + prog.get(".bss", 0))
        cmd = [paths["qemu-system-arm"], "-M", core.board, "-nographic", "-monitor", "none", "-serial", "null",
               "-chardev", "stdio,id=sh0", "-semihosting-config", "enable=on,target=native,chardev=sh0",
               "-icount", "shift=0,sleep=off", "-kernel", "prog.elf"]
        result = _run(cmd, d, "qemu", TIMEOUT_S)
        if keep:
            shutil.copytree(d, keep, dirs_exist_ok=True)
    return _parse(compiled, target, core.board, result, model, program)


def _parse(compiled, target, board, result, model, program) -> TargetRun:
    text = result.stdout
    if result.returncode or "done" not in text.splitlines():
        raise RunError(f"the {target} program under qemu-system-arm -M {board} exited with status "
                       f"{result.returncode}: {(text + result.stderr)[-600:].strip()}")
    g = compiled.graph
    fields, outputs = {}, []
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "sample":
            outputs.append([])
        elif key == "out":
            i, _, data = rest.partition(" ")
            v = g.values[g.outputs[int(i)]]
            outputs[-1].append(np.frombuffer(bytes.fromhex(data), np.dtype(v.dtype)).reshape(v.shape).copy())
        elif key in ("stack", "stack_size", "empty_ticks") or key == "ticks" and "ticks" not in fields:
            fields[key] = int(rest)
        elif key == "marks":
            fields[key] = [int(t) for t in rest.split()]
    ticks = fields["ticks"]
    layers = None
    if "marks" in fields:
        marks = fields["marks"]
        layers = [dict(layer=node.name, ops=[op for op, _ in node.sources], macs=int(compiled.kernels[node.name].macs),
                       instructions=(marks[i + 1] - marks[i]) * INSTRUCTIONS_PER_TICK)
                  for i, node in enumerate(g.nodes)]
    return TargetRun(target, board, outputs, None if ticks == 0xFFFFFFFF else ticks * INSTRUCTIONS_PER_TICK,
                     fields["stack"], model, program, text, stack_overflow=fields["stack"] >= fields["stack_size"],
                     layers=layers)


# ---- verify on the target -----------------------------------------------------------------------------

MAX_SAMPLES = 16      # samples fed to the target (each is a const array in its flash)


def verify_on_target(compiled, proto, samples, target: str = "cortex-m4", cflags=None, layers: bool = False) -> dict:
    """Run `samples` on the target and compare: an int8 model bit for bit with the host build of the
    same C; a float model within tolerance of onnxruntime (and, for information, bit for bit with a
    host build without FMA contraction, -ffp-contract=off, as the target's -std=c99 build)."""
    from ..verify import INT8_TOLERANCE, Reference, compare
    samples = samples[:MAX_SAMPLES]
    quantized = is_quantized(compiled)
    got = run(compiled, samples, target, cflags)
    host = compiled.build(None if quantized else HOST_FLOAT_CFLAGS)
    reference = Reference(proto)
    identical, worst = True, {}
    for arrays, outs in zip(samples, got.outputs):
        identical &= all(np.array_equal(h, t, equal_nan=h.dtype.kind == "f") for h, t in zip(host(*arrays), outs))
        ref = reference({n: a for (n, _, _), a in zip(host.inputs, arrays)})
        for name, t in zip(reference.output_names, outs):
            r = ref[name].reshape(t.shape) if ref[name].size == t.size else ref[name]
            c = compare(name, t, r, INT8_TOLERANCE if quantized and t.dtype == np.float32 else None)
            if name not in worst or (not c.ok, c.max_rel) > (not worst[name].ok, worst[name].max_rel):
                worst[name] = c
    outputs = [worst[n] for n in reference.output_names]
    checks = dict(weights_in_rodata=compiled.sources.weight_bytes <= got.model["weights"],
                  arena_in_bss=compiled.plan.arena_bytes <= got.model["bss"],
                  stack_within_the_harness=not got.stack_overflow)
    ok = (identical if quantized else all(c.ok for c in outputs)) and all(checks.values())
    per_layer = run(compiled, samples[:1], target, cflags, profile=True).layers if layers else None
    return dict(ok=ok, target=target, board=got.board, samples=len(samples), bit_identical_to_host=identical,
                host_build="default flags" if quantized else " ".join(HOST_FLOAT_CFLAGS),
                outputs=[c.__dict__ for c in outputs], instructions=got.instructions, stack_bytes=got.stack_bytes,
                flash_bytes=got.flash_bytes, ram_bytes=got.ram_bytes, model_sections=got.model,
                program=got.program, kiln_weight_bytes=compiled.sources.weight_bytes,
                kiln_arena_bytes=compiled.plan.arena_bytes, checks=checks,
                first_outputs=[o.reshape(-1)[:10].tolist() for o in got.outputs[0]], layers=per_layer)
