"""Compiled passes of the cleaning rules (private). Use :func:`pipeline.validate.clean_codes`.

Each pass is one loop over the rows: the row rules, the order check, the grouping of
shuffled rows by object (a counting sort) and the sort of each object's rows by band and
time. They replace numpy's whole-array passes (one temporary array per rule) and
``np.lexsort`` over all rows, which made cleaning the slowest step of every stage.
"""

from __future__ import annotations

import numba
import numpy as np

KEEP = -1


@numba.njit(cache=True, nogil=True)
def scan_rows(oc: np.ndarray, bc: np.ndarray, t: np.ndarray, mag: np.ndarray,
              err: np.ndarray, orank: np.ndarray, brank: np.ndarray, t_min: float,
              t_max: float, reasons: np.ndarray, code: np.ndarray) -> tuple[int, bool]:
    """Row rules into ``code`` (first reason that applies, else KEEP), and the order check.

    ``reasons`` holds the codes of null_object_id, null_band, nonfinite_t, nonfinite_mag,
    nonfinite_mag_err, nonpositive_mag_err and time_outside_window, in that order.

    Returns
    -------
    (int, bool)
        Rows kept, and whether the kept rows are in (object, band, t) order (by the
        ranks ``orank``/``brank`` of their codes; equal keys allowed).
    """
    n = t.shape[0]
    kept = 0
    in_order = True
    prev = -1
    for i in range(n):
        ti, mi, ei = t[i], mag[i], err[i]
        if oc[i] < 0:
            c = reasons[0]
        elif bc[i] < 0:
            c = reasons[1]
        elif not np.isfinite(ti):
            c = reasons[2]
        elif not np.isfinite(mi):
            c = reasons[3]
        elif not np.isfinite(ei):
            c = reasons[4]
        elif ei <= 0.0:
            c = reasons[5]
        elif ti < t_min or ti > t_max:
            c = reasons[6]
        else:
            c = KEEP
        code[i] = c
        if c != KEEP:
            continue
        kept += 1
        if prev >= 0 and in_order:
            a, b = orank[oc[prev]], orank[oc[i]]
            if b < a:
                in_order = False
            elif b == a:
                a, b = brank[bc[prev]], brank[bc[i]]
                if b < a or (b == a and ti < t[prev]):
                    in_order = False
        prev = i
    return kept, in_order


@numba.njit(cache=True, nogil=True)
def kept_rows(code: np.ndarray, n_kept: int) -> np.ndarray:
    """Indices of the KEEP rows, in input order."""
    out = np.empty(n_kept, dtype=np.int64)
    k = 0
    for i in range(code.shape[0]):
        if code[i] == KEEP:
            out[k] = i
            k += 1
    return out[:k]


@numba.njit(cache=True, nogil=True)
def sort_rows(code: np.ndarray, n_kept: int, oc: np.ndarray, bc: np.ndarray, t: np.ndarray,
              orank: np.ndarray, brank: np.ndarray) -> np.ndarray:
    """Indices of the KEEP rows in (object, band, t) order; equal keys in input order.

    A counting sort groups the rows by object rank (stable); each object's rows are then
    sorted by time with a stable merge sort and, when it has several bands, by band with
    a stable counting sort.
    """
    n_obj = orank.shape[0]
    start = np.zeros(n_obj + 1, dtype=np.int64)
    for i in range(code.shape[0]):
        if code[i] == KEEP:
            start[orank[oc[i]] + 1] += 1
    for k in range(n_obj):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    perm = np.empty(n_kept, dtype=np.int64)
    for i in range(code.shape[0]):
        if code[i] == KEEP:
            r = orank[oc[i]]
            perm[fill[r]] = i
            fill[r] += 1
    n_band = brank.shape[0]
    bcount = np.zeros(n_band + 1, dtype=np.int64)
    for k in range(n_obj):
        a, b = start[k], start[k + 1]
        if b - a < 2:
            continue
        seg = perm[a:b]
        sorted_already = True
        multi_band = False
        for j in range(1, b - a):
            ba, bb = brank[bc[seg[j - 1]]], brank[bc[seg[j]]]
            if bb != ba:
                multi_band = True
            if bb < ba or (bb == ba and t[seg[j]] < t[seg[j - 1]]):
                sorted_already = False
        if sorted_already:
            continue
        tseg = np.empty(b - a, dtype=np.float64)
        for j in range(b - a):
            tseg[j] = t[seg[j]]
        by_t = seg[np.argsort(tseg, kind="mergesort")]
        if not multi_band:
            perm[a:b] = by_t
            continue
        bcount[:] = 0
        for j in range(b - a):
            bcount[brank[bc[by_t[j]]] + 1] += 1
        for q in range(n_band):
            bcount[q + 1] += bcount[q]
        for j in range(b - a):
            q = brank[bc[by_t[j]]]
            perm[a + bcount[q]] = by_t[j]
            bcount[q] += 1
    return perm


@numba.njit(cache=True, nogil=True)
def same_epoch(rows: np.ndarray, oc: np.ndarray, bc: np.ndarray, t: np.ndarray
               ) -> tuple[np.ndarray, bool]:
    """``same[i]``: row ``rows[i + 1]`` has the (object, band, t) of ``rows[i]``; any such."""
    n = rows.shape[0]
    same = np.zeros(max(n - 1, 0), dtype=np.bool_)
    anyone = False
    for i in range(1, n):
        p, q = rows[i - 1], rows[i]
        if oc[p] == oc[q] and bc[p] == bc[q] and t[p] == t[q]:
            same[i - 1] = True
            anyone = True
    return same, anyone


@numba.njit(cache=True, nogil=True)
def series_starts(oc: np.ndarray, bc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Start positions (into ``rows``) of each run of equal (object, band) codes, plus the end."""
    n = rows.shape[0]
    out = np.empty(n + 1, dtype=np.int64)
    k = 0
    for i in range(n):
        if i == 0 or oc[rows[i]] != oc[rows[i - 1]] or bc[rows[i]] != bc[rows[i - 1]]:
            out[k] = i
            k += 1
    out[k] = n
    return out[:k + 1]
