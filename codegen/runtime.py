"""Load a built model through cffi and call it on numpy arrays."""
from __future__ import annotations

from pathlib import Path

import cffi
import numpy as np

from .errors import RunError


class Runner:
    """Callable: runner(*inputs) -> list of output arrays (in the graph's order)."""

    def __init__(self, lib_path: Path, name: str, inputs, outputs, probes=None, marks: int = 0):
        self.ffi = cffi.FFI()
        self.ffi.cdef(f"int {name}_run(const void *const inputs[], void *const outputs[]);")
        if marks:       # a profiling build: runtime_c/kiln_profile.c's clock readings, one per layer + 1
            self.ffi.cdef(f"extern long long kiln_profile_ns[{marks}];")
        if probes is not None:
            self.ffi.cdef(f"int {name}_run_probed(const void *const inputs[], void *const outputs[], "
                          "void *const probes[]);")
        self.lib = self.ffi.dlopen(str(lib_path))
        self.name, self.inputs, self.outputs, self.probes, self.marks = name, inputs, outputs, probes, marks
        self.path = lib_path

    def _prepare(self, arrays):
        """The inputs as C-contiguous arrays of the model's dtypes and shapes (no copy where they are),
        fresh outputs, and the two pointer arrays the C function takes (a few microseconds: the
        benchmarks time the call from Python)."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(arrays)}")
        ins = []
        for arr, (name, shape, dtype) in zip(arrays, self.inputs):
            if not (isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.shape == shape
                    and arr.flags.c_contiguous):
                arr = np.ascontiguousarray(arr, dtype=dtype)
                if arr.size != int(np.prod(shape, dtype=np.int64)):
                    raise ValueError(f"input {name!r}: expected shape {shape}, got {arr.shape}")
                arr = arr.reshape(shape)
            ins.append(arr)
        outs = [np.empty(shape, dtype=dtype) for _, shape, dtype in self.outputs]     # the model writes all of them
        ptr = lambda a: self.ffi.from_buffer(a) if a.size else self.ffi.cast("void *", a.ctypes.data)  # noqa: E731
        return ins, outs, self.ffi.new("void *[]", [ptr(a) for a in ins] or 1), \
            self.ffi.new("void *[]", [ptr(a) for a in outs] or 1)

    @staticmethod
    def _why(status: int) -> str:
        return "a NULL pointer" if status < 0 else \
            f"layer {status - 1} found a parameter input that does not fit the model's static shapes"

    def __call__(self, *arrays):
        ins, outs, pin, pout = self._prepare(arrays)
        status = getattr(self.lib, f"{self.name}_run")(pin, pout)
        if status:
            raise RunError(f"{self.name}_run returned {status}: {self._why(status)}.")
        return outs

    def run_profiled(self, *arrays) -> np.ndarray:
        """Run once (a profiling build); every layer's time in ms."""
        self(*arrays)
        return np.diff(np.array(self.ffi.unpack(self.lib.kiln_profile_ns, self.marks), np.int64)) / 1e6

    def run_probed(self, *arrays):
        """Outputs, and the output of every layer (None where the layer has no output)."""
        ins, outs, pin, pout = self._prepare(arrays)
        buffers = [np.zeros(shape, dtype=dtype) if shape is not None else None for shape, dtype in self.probes]
        pprobe = self.ffi.new("void *[]", [self.ffi.cast("void *", b.ctypes.data) if b is not None
                                           else self.ffi.NULL for b in buffers] or 1)
        status = getattr(self.lib, f"{self.name}_run_probed")(pin, pout, pprobe)
        if status:
            raise RunError(f"{self.name}_run_probed returned {status}: {self._why(status)}.")
        return outs, buffers
