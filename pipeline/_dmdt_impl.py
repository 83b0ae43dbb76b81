"""dm-dt histogram backends (private). Use :func:`pipeline.dmdt.compute_dmdt`.

Every backend takes a :class:`pipeline.lightcurves.LightCurves` and edges and
returns raw pair counts of shape ``(n_series, n_dm, n_dt)`` (int64), with
numpy's ``histogram2d`` edge convention: bins are half-open ``[a, b)`` except
the last on each axis, which is closed ``[a, b]``; pairs outside the grid are
not counted.

Backends
--------
numba
    Compiled kernel (default). Times are sorted, so the first pair of each dt
    bin is tracked by one pointer per dt edge that only moves forward; the dm
    bin of each pair comes, branch-free, from a lookup table on a uniform
    sub-grid at most half as wide as the narrowest bin (cell index biased low,
    so the table is never too high), corrected by one exact comparison with the
    next edge. Counts go into interleaved
    sub-histograms that stay in L1 cache.
numpy
    Plain ``np.histogram2d`` of all pairs, one series at a time (reference).
light-curve
    The light-curve package's ``DmDt.points`` (half-open last bins: it differs
    from numpy only for pairs exactly on the upper outer edges).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from .errors import ConfigError

__all__ = ["BACKENDS", "available_backends"]


_SUB = 4  # interleaved sub-histograms: breaks store-to-load chains on repeated bins
_SUB_MIN_PAIRS = 20_000  # below this, one histogram (zeroing 4 costs more than it saves)
_BIAS = 1e-6  # in sub-grid cells: far above float64 rounding of (dm - lo) / width


@numba.njit(cache=True, nogil=True)
def _count_series(t, m, start, end, dt_edges, ext, lut, lo, inv_w, ptr, sub, buf, out):
    """Count pairs of one series into ``out`` (n_dm, n_dt); ptr, sub, buf are scratch."""
    n_dt = dt_edges.shape[0] - 1
    n_dm = ext.shape[0] - 3
    top = lut.shape[0] - 1
    n = end - start
    mask = _SUB - 1 if n * (n - 1) // 2 >= _SUB_MIN_PAIRS else 0
    for q in range(mask + 1):
        sub[q] = 0
    ptr[:] = start
    for i in range(start, end - 1):
        ti = t[i]
        # ptr[k] = first j > i with t[j] - ti >= dt_edges[k] (> for the closed last edge);
        # each pointer only moves forward as i grows: O(n * n_dt) per series
        for k in range(n_dt + 1):
            p = ptr[k]
            if p <= i:
                p = i + 1
            thr = dt_edges[k]
            if k < n_dt:
                while p < end and t[p] - ti < thr:
                    p += 1
            else:
                while p < end and t[p] - ti <= thr:
                    p += 1
            ptr[k] = p
        mi = m[i]
        j0 = ptr[0]
        # pass 1 (branch-free): extended dm bin of every pair inside the dt range
        for j in range(j0, ptr[n_dt]):
            dm = m[j] - mi
            # cell index biased low by _BIAS (never too high); the table gives the bin of
            # the cell's left side; one compare moves up across the single edge that a
            # span of < 2 cells (< the narrowest bin) can hold
            c = min(max(int((dm - lo) * inv_w + (1.0 - _BIAS)), 0), top)
            b = lut[c]
            b += dm >= ext[b + 1]
            buf[j - j0] = b
        # pass 2: scatter into interleaved sub-histograms, dt bin by dt bin
        for k in range(n_dt):
            for j in range(ptr[k], ptr[k + 1]):
                sub[j & mask, buf[j - j0], k] += 1
    for q in range(mask + 1):
        for b in range(n_dm):
            for k in range(n_dt):
                out[b, k] += sub[q, b + 1, k]


@numba.njit(cache=True, nogil=True, parallel=True)
def _count_batch(t, m, offsets, dt_edges, ext, lut, lo, inv_w, n_blk, out):
    n = offsets.shape[0] - 1
    n_dt = dt_edges.shape[0] - 1
    n_dm = ext.shape[0] - 3
    longest = 0
    for s in range(n):
        longest = max(longest, offsets[s + 1] - offsets[s])
    # n_blk blocks (a few per thread), scratch allocated once per block, not per series
    for blk in numba.prange(n_blk):
        ptr = np.empty(n_dt + 1, dtype=np.int64)
        sub = np.empty((_SUB, n_dm + 2, n_dt), dtype=np.int64)
        buf = np.empty(max(longest, 1), dtype=np.int64)
        for s in range(blk, n, n_blk):
            _count_series(t, m, offsets[s], offsets[s + 1], dt_edges, ext, lut, lo, inv_w, ptr,
                          sub, buf, out[s])


@numba.njit(cache=True, nogil=True, parallel=True)
def paper_norm(counts, n_pairs):
    """uint8 ceil(255 * count / n_pairs) in exact integer arithmetic.

    counts (N, n_dm, n_dt, B) int64, n_pairs (N, B) int64.
    """
    n, n_dm, n_dt, n_b = counts.shape
    out = np.zeros(counts.shape, dtype=np.uint8)
    for s in numba.prange(n):
        for c in range(n_b):
            p = n_pairs[s, c]
            if p <= 0:
                continue
            for b in range(n_dm):
                for k in range(n_dt):
                    out[s, b, k, c] = (255 * counts[s, b, k, c] + p - 1) // p
    return out


def _lookup(dm_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """dm axis with overflow bins and a lookup table on a uniform sub-grid.

    ``ext`` = [-inf, e_0, ..., e_{n-1}, nextafter(e_n, +inf), +inf]: bin 0 and bin
    n+1 are under/overflow, and a value equal to e_n lands in the last real bin
    (numpy's closed last bin). ``lut[c]`` is the extended bin of the left side of
    sub-grid cell ``c - 1`` (``lut[0]`` underflow, ``lut[-1]`` overflow); the kernel
    corrects it by one exact comparison with the next edge.
    """
    lo, hi = float(dm_edges[0]), float(dm_edges[-1])
    width = float(np.min(np.diff(dm_edges))) / 2.0
    ncell = int(max(np.ceil((hi - lo) / width), 1))
    if ncell > 1 << 22:
        raise ConfigError("dm edges too unevenly spaced for the lookup table "
                          f"({ncell} cells); use method='numpy'")
    width = (hi - lo) / ncell
    ext = np.concatenate([[-np.inf], dm_edges[:-1], [np.nextafter(hi, np.inf)], [np.inf]])
    left = lo + width * (np.arange(ncell) - 2 * _BIAS)  # a hair low: table never too high
    inner = np.maximum(np.searchsorted(ext, left, side="right") - 1, 1)
    lut = np.concatenate([[0], inner, [len(ext) - 2]]).astype(np.int64)
    return ext, lut, lo, 1.0 / width


def counts_numba(lcs, dm_edges: np.ndarray, dt_edges: np.ndarray) -> np.ndarray:
    """Pair counts with the compiled kernel, shape (n_series, n_dm, n_dt)."""
    dm_edges = np.ascontiguousarray(dm_edges, dtype=np.float64)
    dt_edges = np.ascontiguousarray(dt_edges, dtype=np.float64)
    out = np.zeros((len(lcs), len(dm_edges) - 1, len(dt_edges) - 1), dtype=np.int64)
    if len(lcs):
        ext, lut, lo, inv_w = _lookup(dm_edges)
        n_blk = max(1, min(len(lcs), 8 * numba.get_num_threads()))
        _count_batch(lcs.t, lcs.mag, lcs.offsets, dt_edges, ext, lut, lo, inv_w, n_blk, out)
    return out


def counts_numpy(lcs, dm_edges: np.ndarray, dt_edges: np.ndarray) -> np.ndarray:
    """Pair counts with ``np.histogram2d`` of all pairs i<j (reference backend)."""
    out = np.zeros((len(lcs), len(dm_edges) - 1, len(dt_edges) - 1), dtype=np.int64)
    for s, (_, _, t, m, _) in enumerate(lcs):
        i, j = np.triu_indices(len(t), k=1)
        h, _, _ = np.histogram2d(m[j] - m[i], t[j] - t[i], bins=[dm_edges, dt_edges])
        out[s] = h.astype(np.int64)
    return out


def counts_light_curve(lcs, dm_edges: np.ndarray, dt_edges: np.ndarray) -> np.ndarray:
    """Pair counts with light-curve's ``DmDt.points`` (its last bins are half-open)."""
    import light_curve

    dmdt = light_curve.DmDt(dt=np.asarray(dt_edges, np.float64),
                            dm=np.asarray(dm_edges, np.float64),
                            dt_type="asis", dm_type="asis", n_jobs=1)
    out = np.zeros((len(lcs), len(dm_edges) - 1, len(dt_edges) - 1), dtype=np.int64)
    for s, (_, _, t, m, _) in enumerate(lcs):
        out[s] = np.rint(dmdt.points(t, m, sorted=True)).astype(np.int64).T
    return out


#: backend name -> function(lcs, dm_edges, dt_edges) -> counts
BACKENDS: dict[str, Callable[..., np.ndarray]] = {
    "numba": counts_numba,
    "numpy": counts_numpy,
    "light-curve": counts_light_curve,
}


def available_backends() -> list[str]:
    """Names accepted by ``compute_dmdt(method=...)`` besides ``'auto'``."""
    return list(BACKENDS)
