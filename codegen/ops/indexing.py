"""Indexing by run-time indices: Gather, GatherElements, GatherND, ScatterElements (and the old
Scatter), ScatterND, OneHot.

Indices are read in C (int32 or int64). A negative index counts from the end, as ONNX says; an
index still outside the axis is clamped into it (the spec calls it an error; clamping keeps every
read and write inside the buffers). The data may have any dtype: elements are only moved, or
combined with + * min max for the scatter reductions.
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, check_param, op, require_dtype, runtime_param, wrapping_type
from .layout import contiguous_strides

INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))

# reduction -> C expression combining the current element y with the update u
SCATTER_REDUCTIONS = {"none": "u", "add": "y + u", "mul": "y * u", "max": "(u > y ? u : y)", "min": "(u < y ? u : y)"}


def _combine(reduction: str, dtype, ctype: str) -> str:
    """The reduction's C expression; integer + and * wrap around (computed unsigned: never UB)."""
    expr = SCATTER_REDUCTIONS[reduction]
    wide = wrapping_type(dtype)
    if wide and reduction in ("add", "mul"):
        expr = f"({ctype})(({wide})y {'+' if reduction == 'add' else '*'} ({wide})u)"
    return expr


def _axis(axis, rank):
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    return axis


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


@op("Gather")
def gather(outs, data, indices, *, axis=0):
    (Y,) = outs
    c_type(data, bits=True)
    require_dtype(indices, dtypes=INDEX_TYPES)
    axis = _axis(axis, len(data.shape))
    A = data.shape[axis]
    if A == 0:
        raise Unsupported("gathers from an empty axis")
    return Kernel("gather", {"X": data, "I": indices}, {"Y": Y},
                  params=dict(outer=_prod(data.shape[:axis]), A=A, N=indices.size,
                              inner=_prod(data.shape[axis + 1:])),
                  math=f"Y[o][j][i] = X[o][I[j]][i]  (axis {axis})")


@op("GatherElements")
def gather_elements(outs, data, indices, *, axis=0):
    (Y,) = outs
    c_type(data, bits=True)
    require_dtype(indices, dtypes=INDEX_TYPES)
    rank = len(data.shape)
    axis = _axis(axis, rank)
    if len(indices.shape) != rank:
        raise Unsupported("indices must have the data's rank")
    if data.shape[axis] == 0:
        raise Unsupported("gathers from an empty axis")
    return Kernel("gather_elements", {"X": data, "I": indices}, {"Y": Y},
                  params=_elements(data, indices, axis, "Y[o] = X[pos];"),
                  math=f"Y[i...] = X[i... with i[{axis}] = I[i...]]")


def _elements(data, indices, axis, store):
    if any(i > d for k, (i, d) in enumerate(zip(indices.shape, data.shape)) if k != axis):
        raise Unsupported("indices are larger than the data outside the axis")
    return dict(dims=list(indices.shape), strides=contiguous_strides(data.shape), axis=axis,
                A=data.shape[axis], store=store, copy=0)


@op("ScatterElements", "Scatter")
def scatter_elements(outs, data, indices, updates, *, axis=0, reduction="none"):
    (Y,) = outs
    ctype = c_type(data)
    require_dtype(indices, dtypes=INDEX_TYPES)
    if reduction not in SCATTER_REDUCTIONS or (reduction != "none" and np.dtype(data.dtype) == np.bool_):
        raise Unsupported(f"reduction {reduction!r} not supported for {data.dtype}")
    rank = len(data.shape)
    axis = _axis(axis, rank)
    if len(indices.shape) != rank or tuple(updates.shape) != tuple(indices.shape) or updates.dtype != data.dtype:
        raise Unsupported("indices and updates must have one shape and the data's rank and dtype")
    if indices.size == 0:
        return Kernel("copy", {"X": data}, {"Y": Y}, params=dict(nbytes=Y.nbytes), math="Y = X (no updates)")
    store = f"{{ const {ctype} y = Y[pos], u = U[o]; (void)y; Y[pos] = {_combine(reduction, data.dtype, ctype)}; }}"
    return Kernel("gather_elements", {"X": data, "I": indices, "U": updates}, {"Y": Y},
                  params=dict(_elements(data, indices, axis, store), copy=Y.nbytes),
                  math=f"Y = X; then Y[i... with i[{axis}] = I[i...]] = {reduction}(that, U[i...]) in order")


@op("GatherND")
def gather_nd(outs, data, indices, *, batch_dims=0):
    (Y,) = outs
    c_type(data, bits=True)
    require_dtype(indices, dtypes=INDEX_TYPES)
    params = _nd(data, indices, batch_dims)
    return Kernel("gather_nd", {"X": data, "I": indices}, {"Y": Y}, params=dict(params, scatter=None),
                  math="Y[b][t][i] = X[b][I[b][t][0]]...[I[b][t][m-1]][i]")


