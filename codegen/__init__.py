"""Kiln: ONNX models to one self-contained, verified C file.

    import codegen
    model = codegen.compile("net.onnx")
    model.save("out/")                 # out/net.c, out/net.h, out/net.json
    y, = model.build()(x)              # run the generated C on numpy arrays
"""
from __future__ import annotations

from .compiler import CompiledModel, compile
from .errors import BuildError, KilnError, LimitError, ModelError, RunError, ShapeError, UnsupportedError

__all__ = ["compile", "CompiledModel", "KilnError", "ModelError", "ShapeError", "UnsupportedError",
           "BuildError", "LimitError", "RunError"]
