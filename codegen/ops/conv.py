"""Convolution, any number of spatial dimensions, groups (depthwise included), dilations, pads; and
DeformConv (2-D), whose kernel taps read X bilinearly at learned offsets."""
from __future__ import annotations

import numpy as np

from . import Kernel, Tactics, Unsupported, is_splat, op, require_dtype, sparse
from .gemm import MR, MRS, packed_product


def resolve_pads(auto_pad, in_sizes, kernel, strides, dilations, pads):
    """Explicit begin/end pads per spatial dim, auto_pad resolved as the ONNX spec says."""
    n = len(in_sizes)
    if auto_pad in ("NOTSET", "", None):
        pads = list(pads) if pads else [0] * (2 * n)
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad {auto_pad!r} not supported")
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin, end


def window(op_type, X, W, kernel_shape, strides, dilations):
    """(spatial rank, kernel, strides, dilations) of a convolution, spec defaults filled in."""
    spatial = len(X.shape) - 2
    if spatial < 1:
        raise Unsupported(f"{op_type} needs at least one spatial dimension")
    kernel = list(W.shape[2:])
    if kernel_shape is not None and list(kernel_shape) != kernel:
        raise Unsupported("kernel_shape differs from the weight's shape")
    return spatial, kernel, list(strides or [1] * spatial), list(dilations or [1] * spatial)


