"""Robust PCA algorithms behind :mod:`pipeline.rpca` (plain functions).

Users should call the estimators :class:`pipeline.rpca.AltProj` and
:class:`pipeline.rpca.PCP`; this module holds the numerical work:

* :func:`altproj` -- non-convex alternating projections (Netrapalli et al.
  2014, arXiv:1410.7660, Algorithm 1), with the practical rank schedule
  described in ``docs/rpca.md``;
* :func:`pcp_ialm` -- principal component pursuit solved by the inexact
  augmented Lagrange multiplier method (Lin, Chen & Ma 2010, arXiv:1009.5055,
  Algorithm 5).

Both work on a tall matrix (``m >= n``; the callers transpose wide input) and
never take a full SVD of the stack: the spectrum of an ``m x n`` iterate ``X``
comes from the eigen-decomposition of its ``n x n`` Gram matrix ``X.T @ X``
(the "Gram trick"), computed by BLAS ``syrk``, or from a Rayleigh-Ritz step on
a warm subspace. AltProj streams each iteration through the rows in blocks
(rebuild ``L`` from its factors, threshold, multiply by the next subspace while
the block is in cache), so it holds only ``S`` besides the input until it
writes ``L``; PCP's element-wise updates are fused numba kernels that work in
place on four ``m x n`` arrays.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from numba import njit, prange
from threadpoolctl import ThreadpoolController

__all__ = ["RPCAResult", "altproj", "pcp_ialm", "METHODS", "available_methods"]

# rows per block when a float32 Gram matrix is accumulated in float64
_GRAM_BLOCK = 8192
# iterations after which an intermediate AltProj stage ends even if L still moves
_STAGE_MAX_ITER = 20
# an intermediate stage ends once sigma_{k+1}(M - S) changes by less than this (relative)
_FLOOR_RTOL = 0.05
# element-wise kernels use threads from this many matrix entries on, by blocks of rows
_PARALLEL_MIN_SIZE = 200_000
_ROW_BLOCK = 256


@dataclass
class RPCAResult:
    """Outcome of one robust PCA fit of a tall ``(m, n)`` matrix ``M = L + S (+ E)``.

    Attributes
    ----------
    low_rank : ndarray of shape (m, n)
        Low-rank part ``L``.
    sparse : ndarray of shape (m, n)
        Sparse part ``S``.
    rank : int
        Rank of ``low_rank``.
    n_iter : int
        Number of iterations (one truncated SVD and one sparse update each).
    converged : bool
        Whether the stopping criterion was met before ``max_iter``.
    left : ndarray of shape (m, rank)
        Left singular vectors of ``low_rank``.
    singular_values : ndarray of shape (rank,)
        Singular values of ``low_rank``, descending.
    components : ndarray of shape (rank, n)
        Right singular vectors of ``low_rank`` (rows, orthonormal).
    threshold : float
        AltProj: last common hard threshold ``zeta``; PCP: last soft threshold
        ``lambda / mu``.
    history : dict of lists
        Per-iteration diagnostics (``rank``, ``threshold``, ``rel_change``,
        ``rel_residual``, and ``objective`` for AltProj).
    column_thresholds : ndarray of shape (n,) or None
        AltProj: the threshold of each column, ``max(zeta, noise floor of the column)``.
    """

    low_rank: np.ndarray
    sparse: np.ndarray
    rank: int
    n_iter: int
    converged: bool
    left: np.ndarray
    singular_values: np.ndarray
    components: np.ndarray
    threshold: float
    history: dict[str, list[float]] = field(default_factory=dict)
    column_thresholds: np.ndarray | None = None


# --------------------------------------------------------------------------- kernels
# Each kernel works on a block of rows [i0, i1) and is called either directly
# (small matrices: no thread start-up) or from a prange over row blocks.


@njit(cache=True, nogil=True)
def _ht_block(M, LX, S, zeta, stats):  # pragma: no cover - compiled
    """``S = H_zeta(M - L)``, ``LX = M - S`` on a block of rows (``LX`` holds ``L`` on entry).

    ``stats[i]``: squared dense residual, non-zeros, l1 norm of ``S``, ``max |L|``
    and the l0 penalty of row ``i`` (columns 1-5; column 0 is zero: the old ``S``
    is not read, so ``S`` may start uninitialised).
    """
    m, n = M.shape
    for i in range(m):
        res = 0.0
        nnz = 0.0
        l1 = 0.0
        lmax = 0.0
        pen = 0.0
        for j in range(n):
            lij = LX[i, j]
            a = abs(lij)
            if a > lmax:
                lmax = a
            mij = M[i, j]
            r = mij - lij
            z = zeta[j]
            if abs(r) > z:
                S[i, j] = r
                LX[i, j] = mij - r
                nnz += 1.0
                pen += z * z
                l1 += abs(r)
            else:
                res += r * r
                S[i, j] = 0.0
                LX[i, j] = mij
        stats[i, 0] = 0.0
        stats[i, 1] = res
        stats[i, 2] = nnz
        stats[i, 3] = l1
        stats[i, 4] = lmax
        stats[i, 5] = pen


@njit(cache=True, nogil=True)
def _diff_block(M, S, out):  # pragma: no cover - compiled
    """``out = M - S`` on a block of rows."""
    m, n = M.shape
    for i in range(m):
        for j in range(n):
            out[i, j] = M[i, j] - S[i, j]


@njit(cache=True)
def _pcp_rows(M, LT, S, Y, mu, mu_next, lam, stats, i0, i1):  # pragma: no cover - compiled
    n = M.shape[1]
    tau = lam / mu
    inv_mu = 1.0 / mu
    inv_next = 1.0 / mu_next
    for i in range(i0, i1):
        res = 0.0
        dch = 0.0
        for j in range(n):
            lij = LT[i, j]
            v = M[i, j] - lij + Y[i, j] * inv_mu
            if v > tau:
                s = v - tau
            elif v < -tau:
                s = v + tau
            else:
                s = 0.0 * v
            z = M[i, j] - lij - s
            y = Y[i, j] + mu * z
            d = s - S[i, j]
            dch += d * d
            res += z * z
            S[i, j] = s
            Y[i, j] = y
            LT[i, j] = M[i, j] - s + y * inv_next
        stats[i, 0] = res
        stats[i, 1] = dch


@njit(parallel=True, cache=True)
def _pcp_parallel(M, LT, S, Y, mu, mu_next, lam, stats, block):  # pragma: no cover - compiled
    m = M.shape[0]
    nb = (m + block - 1) // block
    for b in prange(nb):
        _pcp_rows(M, LT, S, Y, mu, mu_next, lam, stats, b * block, min(m, (b + 1) * block))


def _use_threads(A: np.ndarray) -> bool:
    return A.size >= _PARALLEL_MIN_SIZE


def _pcp_step(M, LT, S, Y, mu, mu_next, lam, stats) -> None:
    """One inexact-ALM update after the singular value thresholding, in place.

    On entry ``LT`` holds ``L``. Sets ``S = soft(M - L + Y/mu, lam/mu)``,
    ``Y += mu (M - L - S)`` and, for the next iteration,
    ``LT = M - S + Y/mu_next``. ``stats[i]`` receives the squared primal
    residual ``||M - L - S||^2`` and the squared change of ``S`` of row ``i``.
    """
    args = (float(mu), float(mu_next), float(lam))
    if _use_threads(M):
        _pcp_parallel(M, LT, S, Y, *args, stats, _ROW_BLOCK)
    else:
        _pcp_rows(M, LT, S, Y, *args, stats, 0, M.shape[0])


# --------------------------------------------------------------------------- helpers

_CONTROLLER: ThreadpoolController | None = None


def _one_blas_thread():
    """Context manager limiting BLAS to one thread (small dense solves).

    An ``n x n`` eigensolver or a ``q x q`` QR is latency-bound: extra BLAS
    threads only add synchronisation, which collapses when the cores are shared.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")



