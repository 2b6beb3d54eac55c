"""The CUDA backend: the same graph, kernels and memory plan as the C file, as one `NAME.cu`.

One launch per fused layer. The layers that matter for time have their own kernels in
templates/cuda/ (one thread per output element, the epilogue in the store, weights read in the
layout the C kernels were packed into); every other layer runs its C body unchanged on one device
thread (correct, not fast). Weights live in one device buffer uploaded by NAME_init(), the
intermediate tensors in one device arena at the plan's offsets; NAME_run() takes device pointers
and a stream, and NAME_run_host() copies host buffers in and out around it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cffi
import jinja2
import numpy as np

from .build import cached_library
from .emit import MEMBERS, RUNTIME_C, TEMPLATES, emit, used_helpers
from .errors import KilnError

NVCC_FLAGS = ["-O3", "-arch=sm_90", "-std=c++17", "-Xcompiler", "-fPIC", "--shared"]
BLOCK = 256
# C templates with a CUDA kernel of their own (templates/cuda/<name>.cu.j2)
PARALLEL = {"elementwise", "conv", "conv_packed", "conv_planes", "conv_depthwise", "gemm", "gemm_packed", "pool", "concat", "copy",
            "transpose", "lrn", "batchnorm"}


def _parallel(kernel) -> bool:
    """Whether the layer runs its CUDA kernel (else its C body on one thread)."""
    if kernel.template not in PARALLEL or kernel.cases or kernel.fails:
        return False
    if kernel.template == "pool":     # float pools without MaxPool's indices
        return not kernel.params["indices"] and not kernel.params.get("integer")
    if kernel.template == "gemm":
        return not kernel.params["sparse"]
    return True


def nvcc() -> str | None:
    return shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc") or None


def gpu_present() -> bool:
    """Whether a CUDA device can be used here (nvidia-smi lists one)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    result = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return result.returncode == 0 and "GPU" in result.stdout


@dataclass
class CudaSources:
    name: str
    cu: str
    h: str


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(TEMPLATES / "cuda"), str(TEMPLATES / "c")]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["reduce_prod"] = lambda xs: int(np.prod(list(xs), dtype=np.int64))
    return env


_MEMBER_TYPES = {m: ctype for m, ctype, _ in MEMBERS}


def _device_expr(expr: str) -> str:
    """A C argument expression -> the same pointer in device memory."""
    m = re.fullmatch(r"kiln_(weights|arena)\.(\w+) \+ (\d+)", expr)
    if m:
        kind, member, offset = m.groups()
        const = "const " if kind == "weights" else ""
        return f"(({const}{_MEMBER_TYPES[member]} *)kiln_dev_{kind}) + {offset}"
    return expr