@op("ScatterND")
def scatter_nd(outs, data, indices, updates, *, reduction="none"):
    (Y,) = outs
    ctype = c_type(data)
    require_dtype(indices, dtypes=INDEX_TYPES)
    if reduction not in SCATTER_REDUCTIONS or (reduction != "none" and np.dtype(data.dtype) == np.bool_):
        raise Unsupported(f"reduction {reduction!r} not supported for {data.dtype}")
    params = _nd(data, indices, 0)
    m = indices.shape[-1]
    if tuple(updates.shape) != tuple(indices.shape[:-1]) + tuple(data.shape[m:]) or updates.dtype != data.dtype:
        raise Unsupported("updates must have shape indices.shape[:-1] + data.shape[m:] and the data's dtype")
    if updates.size == 0:
        return Kernel("copy", {"X": data}, {"Y": Y}, params=dict(nbytes=Y.nbytes), math="Y = X (no updates)")
    store = f"const {ctype} y = Y[src + i], u = U[dst + i]; (void)y; Y[src + i] = {_combine(reduction, data.dtype, ctype)};"
    return Kernel("gather_nd", {"X": data, "I": indices, "U": updates}, {"Y": Y},
                  params=dict(params, scatter=store, copy=Y.nbytes),
                  math=f"Y = X; then Y[I[t][0]]...[I[t][m-1]][i] = {reduction}(that, U[t][i]) in order")


def _nd(data, indices, b):
    rank, q = len(data.shape), len(indices.shape)
    if q < 1 or not 0 <= b < min(rank, q):
        raise Unsupported("batch_dims out of range")
    m = indices.shape[-1]
    if b + m > rank or tuple(indices.shape[:b]) != tuple(data.shape[:b]):
        raise Unsupported("indices do not fit the data's shape")
    if any(d == 0 for d in data.shape[b:b + m]) and indices.size:
        raise Unsupported("indexes into an empty axis")
    strides = contiguous_strides(data.shape)
    return dict(B=_prod(data.shape[:b]), T=_prod(indices.shape[b:-1]), m=m, XB=_prod(data.shape[b:]),
                inner=_prod(data.shape[b + m:]), dims=list(data.shape[b:b + m]), strides=strides[b:b + m])


@op("OneHot")
def one_hot(outs, indices, depth, values, *, axis=-1):
    (Y,) = outs
    c_type(Y, bits=True)
    c_type(indices)
    rank = len(indices.shape)
    axis = axis + rank + 1 if axis < 0 else axis
    if not 0 <= axis <= rank or len(Y.shape) != rank + 1:
        raise Unsupported("axis out of range")
    count = runtime_param(depth, [Y.shape[axis]]).reshape(-1)      # at run time, Y's length on the axis
    if count.size != 1 or values.size != 2 or values.dtype != Y.dtype:
        raise Unsupported("depth must be one number and values two of the output's dtype")
    count = int(count[0])
    if count < 1 or count != Y.shape[axis]:
        raise Unsupported("depth below 1 or different from the output's length on the axis")
    return check_param(Kernel("one_hot", {"I": indices, "V": values}, {"Y": Y},
                              params=dict(outer=_prod(indices.shape[:axis]), depth=count,
                                          inner=_prod(indices.shape[axis:]),
                                          float_index=np.dtype(indices.dtype).kind == "f"),
                              math=f"Y[o][d][i] = V[1] if I[o][i] (mod {count} when negative) == d else V[0]"),
                       "D", depth, [count])


@op("ReverseSequence")
def reverse_sequence(outs, input, sequence_lens, *, batch_axis=1, time_axis=0):
    """A length outside [0, T] is clamped into it (the spec calls it an error)."""
    (Y,) = outs
    ctype = c_type(input, bits=True)
    require_dtype(sequence_lens, dtypes=INDEX_TYPES)
    rank = len(input.shape)
    b, t = _axis(batch_axis, rank), _axis(time_axis, rank)
    if b == t or rank < 2:
        raise Unsupported("batch_axis and time_axis must differ")
    strides = contiguous_strides(input.shape)
    return Kernel("reverse_sequence", {"X": input, "L": sequence_lens}, {"Y": Y},
                  params=dict(size=Y.size, T=input.shape[t], ts=strides[t], B=input.shape[b], bs=strides[b],
                              ctype=ctype),
                  math=f"Y = X with the first L[b] elements along axis {t} reversed, for each b along axis {b}")


@op("TensorScatter")
def tensor_scatter(outs, past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    """present = past_cache with update written at write_indices[batch] along the axis (modulo its
    length in circular mode). Linear mode skips the rows past the end (the spec calls them an error)."""
    (Y,) = outs
    c_type(past_cache, bits=True)
    if write_indices is not None:
        require_dtype(write_indices, dtypes=INDEX_TYPES)
    if mode not in ("linear", "circular"):
        raise Unsupported(f"mode {mode!r} not supported")
    rank = len(past_cache.shape)
    a = _axis(axis, rank)
    if a == 0:
        raise Unsupported("the sequence axis cannot be the batch axis")
    inputs = {"P": past_cache, "U": update}
    if write_indices is not None:
        inputs["W"] = write_indices
    outer = _prod(past_cache.shape[:a])
    return Kernel("tensor_scatter", inputs, {"Y": Y},
                  params=dict(nbytes=Y.nbytes, outer=outer, per_batch=outer // past_cache.shape[0],
                              M=past_cache.shape[a], S=update.shape[a], inner=_prod(past_cache.shape[a + 1:]),
                              itemsize=np.dtype(Y.dtype).itemsize, circular=mode == "circular",
                              indices=write_indices is not None),
                  math=f"Y = P; Y[.., W[b] + s, ..] = U[.., s, ..] along axis {a} ({mode})")
