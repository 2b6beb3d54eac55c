"""Gemm and MatMul: C = A @ B, with B pre-transposed at compile time when it is a constant,
so the innermost loop always runs along a contiguous row of B and of Y; and Det."""
from __future__ import annotations

import numpy as np

from . import Kernel, Tactics, Unsupported, broadcast_strides, c_float, is_splat, op, require_dtype, shape_strides
from . import sparse


@op("Gemm")
def gemm(outs, A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    (Y,) = outs
    require_dtype(A, B, C, Y)
    M, K = A.shape[::-1] if transA else A.shape
    N = B.shape[0] if transB else B.shape[1]
    C = C if beta != 0 else None

    def generic(rows=None):
        """The plain kernel; over B's non-zeros only when given them as (N, K) `rows`."""
        inputs, consts, trans_b = {"A": A}, {}, transB
        if rows is not None:
            consts.update(sparse.csr(rows))
        elif B.is_const and transB:
            consts["B"] = np.ascontiguousarray(B.const.T)   # (K, N): rows of B contiguous
            trans_b = 0
        else:
            inputs["B"] = B
        c_strides = None
        if C is not None:
            inputs["C"] = C
            c_strides = broadcast_strides(C, (M, N))
        return Kernel("gemm", inputs, {"Y": Y}, consts=consts,
                      params=dict(M=M, N=N, K=K, transA=transA, transB=trans_b, alpha=c_float(alpha),
                                  beta=c_float(beta), one_alpha=alpha == 1.0, one_beta=beta == 1.0,
                                  c_strides=c_strides, batch=[], a_batch=[], b_batch=[], sparse=rows is not None),
                      splat_ok=("B", "C"), macs=M * N * K, epilogue_modes=("flat", "chan"),
                      math="Y = alpha * op(A) @ op(B) + beta * C")
    if not _packable(B):
        return generic()
    b = B.const.T if transB else B.const
    return _tactics(lambda mr: packed_product(A, b, C, Y, M, N, K, transA, alpha, beta, batch=[], a_batch=[], mr=mr,
                                       math="Y = alpha * op(A) @ op(B) + beta * C"), generic, b.T)


@op("MatMul")
def matmul(outs, A, B):
    (Y,) = outs
    require_dtype(A, B, Y)
    if len(A.shape) == 0 or len(B.shape) == 0:
        raise Unsupported("MatMul of a scalar")
    a_shape = (1,) + A.shape if len(A.shape) == 1 else A.shape
    b_shape = B.shape + (1,) if len(B.shape) == 1 else B.shape
    M, K = a_shape[-2:]
    N = b_shape[-1]
    batch = list(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))

    def batch_strides(shape, mat):
        strides = shape_strides(shape[:-2], batch)
        return [s * mat for s in strides]

    def generic(rows=None):
        """The plain kernel; over B's non-zeros only when given them as (N, K) `rows`."""
        return Kernel("gemm", {"A": A} if rows is not None else {"A": A, "B": B}, {"Y": Y},
                      consts=sparse.csr(rows) if rows is not None else {},
                      params=dict(M=M, N=N, K=K, transA=0, transB=0, alpha="1.0f", beta="1.0f", one_alpha=True,
                                  one_beta=True, c_strides=None, batch=batch, sparse=rows is not None,
                                  a_batch=batch_strides(a_shape, M * K), b_batch=batch_strides(b_shape, K * N)),
                      splat_ok=("B",), macs=int(np.prod(batch, dtype=np.int64)) * M * N * K,
                      epilogue_modes=("flat",) if batch or len(Y.shape) != 2 else ("flat", "chan"),
                      math="Y[b] = A[b] @ B[b] (batched, broadcast)")
    if len(B.shape) != 2 or not _packable(B):     # packed and sparse: one weight matrix for every batch
        return generic()
    rows = M * int(np.prod(batch, dtype=np.int64))     # one B: A's batches are more rows of one product
    return _tactics(lambda mr: packed_product(A, B.const, None, Y, rows, N, K, 0, 1.0, 1.0, batch=[], mr=mr, a_batch=[],
                                       math="Y = A @ B (A's batches as rows)" if batch else "Y = A @ B"),
                    generic, B.const.T)


MR, NR = 6, 16      # the register tile of the packed kernel: 6 rows x 16 columns (12 AVX2 or 6 AVX-512 accumulators)
MRS = (4, 6, 8, 12)  # the rows --tune tries (12 x 16 fits AVX-512's 32 registers; AVX2 spills above 6)


def _packable(B) -> bool:
    return B.is_const and not is_splat(B) and B.dtype == np.float32


def _tactics(packed, generic, rows) -> Tactics:
    """The kernels of a product with constant B: packed (one per MR), sparse over the non-zeros of
    B's (N, K) `rows` where it has zeros enough, and generic; sparse by default when it pays."""
    candidates = {f"packed_mr{mr}": lambda mr=mr: packed(mr) for mr in MRS}
    if sparse.worth_timing(rows):
        candidates["sparse"] = lambda: generic(rows)
    candidates["generic"] = generic
    return Tactics("sparse" if sparse.worth_it("gemm", rows) else f"packed_mr{MR}", candidates)


def packed_product(A, b, C, Y, M, N, K, transA, alpha, beta, batch, a_batch, math, mr=MR) -> Kernel:
    """B (K x N) constant: packed into zero-padded panels of NR columns, [N/NR][K][NR]."""
    panels = -(-N // NR)
    padded = np.zeros((K, panels * NR), np.float32)
    padded[:, :N] = b
    packed = np.ascontiguousarray(padded.reshape(K, panels, NR).transpose(1, 0, 2))
    inputs = {"A": A}
    c_strides = None
    if C is not None:
        inputs["C"] = C
        c_strides = broadcast_strides(C, (M, N))
    return Kernel("gemm_packed", inputs, {"Y": Y}, consts={"Bp": packed},
                  params=dict(M=M, N=N, K=K, NP=panels, MR=mr, NR=NR, transA=transA, alpha=c_float(alpha),
                              beta=c_float(beta), one_alpha=alpha == 1.0, one_beta=beta == 1.0, c_strides=c_strides,
                              batch=batch, a_batch=a_batch),
                  splat_ok=("C",), macs=int(np.prod(batch, dtype=np.int64)) * M * N * K,
                  # per-channel operands: where Y's axis 1 is the product's columns
                  epilogue_modes=("flat", "chan") if not batch and Y.shape[1:] == (N,) + (1,) * (len(Y.shape) - 2)
                  else ("flat",), math=math)


MAX_DET_ORDER = 64      # the kernel eliminates in a local double[M][M]: keep it small on the stack


@op("Det")
def det(outs, X):
    (Y,) = outs
    require_dtype(X, Y)
    if len(X.shape) < 2 or X.shape[-1] != X.shape[-2]:
        raise Unsupported("Det needs square matrices")
    M = X.shape[-1]
    if not 1 <= M <= MAX_DET_ORDER:
        raise Unsupported(f"matrices of order {M} not supported (1 to {MAX_DET_ORDER})")
    return Kernel("det", {"X": X}, {"Y": Y}, params=dict(count=Y.size, M=M), macs=Y.size * M ** 3 // 3,
                  math="Y[b] = det(X[b]) by Gaussian elimination with partial pivoting, in double")
