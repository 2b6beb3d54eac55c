"""Attention (opset 23/24), RMSNormalization, RotaryEmbedding: float32 only, one kernel each."""
from __future__ import annotations

import numpy as np

from . import FLOAT, Kernel, Unsupported, c_float, c_type, op, require_dtype, shape_strides


def _axis(axis, rank):
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise Unsupported(f"axis {axis} out of range")
    return axis


@op("RMSNormalization")
def rms_normalization(outs, X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    (Y,) = outs
    require_dtype(X, scale, Y)
    if stash_type != 1:
        raise Unsupported(f"stash_type {stash_type} not supported")
    if X.size == 0:
        raise Unsupported("normalisation of an empty tensor")
    axis = _axis(axis, len(X.shape))
    normed = tuple(X.shape[axis:])
    n = int(np.prod(normed, dtype=np.int64))
    if len(scale.shape) > len(normed):
        raise Unsupported(f"scale of shape {scale.shape} does not broadcast to {normed}")
    try:
        np.broadcast_shapes(scale.shape, normed)
    except ValueError:
        raise Unsupported(f"scale of shape {scale.shape} does not broadcast to {normed}") from None
    if np.broadcast_shapes(scale.shape, normed) != normed:
        raise Unsupported(f"scale of shape {scale.shape} does not broadcast to {normed}")
    strides = shape_strides(scale.shape, normed)
    inner = [int(np.prod(normed[k + 1:], dtype=np.int64)) for k in range(len(normed))]
    # the index of scale read for normalised element i: sum over dims of (i / inner[k] % dim[k]) * stride[k]
    terms = [(inner[k], normed[k], strides[k]) for k in range(len(normed)) if strides[k]]
    return Kernel("rmsnorm", {"X": X, "S": scale}, {"Y": Y},
                  params=dict(rows=X.size // n, n=n, eps=c_float(epsilon), terms=terms,
                              full=scale.size == n),
                  macs=3 * X.size, math=f"Y = X / sqrt(mean(X^2) + eps) * scale over axes {axis}..")


@op("RotaryEmbedding")
def rotary_embedding(outs, input, cos_cache, sin_cache, position_ids=None, *, interleaved=0,
                     rotary_embedding_dim=0, num_heads=0):
    (Y,) = outs
    X = input
    require_dtype(X, cos_cache, sin_cache, Y)
    require_dtype(position_ids, dtypes=(np.dtype(np.int64),))
    if len(X.shape) == 4:
        B, H, S, D = X.shape
        x_strides = (H * S * D, D, S * D)
    elif len(X.shape) == 3:
        if not num_heads or X.shape[2] % num_heads:
            raise Unsupported("3-D input needs num_heads dividing the hidden size")
        B, S, hidden = X.shape
        H, D = num_heads, hidden // num_heads
        x_strides = (S * hidden, hidden, D)
    else:
        raise Unsupported(f"input of rank {len(X.shape)} not supported")
    rot = rotary_embedding_dim or D
    if rot > D or rot % 2:
        raise Unsupported(f"rotary_embedding_dim {rot} does not fit head size {D}")
    half = rot // 2
    if cos_cache.shape != sin_cache.shape or cos_cache.shape[-1] != half:
        raise Unsupported("cos_cache/sin_cache must both end in rotary_embedding_dim / 2")
    inputs = {"X": X, "C": cos_cache, "Sn": sin_cache}
    if position_ids is not None:
        if len(cos_cache.shape) != 2 or tuple(position_ids.shape) != (B, S):
            raise Unsupported("position_ids must be (batch, seq) with a 2-D cache")
        inputs["P"] = position_ids
        max_pos = cos_cache.shape[0]
    else:
        if tuple(cos_cache.shape) != (B, S, half):
            raise Unsupported("without position_ids the caches must be (batch, seq, rotary_dim / 2)")
        max_pos = 0
    return Kernel("rotary", inputs, {"Y": Y},
                  params=dict(B=B, S=S, H=H, D=D, half=half, rot=rot, xs=x_strides, interleaved=bool(interleaved),
                              max_pos=max_pos),
                  macs=X.size * 2,
                  math="Y = rotate(X[..., :rot], cos, sin) ++ X[..., rot:]"
                       + (" (interleaved pairs)" if interleaved else " (halves)"))


@op("Attention")
def attention(outs, Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
              is_causal=0, kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None,
              softcap=0.0, softmax_precision=None, left_window_size=-1, right_window_size=-1):
    Y, present_key, present_value, qk_out = (list(outs) + [None] * 4)[:4]
    require_dtype(Q, K, V, past_key, past_value, Y, present_key, present_value, qk_out)
    if attn_mask is not None:
        require_dtype(attn_mask, dtypes=(FLOAT, np.dtype(np.bool_)))
    require_dtype(nonpad_kv_seqlen, dtypes=(np.dtype(np.int64),))
    if nonpad_kv_seqlen is not None and past_key is not None:
        raise Unsupported("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if left_window_size < -1 or right_window_size < -1:
        raise Unsupported("window sizes must be -1 or nonnegative")
    if softmax_precision not in (None, 1, 11):
        raise Unsupported(f"softmax_precision {softmax_precision} not supported (only float or double)")
    if qk_matmul_output_mode not in (0, 1, 2, 3):
        raise Unsupported(f"qk_matmul_output_mode {qk_matmul_output_mode} not supported")
    if (past_key is None) != (past_value is None):
        raise Unsupported("past_key and past_value must come together")
    rank = len(Q.shape)
    if not (len(K.shape) == len(V.shape) == rank) or rank not in (3, 4):
        raise Unsupported("Q, K and V must all be 3-D or all 4-D")
    if rank == 4:
        if q_num_heads is not None or kv_num_heads is not None:
            raise Unsupported("q_num_heads/kv_num_heads are not allowed with 4-D inputs")
        B, Hq, Sq, D = Q.shape
        _, Hkv, Sk, Dk = K.shape
        Dv = V.shape[3]
        if V.shape[1] != Hkv or V.shape[2] != Sk:
            raise Unsupported("K and V disagree in heads or sequence length")
        # (batch, head, position) strides of rows
        qs, ks, vs = (Hq * Sq * D, Sq * D, D), (Hkv * Sk * D, Sk * D, D), (Hkv * Sk * Dv, Sk * Dv, Dv)
        ys = (Hq * Sq * Dv, Sq * Dv, Dv)
    else:
        if not q_num_heads or not kv_num_heads:
            raise Unsupported("3-D inputs need q_num_heads and kv_num_heads")
        Hq, Hkv = q_num_heads, kv_num_heads
        B, Sq, hq = Q.shape
        Sk = K.shape[1]
        if hq % Hq or K.shape[2] % Hkv or V.shape[2] % Hkv or V.shape[1] != Sk:
            raise Unsupported("hidden sizes do not divide into the heads")
        D, Dk, Dv = hq // Hq, K.shape[2] // Hkv, V.shape[2] // Hkv
        qs, ks, vs = (Sq * hq, D, hq), (Sk * Hkv * Dk, Dk, Hkv * Dk), (Sk * Hkv * Dv, Dv, Hkv * Dv)
        ys = (Sq * Hq * Dv, Dv, Hq * Dv)
    if D != Dk or K.shape[0] != B or V.shape[0] != B:
        raise Unsupported("Q and K head sizes or batches differ")
    if Hq % Hkv:
        raise Unsupported(f"{Hq} query heads do not group over {Hkv} key/value heads")
    P = 0
    if past_key is not None:
        if len(past_key.shape) != 4 or tuple(past_key.shape[:2]) != (B, Hkv) or past_key.shape[3] != D \
                or tuple(past_value.shape) != (B, Hkv, past_key.shape[2], Dv):
            raise Unsupported("past_key/past_value shapes do not match K/V")
        P = past_key.shape[2]
    T = P + Sk
    if Sq == 0 or T == 0 or D == 0:
        raise Unsupported("empty attention")
    inputs = {"Q": Q, "K": K, "V": V}
    mask = None
    if attn_mask is not None:
        ms = tuple(attn_mask.shape)
        if not 1 <= len(ms) <= 4 or ms[-1] > T:
            raise Unsupported(f"attn_mask of shape {ms} not supported")
        full = (B, Hq, Sq, ms[-1])
        try:
            if np.broadcast_shapes(ms, full) != full:
                raise ValueError
        except ValueError:
            raise Unsupported(f"attn_mask of shape {ms} does not broadcast to {full}") from None
        inputs["M"] = attn_mask
        mask = dict(strides=shape_strides(ms, full), n=ms[-1], bool=np.dtype(attn_mask.dtype) == np.bool_)
    if P:
        inputs["PK"], inputs["PV"] = past_key, past_value
    if nonpad_kv_seqlen is not None:
        if tuple(nonpad_kv_seqlen.shape) != (B,):
            raise Unsupported("nonpad_kv_seqlen must have one entry per batch")
        inputs["NP"] = nonpad_kv_seqlen
    outputs = {"Y": Y}
    if present_key is not None:
        outputs["OK"] = present_key
    if present_value is not None:
        outputs["OV"] = present_value
    if qk_out is not None:
        outputs["QK"] = qk_out
    if scale is None:
        scale = 1.0 / np.sqrt(D)
    root = np.float32(np.sqrt(scale))
    return Kernel("attention", inputs, outputs,
                  params=dict(B=B, Hq=Hq, Hkv=Hkv, group=Hq // Hkv, Sq=Sq, Sk=Sk, P=P, T=T, D=D, Dv=Dv,
                              qs=qs, ks=ks, vs=vs, ys=ys, mask=mask, causal=bool(is_causal),
                              root=c_float(root), softcap=c_float(softcap) if softcap and softcap > 0 else None,
                              mode=qk_matmul_output_mode, nonpad=nonpad_kv_seqlen is not None,
                              left=left_window_size, right=right_window_size,
                              st="double" if softmax_precision == 11 else "float",
                              present_k=present_key is not None, present_v=present_value is not None,
                              qk=qk_out is not None),
                  macs=B * Hq * Sq * T * (D + Dv),
                  math="Y = softmax(softcap(Q K^T * scale) + mask) V"
                       + (" (causal)" if is_causal else "") + (f", {Hq // Hkv} query heads per kv head"
                                                               if Hq != Hkv else ""))


# FlexAttention's element types -> (C type of its arithmetic, math-function suffix)
FLEX_TYPES = {"float32": ("float", "f"), "float16": ("float", "f"), "bfloat16": ("float", "f"),
              "float64": ("double", "")}


def _modifier(mod, shape, dtype, prefix: str, consts: dict):
    """A score_mod / prob_mod graph (an IR Graph the frontend folded) -> an Epilogue over the score
    element, its non-scalar constants broadcast to the score tensor's shape and read at {flat}."""
    from ..ir import Graph
    from .elementwise import Epilogue, Operand, chain_code, load, scalar_literal
    if mod is None:
        return None
    if not isinstance(mod, Graph):
        raise Unsupported(f"{prefix}: the modifier graph must take and give one rank-4 tensor, reading "
                          "nothing from outside")
    (x,), (y,) = mod.inputs, mod.outputs
    if y == x:
        return None
    if not mod.nodes or mod.nodes[-1].outputs[0] != y or tuple(mod.values[y].shape) != tuple(shape):
        raise Unsupported(f"{prefix}: the modifier's output must be computed from the scores, in their shape")

    def leaf(name):
        if name == x:
            return Operand("{acc}", dtype)
        v = mod.values[name]
        if not v.is_const:
            raise Unsupported(f"{prefix}: {name!r} depends on the scores but is not elementwise")
        if scalar_literal(v) is not None:
            return Operand(scalar_literal(v), v.dtype)
        try:
            full = np.ascontiguousarray(np.broadcast_to(v.const, shape))
        except ValueError:
            raise Unsupported(f"{prefix}: constant {name!r} does not broadcast to the scores") from None
        arg = f"{prefix}{len(consts)}"
        consts[arg] = full
        return load(f"{arg}[{{flat}}]", v.dtype)
    lines, result = chain_code(mod.nodes, leaf)
    if np.dtype(mod.values[y].dtype) != dtype:
        raise Unsupported(f"{prefix}: the modifier gives {mod.values[y].dtype}, not {dtype}")
    return Epilogue(lines, result)


@op("FlexAttention")
def flex_attention(outs, Q, K, V, *, scale=None, score_mod=None, prob_mod=None, softmax_precision=None):
    (Y,) = outs
    kinds = {np.dtype(v.dtype).name for v in (Q, K, V, Y)}
    if len(kinds) != 1 or not kinds <= FLEX_TYPES.keys():
        raise Unsupported(f"dtypes {sorted(kinds)} not supported (one of float32, float16, bfloat16, float64)")
    kind = kinds.pop()
    compute = np.dtype(np.float64) if kind == "float64" else FLOAT
    if softmax_precision not in (None, 1 if kind != "float64" else 11):
        raise Unsupported(f"softmax_precision {softmax_precision} not supported (only the default)")
    if not len(Q.shape) == len(K.shape) == len(V.shape) == 4:
        raise Unsupported("Q, K and V must be rank 4")
    B, Hq, L, E = Q.shape
    _, Hkv, S, Ev = V.shape
    if tuple(K.shape) != (B, Hkv, S, E) or V.shape[0] != B or not Hkv or Hq % Hkv:
        raise Unsupported("Q, K and V disagree in batch, heads, length or head size")
    if S == 0 or E == 0:
        raise Unsupported("empty attention")
    consts = {}
    scores = (B, Hq, L, S)
    mods = dict(score_mod=_modifier(score_mod, scores, compute, "SM", consts),
                prob_mod=_modifier(prob_mod, scores, compute, "PM", consts))
    if scale is None:
        scale = 1.0 / np.sqrt(E)
    root = np.sqrt(np.float32(scale)).astype(Q.dtype)     # as the reference: in float32, then in Q's dtype
    ctype, suffix = FLEX_TYPES[kind]
    load, store = {"float16": ("kiln_h2f({x})", "kiln_f2h({x})"),
                   "bfloat16": ("kiln_bf2f({x})", "kiln_f2bf({x})")}.get(kind, ("{x}", "{x}"))
    root_lit = repr(float(root)) if kind == "float64" else c_float(np.float32(root))
    return Kernel("flex_attention", {"Q": Q, "K": K, "V": V}, {"Y": Y}, consts=consts,
                  params=dict(B=B, Hq=Hq, Hkv=Hkv, group=Hq // Hkv, L=L, S=S, E=E, Ev=Ev, ct=ctype, fn=suffix,
                              et=c_type(Q, bits=True), root=root_lit, load=load, store=store,
                              half=kind in ("float16", "bfloat16"), **mods),
                  macs=B * Hq * L * S * (E + Ev),
                  math="Y = prob_mod(softmax(score_mod(Q K^T * scale))) V"
                       + (f", {Hq // Hkv} query heads per kv head" if Hq != Hkv else ""))
