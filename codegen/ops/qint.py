"""The integer layers of an int8 model (written by passes/quantize.py), each with its numpy model.

Every op here computes only in integers: int32 accumulation, then the requantisation of
codegen/quant.py (integer multiplier and shift). `REFERENCE[op](attrs, *inputs)` is the same
arithmetic in numpy, which the C must match bit for bit (tests/test_int8.py checks every layer).

    KilnQConv     X int8, W int8 (per output channel), B int32 -> requant per channel (2-D, groups)
    KilnQMatMul   A int8 [..., K] @ W int8 [K, N] (+ B int32 [N]) -> requant per column
    KilnQBatchMatMul  requant((A - za) @ (B - zb)), two run-time tensors, batched
    KilnQAdd      requant2(A - za, B - zb): both operands rescaled onto the output, one rounding
    KilnQMul      requant((A - za) * (B - zb))
    KilnRequant   requant(X - zx): a tensor moved onto other quantisation parameters
    KilnLUT       Y = table[X]: any elementwise function of one int8 operand, tabulated at compile time
    KilnQAvgPool  requant(sum of (X - zx) over the window): windows of one size
    KilnQSoftmax  exp(x - max) from a table, normalised by an integer division, requantised
    (MaxPool, Concat, Reshape, Transpose, ... run on int8 tensors as they are.)

Attributes (all compile-time numbers): x_zp / a_zp / b_zp / y_zp zero points; lo, hi the output
clamp (a fused Relu or Clip narrows it); scale the real factor(s) the multiplier approximates.
"""
from __future__ import annotations

import numpy as np

from . import Kernel, Tactics, Unsupported, op, shape_strides
from .elementwise import expression, literal
from .. import quant
from ..ir import Value
from .quantize import _int_conv, _int_matmul

REFERENCE = {}


def reference(name):
    def register(fn):
        REFERENCE[name] = fn
        return fn
    return register


def _scalar(name: str, x: int, dtype) -> Value:
    """A zero point as the one-element constant the integer templates read."""
    return Value(name, (), np.dtype(dtype), np.array(x, dtype=dtype))


_C = {"int8": "int8_t", "uint8": "uint8_t"}


def _ctype(v: Value) -> str:
    return _C[np.dtype(v.dtype).name]


def _requant_consts(scale) -> dict:
    m, s = quant.multiplier(scale)
    return dict(RM=m.astype(np.int32), RS=s.astype(np.int32))


def _finish(Y: Value, index: str, y_zp: int, lo: int, hi: int, acc: str = "(int32_t)acc") -> str:
    """The C that requantises the accumulator `acc` with the multiplier and shift of `index`."""
    return f"({_ctype(Y)})kiln_requant({acc}, RM[{index}], RS[{index}], {y_zp}, {lo}, {hi})"


# ---- convolution --------------------------------------------------------------------------------

