"""Sequence-model ops of opset 27, as onnx's reference implementation computes them:
CausalConvWithState (the depthwise causal convolution of Mamba and Gated DeltaNet) and
LinearAttention (linear, gated, delta and gated-delta recurrences, with GQA).

float32, float16 and bfloat16: half-precision elements are read into float, computed in float and
rounded once where the reference rounds (the convolution's result before its activation; the outputs).
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, c_float, c_type, op

# dtype -> (C expression reading element {x} as float, C expression rounding float {x} to the dtype)
FLOATS = {"float32": ("{x}", "{x}"), "float16": ("kiln_h2f({x})", "kiln_f2h({x})"),
          "bfloat16": ("kiln_bf2f({x})", "kiln_f2bf({x})")}
MAX_STACK_STATE = 16384   # floats of one head's recurrent state kept on the stack (64 KiB)


def _float_kind(*values) -> str:
    """The one float dtype all given values share."""
    kinds = {np.dtype(v.dtype).name for v in values if v is not None}
    if len(kinds) != 1 or not kinds <= FLOATS.keys():
        raise Unsupported(f"dtypes {sorted(kinds)} not supported (one of float32, float16, bfloat16 for all)")
    return kinds.pop()


@op("CausalConvWithState")
def causal_conv_with_state(outs, input, weight, bias=None, past_state=None, *, activation="none"):
    Y, present = (list(outs) + [None])[:2]
    kind = _float_kind(input, weight, bias, past_state, Y, present)
    if activation not in ("none", "silu", "swish"):
        raise Unsupported(f"activation {activation!r} not supported")
    if len(input.shape) != 3 or len(weight.shape) != 3:
        raise Unsupported("input and weight must be rank 3")
    B, C, L = input.shape
    K = weight.shape[2]
    if tuple(weight.shape) != (C, 1, K) or K < 1:
        raise Unsupported(f"weight of shape {weight.shape} is not (channels, 1, k) for {C} channels")
    if bias is not None and tuple(bias.shape) != (C,):
        raise Unsupported(f"bias of shape {bias.shape} is not ({C},)")
    if past_state is not None and tuple(past_state.shape) != (B, C, K - 1):
        raise Unsupported(f"past_state of shape {past_state.shape} is not ({B}, {C}, {K - 1})")
    inputs = {"X": input, "W": weight}
    if bias is not None:
        inputs["Bias"] = bias
    if past_state is not None and past_state.size:
        inputs["P"] = past_state
    outputs = {"Y": Y}
    if present is not None and present.size:
        outputs["S"] = present
    load, store = FLOATS[kind]
    return Kernel("causal_conv", inputs, outputs,
                  params=dict(B=B, C=C, L=L, K=K, ctype=c_type(input, bits=True), load=load, store=store,
                              half=kind != "float32", silu=activation != "none", bias=bias is not None,
                              past="P" in inputs, present="S" in outputs),
                  macs=B * C * L * K,
                  math="Y[b][c][l] = act(bias[c] + sum_j W[c][j] * concat(past, X)[b][c][l + j]), "
                       "S = the last k - 1 positions of concat(past, X)")


RULES = ("linear", "gated", "delta", "gated_delta")


@op("LinearAttention")
def linear_attention(outs, query, key, value, past_state=None, decay=None, beta=None, *, chunk_size=64,
                     kv_num_heads=None, q_num_heads=None, scale=0.0, update_rule="gated_delta"):
    Y, present = (list(outs) + [None])[:2]
    kind = _float_kind(query, key, value, decay, beta, Y)
    state_kind = _float_kind(past_state, present) if past_state is not None or present is not None else kind
    if update_rule not in RULES:
        raise Unsupported(f"update_rule {update_rule!r} not supported")
    gated, delta = update_rule in ("gated", "gated_delta"), update_rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise Unsupported(f"update_rule {update_rule!r} takes decay: {gated}, beta: {delta}")
    if not q_num_heads or not kv_num_heads or q_num_heads < 0 or kv_num_heads < 0 or q_num_heads % kv_num_heads:
        raise Unsupported("q_num_heads must be a positive multiple of kv_num_heads")
    if any(v is not None and len(v.shape) != 3 for v in (query, key, value, decay, beta)):
        raise Unsupported("query, key, value, decay and beta must be rank 3 (B, T, heads * size)")
    Hq, Hkv = q_num_heads, kv_num_heads
    Bn, T, qd = query.shape
    if qd % Hq or value.shape[2] % Hkv:
        raise Unsupported("hidden sizes do not divide into the heads")
    dk, dv = qd // Hq, value.shape[2] // Hkv
    if not dk or not dv:
        raise Unsupported("heads of size zero")
    if tuple(key.shape) != (Bn, T, Hkv * dk) or tuple(value.shape[:2]) != (Bn, T):
        raise Unsupported("query, key and value disagree in batch, length or head size")
    if decay is not None and tuple(decay.shape) not in ((Bn, T, Hkv), (Bn, T, Hkv * dk)):
        raise Unsupported(f"decay of shape {decay.shape} is not ({Bn}, {T}, {Hkv} or {Hkv * dk})")
    if beta is not None and tuple(beta.shape) not in ((Bn, T, Hkv), (Bn, T, 1)):
        raise Unsupported(f"beta of shape {beta.shape} is not ({Bn}, {T}, {Hkv} or 1)")
    shape = (Bn, Hkv, dk, dv)
    if any(v is not None and tuple(v.shape) != shape for v in (past_state, present)):
        raise Unsupported(f"past_state and present_state must be {shape}")
    scratch = present is None or state_kind != "float32"
    if scratch and dk * dv > MAX_STACK_STATE:
        raise Unsupported(f"a {dk} x {dv} state in {state_kind} is kept on the stack, over its limit of "
                          f"{MAX_STACK_STATE} floats")
    inputs = {"Q": query, "K": key, "V": value}
    for name, v in (("PS", past_state), ("G", decay), ("Beta", beta)):
        if v is not None:
            inputs[name] = v
    outputs = {"Y": Y}
    if present is not None:
        outputs["OS"] = present
    scale = scale or 1.0 / np.sqrt(dk)
    load, store = FLOATS[kind]
    sload, sstore = FLOATS[state_kind]
    return Kernel("linear_attention", inputs, outputs,
                  params=dict(B=Bn, T=T, Hq=Hq, Hkv=Hkv, group=Hq // Hkv, dk=dk, dv=dv, scale=c_float(scale),
                              ctype=c_type(query, bits=True),
                              load=load, store=store, sload=sload, sstore=sstore, scratch=scratch,
                              past=past_state is not None, present=present is not None,
                              decay=None if decay is None else decay.shape[2] // Hkv,
                              beta=None if beta is None else beta.shape[2]),
                  macs=Bn * T * (Hkv * dk * dv * (3 if delta else 2) + Hq * dk * dv),
                  math=f"S_t = {update_rule} update of S_(t-1) by k_t, v_t; Y_t = scale * q_t^T S_t "
                       f"({Hq // Hkv} query heads per state)")
