"""Data movement: Slice, Split, Expand, Tile, DepthToSpace, SpaceToDepth (strided copies), Pad
(per-axis index tables), Trilu (a mask), Range (folded).

Every one of them moves elements without looking at them, so it works for any dtype: the
template indexes typed pointers and never names the type. Parameter inputs (starts/ends, split,
shape, repeats, pads, k) may arrive at run time: those the output's static shape fixes are checked
then (split, shape, repeats); the others are read (Slice's and Pad's fill their tables at run time,
Trilu's k).
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_type, check_param, guarded, op, runtime_param
from .shape import view


def contiguous_strides(shape) -> list[int]:
    strides, step = [], 1
    for dim in reversed(tuple(shape)):
        strides.append(step)
        step *= dim
    return strides[::-1]


def coalesce(dims, strides) -> tuple[list[int], list[int]]:
    """Drop size-1 dims and merge dim d into d-1 where the source is contiguous across the pair."""
    pairs = [(d, s) for d, s in zip(dims, strides) if d != 1]
    out: list[list[int]] = []
    for d, s in pairs:
        if out and out[-1][1] == s * d:
            out[-1] = [out[-1][0] * d, s]
        else:
            out.append([d, s])
    return [d for d, _ in out], [s for _, s in out]


def part(arg: str, dims, strides, base: int = 0) -> dict:
    """One output of a strided copy: arg[o] = X[base + sum_d i_d * strides[d]], o row-major over dims."""
    size = int(np.prod(dims, dtype=np.int64))
    dims, strides = coalesce(list(dims), list(strides))
    return dict(name=arg, dims=dims, strides=strides, base=int(base), empty=size == 0)


def strided(X, outputs: dict, parts: list[dict], math: str) -> Kernel:
    """Outputs that each read X at base + a linear function of their own index."""
    for v in [X, *outputs.values()]:
        c_type(v, bits=True)
    if X.size == 0 and not all(p["empty"] for p in parts):
        raise Unsupported("reads an empty tensor")
    if len(parts) == 1 and not parts[0]["empty"] and parts[0]["base"] == 0 and \
            parts[0]["dims"] in ([X.size], []) and parts[0]["strides"] in ([1], []):
        return view([outputs[parts[0]["name"]]], X)     # the identity: a view, no code
    return Kernel("strided", {"X": X}, outputs, params=dict(parts=parts), math=math)


@op("Slice")
def slice_(outs, data, starts, ends, axes=None, steps=None):
    (Y,) = outs
    if any(v is not None and runtime_param(v) is None for v in (starts, ends, axes, steps)):
        return _slice_at_run_time(Y, data, starts, ends, axes, steps)
    starts = runtime_param(starts).reshape(-1)
    ends = runtime_param(ends).reshape(-1)
    rank = len(data.shape)
    axes = list(range(len(starts))) if axes is None else [int(a) for a in runtime_param(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in runtime_param(steps).reshape(-1)]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise Unsupported("starts, ends, axes and steps differ in length")
    axes = [a + rank if a < 0 else a for a in axes]
    if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise Unsupported("axes out of range or repeated")
    full = contiguous_strides(data.shape)
    dims, strides, base = list(data.shape), list(full), 0
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise Unsupported("a step of 0")
        picked = range(*slice(int(s), int(e), st).indices(data.shape[a]))
        dims[a], strides[a] = len(picked), full[a] * st
        base += (picked.start if len(picked) else 0) * full[a]
    if tuple(dims) != tuple(Y.shape):
        raise Unsupported(f"output shape {Y.shape} differs from the computed {tuple(dims)}")
    return strided(data, {"Y": Y}, [part("Y", dims, strides, base)],
                   math=f"Y = X[start:end:step] along axes {axes}")


def _slice_at_run_time(Y, data, starts, ends, axes, steps) -> Kernel:
    """Slice with starts, ends, axes or steps given at run time: the kernel clamps them as ONNX says
    (kiln_slice) and fails unless they select Y's static shape."""
    k = starts.size
    if any(v is not None and v.size != k for v in (ends, axes, steps)):
        raise Unsupported("starts, ends, axes and steps differ in length")
    if data.size == 0:
        raise Unsupported("slices an empty tensor")
    c_type(data, bits=True)
    inputs, consts = {"X": data}, {}
    defaults = {"A": np.arange(k), "S": np.ones(k)}         # axes 0, 1, ... and steps of 1
    for arg, v in (("B", starts), ("E", ends), ("A", axes), ("S", steps)):
        known = defaults.get(arg) if v is None else runtime_param(v)
        if known is None:
            inputs[arg] = v
        else:
            consts[arg] = np.asarray(known, dtype=np.int64).reshape(-1)
    return Kernel("slice", inputs, {"Y": Y}, consts=consts, fails=True,
                  params=dict(rank=len(data.shape), k=k, dims=list(data.shape), out=list(Y.shape),
                              strides=contiguous_strides(data.shape)),
                  math="Y = X[B:E:S] along the axes A (clamped as ONNX says)")


