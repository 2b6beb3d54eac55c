"""Compile generated C into a shared library with the system compiler, cached by content hash."""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from .errors import BuildError

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
# Host default: the user's machine is the target, and a*b+c may become one FMA (as onnxruntime does).
# Override with KILN_CFLAGS or cflags=.
DEFAULT_CFLAGS = ["-O3", "-march=native", "-ffp-contract=fast"]


def cache_dir() -> Path:
    path = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache" / "kiln"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler() -> str:
    return os.environ.get("CC", "cc")


def default_cflags() -> list[str]:
    env = os.environ.get("KILN_CFLAGS")
    return shlex.split(env) if env else list(DEFAULT_CFLAGS)


def build_shared(name: str, c_source: str, h_source: str, cflags=None, extra: dict[str, str] | None = None) -> Path:
    """Build NAME.c/.h (and the `extra` {file name: C source} files) into a shared library and
    return its path (reused when nothing changed)."""
    cflags = default_cflags() if cflags is None else list(cflags)
    cc = compiler()
    extra = extra or {}
    files = {f"{name}.c": c_source, f"{name}.h": h_source, **extra}
    return cached_library(name, files, [cc, *WARNINGS, *cflags, "-fPIC", "-shared", f"{name}.c", *extra, "-o",
                                        "lib.so", "-lm"])


def cached_library(name: str, files: dict[str, str], cmd: list[str]) -> Path:
    """Write `files` into a temporary folder, run `cmd` there (it writes lib.so), and keep the library
    in the cache under a key of the command and the files: the same inputs are built once."""
    texts = [*cmd, *(t for item in sorted(files.items()) for t in item)]
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:24]
    lib = cache_dir() / f"{name}-{key}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(prefix="kiln-") as tmp:
        for file, text in files.items():
            (Path(tmp) / file).write_text(text)
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if result.returncode:
            raise BuildError(f"{' '.join(cmd)} failed (a kiln bug, please report it):\n{result.stderr[-4000:]}")
        partial = lib.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.copyfile(Path(tmp) / "lib.so", partial)
        os.replace(partial, lib)
    return lib