def emit_cuda(compiled) -> CudaSources:
    ctx = emit(compiled.graph, compiled.kernels, compiled.plan, compiled.options, context=True)
    env = _env()
    launches = []
    for layer in ctx["layers"]:
        if layer["alias_only"]:
            continue
        kernel = layer["kernel"]
        args = [dict(a, expr=_device_expr(a["expr"])) for a in layer["args"]]
        parallel = _parallel(kernel) and not layer["fails"]
        if parallel:
            body = env.get_template(f"{kernel.template}.cu.j2").render(
                **kernel.params, idx=lambda a, e, s=frozenset(layer["splat"]): "0" if a in s else e)
            count = int(re.search(r"/\* threads: (\d+) \*/", body).group(1))
        else:
            body, count = layer["body"], 1
        launches.append(dict(layer, args=args, body=body, threads=count, parallel=parallel,
                             blocks=max(1, -(-count // BLOCK)) if parallel else 1))
    # the C helpers the bodies call, as device functions
    helpers = re.sub(r"^static ", "static __device__ ", used_helpers("".join(la["body"] for la in launches)), flags=re.M)
    cu = env.get_template("model.cu.j2").render(**ctx, launches=launches, block=BLOCK, helpers=helpers,
                                                runtime_h=(RUNTIME_C / "kiln_runtime.h").read_text())
    h = env.get_template("model.cuh.j2").render(**ctx)
    return CudaSources(compiled.name, cu, h)


def build_cuda(sources: CudaSources, flags=None) -> Path:
    """nvcc NAME.cu into a shared library (cached by content)."""
    cc = nvcc()
    if cc is None:
        raise KilnError("nvcc was not found: install the CUDA toolkit (or put nvcc on PATH) to build --target cuda.")
    flags = list(flags or NVCC_FLAGS)
    files = {f"{sources.name}.cu": sources.cu, f"{sources.name}.h": sources.h}
    return cached_library(f"{sources.name}-cuda", files, [cc, *flags, f"{sources.name}.cu", "-o", "lib.so"])


class CudaRunner:
    """Calls NAME_run_host on numpy arrays (host buffers; the library copies them to the device)."""

    def __init__(self, lib_path: Path, name: str, inputs, outputs):
        self.ffi = cffi.FFI()
        self.ffi.cdef(f"int {name}_init(void); void {name}_free(void);"
                      f"int {name}_run_host(const void *const inputs[], void *const outputs[]);"
                      f"int {name}_time(int runs, float *ms);")
        self.lib = self.ffi.dlopen(str(lib_path))
        self.name, self.inputs, self.outputs = name, inputs, outputs
        status = getattr(self.lib, f"{name}_init")()
        if status:
            raise KilnError(f"{name}_init() failed with CUDA error {status}: is a GPU present?")
        self._run = getattr(self.lib, f"{name}_run_host")

    def __call__(self, *arrays):
        ins = [np.ascontiguousarray(a, dtype=dt).reshape(shape) for a, (_, shape, dt) in zip(arrays, self.inputs)]
        outs = [np.empty(shape, dt) for _, shape, dt in self.outputs]
        in_ptrs = self.ffi.new("void *[]", [self.ffi.cast("void *", self.ffi.from_buffer(a)) for a in ins] or [0])
        out_ptrs = self.ffi.new("void *[]", [self.ffi.cast("void *", self.ffi.from_buffer(a)) for a in outs] or [0])
        status = self._run(in_ptrs, out_ptrs)
        if status:
            raise KilnError(f"{self.name}_run_host failed with status {status}")
        return outs

    def time(self, runs: int) -> list[float]:
        """Milliseconds of each of `runs` inferences on the inputs of the last call (CUDA events)."""
        ms = np.zeros(runs, np.float32)
        status = getattr(self.lib, f"{self.name}_time")(runs, self.ffi.cast("float *", self.ffi.from_buffer(ms)))
        if status:
            raise KilnError(f"{self.name}_time failed with status {status}")
        return ms.tolist()

    def close(self):
        getattr(self.lib, f"{self.name}_free")()


def build(compiled, flags=None) -> CudaRunner:
    sources = emit_cuda(compiled)
    return CudaRunner(build_cuda(sources, flags), compiled.name, *compiled._io_specs())


def save(compiled, directory) -> dict[str, Path]:
    """Write NAME.cu, NAME.h (the CUDA API) and NAME.json into `directory`."""
    import json
    sources = emit_cuda(compiled)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"cu": directory / f"{compiled.name}.cu", "h": directory / f"{compiled.name}.h",
             "json": directory / f"{compiled.name}.json"}
    paths["cu"].write_text(sources.cu)
    paths["h"].write_text(sources.h)
    paths["json"].write_text(json.dumps(compiled.report, indent=1, sort_keys=True) + "\n")
    return paths


def run_and_time(compiled, proto, samples, runs: int = 50) -> dict:
    """Build the .cu, run every sample through it and compare with onnxruntime (CPU); time it (CUDA
    events, the median of up to `runs` inferences that fit about 2 s, after 3 warm-ups)."""
    from .verify import Reference, compare
    if not gpu_present():
        raise KilnError("no CUDA device here (nvidia-smi lists none): --target cuda can be compiled "
                        "(kiln compile --target cuda) but not run on this machine.")
    runner = build(compiled)
    reference = Reference(proto)
    worst = {}
    for arrays in samples:
        got = runner(*arrays)
        want = reference({n: a for (n, _, _), a in zip(runner.inputs, arrays)})
        for g, (name, w) in zip(got, want.items()):
            c = compare(name, g, w.reshape(g.shape))
            if name not in worst or (not c.ok, c.max_rel) > (not worst[name].ok, worst[name].max_rel):
                worst[name] = c
    first = runner.time(3)[-1]
    ms = runner.time(int(min(runs, max(3, 2000 / max(first, 1e-3)))))
    runner.close()
    return dict(ok=all(c.ok for c in worst.values()), outputs=[c.__dict__ for c in worst.values()],
                max_rel=max(c.max_rel for c in worst.values()), ms=float(np.median(ms)), samples=len(samples))
