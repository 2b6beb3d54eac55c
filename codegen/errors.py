"""Every error a user can cause is a KilnError: one clear sentence, never a traceback."""


class KilnError(Exception):
    """Base class: the CLI prints str(err) to stderr and exits 2."""


class ModelError(KilnError):
    """The file is missing, is not an ONNX model, or fails onnx.checker."""


class ShapeError(KilnError):
    """A tensor has no static shape, or a user-given shape does not fit."""


class UnsupportedError(KilnError):
    """One or more nodes use an op, attribute or dtype Kiln cannot compile."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems   # (node name, op_type, reason)
        lines = [f"  node {name!r} ({op}): {reason}" for name, op, reason in problems]
        super().__init__(f"{len(problems)} unsupported node(s), no C was written:\n" + "\n".join(lines))


class BuildError(KilnError):
    """The C compiler rejected the generated code (a Kiln bug: please report it)."""


class RunError(KilnError, RuntimeError):
    """The built model's run returned nonzero: a NULL pointer, or a parameter input (axes, K, pads...)
    whose value does not fit the shapes the model was compiled for."""


class LimitError(KilnError):
    """The compiled model would exceed a size limit the user set."""