def _gram(X: np.ndarray) -> np.ndarray:
    """``X.T @ X`` in float64 (BLAS syrk; float32 input accumulated blockwise)."""
    if X.dtype == np.float64:
        return X.T @ X
    n = X.shape[1]
    G = np.zeros((n, n))
    for start in range(0, X.shape[0], _GRAM_BLOCK):
        block = X[start : start + _GRAM_BLOCK].astype(np.float64)
        G += block.T @ block
    return G


def _spectrum(X: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``q`` singular values (descending) and right singular vectors of ``X``.

    Uses the eigen-decomposition of the ``n x n`` Gram matrix, so its cost is
    one ``m n^2`` syrk plus an ``n^3`` eigensolver, whatever ``q``.
    """
    return _spectrum_of_gram(_gram(X), q)


def _spectrum_of_gram(G: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``q`` singular values and right singular vectors from a Gram matrix."""
    n = G.shape[0]
    q = max(1, min(q, n))
    with _one_blas_thread():
        if q >= n:
            w, V = np.linalg.eigh(G)
        else:
            w, V = scipy.linalg.eigh(G, subset_by_index=(n - q, n - 1))
    return np.sqrt(np.clip(w[::-1], 0.0, None)), np.ascontiguousarray(V[:, ::-1])


def _project(X: np.ndarray, V: np.ndarray, weights: np.ndarray | None, out: np.ndarray):
    """Write ``X V diag(weights) V.T`` into ``out`` (which may be ``X``); return ``X V``."""
    Vk = V.astype(X.dtype, copy=False)
    P = X @ Vk
    if weights is not None:
        P *= weights.astype(X.dtype, copy=False)
    np.matmul(P, Vk.T, out=out)
    return P


def _svd_factors(P: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``(U, s, Vt)`` of ``P @ V.T`` when ``V`` has orthonormal columns."""
    if P.shape[1] == 0:
        return P[:, :0].astype(np.float64), np.zeros(0), V[:, :0].T.copy()
    with _one_blas_thread():
        Q, R = np.linalg.qr(P.astype(np.float64))
        Ur, s, Wt = np.linalg.svd(R)
    return Q @ Ur, s, Wt @ V.T


def _trivial(
    M: np.ndarray, low_rank: np.ndarray, sparse: np.ndarray, threshold: float = 0.0
) -> RPCAResult:
    """Result for inputs whose answer needs no iteration (rank 0, full rank, zeros).

    The factors of ``low_rank`` (tall) come from its Gram matrix, like everywhere
    else; its numerical rank counts the singular values above
    ``sqrt(eps) * max(m, n) * sigma_1`` (the resolution of the Gram route).
    """
    if np.any(low_rank):
        s, V = _spectrum(low_rank, low_rank.shape[1])
        tol = s[0] * max(low_rank.shape) * math.sqrt(np.finfo(low_rank.dtype).eps)
        k = int(np.sum(s > tol))
        s, V = s[:k], V[:, :k]
        U = (low_rank @ V.astype(low_rank.dtype)).astype(np.float64) / s
        Vt = np.ascontiguousarray(V.T)
    else:
        k = 0
        U = np.zeros((M.shape[0], 0))
        s = np.zeros(0)
        Vt = np.zeros((0, M.shape[1]))
    return RPCAResult(low_rank, sparse, k, 0, True, U, s, Vt, threshold, {})


# --------------------------------------------------------------------------- row passes
# AltProj never stores M - S or L: each iteration is one pass over blocks of rows
# that rebuilds L from its factors, thresholds, and multiplies the block by the
# subspace of the next iteration while it is in cache. Python threads take
# contiguous row ranges (numba kernels and BLAS release the GIL; BLAS runs one
# thread per worker inside a pass).

_PASS_BLOCK = 128  # rows per block: M, S and the work block of 528 columns fit in L2
_POOL = None


def _n_workers(m: int, n: int) -> int:
    import numba

    if m * n < _PARALLEL_MIN_SIZE:
        return 1
    return max(1, min(numba.get_num_threads(), (m + _PASS_BLOCK - 1) // _PASS_BLOCK))


def _run_pass(m: int, n: int, work):
    """Run ``work(r0, r1)`` on contiguous row ranges; list of results in row order."""
    global _POOL
    w = _n_workers(m, n)
    bounds = np.linspace(0, m, w + 1).astype(int)
    ranges = [(int(bounds[i]), int(bounds[i + 1])) for i in range(w)]
    if w == 1:
        return [work(*ranges[0])]
    # a pool inherited through fork() has no threads: make a new one in a new process
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < w:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=w, thread_name_prefix="lcpipe-rpca"))
    with _one_blas_thread():
        return list(_POOL[1].map(lambda r: work(*r), ranges))


def _stream_pass(M, S, V=None, gram=False, threshold=None):
    """One pass over row blocks of ``X = M - S``; X is never stored.

    With ``threshold = (P, basis, zeta, stats)`` the pass first makes the AltProj
    sparse update with ``L = P @ basis.T``: ``S = H_zeta(M - L)`` and ``stats``
    (see :func:`_ht_block`); else it reads ``S``. Then, while each block of X is
    in cache, it accumulates what was asked: with ``V`` (n x q), ``Y = X V``,
    ``B = Y.T Y`` and ``C = X.T Y`` (the products of the next Rayleigh-Ritz and
    power step); with ``gram``, ``G = X.T X`` in float64. Returns ``(Y, B, C, G)``,
    None where not asked.
    """
    m, n = M.shape
    dtype = M.dtype
    Vd = None if V is None else np.ascontiguousarray(V.astype(dtype, copy=False))
    q = 0 if V is None else V.shape[1]
    Y = None if V is None else np.empty((m, q), dtype=dtype)
    if threshold is not None:
        P, basis, zeta, stats = threshold
        bt = np.ascontiguousarray(basis.T.astype(dtype, copy=False))

    def work(r0, r1):
        buf = np.empty((_PASS_BLOCK, n), dtype=dtype)
        B = np.zeros((q, q))
        C = np.zeros((n, q))
        G = np.zeros((n, n)) if gram else None
        for i0 in range(r0, r1, _PASS_BLOCK):
            i1 = min(i0 + _PASS_BLOCK, r1)
            Xb = buf[: i1 - i0]
            if threshold is None:
                _diff_block(M[i0:i1], S[i0:i1], Xb)
            else:
                if bt.shape[0]:
                    np.matmul(P[i0:i1], bt, out=Xb)
                else:
                    Xb[...] = 0
                _ht_block(M[i0:i1], Xb, S[i0:i1], zeta, stats[i0:i1])  # Xb: L -> M - S
            if gram:
                X64 = Xb if dtype == np.float64 else Xb.astype(np.float64)
                G += X64.T @ X64
            if Vd is not None:
                Yb = Y[i0:i1]
                np.matmul(Xb, Vd, out=Yb)
                B += Yb.T @ Yb
                C += Xb.T @ Yb
        return B, C, G

    parts = _run_pass(m, n, work)
    B = sum(p[0] for p in parts) if V is not None else None
    C = sum(p[1] for p in parts) if V is not None else None
    G = sum(p[2] for p in parts) if gram else None
    return Y, B, C, G


def _ritz_finish(V, Y, B, C):
    """Rayleigh-Ritz on ``span(V)`` and one power step from ``Y = X V``, ``B``, ``C``.

    Returns the Ritz values (estimates of the top singular values of ``X``,
    descending), ``X @ V_ritz``, the Ritz vectors ``V_ritz = V W`` and an
    orthonormal basis of ``X.T X V_ritz`` (one power step, the subspace of the
    next iteration): ``X.T (Y W) = C W`` needs no pass over X.
    """
    with _one_blas_thread():
        theta, W = np.linalg.eigh((B + B.T) / 2)
    theta, W = theta[::-1], np.ascontiguousarray(W[:, ::-1])
    XV = Y @ W.astype(Y.dtype, copy=False)
    with _one_blas_thread():
        V_next, _ = np.linalg.qr(C @ W)
    return np.sqrt(np.clip(theta, 0.0, None)), XV, V @ W, V_next


def _gram_pass(M: np.ndarray) -> tuple[np.ndarray, float]:
    """``(M.T @ M`` in float64, ``max |M_ij|)`` streamed by row blocks."""
    m, n = M.shape

    def work(r0, r1):
        G = np.zeros((n, n))
        mx = 0.0
        for i0 in range(r0, r1, _PASS_BLOCK):
            Mb = M[i0:min(i0 + _PASS_BLOCK, r1)]
            Mb = Mb if Mb.dtype == np.float64 else Mb.astype(np.float64)
            G += Mb.T @ Mb
            mx = max(mx, float(np.abs(Mb).max()) if Mb.size else 0.0)
        return G, mx

    parts = _run_pass(m, n, work)
    return sum(g for g, _ in parts), max(x for _, x in parts)


def _product_pass(P: np.ndarray, Bt: np.ndarray) -> np.ndarray:
    """``P @ Bt`` (m x n, dtype of ``P``) computed by row blocks in the workers."""
    m, n = P.shape[0], Bt.shape[1]
    out = np.empty((m, n), dtype=P.dtype)

    def work(r0, r1):
        for i0 in range(r0, r1, _PASS_BLOCK):
            i1 = min(i0 + _PASS_BLOCK, r1)
            np.matmul(P[i0:i1], Bt, out=out[i0:i1])

    _run_pass(m, n, work)
    return out


def _lowrank_max_abs(M: np.ndarray, Vk: np.ndarray) -> float:
    """``max |(M Vk Vk.T)_ij|`` streamed by row blocks."""
    m, n = M.shape
    Vd = np.ascontiguousarray(Vk.astype(M.dtype, copy=False))

    def work(r0, r1):
        out = 0.0
        for i0 in range(r0, r1, _PASS_BLOCK):
            i1 = min(i0 + _PASS_BLOCK, r1)
            Lb = (M[i0:i1] @ Vd) @ Vd.T
            out = max(out, float(np.abs(Lb).max()) if Lb.size else 0.0)
        return out

    return max(_run_pass(m, n, work))


# --------------------------------------------------------------------------- AltProj


def altproj(
    M: np.ndarray,
    rank: int | None = None,
    *,
    beta: float | None = None,
    beta_c: float = 1.0,
    tol: float = 1e-7,
    max_iter: int = 100,
    rank_tol: float = 1e-3,
    rank_ratio: float = 0.5,
    oversample: int = 4,
    noise_floor: float = 3.0,
) -> RPCAResult:
    """Robust PCA by non-convex alternating projections (AltProj).

    Follows Algorithm 1 of Netrapalli et al. (2014): stages of increasing
    target rank ``k``; in each iteration ``L = P_k(M - S)`` (rank-``k``
    projection) and ``S = H_zeta(M - L)`` (hard thresholding) with
    ``zeta = beta (sigma_{k+1}(M - S) + 2^-t sigma_k(M - S))``. Deviations
    (see ``docs/rpca.md``): stages add every singular value within
    ``rank_ratio`` of ``sigma_{k+1}`` instead of one; ``beta`` is measured
    on the iterate; stages stop on convergence rather than after a fixed
    ``T``; ``P_k`` comes from an exact Gram eigen-decomposition at the start of
    each stage and from one warm-started subspace iteration afterwards.

    Parameters
    ----------
    M : ndarray of shape (m, n), float32 or float64, ``m >= n``
        Matrix to decompose; it is only read.
    rank : int or None
        Target rank ``r`` (the paper's input). ``None``: unknown; the stages
        stop when ``sigma_{k+1}(M - S) <= rank_tol * sigma_1(M - S)``.
    beta : float or None
        Fixed thresholding parameter. ``None``: ``beta_c * max|L_ij| /
        sigma_1(L)`` measured on the current rank-``k`` iterate ``L`` -- the
        quantity that the paper's ``mu^2 r / sqrt(mn)`` bounds for an
        incoherent matrix.
    beta_c : float
        Factor on the measured ``beta``.
    tol : float
        Convergence of the last stage: ``||M - L - S||_F <= tol ||M||_F``,
        or ``||L_t - L_{t-1}||_F <= tol ||L_t||_F`` once the threshold has
        reached its floor ``beta sigma_{k+1}``.
    max_iter : int
        Cap on the total number of iterations over all stages.
    rank_tol : float
        Relative size of ``sigma_{k+1}`` below which the rank is final
        (only used when ``rank`` is ``None``).
    rank_ratio : float in (0, 1]
        A new stage raises the rank from ``k`` to include every singular value
        ``>= rank_ratio * sigma_{k+1}(M - S)``; ``1`` gives the paper's
        one-at-a-time schedule.
    oversample : int
        Extra columns in the subspace iteration (they sharpen the Ritz value
        ``sigma_{k+1}`` used in the threshold).
    noise_floor : float
        The threshold of column ``j`` never goes below ``noise_floor * 1.4826 *
        median_i |M_ij - L_ij|`` (a robust estimate of the dense-noise standard
        deviation of the column, on a fixed sample of rows), so that dense noise
        is not declared sparse. ``0`` keeps the paper's noiseless rule.

    Returns
    -------
    RPCAResult
    """
    m, n = M.shape
    dtype = M.dtype
    r_max = n if rank is None else min(int(rank), n)
    if rank is not None and rank >= n:
        # every m x n matrix has rank <= n: M = M + 0 is exact
        return _trivial(M, M.copy(), np.zeros_like(M))
    if r_max == 0:
        return _trivial(M, np.zeros_like(M), M.copy())
    # BLAS stays single-threaded throughout: the heavy work runs in row passes, one
    # worker thread per core, and multi-threaded BLAS calls in between would leave
    # OpenBLAS threads spinning (for ~0.1 s) on the cores the next pass needs
    with _one_blas_thread():
        # Gram matrix, Frobenius norm and max |M_ij| in one pass
        G, max_abs = _gram_pass(M)
        norm_m = math.sqrt(max(float(np.trace(G)), 0.0))
        if max_abs == 0.0:
            return _trivial(M, np.zeros_like(M), np.zeros_like(M))

        zeta_floor = 100.0 * float(np.finfo(dtype).eps) * max_abs
        # fixed strided sample of rows (about 2e5 entries) for the noise estimate
        stride = max(1, (m * n) // 200_000)

        sample = M[::stride]

        def noise_est(P_k: np.ndarray, basis_k: np.ndarray) -> np.ndarray:
            # robust standard deviation of each column of M - L (median absolute deviation on
            # a fixed sample of rows; L = P_k basis_k^T): the noise of a dm-dt pixel depends on
            # the pixel, and pixels without counts have none
            if noise_floor <= 0:
                return np.zeros(n)
            dev = np.abs(sample - P_k[::stride] @ basis_k.T.astype(dtype, copy=False))
            return noise_floor * 1.4826 * np.median(dev, axis=0)

        def beta_est(l_max: float, sigma_1: float) -> float:
            # beta bounds max|L_ij| / sigma_1(L), as the paper's mu^2 r / sqrt(mn) does for an
            # incoherent L; measured on the rank-k iterate instead of assumed
            if beta is not None:
                return float(beta)
            return beta_c * l_max / sigma_1 if sigma_1 > 0 else 0.0

        def next_rank(sig: np.ndarray, k: int) -> int:
            above = np.nonzero(sig[k:r_max] >= rank_ratio * sig[k])[0]
            return k + int(above[-1]) + 1

        q_gram = min(n, r_max + max(oversample, 1))
        hist: dict[str, list[float]] = {
            "rank": [],
            "threshold": [],
            "rel_change": [],
            "rel_residual": [],
            "objective": [],
        }
        stats = np.empty((m, 6))

        # initialisation (Algorithm 1, lines 1-2): L = 0, S = H_{beta sigma_1(M)}(M)
        sigma, V = _spectrum_of_gram(G, q_gram)
        k_init = r_max if rank is not None else next_rank(sigma, 0)
        S = np.empty_like(M)  # every entry is written by the first pass
        l_max = _lowrank_max_abs(M, V[:, :k_init])  # of the rank-k_init approximation, for beta
        zeta = max(beta_est(l_max, float(sigma[0])) * float(sigma[0]), zeta_floor)
        zeta_all = np.full(n, zeta, dtype=dtype)
        # the pass also multiplies M - S by V: the first stage's Rayleigh-Ritz step
        pre = (V, _stream_pass(M, S, V=V, threshold=(np.zeros((m, 0), dtype), np.zeros((n, 0)),
                                                    zeta_all, stats))[:3])

        def ritz_of(V_: np.ndarray):
            # Rayleigh-Ritz + power step on span(V_) for X = M - S, from the products the
            # last pass made when it used this V_, else from a new pass
            if pre is not None and pre[0] is V_ and pre[1][0] is not None:
                return _ritz_finish(V_, *pre[1])
            return _ritz_finish(V_, *_stream_pass(M, S, V=V_)[:3])

        k = 0
        t = 0
        n_iter = 0
        converged = False
        final = False
        P = np.zeros((m, 0), dtype=dtype)
        Vk = V[:, :0]
        norm_prev = 0.0
        stage_iter = 0
        frozen: tuple[float, np.ndarray] | None = None
        zeta_cols = np.full(n, zeta)
        s_next_prev = math.inf
        exact_before = False
        objective_prev = math.inf
        while n_iter < max_iter:
            ritz = None
            if stage_iter == 0:
                # ---- start of a stage: spectrum of M - S, then the stage's rank
                if V.shape[1] >= q_gram and 4 * q_gram <= n:
                    # the warm subspace is wide enough (first stage, after the exact spectrum
                    # of M): its Ritz values replace a second Gram eigen-decomposition
                    ritz = ritz_of(V)
                    sigma = ritz[0]
                else:
                    sigma, V = _spectrum_of_gram(_stream_pass(M, S, gram=True)[3], q_gram)
                if (k >= r_max or sigma[k] == 0
                        or (rank is None and sigma[k] <= rank_tol * sigma[0])):
                    final = True
                    if k == 0:
                        converged = True  # nothing low-rank is left: M is all sparse
                        break
                else:
                    k = next_rank(sigma, k)
                    final = k >= r_max
                    t = 0
                V = V[:, : min(n, k + oversample)]
            if ritz is not None:
                sigma, XV, Vr, V = ritz
                V = V[:, : min(n, k + oversample)]
                basis = Vr[:, :k]
            elif frozen is None:
                # ---- spectrum of M - S in span(V) (exact after a Gram step), power step for later
                sigma, XV, Vr, V = ritz_of(V)
                basis = Vr[:, :k]
            else:
                # ---- fixed threshold: exact P_k, so that the objective cannot go up
                sigma, Vr = _spectrum_of_gram(_stream_pass(M, S, gram=True)[3], min(n, k + 1))
                basis = Vr[:, :k]
                XV = _stream_pass(M, S, V=basis)[0]
            # ---- one iteration (Algorithm 1, lines 5-7): L = P_k(M - S) = P_new basis^T
            s_next = float(sigma[k]) if k < len(sigma) else 0.0
            P_new = np.ascontiguousarray(XV[:, :k])
            if frozen is None:
                decay = 0.5**t * float(sigma[k - 1])
                # max|L_ij| of the previous iterate (the element-wise pass measures it), which
                # saves a pass over L; sigma_1 of the current one
                zeta = max(beta_est(l_max, float(sigma[0])) * (s_next + decay), zeta_floor)
                zeta_cols = np.maximum(zeta, noise_est(P_new, basis))
                if final and decay <= s_next:
                    # the last stage's threshold has reached its floor: keep it fixed, so that
                    # the iteration minimises ||M - L - S||^2 + sum zeta_j^2 ||S_j||_0 monotonically
                    frozen = (zeta, zeta_cols)
            else:
                zeta, zeta_cols = frozen
            # ||L_new - L_old||_F from the factors (L = P B^T with orthonormal B)
            norm_new = float(np.linalg.norm(P_new)) ** 2
            cross = float(np.sum((P.T @ P_new) * (basis.T @ Vk).T)) if P.shape[1] else 0.0
            diff2 = max(norm_new + norm_prev - 2.0 * cross, 0.0)
            rel_change = math.sqrt(diff2 / norm_new) if norm_new > 0 else 0.0
            P, Vk, norm_prev = P_new, basis.copy(), norm_new
            # S = H_zeta(M - L); unless the threshold is now fixed (exact spectra from then
            # on), the same pass prepares the next Rayleigh-Ritz step on span(V)
            V_pre = V if frozen is None else None
            zeta_d = np.ascontiguousarray(zeta_cols, dtype=dtype)
            pre = (V_pre, _stream_pass(M, S, V=V_pre, threshold=(P, Vk, zeta_d, stats))[:3])
            l_max = float(stats[:, 4].max())
            n_iter += 1
            t += 1
            stage_iter += 1
            rel_res = math.sqrt(float(stats[:, 1].sum())) / norm_m
            hist["rank"].append(k)
            hist["threshold"].append(zeta)
            hist["rel_change"].append(rel_change)
            hist["rel_residual"].append(rel_res)
            at_floor = 0.5**t * sigma[k - 1] <= s_next
            objective = float(stats[:, 1].sum()) + float(stats[:, 5].sum())
            hist["objective"].append(objective)
            if final:
                # with a fixed threshold and exact projections each step minimises
                # ||M - L - S||^2 + zeta^2 ||S||_0: stop when it no longer decreases
                stalled = exact_before and objective_prev - objective <= tol * objective_prev
                if rel_res <= tol or (at_floor and rel_change <= tol) or stalled:
                    converged = True
                    break
                exact_before = frozen is not None and zeta_cols is frozen[1]
                objective_prev = objective
            elif (
                (at_floor and abs(s_next - s_next_prev) <= _FLOOR_RTOL * s_next)
                or rel_res <= tol
                or stage_iter >= _STAGE_MAX_ITER
            ):
                # the threshold has reached its floor beta sigma_{k+1}, and sigma_{k+1} no longer
                # falls (corruptions still being removed would make it fall): next stage
                stage_iter = 0
            s_next_prev = s_next

        # L consistent with the final S: S = H_zeta(M - L), L = P Vk^T
        L = _product_pass(P, Vk.T.astype(dtype))
        U, s, Vt = _svd_factors(P, Vk)
        res = RPCAResult(L, S, int(Vk.shape[1]), n_iter, converged, U, s, Vt, float(zeta), hist)
        res.column_thresholds = zeta_cols
        return res


# --------------------------------------------------------------------------- PCP


def pcp_ialm(
    M: np.ndarray,
    *,
    lam: float | None = None,
    mu: float | None = None,
    rho: float = 1.5,
    tol: float = 1e-7,
    max_iter: int = 500,
) -> RPCAResult:
    """Principal component pursuit by the inexact augmented Lagrange multiplier method.

    Solves ``min ||L||_* + lam ||S||_1`` subject to ``L + S = M`` (Lin, Chen &
    Ma 2010, Algorithm 5) with their default continuation of ``mu``.

    Parameters
    ----------
    M : ndarray of shape (m, n), float32 or float64, ``m >= n``, C-contiguous
        Matrix to decompose; it is only read.
    lam : float or None
        Weight of ``||S||_1``; default ``1 / sqrt(max(m, n))``.
    mu : float or None
        Initial penalty; default ``1.25 / ||M||_2``. It grows by ``rho`` per
        iteration up to ``1e7`` times its initial value.
    rho : float
        Growth factor of ``mu`` (> 1).
    tol : float
        Stop when ``||M - L - S||_F <= tol ||M||_F``.
    max_iter : int
        Iteration cap.

    Returns
    -------
    RPCAResult
    """
    m, n = M.shape
    dtype = M.dtype
    norm_m = float(np.linalg.norm(M))
    if norm_m == 0.0:
        return _trivial(M, np.zeros_like(M), np.zeros_like(M))
    lam = 1.0 / math.sqrt(max(m, n)) if lam is None else float(lam)
    sigma, _ = _spectrum(M, 1)
    norm_two = float(sigma[0])
    norm_inf = float(np.max(np.abs(M))) / lam
    dual = max(norm_two, norm_inf)
    mu = 1.25 / norm_two if mu is None else float(mu)
    mu_bar = mu * 1e7

    Y = M / dtype.type(dual)  # dual variable, Lin et al. initialisation
    S = np.zeros_like(M)
    T = M + Y / dtype.type(mu)  # M - S + Y / mu
    stats = np.empty((m, 2))
    hist: dict[str, list[float]] = {
        "rank": [],
        "threshold": [],
        "rel_change": [],
        "rel_residual": [],
    }
    converged = False
    n_iter = 0
    P = np.zeros((m, 0), dtype=dtype)
    Vr = np.zeros((n, 0))
    tau = 1.0 / mu
    while n_iter < max_iter:
        sigma, V = _spectrum(T, n)
        tau = 1.0 / mu
        r = int(np.sum(sigma > tau))
        weights = (sigma[:r] - tau) / sigma[:r]
        Vr = V[:, :r]
        P = _project(T, Vr, weights, out=T)  # T now holds L
        mu_next = min(mu * rho, mu_bar)
        _pcp_step(M, T, S, Y, mu, mu_next, lam, stats)
        n_iter += 1
        rel_res = math.sqrt(float(stats[:, 0].sum())) / norm_m
        hist["rank"].append(r)
        hist["threshold"].append(lam / mu)
        hist["rel_change"].append(math.sqrt(float(stats[:, 1].sum())) / norm_m)
        hist["rel_residual"].append(rel_res)
        mu = mu_next
        if rel_res <= tol:
            converged = True
            break

    L = T
    np.matmul(P, Vr.T.astype(dtype, copy=False), out=L)
    U, s, Vt = _svd_factors(P, Vr)
    return RPCAResult(L, S, int(Vr.shape[1]), n_iter, converged, U, s, Vt, float(lam * tau), hist)


#: method name -> implementation
METHODS = {"altproj": altproj, "pcp": pcp_ialm}


def available_methods() -> list[str]:
    """Names of the robust PCA implementations."""
    return list(METHODS)