@op("KilnQConv")
def qconv(outs, X, W, B=None, *, x_zp, y_zp, lo, hi, scale, pads, strides, dilations, group=1):
    (Y,) = outs
    if len(X.shape) != 4:
        raise Unsupported("only 2-D integer convolution")
    M = W.shape[0]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (M,))

    def generic():
        kernel = _int_conv("KilnQConv", Y, X, W, _scalar(f"{X.name}:zp", x_zp, X.dtype), None, B,
                           _finish(Y, "m", y_zp, lo, hi), {},
                           "Y = requant(B + sum (X - x_zp) * W) per output channel m", "NOTSET", dilations, group,
                           None, pads, strides)
        kernel.consts.update(ZX=kernel.inputs.pop("ZX").const, **_requant_consts(scale))
        return kernel

    N, C, IH, IW = X.shape
    KH, KW = W.shape[2:]
    OH, OW = Y.shape[2:]
    geometry = dict(N=N, C=C, IH=IH, IW=IW, OH=OH, OW=OW, KH=KH, KW=KW, SH=strides[0], SW=strides[1],
                    DH=dilations[0], DW=dilations[1], PH=pads[0], PW=pads[1])
    if not W.is_const or B is not None and not B.is_const:
        return generic()
    bias = B.const if B is not None else np.zeros(M, np.int32)
    if (group == 1 or M // group >= GROUP_MIN) and _band_fits(C // group, KH, KW, dilations[1]):
        def packed(planes: bool = True) -> Kernel:
            return _packed(X, Y, W.const, bias, (y_zp, lo, hi), x_zp, scale, geometry, (C * IH * IW, IH * IW, IW, 1),
                           (M * OH * OW, OH * OW, 1), group, planes)
        # packed_band: no padded planes of the input (less RAM, a slower band with VNNI; what memory="lean"
        # builds take), where packed keeps them
        mode = _steps(C // group, KH, KW, dilations[1])[1]
        band = {"packed_band": lambda: packed(False)} if _planes(mode, geometry, (1, 1, 1, 1)) else {}
        return Tactics("packed", {"packed": packed, **band, "generic": generic}, lean="packed_band" if band else None)
    if group == C == M:
        return Tactics("depthwise", {"depthwise": lambda: _depthwise(X, Y, W.const, bias, (y_zp, lo, hi), x_zp, scale,
                                                                     geometry), "generic": generic})
    return generic()


GROUP_MIN = 8    # grouped convolutions with at least 8 output channels a group take the packed kernel, group by group
BLOCK_M, TILE_W = 16, 12    # int32 sums in registers: 16 output channels (an AVX-512 vector) x 12 pixels
# the inputs of a chunk of output pixels (as int16 without VNNI), in the layer's scratch memory (an arena
# buffer live for that layer); 8 KiB: 32 KiB ran mobilenet_v2 9 % and ResNet-8 10 % faster on x86 but
# took DS-CNN's RAM from 24 KB to 32 KB, which a microcontroller feels more
BAND_BYTES = 1 << 13
MAX_BAND_BYTES = 1 << 18    # larger where one tile of pixels needs it, up to this


def _steps(C: int, KH: int, KW: int, DW: int = 1) -> tuple[int, str]:
    """The steps of the packed sums and how they are made: quads of channels x KH x KW ("channels"), or with
    fewer than 4 channels quads of consecutive taps of (c, kh, kw) where that makes fewer ("taps"), or then
    quads of 4 columns of one kernel row, (c, kh, kw / 4), where that makes at most 30 % more ("rows": a quad
    is 4 consecutive bytes of the padded input, which the VNNI band gathers whole)."""
    by_channels, by_taps = -(-C // 4) * KH * KW, -(-(C * KH * KW) // 4)
    by_rows = C * KH * -(-KW // 4)
    if by_taps >= by_channels:
        return by_channels, "channels"
    return (by_rows, "rows") if DW == 1 and by_rows * 10 <= by_taps * 13 else (by_taps, "taps")


def _band_fits(C: int, KH: int, KW: int, DW: int = 1) -> bool:
    """Whether the band of one tile of pixels (int16) stays within MAX_BAND_BYTES of stack; the generic
    kernel takes the layers with longer sums."""
    return _steps(C, KH, KW, DW)[0] * 4 * TILE_W * 2 <= MAX_BAND_BYTES


def _folded_bias(bias, W, zu: int, size: int) -> np.ndarray:
    """B - zu * (sum of each output's weights W[m, :]) as int32 wrapping as the 32-bit sums do, padded with 0
    to `size`: the bias of sums over u = X (+ 128) whose zero point is zu."""
    folded = np.asarray(bias, np.int64) - zu * W.astype(np.int64).sum(axis=1)
    out = np.zeros(size, np.int32)
    out[:len(folded)] = folded.astype(np.uint32).view(np.int32)
    return out


def _by_group(v: np.ndarray, groups: int, size: int) -> np.ndarray:
    """Per-output-channel rows v [M, ...] as groups of `size` rows each, every group padded with zeros."""
    v = v.reshape(groups, v.shape[0] // groups, *v.shape[1:])
    return np.pad(v, [(0, 0), (0, size - v.shape[1])] + [(0, 0)] * (v.ndim - 2)).reshape(groups * size, *v.shape[2:])


def _planes(mode: str, g: dict, x_strides) -> bool:
    """Whether the VNNI band of a packed conv comes from padded planes of its input (PI): quads of channels of a
    conv beyond 1x1 stride 1 unpadded (which reads its input in place), or quads of kernel rows; rows of the
    input contiguous (a convolution, not a matrix product)."""
    pointwise = g["KH"] == g["KW"] == g["SH"] == g["SW"] == 1 and g["PH"] == g["PW"] == 0 and g["IW"] == g["OW"]
    return (mode == "rows" or mode == "channels" and not pointwise) and x_strides[3] == 1


def _packed(X, Y, W, bias, clamp, x_zp, scale, geometry, x_strides, y_strides, groups: int = 1,
            planes: bool = True) -> Kernel:
    """2-D group-1 convolution over quads of input channels. A chunk of output pixels at a time, their
    inputs are gathered into a band, [channel quad, kh, kw][pixel][4], as u = X + 128 (int8) or X
    (uint8), 0..255, the padding u = the zero point's u; the weights are packed at compile time as
    [M/16][C/4][KH][KW][16][4] int8 (with fewer than 4 channels, quads of consecutive taps of (c, kh, kw)
    instead), so each step multiplies one pixel's quad by 16 channels' weight quads (AVX-512 VNNI: one
    vpdpbusd, exact; AVX2: two vpmaddwd per 8 channels) into a tile of 12 pixels x 16 channels of int32
    sums.
    The zero point leaves the inner loop: sum (x - x_zp) * w = sum u * w - u_zp * sum w, the last
    term folded into the bias at compile time (in wrapping 32-bit arithmetic, as the sums). A tile is
    requantised at once (kiln_requant_n; `clamp`: the output's zero point, low and high end).
    x_strides (n, c, h, w) and y_strides (n, c, pixel) let a matrix product run as a 1x1 convolution.
    `groups`: each group of channels is a convolution of its own, [G][MB] blocks of weights, one band at a time.
    `planes`: with VNNI, keep the input as padded planes (PI, below) that the band copies whole quads from."""
    g = geometry
    M, C = W.shape[:2]                      # C: input channels per group
    Mg = M // groups
    blocks, quads, taps = -(-Mg // BLOCK_M), -(-C // 4), C * g["KH"] * g["KW"]
    steps, mode = _steps(C, g["KH"], g["KW"], g["DW"])
    kq = -(-g["KW"] // 4)
    if mode == "rows":
        packed = np.zeros((M, C, g["KH"], kq * 4), np.int8)
        packed[..., :g["KW"]] = W
    elif mode == "taps":
        packed = np.zeros((M, steps * 4), np.int8)
        packed[:, :taps] = W.reshape(M, taps)
    else:
        packed = np.zeros((M, quads * 4) + W.shape[2:], np.int8)
        packed[:, :C] = W
        packed = packed.reshape(M, quads, 4, g["KH"], g["KW"]).transpose(0, 1, 3, 4, 2)
    # [M][steps][4] -> [G * MB][steps][16][4]
    packed = _by_group(packed.reshape(M, steps, 4), groups, blocks * BLOCK_M).reshape(groups * blocks, BLOCK_M, steps, 4)
    packed = packed.transpose(0, 2, 1, 3)
    offset = 128 if X.dtype == np.int8 else 0
    bp = _by_group(_folded_bias(bias, W.reshape(M, -1), x_zp + offset, M), groups, blocks * BLOCK_M)
    pixels = g["OH"] * g["OW"]
    chunk = min(pixels, max(TILE_W, BAND_BYTES // (steps * 8) // TILE_W * TILE_W))
    requant = {k: _by_group(v, groups, blocks * BLOCK_M) for k, v in _requant_consts(scale).items()}
    # the padded input planes (VNNI): PI [C4][HP][WP] int32 for quads of channels, PB [C][HP][WPB] bytes for "rows"
    # (wide enough for the last quad of columns); the padded rows and columns read
    quad_planes = planes and mode == "channels" and _planes(mode, g, x_strides)
    rows = planes and mode == "rows" and _planes(mode, g, x_strides)
    hp, wp = (g["OH"] - 1) * g["SH"] + (g["KH"] - 1) * g["DH"] + 1, (g["OW"] - 1) * g["SW"] + (g["KW"] - 1) * g["DW"] + 1
    wpb = (g["OW"] - 1) * g["SW"] + 4 * kq
    return Kernel("qconv_packed", {"X": X}, {"Y": Y},
                  consts={"Wp": np.ascontiguousarray(packed), "Bp": bp, **requant},
                  params=dict(g, C=C, M=M, MG=Mg, G=groups, XG=C * x_strides[1], YG=Mg * y_strides[1], MB=blocks,
                              BM=BLOCK_M, C4=quads, STEPS=steps, TAPS=mode != "channels", ROWS=mode == "rows", KQ=kq,
                              RP=rows, WPB=wpb, TW=TILE_W, Q=chunk, OFF=offset,
                              ZXU=x_zp + offset, T=_ctype(X), TY=_ctype(Y), XS=x_strides, YS=y_strides,
                              ZY=clamp[0], LO=clamp[1], HI=clamp[2], QP=quad_planes, HP=hp, WP=wp),
                  scratch={"S": (np.int32, steps * chunk * 2),     # the band: int32 [steps][Q] or int16 [steps][Q][4]
                           **({"PI": (np.int32, quads * hp * wp)} if quad_planes else {}),
                           **({"PI": (np.int32, -(-(C * hp * wpb) // 4))} if rows else {})},
                  macs=g["N"] * M * pixels * C * g["KH"] * g["KW"],
                  math="Y[n][m][oh][ow] = requant(B[m] + sum_{c,kh,kw} (X[n][c][oh*S+kh*D-P][ow*S+kw*D-P] - x_zp) * W[m][c][kh][kw])")


DW_TILE = 32    # depthwise: outputs summed at once (one AVX-512 or two AVX2 vpmaddwd pairs)
DW_QUAD_SPAN = 48   # a quad of taps reads 16 outputs' bytes from one 64-byte load: offsets within 48 of its first
DW_FILL_CHUNKS = 16     # planes of bytes up to 1 KiB written by 64-byte chunks of vpermb, larger ones by rows


def _tap_quads(taps: list[int]) -> list[tuple[int, list[tuple[int, int]]]]:
    """The depthwise taps (plane offsets, in (kh, kw) order) in quads for vpdpbusd: sorted by offset,
    up to 4 a quad whose offsets lie within DW_QUAD_SPAN of its first; each quad as (its first offset,
    [(tap index, offset past the first)])."""
    quads = []
    for t in sorted(range(len(taps)), key=lambda t: taps[t]):
        if not quads or len(quads[-1][1]) == 4 or taps[t] - quads[-1][0] > DW_QUAD_SPAN:
            quads.append((taps[t], []))
        quads[-1][1].append((t, taps[t] - quads[-1][0]))
    return quads


def _plane_chunks(g: dict, pitch: int, rows: int) -> list[tuple[int, int, int, list[int], int]] | None:
    """A small depthwise plane of bytes written 64 at a time: for each 64-byte chunk that holds input,
    (where it starts, the first input element it holds, the last one's distance from it, each byte's input
    element past the first, the mask of the bytes that hold input), where one chunk's input lies within 64 bytes (stride 1); None for planes of more than
    DW_FILL_CHUNKS chunks or with input spread wider, which are written row by row."""
    SH, SW = g["SH"], g["SW"]
    size = SH * SW * rows * pitch
    if size > 64 * DW_FILL_CHUNKS:
        return None
    phase, at = np.divmod(np.arange(size), rows * pitch)
    i = at // pitch * SH + phase // SW - g["PH"]
    j = at % pitch * SW + phase % SW - g["PW"]
    source = np.where((i >= 0) & (i < g["IH"]) & (j >= 0) & (j < g["IW"]), i * g["IW"] + j, -1)
    chunks = []
    for k in range(0, size, 64):
        src = source[k:k + 64]
        held = src >= 0
        if not held.any():
            continue
        first = int(src[held].min())
        if src.max() - first >= 64:
            return None
        chunks.append((k, first, int(src.max()) - first, [int(v) for v in np.where(held, src - first, 0)],
                       sum(1 << b for b in np.flatnonzero(held).tolist())))
    return chunks


def _depthwise(X, Y, W, bias, clamp, x_zp, scale, geometry) -> Kernel:
    """Depthwise 2-D convolution (group == C == M): each channel's plane is padded and split by stride
    phase, so that every tap reads a contiguous run of outputs (rows of PITCH columns, the ones past OW
    discarded).
    With AVX-512 VNNI and VBMI the plane holds u = X (+ 128 for int8) as bytes, the padding u's zero point;
    the taps go in quads (`quads`: each one vpermb of a 64-byte load gives 16 outputs their 4 bytes, one
    vpdpbusd sums them), the zero point folded into the bias (sum (x - x_zp) w = sum u w - u_zp sum w).
    Else the plane holds (X - x_zp) as int16, padded with 0, summed a tap at a time by vpmaddwd; |x - x_zp|
    <= 255 and |w| <= 128, so the sums of products wrap in 32 bits as the int32 model."""
    g = geometry
    (SH, SW), (DH, DW), (KH, KW) = (g["SH"], g["SW"]), (g["DH"], g["DW"]), (g["KH"], g["KW"])
    pitch = g["OW"] + (KW - 1) * DW // SW
    rows = g["OH"] + (KH - 1) * DH // SH
    taps = [((kh * DH % SH * SW + kw * DW % SW) * rows + kh * DH // SH) * pitch + kw * DW // SW
            for kh in range(KH) for kw in range(KW)]
    # per column phase p: the plane columns jj in [lo, hi) that hold input column jj * SW + p - PW
    PW, IW = g["PW"], g["IW"]
    cols = [(p, max(0, -(-(PW - p) // SW)), min(pitch, -(-(IW + PW - p) // SW)), p - PW) for p in range(SW)]
    # quads: which outputs of the run of 16 from q0 are real (column < OW, row < OH; the low 16 bits) and how
    # many (the bits above), by q0 % PITCH, then for the last, shorter run
    outputs, tail = g["OH"] * g["OW"], g["OH"] * pitch % 16

    def keep(r: int, run: int = 16) -> int:
        bits = [j for j in range(run) if (r + j) % pitch < g["OW"]]
        return sum(1 << j for j in bits) | len(bits) << 16
    offset = 128 if X.dtype == np.int8 else 0
    return Kernel("qconv_depthwise", {"X": X}, {"Y": Y},
                  consts={"Wk": np.ascontiguousarray(W.reshape(W.shape[0], -1)), "Bk": np.asarray(bias, np.int32),
                          "TAP": np.asarray(taps, np.uint32), **_requant_consts(scale)},
                  params=dict(g, PITCH=pitch, ROWS=rows, taps=taps, cols=cols, TILE=DW_TILE, ZX=x_zp, T=_ctype(X),
                              TY=_ctype(Y), ZY=clamp[0], LO=clamp[1], HI=clamp[2], quads=_tap_quads(taps), keep=[keep(r) for r in range(pitch)],
                              keep_tail=keep((g["OH"] * pitch - tail) % pitch, tail),
                              OFF=offset, ZXU=x_zp + offset, OUT16=-(-outputs // 16) * 16,
                              chunks=_plane_chunks(g, pitch, rows)),
                  scratch={"P": (np.int16, SH * SW * rows * pitch + DW_TILE),
                           "U": (np.int32, max(-(-(g["OH"] * pitch) // DW_TILE) * DW_TILE, -(-outputs // 16) * 16 + 16))},
                  macs=g["N"] * g["C"] * g["OH"] * g["OW"] * KH * KW,
                  math="Y[n][c][oh][ow] = requant(B[c] + sum_{kh,kw} (X[n][c][oh*S+kh*D-P][ow*S+kw*D-P] - x_zp) * W[c][0][kh][kw])")


@reference("KilnQConv")
def qconv_ref(attrs, X, W, B=None):
    N, C, H, Wd = X.shape
    M, Cg, KH, KW = W.shape
    G = attrs.get("group", 1)
    (ph, pw, ph_end, pw_end), (sh, sw), (dh, dw) = attrs["pads"], attrs["strides"], attrs["dilations"]
    x = np.pad(X.astype(np.int64) - attrs["x_zp"], ((0, 0), (0, 0), (ph, ph_end), (pw, pw_end)))
    OH = (H + ph + ph_end - (KH - 1) * dh - 1) // sh + 1
    OW = (Wd + pw + pw_end - (KW - 1) * dw - 1) // sw + 1
    acc = np.zeros((N, M, OH, OW), np.int64)
    Mg = M // G
    for g in range(G):
        xs = x[:, g * Cg:(g + 1) * Cg]
        ws = W[g * Mg:(g + 1) * Mg].astype(np.int64)
        for kh in range(KH):
            for kw in range(KW):
                patch = xs[:, :, kh * dh: kh * dh + (OH - 1) * sh + 1: sh, kw * dw: kw * dw + (OW - 1) * sw + 1: sw]
                acc[:, g * Mg:(g + 1) * Mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, kh, kw])
    if B is not None:
        acc += B.astype(np.int64).reshape(1, M, 1, 1)
    acc = acc.astype(np.int32)                       # the C accumulates in 32 bits
    m, s = quant.multiplier(np.broadcast_to(np.asarray(attrs["scale"], np.float64), (M,)))
    out = quant.requant(acc, m.reshape(1, M, 1, 1), s.reshape(1, M, 1, 1), attrs["y_zp"], attrs["lo"], attrs["hi"])
    return out


# ---- matrix products ----------------------------------------------------------------------------

@op("KilnQMatMul")
def qmatmul(outs, A, W, B=None, *, a_zp, y_zp, lo, hi, scale):
    (Y,) = outs
    if len(W.shape) != 2 or not W.is_const:
        raise Unsupported("W must be a constant matrix")
    N = W.shape[1]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (N,))
    fold = B is None or B.is_const     # (A - a_zp) @ W = A @ W - a_zp * (column sums of W): into the bias

    def generic():
        acc = "(int32_t)(acc + (uint32_t)BI[n])" if B is not None or fold else "(int32_t)acc"
        finish = _finish(Y, "n", y_zp, lo, hi, acc)
        kernel = _int_matmul(Y, A, W, None if fold else _scalar(f"{A.name}:zp", a_zp, A.dtype), None, finish, {},
                             "Y = requant(B + (A - a_zp) @ W) per column n")
        if fold:
            bias = (0 if B is None else B.const.astype(np.int64)) - a_zp * W.const.astype(np.int64).sum(axis=0)
            kernel.consts["BI"] = (bias % (1 << 32)).astype(np.uint32).view(np.int32)   # int32, wrapping as acc does
        else:
            kernel.inputs["BI"] = B
            kernel.consts["ZA"] = kernel.inputs.pop("ZA").const
        kernel.consts.update(**_requant_consts(scale))
        return kernel

    K = W.shape[0]
    rows = int(np.prod(A.shape[:-1], dtype=np.int64))
    if not fold:
        return generic()

    def gemv():
        return _gemv(A, Y, W.const, B.const if B is not None else np.zeros(N, np.int32), (y_zp, lo, hi), a_zp,
                     scale, rows)

    def packed():
        # a 1x1 convolution with K input channels over A's rows: A[r][k] is X[0][k][0][r]
        rows = int(np.prod(A.shape[:-1], dtype=np.int64))
        bias = B.const if B is not None else np.zeros(N, np.int32)
        geometry = dict(N=1, C=K, IH=1, IW=rows, OH=1, OW=rows, KH=1, KW=1, SH=1, SW=1, DH=1, DW=1, PH=0, PW=0)
        kernel = _packed(A, Y, W.const.T[:, :, None, None], bias, (y_zp, lo, hi), a_zp, scale,
                         geometry, x_strides=(0, 1, 0, K), y_strides=(0, 1, N))
        kernel.math = "Y[r][n] = requant(B[n] + sum_k (A[r][k] - a_zp) * W[k][n]), r over A's rows"
        return kernel
    if not _band_fits(K, 1, 1):
        return Tactics("gemv", {"gemv": gemv, "generic": generic})
    return Tactics("gemv" if rows <= GEMV_ROWS else "packed", {"packed": packed, "gemv": gemv, "generic": generic})


GEMV_ROWS, GEMV_COLUMNS = 4, 64     # gemv: up to 4 rows at once (their sums in registers) x 64 columns (4 AVX-512 vectors)


def _gemv(A, Y, W, bias, clamp, a_zp, scale, rows) -> Kernel:
    """Few rows of A times a constant W [K, N]: the weights packed for streaming, [N/64][K/4][64][4] int8 (blocks
    of 16, 32 or 48 columns where N is smaller), read once per 4 rows; each quad of k of a row (u = A + 128 for int8, bytes) meets 64 columns' quads (AVX-512
    VNNI: four vpdpbusd; AVX2: vpmaddwd by 8 columns), the zero point folded into the bias as in _packed."""
    K, N = W.shape
    width = min(GEMV_COLUMNS, -(-N // 16) * 16)     # fewer columns: blocks of 16 (the padding stays small)
    quads, blocks = -(-K // 4), -(-N // width)
    packed = np.zeros((quads * 4, blocks * width), np.int8)
    packed[:K, :N] = W
    packed = packed.reshape(quads, 4, blocks, width).transpose(2, 0, 3, 1)
    offset = 128 if A.dtype == np.int8 else 0
    requant = {k: np.pad(v, (0, blocks * width - N)) for k, v in _requant_consts(scale).items()}
    return Kernel("qgemv", {"A": A}, {"Y": Y},
                  consts={"Wp": np.ascontiguousarray(packed), "Bp": _folded_bias(bias, W.T, a_zp + offset,
                                                                                 blocks * width), **requant},
                  params=dict(R=rows, K=K, K4=quads, N=N, NB=width, NBLK=blocks, RB=GEMV_ROWS, OFF=offset,
                              ZXU=a_zp + offset, TY=_ctype(Y), ZY=clamp[0], LO=clamp[1], HI=clamp[2]),
                  scratch={"S": (np.int32, rows * quads * 2)},     # u: bytes [rows][K4][4] or int16 without VNNI
                  macs=rows * K * N,
                  math="Y[r][n] = requant(B[n] + sum_k (A[r][k] - a_zp) * W[k][n]), r over A's rows")


@reference("KilnQMatMul")
def qmatmul_ref(attrs, A, W, B=None):
    acc = np.matmul(A.astype(np.int64) - attrs["a_zp"], W.astype(np.int64))
    if B is not None:
        acc = acc + B.astype(np.int64)
    acc = acc.astype(np.int32)
    m, s = quant.multiplier(np.broadcast_to(np.asarray(attrs["scale"], np.float64), (W.shape[1],)))
    return quant.requant(acc, m, s, attrs["y_zp"], attrs["lo"], attrs["hi"])


# ---- elementwise: one expression each, so they broadcast and fuse as the float ones do -----------

def _out_dtype(operands, attrs):
    return np.dtype(attrs["to"])


def _minus(X, zp: int) -> str:
    return f"((int32_t){X} - {literal(zp, np.int32)})"


@expression("KilnQAdd", kinds="iu", out=_out_dtype)
def qadd(A, B, *, a_zp, b_zp, y_zp, lo, hi, scale, to):
    ma, mb, s = quant.pair_multiplier(*scale)
    if 17 <= s <= 45:       # the same result in 32-bit arithmetic (kiln_requant2_narrow), which vectorises better
        return (f"({_C[to]})kiln_requant2_narrow({_minus(A, a_zp)}, {ma >> 16}, {ma & 0xffff}, {_minus(B, b_zp)}, "
                f"{mb >> 16}, {mb & 0xffff}, {s}, {y_zp}, {lo}, {hi})")
    return f"({_C[to]})kiln_requant2({_minus(A, a_zp)}, {ma}, {_minus(B, b_zp)}, {mb}, {s}, {y_zp}, {lo}, {hi})"


@reference("KilnQAdd")
def qadd_ref(attrs, A, B):
    ma, mb, s = quant.pair_multiplier(*attrs["scale"])
    return quant.requant2(A.astype(np.int64) - attrs["a_zp"], ma, B.astype(np.int64) - attrs["b_zp"], mb, s,
                          attrs["y_zp"], attrs["lo"], attrs["hi"])


@expression("KilnQMul", kinds="iu", out=_out_dtype)
def qmul(A, B, *, a_zp, b_zp, y_zp, lo, hi, scale, to):
    m, s = (int(v[0]) for v in quant.multiplier(scale))
    return f"({_C[to]})kiln_requant({_minus(A, a_zp)} * {_minus(B, b_zp)}, {m}, {s}, {y_zp}, {lo}, {hi})"


@reference("KilnQMul")
def qmul_ref(attrs, A, B):
    m, s = quant.multiplier(attrs["scale"])
    acc = (A.astype(np.int64) - attrs["a_zp"]) * (B.astype(np.int64) - attrs["b_zp"])
    return quant.requant(acc, m, s, attrs["y_zp"], attrs["lo"], attrs["hi"])


@expression("KilnRequant", kinds="iu", out=_out_dtype)
def requant(X, *, x_zp, y_zp, lo, hi, scale, to):
    m, s = (int(v[0]) for v in quant.multiplier(scale))
    return f"({_C[to]})kiln_requant({_minus(X, x_zp)}, {m}, {s}, {y_zp}, {lo}, {hi})"


@reference("KilnRequant")
def requant_ref(attrs, X):
    m, s = quant.multiplier(attrs["scale"])
    return quant.requant(X.astype(np.int64) - attrs["x_zp"], m, s, attrs["y_zp"], attrs["lo"], attrs["hi"])


# ---- table lookup --------------------------------------------------------------------------------

@op("KilnLUT")
def lut(outs, X, *, table):
    (Y,) = outs
    table = np.asarray(table, dtype=Y.dtype)
    offset = -int(np.iinfo(X.dtype).min)
    if table.size != 256:
        raise Unsupported("a table needs 256 entries")
    return Kernel("lut", {"X": X}, {"Y": Y}, consts={"T": table}, params=dict(n=Y.size, offset=offset),
                  inplace=("X",), macs=0, math="Y = T[X] (the function tabulated at compile time)")


@reference("KilnLUT")
def lut_ref(attrs, X):
    offset = -int(np.iinfo(X.dtype).min)
    return np.asarray(attrs["table"])[X.astype(np.int64) + offset]


# ---- average pooling -------------------------------------------------------------------------------

@op("KilnQAvgPool")
def qavg_pool(outs, X, *, x_zp, y_zp, lo, hi, scale, kernel_shape, strides, pads, counted=0):
    """scale: x_scale / y_scale; the sum is divided by the window's size, or (counted) by the
    number of its elements inside the input -- one multiplier per count."""
    from .pool import _pool
    (Y,) = outs
    n = len(kernel_shape)
    kernel = _pool("avg", X, Y, kernel_shape, strides, [1] * n, pads[:n], pads[n:], 0)
    size = int(np.prod(kernel_shape))
    counts = np.arange(1, size + 1) if counted else np.array([size])
    kernel.params.update(integer=dict(T=_ctype(X), zp=x_zp, counted=bool(counted),
                                      finish=_finish(Y, "count - 1" if counted else "0", y_zp, lo, hi)))
    kernel.consts.update(_requant_consts(scale / counts))
    kernel.epilogue_modes = None
    return kernel


@reference("KilnQAvgPool")
def qavg_pool_ref(attrs, X):
    k, s, p = attrs["kernel_shape"], attrs["strides"], attrs["pads"]
    n = len(k)
    widths = [(0, 0), (0, 0)] + [(p[d], p[n + d]) for d in range(n)]
    x = np.pad(X.astype(np.int64) - attrs["x_zp"], widths)
    inside = np.pad(np.ones(X.shape[2:], np.int64), widths[2:])
    out_sizes = [(x.shape[2 + d] - k[d]) // s[d] + 1 for d in range(n)]
    acc = np.zeros(X.shape[:2] + tuple(out_sizes), np.int64)
    count = np.zeros(out_sizes, np.int64)
    for tap in np.ndindex(*k):
        window = tuple(slice(t, t + (o - 1) * st + 1, st) for t, o, st in zip(tap, out_sizes, s))
        acc += x[(slice(None), slice(None)) + window]
        count += inside[window]
    if not attrs.get("counted"):
        count[...] = int(np.prod(k))
    m, sh = quant.multiplier(attrs["scale"] / count)
    return quant.requant(acc.astype(np.int32), m, sh, attrs["y_zp"], attrs["lo"], attrs["hi"])


# ---- softmax: exp by table, the normalisation by one integer division ----------------------------

EXP_BITS = 22       # exp table entries are exp(-d * x_scale) in Q22: a row of up to 2^41 elements sums in 64 bits


def _exp_table(x_scale: float) -> np.ndarray:
    return np.rint(np.exp(-np.arange(256) * float(x_scale)) * 2.0 ** EXP_BITS).astype(np.uint32)


@op("KilnQSoftmax")
def qsoftmax(outs, X, *, axis, x_scale, y_scale, y_zp, lo, hi):
    """y = requant(2^30 * E[max - x] / sum of E over the row), E = exp table of the input step: the
    probability in Q30, then onto the output's scale."""
    (Y,) = outs
    axis = axis % len(X.shape)
    n = X.shape[axis]
    inner = int(np.prod(X.shape[axis + 1:], dtype=np.int64))
    m, s = quant.multiplier(2.0 ** -30 / y_scale)
    return Kernel("qsoftmax", {"X": X}, {"Y": Y}, consts={"E": _exp_table(x_scale)},
                  params=dict(outer=X.size // max(1, n * inner), n=n, inner=inner, T=_ctype(Y), TX=_ctype(X),
                              lowest=int(np.iinfo(X.dtype).min), m=int(m[0]), s=int(s[0]), zp=y_zp, lo=lo, hi=hi),
                  macs=2 * X.size, math="Y = requant(2^30 * E[max - X] / sum E[max - X]) along the axis, E = exp table")


@reference("KilnQSoftmax")
def qsoftmax_ref(attrs, X):
    x = np.moveaxis(X.astype(np.int64), attrs["axis"], -1)
    e = _exp_table(attrs["x_scale"])[x.max(axis=-1, keepdims=True) - x].astype(np.uint64)
    p = ((e << np.uint64(30)) // e.sum(axis=-1, keepdims=True, dtype=np.uint64)).astype(np.int64)
    m, s = quant.multiplier(2.0 ** -30 / attrs["y_scale"])
    return np.moveaxis(quant.requant(p, m, s, attrs["y_zp"], attrs["lo"], attrs["hi"]), -1, attrs["axis"])


# ---- products of two run-time tensors (attention's Q @ K^T, P @ V) --------------------------------

@op("KilnQBatchMatMul")
def qbatch_matmul(outs, A, B, *, a_zp, b_zp, y_zp, lo, hi, scale):
    """Rows of A against B with its zero point taken out once per batch (|b - b_zp| <= 255: int16);
    batches broadcast as numpy's matmul."""
    (Y,) = outs
    if len(A.shape) < 2 or len(B.shape) < 2:
        raise Unsupported("A and B must be at least 2-D")
    M, K = A.shape[-2:]
    N = B.shape[-1]
    batch = list(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    return Kernel("qbatch_matmul", {"A": A, "B": B}, {"Y": Y}, consts=_requant_consts(np.asarray(scale, np.float64).reshape(1)),
                  params=dict(M=M, N=N, K=K, batch=batch, a_batch=[s * M * K for s in shape_strides(A.shape[:-2], batch)],
                              b_batch=[s * K * N for s in shape_strides(B.shape[:-2], batch)], ZA=a_zp, ZB=b_zp,
                              TA=_ctype(A), TB=_ctype(B), TY=_ctype(Y), ZY=y_zp, LO=lo, HI=hi),
                  scratch={"S": (np.int16, K * N), "U": (np.uint32, N)},
                  macs=int(np.prod(batch, dtype=np.int64)) * M * N * K,
                  math="Y[b] = requant((A[b] - a_zp) @ (B[b] - b_zp)), batched")


@reference("KilnQBatchMatMul")
def qbatch_matmul_ref(attrs, A, B):
    acc = np.matmul(A.astype(np.int64) - attrs["a_zp"], B.astype(np.int64) - attrs["b_zp"]).astype(np.int32)
    m, s = quant.multiplier(attrs["scale"])
    return quant.requant(acc, m, s, attrs["y_zp"], attrs["lo"], attrs["hi"])
