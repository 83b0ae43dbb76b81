"""Numba kernels of the period search (private; the API is :mod:`features.period`).

Every kernel evaluates the generalised Lomb-Scargle periodogram (floating
mean, weights ``1/sigma^2``; Zechmeister & Kuerster 2009, A&A 496, 577) in its
"standard" normalisation, the fraction of the weighted variance explained by
a sinusoid, ``P in [0, 1]``. On a uniform frequency grid each point's phase is
advanced by a trigonometric recurrence, so a (point, frequency) pair costs a
few multiply-adds and no sin/cos call; the coarse search keeps that state in
float32 (relative error of the power < 1e-4 over 1e5 steps), the refinement
in float64.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__: list[str] = []

_TWO_PI = 2.0 * np.pi


@nb.njit(cache=True)
def _weights(m, sigma, idx0, idx1):
    """Normalised weights and weighted-mean-centred magnitudes of rows idx0:idx1."""
    n = idx1 - idx0
    w = np.empty(n)
    y = np.empty(n)
    wsum = 0.0
    for j in range(n):
        s = sigma[idx0 + j]
        w[j] = 1.0 / (s * s)
        wsum += w[j]
    mean = 0.0
    for j in range(n):
        w[j] /= wsum
        mean += w[j] * m[idx0 + j]
    for j in range(n):
        y[j] = m[idx0 + j] - mean
    return w, y


@nb.njit(cache=True, fastmath=True)
def gls_accumulate(t, y, w, f0, df, nf, weight, out, probe):
    """Add ``weight * P(f0 + k df)`` to ``out[k]`` for ``k < nf``.

    Parameters
    ----------
    t : float64 array, days. y : magnitudes minus their weighted mean.
    w : weights summing to 1. f0, df : first frequency and step, 1/day.
    nf : number of frequencies. weight : multiplier of the power.
    out : float64 array of length >= nf. probe : 0-d array whose dtype
    (float32 or float64) sets the precision of the recurrence state.
    """
    n = t.size
    dt = probe.dtype
    yy = 0.0
    for j in range(n):
        yy += w[j] * y[j] * y[j]
    if yy <= 0.0 or n < 3:
        return
    c = np.empty(n, dt)
    s = np.empty(n, dt)
    cd = np.empty(n, dt)
    sd = np.empty(n, dt)
    ww = np.empty(n, dt)
    wy = np.empty(n, dt)
    for j in range(n):
        a = _TWO_PI * ((f0 * t[j]) % 1.0)
        b = _TWO_PI * ((df * t[j]) % 1.0)
        c[j] = np.cos(a)
        s[j] = np.sin(a)
        cd[j] = np.cos(b)
        sd[j] = np.sin(b)
        ww[j] = w[j]
        wy[j] = w[j] * y[j]
    for k in range(nf):
        sc = c[0] - c[0]
        ss = sc
        syc = sc
        sys_ = sc
        scc = sc
        scs = sc
        for j in range(n):
            cj = c[j]
            sj = s[j]
            wc = ww[j] * cj
            sc += wc
            ss += ww[j] * sj
            syc += wy[j] * cj
            sys_ += wy[j] * sj
            scc += wc * cj
            scs += wc * sj
            c[j] = cj * cd[j] - sj * sd[j]
            s[j] = sj * cd[j] + cj * sd[j]
        cc_ = np.float64(scc)
        C = np.float64(sc)
        S = np.float64(ss)
        YC = np.float64(syc)
        YS = np.float64(sys_)
        CC = cc_ - C * C
        SS = 1.0 - cc_ - S * S
        CS = np.float64(scs) - C * S
        D = CC * SS - CS * CS
        if D > 1e-12:
            p = (SS * YC * YC + CC * YS * YS - 2.0 * CS * YC * YS) / (yy * D)
            out[k] += weight * min(max(p, 0.0), 1.0)


@nb.njit(cache=True)
def gls_single(t, y, w, f):
    """Exact GLS power at one frequency ``f`` (1/day), direct sums in float64."""
    n = t.size
    C = S = YC = YS = CC = CS = yy = 0.0
    for j in range(n):
        a = _TWO_PI * ((f * t[j]) % 1.0)
        cj = np.cos(a)
        sj = np.sin(a)
        C += w[j] * cj
        S += w[j] * sj
        YC += w[j] * y[j] * cj
        YS += w[j] * y[j] * sj
        CC += w[j] * cj * cj
        CS += w[j] * cj * sj
        yy += w[j] * y[j] * y[j]
    SS = 1.0 - CC - S * S
    CC = CC - C * C
    CS = CS - C * S
    D = CC * SS - CS * CS
    if D <= 1e-12 or yy <= 0.0:
        return 0.0
    p = (SS * YC * YC + CC * YS * YS - 2.0 * CS * YC * YS) / (yy * D)
    return min(max(p, 0.0), 1.0)


@nb.njit(cache=True)
def bin_visits(t, m, sigma, max_gap, max_span):
    """Merge runs of close observations into inverse-variance weighted means.

    A new bin starts when the gap to the previous point exceeds ``max_gap`` or
    the bin would span more than ``max_span`` (days). Returns (t, m, sigma) of
    the bins; a bin of one point is that point.
    """
    n = t.size
    tb = np.empty(n)
    mb = np.empty(n)
    sb = np.empty(n)
    k = -1
    start = 0.0
    wsum = wt = wm = 0.0
    for j in range(n):
        wj = 1.0 / (sigma[j] * sigma[j])
        if k < 0 or t[j] - t[j - 1] > max_gap or t[j] - start > max_span:
            if k >= 0:
                tb[k] = wt / wsum
                mb[k] = wm / wsum
                sb[k] = 1.0 / np.sqrt(wsum)
            k += 1
            start = t[j]
            wsum = wt = wm = 0.0
        wsum += wj
        wt += wj * t[j]
        wm += wj * m[j]
    if k >= 0:
        tb[k] = wt / wsum
        mb[k] = wm / wsum
        sb[k] = 1.0 / np.sqrt(wsum)
    return tb[: k + 1], mb[: k + 1], sb[: k + 1]


@nb.njit(cache=True)
def top_local_maxima(p, k):
    """Indices of the ``k`` highest local maxima of ``p`` (highest first), mean and std of ``p``.

    A local maximum is ``p[i] >= p[i-1]`` and ``p[i] > p[i+1]`` (ends compare
    with -inf).
    """
    idx = np.full(k, -1, np.int64)
    val = np.full(k, -np.inf)
    n = p.size
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        v = p[i]
        s1 += v
        s2 += v * v
        if v <= val[k - 1]:
            continue
        if (i > 0 and v < p[i - 1]) or (i < n - 1 and v <= p[i + 1]):
            continue
        pos = k - 1
        while pos > 0 and val[pos - 1] < v:
            val[pos] = val[pos - 1]
            idx[pos] = idx[pos - 1]
            pos -= 1
        val[pos] = v
        idx[pos] = i
    m = 0
    while m < k and idx[m] >= 0:
        m += 1
    mean = s1 / max(n, 1)
    var = max(s2 / max(n, 1) - mean * mean, 0.0)
    return idx[:m], mean, np.sqrt(var)


@nb.njit(cache=True)
def refine_peaks(t, y, w, weight, band_start, cand, half_width, step, f_lo, f_hi):
    """Coherent GLS maximum near each candidate frequency.

    For each ``cand[i]`` the (band-weighted) power is evaluated on
    ``[cand - half_width, cand + half_width]`` (clipped to ``[f_lo, f_hi]``)
    with spacing ``step``; the maximum is located with a parabola through the
    three grid points around it. Bands are the row ranges
    ``band_start[b]:band_start[b+1]`` with multipliers ``weight[b]``.

    Returns (frequencies, powers) of the refined peaks.
    """
    nc = cand.size
    fr = np.empty(nc)
    pw = np.empty(nc)
    nb_ = band_start.size - 1
    probe = np.zeros((), np.float64)
    for i in range(nc):
        lo = max(f_lo, cand[i] - half_width)
        hi = min(f_hi, cand[i] + half_width)
        nf = max(3, int(np.ceil((hi - lo) / step)) + 1)
        out = np.zeros(nf)
        for b in range(nb_):
            a0 = band_start[b]
            a1 = band_start[b + 1]
            gls_accumulate(t[a0:a1], y[a0:a1], w[a0:a1], lo, step, nf, weight[b], out, probe)
        j = 0
        for q in range(1, nf):
            if out[q] > out[j]:
                j = q
        f = lo + j * step
        if 0 < j < nf - 1:
            den = out[j - 1] - 2.0 * out[j] + out[j + 1]
            if den < 0.0:
                f += 0.5 * (out[j - 1] - out[j + 1]) / den * step
        # exact power at the interpolated frequency
        pk = 0.0
        for b in range(nb_):
            a0 = band_start[b]
            a1 = band_start[b + 1]
            pk += weight[b] * gls_single(t[a0:a1], y[a0:a1], w[a0:a1], f)
        if pk < out[j]:
            f = lo + j * step
            pk = out[j]
        fr[i] = f
        pw[i] = pk
    return fr, pw