@op("Conv")
def conv(outs, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    (Y,) = outs
    require_dtype(X, W, B, Y)
    spatial, kernel, strides, dilations = window("Conv", X, W, kernel_shape, strides, dilations)
    N, C, *in_sizes = X.shape
    M, Cg = W.shape[:2]
    begin, _ = resolve_pads(auto_pad, in_sizes, kernel, strides, dilations, pads)
    out_sizes = list(Y.shape[2:])
    if C != Cg * group or M % group:
        raise Unsupported("channels do not divide by group")
    macs = N * M * int(np.prod(out_sizes)) * Cg * int(np.prod(kernel))

    def generic():
        return Kernel(
            "conv", {"X": X, "W": W, **({"B": B} if B is not None else {})}, {"Y": Y},
            params=dict(N=N, C=C, M=M, G=group, Cg=Cg, Mg=M // group, I=in_sizes, O=out_sizes, K=kernel,
                        S=strides, D=dilations, P=begin, has_bias=B is not None),
            splat_ok=("W", "B"), macs=macs, epilogue_modes=("flat", "chan"),
            math="Y[n][m][o] = B[m] + sum_{c,k} X[n][g*Cg+c][o*S + k*D - P] * W[m][c][k]")

    def depthwise():
        return Kernel("conv_depthwise", {"X": X, "W": W, **({"B": B} if B is not None else {})}, {"Y": Y},
                      params=dict(N=N, C=C, IH=in_sizes[0], IW=in_sizes[1], OH=out_sizes[0], OW=out_sizes[1],
                                  KH=kernel[0], KW=kernel[1], SH=strides[0], SW=strides[1], DH=dilations[0],
                                  DW=dilations[1], PH=begin[0], PW=begin[1], has_bias=B is not None),
                      splat_ok=("W", "B"), macs=macs, epilogue_modes=("flat", "chan"),
                      math="Y[n][c][oh][ow] = B[c] + sum_{kh,kw} X[n][c][oh*S+kh*D-P][ow*S+kw*D-P] * W[c][0][kh][kw]")
    conv_args = (X, W, B, Y, strides, dilations, begin, macs)
    constant = W.is_const and (B is None or B.is_const)
    if group == 1 and constant and not is_splat(W) and in_sizes == kernel and not any(begin) \
            and out_sizes == [1] * spatial:
        # one window over the whole plane (squeeze-excite's fully connected layers): Y[n] = W x[n] + B
        product = W.const.reshape(M, -1).T
        return Tactics(f"packed_mr{MR}", {**{f"packed_mr{mr}": lambda mr=mr: packed_product(
            X, product, B, Y, N, M, product.shape[0], 0, 1.0, 1.0, batch=[], a_batch=[], mr=mr,
            math="Y[n][m] = B[m] + sum_k X[n][k] * W[m][k] (the window is the whole plane)") for mr in MRS},
            "generic": generic})
    if spatial == 2 and group == 1 and constant:
        # splat weights (constant-filled models) are materialised by the packing
        candidates = {f"planes_bm{bm}": lambda bm=bm: _planes(*conv_args, bm) for bm in PLANE_BLOCKS_M}
        candidates.update({f"packed_bm{bm}": lambda bm=bm: _packed(*conv_args, bm) for bm in BLOCKS_M})
        if sparse.worth_timing(W.const):
            candidates["sparse"] = lambda: _sparse(*conv_args)
        candidates["generic"] = generic
        if sparse.worth_it("conv", W.const):
            return Tactics("sparse", candidates)
        return Tactics(f"planes_bm{PLANE_BLOCK_M}", candidates, lean=f"packed_bm{BLOCK_M}")

    def depthwise_rows():
        kernel = depthwise()
        p = kernel.params
        kernel.template = "conv_depthwise_rows"
        kernel.params = dict(p, columns=tap_columns(p["IW"], p["OW"], p["KW"], p["SW"], p["DW"], p["PW"]))
        kernel.scratch = {"A": (np.float32, p["OW"])}       # one output row's sums
        return kernel
    if spatial == 2 and constant:       # grouped: planes a group at a time, blocks of at most its channels
        blocks = sorted({min(bm, M // group) for bm in PLANE_BLOCKS_M}, reverse=True)
        candidates = {f"planes_bm{bm}": lambda bm=bm: _planes(*conv_args, bm) for bm in blocks}
        default = f"planes_bm{blocks[0]}"
    else:
        candidates, default = {}, None
    if spatial == 2 and group == C == M:
        candidates.update(rows=depthwise_rows, depthwise=depthwise)
        # flattened planes (whole rows and the padding between them) fill vectors that narrow rows leave
        # part empty, and keep the sums in registers; but a wide strided input's phase planes cost more
        # to copy than the rows kernel's strided reads (measured: 96 x 112 x 112, stride 2)
        if default is None or (strides[1] > 1 and in_sizes[1] > DEPTHWISE_ROWS_IW):
            default = "rows"
    if default is None:
        return generic()
    return Tactics(default, dict(candidates, generic=generic), lean="rows" if "rows" in candidates else "generic")


def tap_columns(IW: int, OW: int, KW: int, SW: int, DW: int, PW: int) -> list[tuple[int, int, int, int]]:
    """For each tap column kw of a window over rows of IW: (kw, lo, hi, shift), output columns [lo, hi) being
    those whose tap ow * SW + shift (shift = kw * DW - PW) lies inside the row; taps inside for none are left out."""
    columns = []
    for kw in range(KW):
        shift = kw * DW - PW
        lo = min(OW, max(0, -(shift // SW)))                 # first ow with ow * SW + shift >= 0
        hi = max(lo, min(OW, -(-(IW - shift) // SW)))       # first ow with ow * SW + shift >= IW
        if hi > lo:
            columns.append((kw, lo, hi, shift))
    return columns


def plane_geometry(OH, OW, KH, KW, SH, SW, DH, DW) -> tuple[int, int, int]:
    """Flattened planes (the planes kernels): (PITCH, the rows of a phase below an output row that its taps
    read, the positions Q). Output position q = oh * PITCH + ow; the columns past OW are computed and dropped."""
    pitch = OW + (KW - 1) * DW // SW
    return pitch, (KH - 1) * DH // SH, (OH - 1) * pitch + OW


def tap_phases(KH, KW, SH, SW, DH, DW) -> list[tuple[int, int]]:
    """The stride phases (row, column) some tap reads: one plane each (a 1x1 stride-2 window reads one of 4)."""
    return sorted({(kh * DH % SH, kw * DW % SW) for kh in range(KH) for kw in range(KW)})


def plane_taps(phases, rows, pitch, IW, KH, KW, SH, SW, DH, DW, PW):
    """Each tap's offset into planes of `rows` rows of `pitch` (phase after phase), and per phase (ph, pw,
    lo, hi, shift): the plane columns jj in [lo, hi) that hold input column jj * SW + shift."""
    taps = [((phases.index((kh * DH % SH, kw * DW % SW)) * rows + kh * DH // SH) * pitch + kw * DW // SW)
            for kh in range(KH) for kw in range(KW)]
    return taps, [(ph, pw, max(0, -(-(PW - pw) // SW)), min(pitch, -(-(IW + PW - pw) // SW)), pw - PW)
                  for ph, pw in phases]


def _sparse(X, W, B, Y, strides, dilations, begin, macs) -> Kernel:
    """2-D convolution over only the non-zero taps of each output channel (compressed sparse rows
    of W as [M][C*KH*KW]): each tap adds a scaled input plane to the output plane."""
    N, C, IH, IW = X.shape
    M, _, KH, KW = W.shape
    OH, OW = Y.shape[2:]
    bias = B.const if B is not None else np.zeros(M, np.float32)
    nonzero = int(np.count_nonzero(W.const))
    return Kernel("conv_sparse", {"X": X}, {"Y": Y}, consts={**sparse.csr(W.const), "Bs": bias},
                  params=dict(N=N, C=C, M=M, IH=IH, IW=IW, OH=OH, OW=OW, KH=KH, KW=KW, SH=strides[0],
                              SW=strides[1], DH=dilations[0], DW=dilations[1], PH=begin[0], PW=begin[1],
                              nonzero=nonzero, density=f"{100 * nonzero / W.size:.1f}"),
                  macs=macs * nonzero // W.size, epilogue_modes=("flat", "chan"),
                  math="Y[n][m][oh][ow] = B[m] + sum over W's non-zero taps (c,kh,kw) of X[n][c][oh*S+kh*D-P][ow*S+kw*D-P] * W[m][c][kh][kw]")


BLOCK_M = 8                 # output channels held in registers at once (the default tactic)
BLOCKS_M = (4, 8, 16)       # the blocks --tune tries: 16 fits AVX-512's 32 registers, 4 leaves room on smaller ones


def _packed(X, W, B, Y, strides, dilations, begin, macs, bm=BLOCK_M) -> Kernel:
    """2-D convolution with the weights packed at compile time as [M/bm][C][KH][KW][bm]: the inner
    loop multiplies one row of input pixels by bm output channels' weights, accumulating a
    bm x (vector width) tile of outputs in registers."""
    N, C, IH, IW = X.shape
    M, _, KH, KW = W.shape
    packed, bias = _packed_weights(W, B, bm)
    blocks = packed.shape[0]
    OH, OW = Y.shape[2:]
    return Kernel("conv_packed", {"X": X}, {"Y": Y}, consts={"Wp": packed, "Bp": bias},
                  params=dict(N=N, C=C, M=M, MB=blocks, BM=bm, IH=IH, IW=IW, OH=OH, OW=OW, KH=KH, KW=KW,
                              SH=strides[0], SW=strides[1], DH=dilations[0], DW=dilations[1], PH=begin[0],
                              PW=begin[1]),
                  macs=macs, epilogue_modes=("flat", "chan"),
                  math="Y[n][m][oh][ow] = B[m] + sum_{c,kh,kw} X[n][c][oh*S+kh*D-P][ow*S+kw*D-P] * W[m][c][kh][kw]")


DEPTHWISE_ROWS_IW = 64          # depthwise, strided: input rows wider than this take the `rows` tactic by default
PLANE_BLOCK_M = 8               # planes: output channels of a register block (the default tactic)
PLANE_BLOCKS_M = (8, 6, 4)      # the blocks --tune tries
PLANE_REGISTERS = 30            # a register block's r * bm accumulators and r loaded vectors, of AVX-512's 32
# the inputs of a chunk of positions (their band of planes) stay in cache while every block of output
# channels reads them: within L2 where the weights fit it (they are read once a chunk), else within
# more of it (the weights stream from memory once a chunk, so the chunks are few); the band is the
# layer's scratch memory, so this also bounds the RAM it takes
PLANE_CHUNK_BYTES, PLANE_BIG_WEIGHTS = (1 << 18, 1 << 20), 1 << 20
# the weights are fetched this far ahead of their use (measured with cold caches: resnet18's 512-channel
# 3x3 layers 15 % faster, its 256-channel ones 17 %)
PLANE_PREFETCH_BYTES = 8192


def _packed_weights(W, B, bm, channels=slice(None)):
    """W's output channels `channels` as [M/bm][C][KH][KW][bm] (padded to whole blocks) and the bias padded
    alike. The padding channels are computed but never stored: zeros, or a splat's value, so that a splat
    stays one (stored once, read through idx())."""
    w = W.const[channels]
    M, C, KH, KW = w.shape
    blocks = -(-M // bm)
    pad = lambda v: v.const.flat[0] if is_splat(v) else 0.0     # noqa: E731
    packed = np.full((blocks * bm, C, KH, KW), pad(W), np.float32)
    packed[:M] = w
    packed = np.ascontiguousarray(packed.reshape(blocks, bm, C, KH, KW).transpose(0, 2, 3, 4, 1))
    bias = np.full(blocks * bm, pad(B) if B is not None else 0.0, np.float32)
    if B is not None:
        bias[:M] = B.const[channels]
    return packed, bias


def _planes(X, W, B, Y, strides, dilations, begin, macs, bm=PLANE_BLOCK_M) -> Kernel:
    """2-D convolution (any groups) as a sum of shifted planes. Output position q = oh * PITCH + ow (the
    columns past OW computed and dropped) of tap (kh, kw) reads element q + TAP[kh][kw] of its input
    channel's planes: the input zero-padded and split by stride phase (padded (i, j) at [phase (i % SH,
    j % SW)][i / SH][j / SW], rows of PITCH; only the phases some tap reads), so every tap is one
    contiguous run. A chunk of positions at a time, the rows of planes it reads (a band of one group's
    channels) are copied into scratch memory; a 1x1 stride-1 unpadded convolution reads X itself
    (PITCH = OW). A register block of bm output channels x BQ positions accumulates over every (channel
    of its group, tap): per step, BQ / lanes vector loads and bm broadcasts of the weights packed as
    [G * MB][Cg][KH][KW][bm] (MB blocks a group), for bm * BQ / lanes FMAs."""
    N, C, IH, IW = X.shape
    M, Cg, KH, KW = W.shape
    G = C // Cg
    OH, OW = Y.shape[2:]
    (SH, SW), (DH, DW), (PH, PW) = strides, dilations, begin
    pitch, halo, positions = plane_geometry(OH, OW, KH, KW, SH, SW, DH, DW)
    # positions per register block, r AVX-512 vectors (r * bm accumulators): the fewest cycles of
    # max(FMAs, loads) per step plus about bm per block for the store, ties to the larger block
    bq = 16 * min(range(PLANE_REGISTERS // (bm + 1), 0, -1), key=lambda r: -(-positions // (16 * r)) * (max(r * bm, r + bm) + bm))
    groups = [_packed_weights(W, B, bm, slice(g * (M // G), (g + 1) * (M // G))) for g in range(G)]
    packed, bias = (np.concatenate(parts) for parts in zip(*groups))
    budget = PLANE_CHUNK_BYTES[packed.nbytes > PLANE_BIG_WEIGHTS]
    phases = tap_phases(KH, KW, SH, SW, DH, DW)
    whole = -(-positions // bq) * bq
    # 1x1, stride 1, unpadded: X itself (the last block computed over the last BQ positions, so none
    # reads past X) where there are BQ positions
    direct = KH == KW == SH == SW == 1 and PH == PW == 0 and positions >= bq
    if direct:      # positions per chunk (whole blocks)
        chunk = max(bq, min(whole, budget // (4 * Cg) // bq * bq))
        rows, plane = OH, IH * IW
    else:           # a band: the rows of planes a chunk's blocks read, from the row of its first position
        per_row = 4 * Cg * len(phases) * pitch
        chunk = max(bq, min(whole, (budget // per_row - halo - 2) * pitch // bq * bq))
        rows = halo + 2 + -(-chunk // pitch)
        plane = (-(-(len(phases) * rows * pitch) // 16) | 1) * 16    # an odd number of cache lines: the
        # channels spread over the cache sets
    taps, phases = plane_taps(phases, rows, pitch, IW, KH, KW, SH, SW, DH, DW, PW)
    scratch = {"P": (np.float32, Cg * plane)} if not direct else {}
    return Kernel("conv_planes", {"X": X}, {"Y": Y}, consts={"Wp": packed, "Bp": bias},
                  params=dict(N=N, C=C, M=M, G=G, CG=Cg, MG=M // G, MB=len(packed) // G, BM=bm, IH=IH, IW=IW,
                              OH=OH, OW=OW, KH=KH, KW=KW, SH=SH, SW=SW, DH=DH, DW=DW, PH=PH, PW=PW, PITCH=pitch,
                              ROWS=rows, PLANE=plane, Q=positions, BQ=bq, CHUNK=chunk, taps=taps, phases=phases,
                              direct=direct, PREFETCH=PLANE_PREFETCH_BYTES),
                  scratch=scratch, splat_ok=("Wp", "Bp"), macs=macs, epilogue_modes=("flat", "chan"),
                  math="Y[n][m][oh][ow] = B[m] + sum_{c,kh,kw} X[n][g*Cg+c][oh*S+kh*D-P][ow*S+kw*D-P] * W[m][c][kh][kw]")


@op("DeformConv")
def deform_conv(outs, X, W, offset, B=None, mask=None, *, dilations=None, group=1, kernel_shape=None,
                offset_group=1, pads=None, strides=None):
    """2-D only. Each kernel tap reads X bilinearly (zero outside) at its position moved by `offset`,
    weighted by `mask`, as the reference's GridSample with align_corners does."""
    (Y,) = outs
    require_dtype(X, W, offset, B, mask, Y)
    if len(X.shape) != 4:
        raise Unsupported("only 2-D DeformConv")
    N, C, H, Wd = X.shape
    M, Cg, KH, KW = W.shape
    if tuple(kernel_shape or (KH, KW)) != (KH, KW) or C != Cg * group or M % group or C % offset_group:
        raise Unsupported("the channels do not divide into group and offset_group")
    if H < 2 or Wd < 2:
        raise Unsupported("X must be at least 2x2 (the reference divides by H - 1 and W - 1)")
    OH, OW = Y.shape[2:]
    if tuple(offset.shape) != (N, offset_group * KH * KW * 2, OH, OW) or (
            mask is not None and tuple(mask.shape) != (N, offset_group * KH * KW, OH, OW)):
        raise Unsupported("offset or mask does not match the output")
    pads, strides, dilations = list(pads or [0] * 4), list(strides or [1, 1]), list(dilations or [1, 1])
    inputs = {"X": X, "W": W, "O": offset}
    if B is not None:
        inputs["B"] = B
    if mask is not None:
        inputs["K"] = mask
    return Kernel("deform_conv", inputs, {"Y": Y},
                  params=dict(N=N, C=C, H=H, W=Wd, M=M, Cg=Cg, Mg=M // group, KH=KH, KW=KW, OH=OH, OW=OW,
                              OG=offset_group, Cog=C // offset_group, pads=pads, strides=strides,
                              dilations=dilations, has_bias=B is not None, has_mask=mask is not None),
                  macs=Y.size * Cg * KH * KW * 4,
                  math="Y[n][m][i][j] = B[m] + sum_c,kh,kw W[m][c][kh][kw] * mask * X[n][c] at the offset tap "
                       "(bilinear)")
