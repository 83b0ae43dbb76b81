"""dm-dt histogram backends (private). Use :func:`pipeline.dmdt.compute_dmdt`.

Every backend takes a :class:`pipeline.lightcurves.LightCurves` and edges and
returns raw pair counts of shape ``(n_series, n_dm, n_dt)`` (int64), with
numpy's ``histogram2d`` edge convention: bins are half-open ``[a, b)`` except
the last on each axis, which is closed ``[a, b]``; pairs outside the grid are
not counted.

Backends
--------
numba
    Compiled kernel (default). Per pair, both bins by table lookup: the dm cell
    on a uniform grid of cells at most 2**-10 mag wide (and at most half the
    narrowest dm bin), the dt cell from the top bits of dt's IEEE-754
    representation (a piecewise-logarithmic grid that is exact and needs no
    logarithm). Cells that hold no edge give their bin directly (fast int16
    tables); cells that hold an edge give a negative sentinel, and those rare
    pairs take the exact path: the bin of the cell's lower end plus one exact
    float64 comparison with the single edge the cell can hold. A first pass
    writes the pairs' bin indices of a row tile, a second scatters them into
    four interleaved int32 sub-histograms that stay in L1 cache. Edges whose dt
    grid would need a finer than 1/1024-octave table fall back to a pointer
    kernel (one forward-moving pointer per dt edge).
numpy
    Plain ``np.histogram2d`` of all pairs, one series at a time (reference).
light-curve
    The light-curve package's ``DmDt.points`` (half-open last bins: it differs
    from numpy only for pairs exactly on the upper outer edges).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .errors import ConfigError, InputError

__all__ = ["BACKENDS", "available_backends"]


_SUB = 4  # interleaved sub-histograms: breaks store-to-load chains on repeated bins
_SUB_MIN_PAIRS = 20_000  # below this, one histogram (zeroing 4 costs more than it saves)
_BIAS = 1e-6  # in sub-grid cells: far above float64 rounding of (dm - lo) / width


_TILE = 1024  # pairs (j) per row tile: the tile's t, m and bin indices stay in L1 cache
_MAX_DT_BITS = 10  # mantissa bits of the dt table (2048 << bits cells); finer -> pointer kernel
_MAX_DM_CELLS = 1 << 22
_FLUSH_PAIRS = 1 << 30  # int32 sub-histograms are flushed before this many pairs
_MAGIC = 1.5 * 2.0**52  # x + _MAGIC rounds x to an integer held in the low mantissa bits


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as int64 (a free register move)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _low32(x):
    """Low 32 bits of a float64's mantissa: the integer ``round(x - 1.5 * 2**52)``.

    ``x`` carries the magic offset 1.5 * 2**52, so the addition that made it rounded
    to an integer; cheaper than a float -> int conversion.
    """
    return np.uint32(np.uint64(_f64_bits(x)) & np.uint64(0xFFFFFFFF))


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _count_series_lut(t, m, start, end, dt_lo, dt_hi, mb, mn, fm, inv_w, off, dm_clip, clip, tb, tn,
                      ft, tsh, jlo, jhi, sub, buf, out):
    """Count pairs of one series into ``out`` (n_dm, n_dt); jlo, jhi, sub, buf are scratch.

    mb/mn: dm table (extended bin of the cell's lower end, next edge), cell of dm
    = _low32(dm * inv_w + off), dm first clipped to +-dm_clip if ``clip``; tb/tn:
    dt table indexed by bits(dt) >> tsh; fm/ft: fast tables (flat-index parts, or a
    negative sentinel for cells that hold an edge).
    """
    n_dm, n_dt = out.shape
    w = n_dt + 2
    size = (n_dm + 2) * w
    ush = np.uint64(tsh)
    # jlo[i]: first j > i with t[j] - t[i] >= dt_lo; jhi[i]: first j with t[j] - t[i] > dt_hi.
    # Pairs outside [dt_lo, dt_hi] fall outside the grid: they are never visited.
    a = start
    b = start
    for i in range(start, end):
        ti = t[i]
        a = max(a, i + 1)
        while a < end and t[a] - ti < dt_lo:
            a += 1
        b = max(b, a)
        while b < end and t[b] - ti <= dt_hi:
            b += 1
        jlo[i - start] = a
        jhi[i - start] = b
    sub[:] = 0
    # the four sub-histograms as views: one base register each, unsigned indices
    s0, s1, s2, s3 = sub[:size], sub[size:2 * size], sub[2 * size:3 * size], sub[3 * size:]
    pending = 0
    for t0 in range(start + 1, end, _TILE):
        t1 = min(t0 + _TILE, end)
        for i in range(start, t1 - 1):
            j0 = max(jlo[i - start], t0)
            j1 = min(jhi[i - start], t1)
            if j1 <= j0:
                continue
            ti = t[i]
            mi = m[i]
            # unsigned indices: no negative-index wraparound per access, and no array
            # views (each view costs atomic reference-count updates per row)
            u0 = np.uint64(j0)
            cnt = j1 - j0
            # pass 1: flat (dm, dt) bin index of every pair of the row tile
            if clip:
                for q in range(cnt):
                    uq = u0 + np.uint64(q)
                    dm = m[uq] - mi
                    c = _low32(min(max(dm, -dm_clip), dm_clip) * inv_w + off)
                    bm = mb[c] + np.int32(dm >= mn[c])
                    dt = t[uq] - ti
                    d = np.uint64(_f64_bits(dt)) >> ush
                    bt = tb[d] + np.int32(dt >= tn[d])
                    buf[q] = np.uint32(bm * w + bt)
            else:  # the table spans every dm of the batch: no clip
                for q in range(cnt):
                    uq = u0 + np.uint64(q)
                    dm = m[uq] - mi
                    c = _low32(dm * inv_w + off)
                    dt = t[uq] - ti
                    d = np.uint64(_f64_bits(dt)) >> ush
                    v = np.int32(fm[c]) + np.int32(ft[d])
                    if v < 0:  # a cell near an edge (rare): one exact compare per axis
                        bm = mb[c] + np.int32(dm >= mn[c])
                        bt = tb[d] + np.int32(dt >= tn[d])
                        v = bm * w + bt
                    buf[q] = np.uint32(v)
            # pass 2: scatter into four interleaved sub-histograms (no store-to-load chains)
            c4 = cnt & ~3
            for q in range(0, c4, 4):
                s0[np.uint64(buf[q])] += 1
                s1[np.uint64(buf[q + 1])] += 1
                s2[np.uint64(buf[q + 2])] += 1
                s3[np.uint64(buf[q + 3])] += 1
            for q in range(c4, cnt):
                s0[np.uint64(buf[q])] += 1
            pending += cnt
        if pending >= _FLUSH_PAIRS or t1 == end:
            for r in range(4):
                for bm in range(n_dm):
                    for bt in range(n_dt):
                        out[bm, bt] += sub[r * size + (bm + 1) * w + bt + 1]
            sub[:] = 0
            pending = 0


@numba.njit(cache=True, nogil=True, parallel=True)
def _count_batch_lut(t, m, offsets, dt_lo, dt_hi, mb, mn, fm, inv_w, off, dm_clip, clip, tb, tn,
                     ft, tsh, n_blk, out):
    n = offsets.shape[0] - 1
    n_dm, n_dt = out.shape[1], out.shape[2]
    longest = 0
    for s in range(n):
        longest = max(longest, offsets[s + 1] - offsets[s])
    for blk in numba.prange(n_blk):
        jlo = np.empty(max(longest, 1), dtype=np.int64)
        jhi = np.empty(max(longest, 1), dtype=np.int64)
        sub = np.empty(4 * (n_dm + 2) * (n_dt + 2), dtype=np.int32)
        buf = np.empty(_TILE, dtype=np.uint32)
        for s in range(blk, n, n_blk):
            _count_series_lut(t, m, offsets[s], offsets[s + 1], dt_lo, dt_hi, mb, mn, fm, inv_w,
                              off, dm_clip, clip, tb, tn, ft, tsh, jlo, jhi, sub, buf, out[s])


@numba.njit(cache=True, nogil=True)
def _sub_mask(n):
    """Index mask of the interleaved sub-histograms for a series of ``n`` points.

    ``_SUB - 1`` (pair j goes to sub-histogram ``j & mask``) once the series has at
    least ``_SUB_MIN_PAIRS`` pairs, else 0 (one histogram). Speed only: any mask
    gives the same sums.
    """
    return _SUB - 1 if n * (n - 1) // 2 >= _SUB_MIN_PAIRS else 0


@numba.njit(cache=True, nogil=True)
def _count_series_ptr(t, m, start, end, dt_edges, ext, lut, lo, inv_w, ptr, sub, buf, out):
    """Count pairs of one series into ``out`` (n_dm, n_dt) with dt pointers (fallback)."""
    n_dt = dt_edges.shape[0] - 1
    n_dm = ext.shape[0] - 3
    top = lut.shape[0] - 1
    mask = _sub_mask(end - start)
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
def _count_batch_ptr(t, m, offsets, dt_edges, ext, lut, lo, inv_w, n_blk, out):
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
            _count_series_ptr(t, m, offsets[s], offsets[s + 1], dt_edges, ext, lut, lo, inv_w, ptr,
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
    ext = _extended(dm_edges)
    left = lo + width * (np.arange(ncell) - 2 * _BIAS)  # a hair low: table never too high
    inner = np.maximum(np.searchsorted(ext, left, side="right") - 1, 1)
    lut = np.concatenate([[0], inner, [len(ext) - 2]]).astype(np.int64)
    return ext, lut, lo, 1.0 / width


def _extended(edges: np.ndarray) -> np.ndarray:
    """[-inf, e_0, ..., e_{n-1}, nextafter(e_n, +inf), +inf]: numpy's closed last bin."""
    return np.concatenate([[-np.inf], edges[:-1], [np.nextafter(edges[-1], np.inf)], [np.inf]])


_FAST_DM_WIDTH = 2.0**-10  # mag: dm cells at most this wide, so that few pairs need a compare
_FAST_DT_BITS = 8  # dt cells at most 1/256 octave wide, for the same reason


def _fast_dtype(w: int, n_rows: int) -> tuple[type, int]:
    """Fast-table dtype and 'near an edge' sentinel: int16 when the flat index fits."""
    if n_rows * w < 1 << 14:
        return np.int16, -(1 << 14)
    return np.int32, -(1 << 30)


@functools.lru_cache(maxsize=32)
def _dm_table(dm_edges: tuple, clip: float, w_flat: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """dm lookup tables on uniform cells over [-clip, clip] (clip beyond every edge).

    The cell of dm is ``_low32(clip(dm) * inv_w + off)`` = round(dm * inv_w + k),
    one rounding (fused multiply-add), k an integer. Every dm that can land in
    cell c lies in [(c - 1/2 - k) w, (c + 1/2 - k) w] (widened by ``_BIAS`` cells),
    a span that holds at most one edge. Returns (extended bin of each cell's lower
    end, int32; the next edge, float64; fast table: ``bin * w_flat`` for cells whose
    span holds no edge, a negative sentinel for the others; inv_w; off).
    ``w_flat`` is the row length of the flat (dm, dt) index.
    """
    e = np.asarray(dm_edges, dtype=np.float64)
    width = min(float(np.min(np.diff(e))) / 2.0, _FAST_DM_WIDTH)
    ncell = int(np.ceil(2.0 * clip / width)) + 2
    if ncell > _MAX_DM_CELLS:  # coarser cells: more pairs take the compare, still exact
        width = float(np.min(np.diff(e))) / 2.0
        ncell = int(np.ceil(2.0 * clip / width)) + 2
    if ncell > _MAX_DM_CELLS:
        raise ConfigError("dm edges too unevenly spaced for the lookup table "
                          f"({ncell} cells); use method='numpy'")
    width = 2.0 * clip / (ncell - 2)
    lo = -clip - width  # cell 0 lies wholly below -clip
    inv_w = 1.0 / width
    off = -lo * inv_w - 0.5 + _MAGIC  # rounded to an integer (+ _MAGIC) by the addition
    k = off - _MAGIC  # exact; cell c = round(dm * inv_w + k) (one rounding: fused)
    # cell c holds every dm with dm * inv_w + k in [c - 1/2, c + 1/2]; widen by _BIAS
    # cells for the rounding of inv_w and of the bounds themselves
    cells = np.arange(ncell, dtype=np.float64)
    low = (cells - 0.5 - _BIAS - k) * width
    high = (cells + 0.5 + _BIAS - k) * width
    ext = _extended(e)
    base = np.maximum(np.searchsorted(ext, low, side="right") - 1, 0)
    top = np.searchsorted(ext, high, side="right") - 1
    nxt = ext[np.minimum(base + 1, len(ext) - 1)]
    dtype, flag = _fast_dtype(w_flat, len(ext) - 1)
    fast = np.where(top == base, base * w_flat, flag).astype(dtype)
    return base.astype(np.int32), nxt, fast, inv_w, off


@functools.lru_cache(maxsize=32)
def _dt_table(dt_edges: tuple, n_rows: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """dt lookup tables on the cells ``bits(dt) >> shift`` (0 <= dt <= last edge).

    A cell spans 1/2**bits of an octave; bits is the smallest from
    ``_FAST_DT_BITS`` on for which no cell holds more than one edge. Returns (extended bin
    of each cell's left side, next edge, fast table: the bin, or a negative
    sentinel for cells that hold an edge; shift), or None if more than
    ``_MAX_DT_BITS`` bits are needed.
    """
    ext = _extended(np.asarray(dt_edges, dtype=np.float64))
    hi = np.array([dt_edges[-1]], dtype=np.float64).view(np.int64)[0]
    # a cell that holds at most one edge still does when split: start at the fast width
    for bits in range(min(_FAST_DT_BITS, _MAX_DT_BITS), _MAX_DT_BITS + 1):
        shift = 52 - bits
        cells = np.arange((hi >> shift) + 1, dtype=np.int64)
        left = (cells << shift).view(np.float64)
        right = (((cells + 1) << shift) - 1).view(np.float64)
        lb = np.searchsorted(ext, left, side="right") - 1
        rb = np.searchsorted(ext, right, side="right") - 1
        if np.all(rb - lb <= 1):
            dtype, flag = _fast_dtype(len(ext) - 1, n_rows)
            fast = np.where(rb == lb, lb, flag).astype(dtype)
            return lb.astype(np.int32), ext[np.minimum(lb + 1, len(ext) - 1)], fast, shift
    return None


def _check_clean(lcs) -> None:
    """Finite t and mag, times non-decreasing within each series (the tables rely on it)."""
    offsets = lcs.offsets - lcs.offsets[0]  # the arrays may hold rows beyond the series
    t = lcs.t[lcs.offsets[0]:lcs.offsets[-1]]
    mag = lcs.mag[lcs.offsets[0]:lcs.offsets[-1]]
    bad = ~np.isfinite(t) | ~np.isfinite(mag)
    if bad.any():
        s = int(np.searchsorted(offsets, np.argmax(bad), side="right") - 1)
        raise InputError("<light curves>", "non-finite t or mag (input not clean: use "
                         "clean=True or `lcpipe validate`)", object_id=lcs.object_id[s])
    back = np.diff(t) < 0
    edge = offsets[1:-1] - 1
    back[edge[(edge >= 0) & (edge < len(back))]] = False  # series boundaries
    if back.any():
        s = int(np.searchsorted(offsets, np.argmax(back) + 1, side="right") - 1)
        raise InputError("<light curves>", "times decrease within a series (input not "
                         "sorted: use clean=True or `lcpipe validate`)",
                         object_id=lcs.object_id[s])


def counts_numba(lcs, dm_edges: np.ndarray, dt_edges: np.ndarray) -> np.ndarray:
    """Pair counts with the compiled kernel, shape (n_series, n_dm, n_dt)."""
    dm_edges = np.ascontiguousarray(dm_edges, dtype=np.float64)
    dt_edges = np.ascontiguousarray(dt_edges, dtype=np.float64)
    out = np.zeros((len(lcs), len(dm_edges) - 1, len(dt_edges) - 1), dtype=np.int64)
    if not len(lcs):
        return out
    _check_clean(lcs)
    n_blk = max(1, min(len(lcs), 8 * numba.get_num_threads()))
    n_rows = len(dm_edges) + 1  # extended dm bins: under- and overflow
    dt_tab = _dt_table(tuple(dt_edges.tolist()), n_rows) if dt_edges[0] >= 0 else None
    longest = int(np.max(np.diff(lcs.offsets)))
    if dt_tab is None or longest > 2_000_000:
        ext, lut, lo, inv_w = _lookup(dm_edges)
        _count_batch_ptr(lcs.t, lcs.mag, lcs.offsets, dt_edges, ext, lut, lo, inv_w, n_blk, out)
        return out
    # the dm table spans every dm of the batch when that is reasonable (no clip in the
    # loop), else +-(edges + 64 mag) and dm is clipped (clipped pairs stay off the grid)
    edge_span = float(max(abs(dm_edges[0]), abs(dm_edges[-1])))
    mag = lcs.mag[lcs.offsets[0]:lcs.offsets[-1]]
    span = float(np.max(mag) - np.min(mag)) if len(mag) else 0.0
    clip = span > edge_span + 64.0
    half = 2.0 ** np.ceil(np.log2(max(min(span, edge_span + 64.0), edge_span, 1.0) + 1.0))
    mb, mn, fm, inv_w, off = _dm_table(tuple(dm_edges.tolist()), float(half), len(dt_edges) + 1)
    tb, tn, ft, tsh = dt_tab
    _count_batch_lut(lcs.t, lcs.mag, lcs.offsets, float(dt_edges[0]), float(dt_edges[-1]), mb, mn,
                     fm, inv_w, off, float(half), clip, tb, tn, ft, tsh, n_blk, out)
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
