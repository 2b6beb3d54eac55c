"""The recurrent ops RNN, GRU and LSTM: forward, reverse, bidirectional, both layouts, initial
states, peepholes, linear_before_reset, sequence_lens (read at run time: steps past a batch
entry's length are not run and give zeros in Y, as onnxruntime does), and the activations that
take no alpha/beta. clip and input_forget are refused.

Gate order and bias layout are ONNX's: W [dirs][G*H][I], R [dirs][G*H][H], B [dirs][2*G*H]
(the W biases, then the R biases); LSTM gates i o f c, GRU gates z r h. The kernel keeps one batch
entry's state (h, c) and gate pre-activations in small arrays on the stack.
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Unsupported, op, require_dtype

# activation -> C expression of {x} (kiln_expf / kiln_tanhf: no branches, so the gate loops vectorise)
ACTIVATIONS = {
    "sigmoid": "(1.0f / (1.0f + kiln_expf(-({x}))))",
    "tanh": "kiln_tanhf({x})",
    "relu": "(({x}) > 0.0f ? ({x}) : 0.0f)",
    "softsign": "(({x}) / (1.0f + fabsf({x})))",
    "softplus": "logf(1.0f + expf({x}))",
}
DEFAULTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _recurrent(kind, outs, X, W, R, B, sequence_lens, initial_h, initial_c=None, P=None, *,
               activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout,
               linear_before_reset=0, input_forget=0):
    Y, Y_h, Y_c = (list(outs) + [None, None, None])[:3]
    require_dtype(X, W, R, B, initial_h, initial_c, P, Y, Y_h, Y_c)
    if clip is not None:
        raise Unsupported("clip is not supported")
    if input_forget:
        raise Unsupported("input_forget is not supported")
    if activation_alpha is not None or activation_beta is not None:
        raise Unsupported("activation_alpha/activation_beta are not supported")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise Unsupported(f"direction {direction!r} not supported")
    dirs = 2 if direction == "bidirectional" else 1
    acts = list(activations) if activations is not None else DEFAULTS[kind] * dirs
    per = len(DEFAULTS[kind])
    if len(acts) == per and dirs == 2:
        acts = acts * 2
    if len(acts) != per * dirs or any(a.lower() not in ACTIVATIONS for a in acts):
        raise Unsupported(f"activations {acts} not supported (only {', '.join(sorted(ACTIVATIONS))})")
    if len(X.shape) != 3:
        raise Unsupported("X must be 3-D")
    S, Bt, I = (X.shape[1], X.shape[0], X.shape[2]) if layout else X.shape
    G = GATES[kind]
    H = W.shape[1] // G
    if hidden_size is not None and hidden_size != H or H == 0:
        raise Unsupported("hidden_size does not match W")
    if tuple(W.shape) != (dirs, G * H, I) or tuple(R.shape) != (dirs, G * H, H):
        raise Unsupported("W or R has an unexpected shape")
    if B is not None and tuple(B.shape) != (dirs, 2 * G * H) or P is not None and tuple(P.shape) != (dirs, 3 * H):
        raise Unsupported("B or P has an unexpected shape")
    if S == 0 or Bt == 0 or I == 0:
        raise Unsupported("an empty sequence, batch or input")
    # constant weights go in transposed ([dirs][I][G*H], [dirs][H][G*H]): the kernel adds scaled rows
    packed = W.is_const and R.is_const
    inputs = {"X": X} if packed else {"X": X, "W": W, "R": R}
    consts = {"WT": np.ascontiguousarray(W.const.transpose(0, 2, 1)),
              "RT": np.ascontiguousarray(R.const.transpose(0, 2, 1))} if packed else {}
    for name, v in (("B", B), ("H0", initial_h), ("C0", initial_c), ("P", P)):
        if v is not None:
            inputs[name] = v
    if sequence_lens is not None:
        require_dtype(sequence_lens, dtypes=(np.dtype(np.int32), np.dtype(np.int64)))
        if not (sequence_lens.is_const and np.all(sequence_lens.const == S)):
            inputs["L"] = sequence_lens
    outputs = {name: v for name, v in (("Y", Y), ("Yh", Y_h), ("Yc", Y_c)) if v is not None}
    if not outputs:
        raise Unsupported("no output is used")
    # element offsets: X[t][b] / Y[t][d][b] / state[d][b] (layout 0) or X[b][t] / Y[b][t][d] / state[b][d]
    if layout:
        x_at = ("b * %d + t * %d" % (S * I, I))
        y_at = ("(b * %d + t * %d + d * %d)" % (S * dirs * H, dirs * H, H))
        s_at = ("(b * %d + d * %d)" % (dirs * H, H))
    else:
        x_at = ("t * %d + b * %d" % (Bt * I, I))
        y_at = ("(t * %d + d * %d + b * %d)" % (dirs * Bt * H, Bt * H, H))
        s_at = ("(d * %d + b * %d)" % (Bt * H, H))
    f = [[ACTIVATIONS[a.lower()] for a in acts[d * per:(d + 1) * per]] for d in range(dirs)]
    macs = dirs * S * Bt * G * H * (I + H)
    # constant weights: the inputs' part of every step (W x_t) is computed before the steps, into
    # working memory GX [S][G*H] (one direction and batch entry at a time)
    return Kernel("recurrent", inputs, outputs, consts=consts,
                  params=dict(kind=kind, packed=packed, dirs=dirs, reverse=[direction == "reverse" or d == 1 for d in range(dirs)],
                              S=S, Bt=Bt, I=I, H=H, G=G, x_at=x_at, y_at=y_at, s_at=s_at, acts=f,
                              XB=S * I if layout else I, XT=I if layout else Bt * I,
                              lbr=bool(linear_before_reset), has=set(inputs) | set(outputs)),
                  scratch={"GX": (np.float32, S * G * H)} if packed else {},
                  macs=macs, math=f"{kind}, {direction}, hidden {H}, {S} step(s) of batch {Bt}")


@op("RNN")
def rnn(outs, X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, layout=0):
    return _recurrent("RNN", outs, X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, layout=layout)


@op("GRU")
def gru(outs, X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, layout=0,
        linear_before_reset=0):
    return _recurrent("GRU", outs, X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, layout=layout, linear_before_reset=linear_before_reset)


@op("LSTM")
def lstm(outs, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha=None, activation_beta=None, activations=None, clip=None, direction="forward",
         hidden_size=None, input_forget=0, layout=0):
    return _recurrent("LSTM", outs, X, W, R, B, sequence_lens, initial_h, initial_c, P,
                      activation_alpha=activation_alpha, activation_beta=activation_beta, activations=activations,
                      clip=clip, direction=direction, hidden_size=hidden_size, layout=layout,
                      input_forget=input_forget)
