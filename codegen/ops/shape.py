"""Data movement: views (Reshape, Flatten, Squeeze, Unsqueeze) share their input's buffer;
Transpose and Concat copy; Constant and ConstantOfShape are folded at compile time."""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_dtype, shape_strides


def view(outs, X) -> Kernel:
    (Y,) = outs
    require_dtype(X, Y, dtypes=(np.dtype(X.dtype),) if X.dtype is not None else ())
    return Kernel("copy", {"X": X}, {"Y": Y}, params=dict(nbytes=Y.nbytes), alias=True,
                  math=f"Y{list(Y.shape)} = X{list(X.shape)} (same bytes)")


@op("Reshape")
def reshape(outs, data, shape, *, allowzero=0):
    return view(outs, data)


@op("Flatten")
def flatten(outs, input, *, axis=1):
    return view(outs, input)


@op("Squeeze")
def squeeze(outs, data, axes=None):
    return view(outs, data)


@op("Unsqueeze")
def unsqueeze(outs, data, axes):
    return view(outs, data)


@op("Transpose")
def transpose(outs, data, *, perm=None):
    (Y,) = outs
    rank = len(data.shape)
    perm = list(perm) if perm is not None else list(range(rank))[::-1]
    in_strides = shape_strides(data.shape, data.shape)
    ctype_ok = np.dtype(data.dtype).itemsize in (1, 2, 4, 8)
    if not ctype_ok:
        raise Unsupported(f"dtype {data.dtype} not supported")
    return Kernel("transpose", {"X": data}, {"Y": Y},
                  params=dict(dims=list(Y.shape), strides=[in_strides[p] for p in perm]),
                  math=f"Y[i...] = X[i permuted by {perm}]")


@op("Concat")
def concat(outs, *inputs, axis):
    (Y,) = outs
    axis = axis + len(Y.shape) if axis < 0 else axis
    outer = int(np.prod(Y.shape[:axis], dtype=np.int64))
    item = np.dtype(Y.dtype).itemsize
    inner = int(np.prod(Y.shape[axis + 1:], dtype=np.int64)) * item
    parts, offset, args = [], 0, {}
    for i, v in enumerate(inputs):
        if v.dtype != Y.dtype:
            raise Unsupported("inputs of different dtypes")
        chunk = v.shape[axis] * inner
        if chunk:
            args[f"X{i}"] = v
            parts.append(dict(name=f"X{i}", offset=offset, chunk=chunk))
        offset += chunk
    return Kernel("concat", args, {"Y": Y}, params=dict(outer=outer, row=offset, parts=parts),
                  math=f"Y = concat(X0, X1, ...) along axis {axis}")


@op("Constant", "ConstantOfShape", "Shape", "Size")
def constant(outs, input=None, **attrs):
    raise Unsupported("its value must be known at compile time (constant folding could not compute it)")
