"""The machine's peak float32 FLOP/s on one core, to judge the kernels by (`kiln bench --layers`):
FMA units x vector lanes x 2 (an FMA is two FLOPs) x clock. The lanes come from the compiler's
target with the build's flags (AVX-512: 16, AVX2: 8, else 4), the clock from the CPU's maximum
frequency (else /proc/cpuinfo's current one); the FMA units are assumed (2 on x86 with FMA, as on
Zen and most Xeons; else 1). What was assumed is said, and `--peak-gflops` overrides it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from . import build


def _macros(cflags) -> set[str]:
    cflags = build.default_cflags() if cflags is None else list(cflags)
    try:
        out = subprocess.run([build.compiler(), *cflags, "-dM", "-E", "-x", "c", "/dev/null"],
                             capture_output=True, text=True).stdout
    except OSError:
        return set()
    return set(re.findall(r"#define (\w+)", out))


def _ghz() -> tuple[float, str]:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    try:
        mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text(), re.M)]
        if mhz:
            return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz"
    except OSError:
        pass
    return 2.0, "a guess: no clock found"


def peak(cflags=None, gflops: float | None = None) -> dict:
    """{"gflops": peak GFLOP/s of one core, "assumed": how it was worked out}."""
    if gflops is not None:
        return dict(gflops=float(gflops), assumed="given with --peak-gflops")
    macros = _macros(cflags)
    lanes, isa = (16, "AVX-512") if "__AVX512F__" in macros else (8, "AVX2") if "__AVX2__" in macros \
        else (4, "128-bit vectors")
    units = 2 if "__FMA__" in macros or "__AVX512F__" in macros else 1
    ghz, where = _ghz()
    return dict(gflops=units * lanes * 2 * ghz,
                assumed=f"{units} FMA unit(s) x {lanes} lanes ({isa}) x 2 x {ghz:.2f} GHz ({where})")