@op("Split")
def split(outs, input, split=None, *, axis=0, num_outputs=None):
    rank = len(input.shape)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    dim = input.shape[axis]
    if split is not None:      # at run time, the split is the outputs' lengths on the axis
        fixed = None if None in outs else [Y.shape[axis] for Y in outs]
        sizes = runtime_param(split, fixed)
        if sizes is None:
            raise Unsupported("the split input must be a constant when an output is omitted")
        sizes = [int(s) for s in sizes.reshape(-1)]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    else:      # equal parts (the last one smaller when num_outputs does not divide the axis)
        n = num_outputs or len(outs)
        chunk = -(-dim // n)
        offsets = [min(dim, i * chunk) for i in range(n + 1)]
    if len(offsets) - 1 < len(outs) or offsets[-1] != dim and split is not None:
        raise Unsupported("the split does not cover the axis")
    strides = contiguous_strides(input.shape)
    outputs, parts = {}, []
    for i, Y in enumerate(outs):
        if Y is None:
            continue
        dims = list(input.shape)
        dims[axis] = offsets[i + 1] - offsets[i]
        if tuple(dims) != tuple(Y.shape):
            raise Unsupported(f"output {i} has shape {Y.shape}, not the computed {tuple(dims)}")
        outputs[f"Y{i}"] = Y
        parts.append(part(f"Y{i}", dims, strides, offsets[i] * strides[axis]))
    kernel = strided(input, outputs, parts, math=f"Y0, Y1, ... = consecutive parts of X along axis {axis}")
    return check_param(kernel, "S", split, sizes) if split is not None else kernel


@op("Expand")
def expand(outs, input, shape):
    (Y,) = outs
    rank = len(Y.shape)
    padded = (1,) * (rank - len(input.shape)) + tuple(input.shape)
    strides = [0 if d == 1 else s for d, s in zip(padded, contiguous_strides(padded))]
    kernel = strided(input, {"Y": Y}, [part("Y", Y.shape, strides)], math="Y = X broadcast to Y's shape")
    if shape.is_const or shape.size == 0:
        return kernel
    # at run time, each entry of shape must broadcast with X's dim to Y's (1 only where they agree)
    n = shape.size
    if len(shape.shape) != 1 or n > rank:
        raise Unsupported("the shape input must be a list no longer than the output's rank")
    ok = [f"S[{i}] == {y}" + (" || S[{i}] == 1".format(i=i) if x == y else "")
          for i, (x, y) in enumerate(zip(padded[rank - n:], Y.shape[rank - n:]))]
    return guarded(kernel, "S", shape, [(" && ".join(f"({c})" for c in ok), {})])


@op("Tile")
def tile(outs, input, repeats):
    (Y,) = outs
    fixed = [y // x if x else None for x, y in zip(input.shape, Y.shape)]     # at run time: Y's dims / X's
    counts = runtime_param(repeats, fixed if None not in fixed and len(Y.shape) == len(input.shape) else None)
    if counts is None:
        raise Unsupported("the repeats input must be a constant when the output's shape does not fix it")
    counts = [int(r) for r in counts.reshape(-1)]
    if len(counts) != len(input.shape) or any(r < 0 for r in counts):
        raise Unsupported("repeats must give one non-negative count per axis")
    if tuple(r * d for r, d in zip(counts, input.shape)) != tuple(Y.shape):
        raise Unsupported(f"output shape {Y.shape} differs from the tiled shape")
    # Y, seen as [r0][d0][r1][d1]..., reads X[i0][i1]... whatever the repetition
    dims, strides = [], []
    for r, d, s in zip(counts, input.shape, contiguous_strides(input.shape)):
        dims += [r, d]
        strides += [0, s]
    kernel = strided(input, {"Y": Y}, [part("Y", dims, strides)], math=f"Y = X repeated {counts} times")
    return check_param(kernel, "R", repeats, counts)


def _regroup(X, Y, shape, perm, math):
    """Y = reshape(transpose(reshape(X, shape), perm)): a strided copy."""
    if int(np.prod(shape, dtype=np.int64)) != X.size or X.size != Y.size:
        raise Unsupported("the blocksize does not divide the input's dimensions")
    strides = contiguous_strides(shape)
    return strided(X, {"Y": Y}, [part("Y", [shape[p] for p in perm], [strides[p] for p in perm])], math=math)


@op("DepthToSpace")
def depth_to_space(outs, input, *, blocksize, mode="DCR"):
    (Y,) = outs
    if len(input.shape) != 4:
        raise Unsupported("DepthToSpace needs a 4-D input")
    N, C, H, W = input.shape
    b = blocksize
    if b < 1 or C % (b * b):
        raise Unsupported("the channels do not divide by blocksize^2")
    if mode == "DCR":
        return _regroup(input, Y, (N, b, b, C // (b * b), H, W), (0, 3, 4, 1, 5, 2),
                        "Y[n][c][h*b+i][w*b+j] = X[n][(i*b+j)*C/b^2 + c][h][w]  (DCR)")
    if mode == "CRD":
        return _regroup(input, Y, (N, C // (b * b), b, b, H, W), (0, 1, 4, 2, 5, 3),
                        "Y[n][c][h*b+i][w*b+j] = X[n][c*b^2 + i*b+j][h][w]  (CRD)")
    raise Unsupported(f"mode {mode!r} not supported")


@op("SpaceToDepth")
def space_to_depth(outs, input, *, blocksize, mode="DCR"):
    (Y,) = outs
    if len(input.shape) != 4:
        raise Unsupported("SpaceToDepth needs a 4-D input")
    N, C, H, W = input.shape
    b = blocksize
    if b < 1 or H % b or W % b:
        raise Unsupported("the height and width do not divide by blocksize")
    shape = (N, C, H // b, b, W // b, b)
    if mode == "DCR":
        return _regroup(input, Y, shape, (0, 3, 5, 1, 2, 4), "Y[n][(i*b+j)*C + c][h][w] = X[n][c][h*b+i][w*b+j]")
    if mode == "CRD":
        return _regroup(input, Y, shape, (0, 1, 3, 5, 2, 4), "Y[n][c*b^2 + i*b+j][h][w] = X[n][c][h*b+i][w*b+j]")
    raise Unsupported(f"mode {mode!r} not supported")


PAD_MODES = ("constant", "reflect", "edge", "wrap")


@op("Pad")
def pad(outs, data, pads, constant_value=None, axes=None, *, mode="constant"):
    (Y,) = outs
    ctype = c_type(data, bits=True)
    if mode not in PAD_MODES:
        raise Unsupported(f"mode {mode!r} not supported")
    rank = len(data.shape)
    inputs = {"X": data}
    if constant_value is not None and mode == "constant":
        if constant_value.dtype != data.dtype or constant_value.size != 1:
            raise Unsupported("constant_value must be one element of the data's dtype")
        inputs["V"] = constant_value      # read as V[0]: exact for every dtype
    if runtime_param(pads) is None or axes is not None and runtime_param(axes) is None:
        return _pad_at_run_time(Y, data, pads, axes, mode, inputs)
    pads = [int(p) for p in runtime_param(pads).reshape(-1)]
    axes = list(range(rank)) if axes is None else \
        [int(a) + rank if a < 0 else int(a) for a in runtime_param(axes).reshape(-1)]
    if len(pads) != 2 * len(axes) or any(not 0 <= a < rank for a in axes):
        raise Unsupported("pads must give a begin and an end per axis")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    # per axis, the source index of each output index (-1: the constant)
    tables = []
    for n, b, e in zip(data.shape, begin, end):
        if mode == "constant":
            src = np.concatenate([np.full(max(b, 0), -1), np.arange(n), np.full(max(e, 0), -1)])
        elif min(b, e) < 0:
            raise Unsupported(f"negative pads in mode {mode!r}")
        elif n == 0 and b + e:
            raise Unsupported(f"mode {mode!r} pads an empty axis")
        else:
            src = np.pad(np.arange(n), (b, e), mode=mode)
        src = src[max(-b, 0):len(src) - max(-e, 0)]
        tables.append(src.astype(np.int64))
    if tuple(len(t) for t in tables) != tuple(Y.shape):
        raise Unsupported(f"output shape {Y.shape} differs from the padded shape")
    strides = contiguous_strides(data.shape)
    offsets = [np.where(t < 0, -1, t * s) for t, s in zip(tables, strides)]
    # axes whose table is the identity need no table: X's offset follows the loop index
    dims, rows, blob = [], [], []
    for d, (t, s) in enumerate(zip(offsets, strides)):
        ident = len(t) == data.shape[d] and np.array_equal(t, np.arange(len(t)) * s)
        dims.append(len(t))
        rows.append(dict(at=sum(len(b) for b in blob), stride=s, ident=ident))
        if not ident:
            blob.append(t)
    consts = {}
    if blob:
        table = np.concatenate(blob)
        consts["T"] = table.astype(np.int32 if data.size < 2**31 else np.int64)
    return Kernel("pad", inputs, {"Y": Y}, consts=consts,
                  params=dict(dims=dims, rows=rows, value="V[0]" if "V" in inputs else "0", ctype=ctype,
                              constant=mode == "constant", fills=[]),
                  math=f"Y = pad(X, begin {begin}, end {end}, mode {mode})")


def _pad_at_run_time(Y, data, pads, axes, mode, inputs) -> Kernel:
    """Pad whose pads (or axes) arrive at run time: the kernel fills the per-axis tables itself, from
    the begin pads it reads, and fails unless each axis's begin + end is what Y's static shape says."""
    rank = len(data.shape)
    k = rank if axes is None else axes.size
    if pads.size != 2 * k:
        raise Unsupported("pads must give a begin and an end per axis")
    listed = None if axes is None else runtime_param(axes)
    consts = {"A": np.arange(rank, dtype=np.int64)} if axes is None else {} if listed is None else {"A": listed}
    if listed is not None:
        listed = [int(a) % rank for a in listed.reshape(-1)]
    strides = contiguous_strides(data.shape)
    rows, fills = [], []
    for d, (n, m) in enumerate(zip(data.shape, Y.shape)):
        if listed is not None and d not in listed:      # not padded: the identity
            if n != m:
                raise Unsupported(f"output shape {Y.shape} differs from the padded shape")
            rows.append(dict(at=0, stride=strides[d], ident=True))
            continue
        lo, hi = (-n, m) if mode == "constant" else (0, m - n)     # the begin pads that can give m
        if lo > hi or mode != "constant" and n == 0 and m:
            raise Unsupported(f"mode {mode!r} cannot pad {n} elements to {m}")
        at = sum(f["m"] for f in fills)
        rows.append(dict(at=at, stride=strides[d], ident=False))
        fills.append(dict(axis=d, at=at, n=n, m=m, lo=lo, hi=hi, stride=strides[d]))
    return Kernel("pad", {**inputs, "P": pads, **({"A": axes} if axes is not None and not consts else {})},
                  {"Y": Y}, consts=consts, fails=True,
                  params=dict(dims=list(Y.shape), rows=rows, value="V[0]" if "V" in inputs else "0",
                              ctype=c_type(data, bits=True), constant=mode == "constant", fills=fills, mode=mode,
                              rank=rank, k=k, big=max([*data.shape, *Y.shape])),
                  math=f"Y = pad(X, begin P[0:{k}], end P[{k}:{2 * k}] on the axes A, mode {mode})")


@op("Trilu")
def trilu(outs, input, k=None, *, upper=1):
    (Y,) = outs
    c_type(input, bits=True)
    if len(input.shape) < 2:
        raise Unsupported("Trilu needs at least 2 dimensions")
    known = runtime_param(k) if k is not None else np.zeros(1, dtype=np.int64)
    *batch, R, C = input.shape
    keep = "j - i >= k" if upper else "j - i <= k"
    return Kernel("trilu", {"X": input, **({"K": k} if known is None else {})}, {"Y": Y},     # K: read at run time
                  params=dict(B=int(np.prod(batch, dtype=np.int64)), R=R, C=C, upper=bool(upper),
                              k=None if known is None else max(-R - 1, min(C + 1, int(known.reshape(-1)[0])))),
                  math=f"Y[..][i][j] = X[..][i][j] where {keep}, else 0")


@op("Range")
def range_(outs, start, limit, delta):
    raise Unsupported("start, limit and delta must be compile-time constants (the output's length depends on them)")
