"""Period search: the details the mutation run (issue 17) found unpinned.

Every value is checked against an independent computation, not against the code under
test: a brute-force weighted least-squares GLS power in numpy, a plain-Python visit
binning and local-maximum selection, Baluev (2008)'s false-alarm formula written out
with ``math``, and literal expected values of constructed series. Pinned here:

* ``PeriodSearchConfig`` validation at each boundary, with the error messages;
* ``log10_fap_baluev``: the n < 5 and power 0 / 1 edges (no numpy warnings), the
  weighted effective baseline, the log-space branch for tiny FAPs;
* ``_alias_mask`` window edges and harmonic limits; ``_harmonic_chi2`` sums over bands;
* the whole coarse-then-refine search re-implemented on a small problem: coarse grid
  (range, size, visit binning), candidates, parabolic refinement, ``snr``,
  ``log10_fap`` and the other ``PeriodResult`` fields;
* the harmonic choice between close peaks, ``rank`` and ``n_alias_rejected``;
* sigma weighting, flat / short / tiny bands in the (multi-band) search;
* the kernels ``bin_visits``, ``top_local_maxima`` and ``refine_peaks`` (window
  clipping, edges, the parabola, several bands).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from features import _period_impl as impl
from features.period import (
    PeriodSearchConfig,
    _alias_mask,
    _harmonic_chi2,
    find_period,
    find_period_multiband,
    gls_power,
    log10_fap_baluev,
)
from pipeline.errors import ConfigError

SOLAR, SIDEREAL = 1.0, 1.0027379093


# --------------------------------------------------------------------------- references


def _power(t, m, s, f):
    """GLS power by weighted least squares: 1 - chi2(offset + sinusoid) / chi2(offset)."""
    w = 1.0 / np.asarray(s, float) ** 2
    sw = np.sqrt(w)
    X = np.column_stack([np.ones_like(t), np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)])
    coef = np.linalg.lstsq(X * sw[:, None], m * sw, rcond=None)[0]
    chi2 = np.sum(w * (m - X @ coef) ** 2)
    mean = np.sum(w * m) / np.sum(w)
    return 1.0 - chi2 / np.sum(w * (m - mean) ** 2)


def _joint_power(bands, f):
    """Chi-square weighted mean over bands of the per-band power."""
    chi0 = []
    pw = []
    for t, m, s in bands:
        w = 1.0 / s**2
        mean = np.sum(w * m) / w.sum()
        chi0.append(np.sum(w * (m - mean) ** 2))
        pw.append(_power(t, m, s, f))
    return float(np.dot(chi0, pw) / np.sum(chi0))


def _bin(t, m, s, span):
    """Visits: a run ends at a gap > span or when it would span more than span."""
    groups = []
    for j in range(t.size):
        if groups and t[j] - t[j - 1] <= span and t[j] - t[groups[-1][0]] <= span:
            groups[-1].append(j)
        else:
            groups.append([j])
    tb, mb, sb = [], [], []
    for g in groups:
        w = 1.0 / s[g] ** 2
        tb.append(np.sum(w * t[g]) / w.sum())
        mb.append(np.sum(w * m[g]) / w.sum())
        sb.append(1.0 / np.sqrt(w.sum()))
    return np.array(tb), np.array(mb), np.array(sb)


def _local_maxima(p, k):
    """Indices of the k highest p[i] with p[i] >= p[i-1] and p[i] > p[i+1] (ends: -inf)."""
    ext = np.concatenate([[-np.inf], p, [-np.inf]])
    cand = [i for i in range(p.size) if ext[i + 1] >= ext[i] and ext[i + 1] > ext[i + 2]]
    return sorted(cand, key=lambda i: (-p[i], i))[:k]


def _refine(bands, weights, c, hw, step, f_lo, f_hi):
    """Documented refinement of one candidate: grid argmax, parabola, exact power."""
    lo, hi = max(f_lo, c - hw), min(f_hi, c + hw)
    nf = max(3, math.ceil((hi - lo) / step) + 1)

    def pw(f):
        return sum(wb * _power(t, m, s, f) for (t, m, s), wb in zip(bands, weights, strict=True))

    out = np.array([pw(lo + q * step) for q in range(nf)])
    j = int(np.argmax(out))
    f = lo + j * step
    if 0 < j < nf - 1:
        den = out[j - 1] - 2 * out[j] + out[j + 1]
        if den < 0:
            f += 0.5 * (out[j - 1] - out[j + 1]) / den * step
    pk = pw(f)
    if pk < out[j]:
        return lo + j * step, out[j]
    return f, pk


def _log10_fap(z, n, fmax, t, sigma=None):
    """Baluev (2008) eqs. for the floating-mean GLS (standard normalisation), with math."""
    w = np.ones(t.size) if sigma is None else 1.0 / np.asarray(sigma) ** 2
    w = w / w.sum()
    tm = float(np.sum(w * t))
    t_eff = math.sqrt(4 * math.pi * float(np.sum(w * (t - tm) ** 2)))
    nh, nk = n - 1, n - 3
    ln_fs = 0.5 * nk * math.log(1 - z)
    ln_gamma = 0.5 * math.log(2 / nh) + math.lgamma(nh / 2) - math.lgamma((nh - 1) / 2)
    ln_tau = (ln_gamma + math.log(fmax * t_eff) + 0.5 * (nk - 1) * math.log(1 - z)
              + 0.5 * math.log(0.5 * nh * z))
    if max(ln_fs, ln_tau) < -50:  # FAP = fs + tau to 1e-21
        a, b = max(ln_fs, ln_tau), min(ln_fs, ln_tau)
        return (a + math.log1p(math.exp(b - a))) / math.log(10)
    fs, tau = math.exp(ln_fs), math.exp(ln_tau)
    # 1 - (1 - fs) exp(-tau), without cancellation
    return math.log10(-math.expm1(-tau) + fs * math.exp(-tau))


def _uneven(rng, n, span, lo=0.02, hi=0.2):
    t = np.sort(rng.uniform(0.0, span, n))
    return t, rng.uniform(lo, hi, n)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs, match", [
    ({"period_min": 0.0}, r"^need 0 < period_min < period_max, got 0.0, 1000.0$"),
    ({"period_min": 2.0, "period_max": 2.0}, r"^need 0 < period_min < period_max, got 2.0, 2.0$"),
    ({"period_min": 3.0, "period_max": 2.0}, r"^need 0 < period_min < period_max, got 3.0, 2.0$"),
    ({"coarse_oversampling": 0.0}, r"^oversampling factors must be positive$"),
    ({"fine_oversampling": 0.0}, r"^oversampling factors must be positive$"),
    ({"n_candidates": 0}, r"^n_candidates must be >= 1$"),
    ({"visit_span": -1e-9}, r"^visit_span must be in \[0, period_min/2 = 0.025\] days$"),
    ({"visit_span": 0.0251}, r"^visit_span must be in \[0, period_min/2 = 0.025\] days$"),
    ({"period_min": 0.2, "visit_span": 0.11},
     r"^visit_span must be in \[0, period_min/2 = 0.1\] days$"),
    ({"min_points": 4}, r"^min_points must be >= 5$"),
])
def test_config_rejects_with_message(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PeriodSearchConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"period_min": 1e-3, "period_max": 1.0001e-3, "visit_span": 0.0},
    {"coarse_oversampling": 0.5, "fine_oversampling": 0.5},
    {"n_candidates": 1},
    {"visit_span": 0.0},
    {"visit_span": 0.025},  # exactly period_min / 2
    {"min_points": 5},
])
def test_config_accepts_boundaries(kwargs):
    cfg = PeriodSearchConfig(**kwargs)
    for key, value in kwargs.items():
        assert getattr(cfg, key) == value


# --------------------------------------------------------------------------- FAP


def test_fap_point_count_and_power_edges():
    t = np.linspace(0.0, 100.0, 5)
    assert np.isnan(log10_fap_baluev(0.3, 4, 20.0, t[:4]))
    assert log10_fap_baluev(0.3, 5, 20.0, t) == pytest.approx(_log10_fap(0.3, 5, 20.0, t),
                                                              abs=1e-12)
    assert np.isnan(log10_fap_baluev(np.nan, 100, 20.0, t))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the edges are handled, not computed through log(0)
        assert log10_fap_baluev(0.0, 100, 20.0, t) == 0.0
        assert log10_fap_baluev(-0.1, 100, 20.0, t) == 0.0
        assert log10_fap_baluev(1.0, 100, 20.0, t) == -300.0
        assert log10_fap_baluev(1.5, 100, 20.0, t) == -300.0


@pytest.mark.parametrize("z", [0.2, 0.3, 0.4])
def test_fap_uses_weighted_effective_baseline(rng, z):
    t = np.sort(rng.uniform(0.0, 1000.0, 120))
    sigma = 0.01 + 0.5 * (t / 1000.0) ** 2  # precise early points: short effective baseline
    got = log10_fap_baluev(z, 120, 20.0, t, sigma)
    assert got == pytest.approx(_log10_fap(z, 120, 20.0, t, sigma), abs=1e-9)
    unweighted = _log10_fap(z, 120, 20.0, t)
    assert abs(got - unweighted) > 1e-3  # the weights matter at this power
    assert log10_fap_baluev(z, 120, 20.0, t) == pytest.approx(unweighted, abs=1e-9)


@pytest.mark.parametrize("z, n", [(0.5, 300), (0.7, 200), (0.35, 400), (0.9, 100)])
def test_fap_log_space_branch(rng, z, n):
    t = np.sort(rng.uniform(0.0, 2000.0, n))
    ref = _log10_fap(z, n, 20.0, t)
    assert -300 < ref < -13
    assert log10_fap_baluev(z, n, 20.0, t) == pytest.approx(ref, rel=1e-10)


# --------------------------------------------------------------------------- alias mask


def test_alias_mask_day_window_edges():
    w1 = 0.01
    f = np.array([SOLAR - w1, np.nextafter(SOLAR - w1, 2.0), 1.0, SIDEREAL,
                  np.nextafter(SIDEREAL + w1, 0.0), SIDEREAL + w1, 2.0])
    np.testing.assert_array_equal(_alias_mask(f, 0.001, w1, 1),
                                  [False, True, True, True, True, False, False])
    # the wider of the two widths sets the day window
    np.testing.assert_array_equal(_alias_mask(np.array([0.96, 1.04, 1.06]), 0.05, 0.01, 1),
                                  [True, True, False])
    assert not _alias_mask(f, 0.001, w1, 0).any()


def test_alias_mask_harmonics():
    w = 2.0**-10  # exactly representable: 2 +- w is an exact edge
    f = np.array([1.0, 2.0, 2.0 + w, 2.0 - w, 2.0 + w / 2, 2 * SIDEREAL, 3.0, 3 * SIDEREAL,
                  5.0, 6.0])
    np.testing.assert_array_equal(
        _alias_mask(f, w, 0.01, 2),
        [True, True, False, False, True, True, False, False, False, False])
    np.testing.assert_array_equal(
        _alias_mask(f, w, 0.01, 3),
        [True, True, False, False, True, True, True, True, False, False])
    np.testing.assert_array_equal(
        _alias_mask(f, w, 0.01, 5),
        [True, True, False, False, True, True, True, True, True, False])
    # high harmonics of the sidereal day: j = rint(f / day), not f * day
    g = np.array([95 * SIDEREAL, 95.0, 95 * SIDEREAL + 0.3])
    np.testing.assert_array_equal(_alias_mask(g, 0.001, 0.01, 100), [True, True, False])


# --------------------------------------------------------------------------- harmonic chi2


def _chi2_ref(t, m, s, f, k):
    cols = [np.ones_like(t)]
    for h in range(1, k + 1):
        cols += [np.cos(2 * np.pi * h * f * t), np.sin(2 * np.pi * h * f * t)]
    X = np.column_stack(cols) / s[:, None]
    coef = np.linalg.lstsq(X, m / s, rcond=None)[0]
    return float(np.sum((m / s - X @ coef) ** 2))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_harmonic_chi2_against_least_squares(rng, k):
    f = 0.37
    bands = []
    for n in (2 * k + 1, 40, 2 * k + 2):  # the first band is too short: skipped
        t, s = _uneven(rng, n, 30.0)
        ph = np.mod(f * t, 1.0)
        m = 15 + 0.5 * ph + 0.2 * np.sin(6 * np.pi * ph) + rng.normal(0, s)
        bands.append((t, m, s))
    expected = sum(_chi2_ref(*b, f, k) for b in bands[1:])
    assert _harmonic_chi2(bands, f, k) == pytest.approx(expected, rel=1e-8)
    assert _harmonic_chi2(bands[2:], f, k) == pytest.approx(_chi2_ref(*bands[2], f, k), rel=1e-8)
    assert _harmonic_chi2(bands[2:], f, k) > 1e-12  # one degree of freedom left: not zero
    assert _harmonic_chi2(bands[:1], f, k) == 0.0


# --------------------------------------------------------------------------- the search


def _paired_times(rng, n_visits, span, gap=0.005):
    start = np.sort(rng.choice(np.arange(int(span)), n_visits, replace=False)).astype(float)
    start += rng.uniform(0.0, 0.5, n_visits)
    return np.sort(np.concatenate([start, start + gap]))


@pytest.mark.parametrize("visit_span", [0.025, 0.0])
def test_search_matches_independent_reimplementation(visit_span):
    rng = np.random.default_rng(7)
    t = _paired_times(rng, 30, 40.0)
    s = rng.uniform(0.05, 0.25, t.size)
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 1.7) + rng.normal(0, s)
    cfg = PeriodSearchConfig(period_min=0.5, period_max=50.0, n_candidates=6,
                             visit_span=visit_span, alias_harmonics=0, choice_harmonics=1)
    res = find_period(t, m, s, cfg)

    T = t[-1] - t[0]
    f_lo, f_hi = 1 / 50.0, 1 / 0.5
    df = 1 / (1.5 * T)
    grid = f_lo + np.arange(math.ceil((f_hi - f_lo) / df) + 1) * df
    tb, mb, sb = _bin(t, m, s, visit_span) if visit_span > 0 else (t, m, s)
    if visit_span > 0:
        assert tb.size == 30  # the pairs were merged
    coarse = np.array([_power(tb, mb, sb, f) for f in grid])
    ref = [_refine([(t, m, s)], [1.0], grid[i], 1.5 * df, 1 / (10 * T), f_lo, f_hi)
           for i in _local_maxima(coarse, 6)]
    ref.sort(key=lambda x: -x[1])
    np.testing.assert_allclose(res.candidate_frequencies, [r[0] for r in ref], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.candidate_powers, [r[1] for r in ref], rtol=0, atol=1e-9)
    assert res.frequency == res.candidate_frequencies[0]
    assert res.frequency == pytest.approx(1 / 1.7, rel=2e-3)
    assert res.period == 1 / res.frequency
    assert res.power == res.candidate_powers[0]
    assert res.power == pytest.approx(_power(t, m, s, res.frequency), abs=1e-9)
    assert res.snr == pytest.approx((res.power - coarse.mean()) / coarse.std(), rel=1e-4)
    assert res.log10_fap == pytest.approx(_log10_fap(res.power, t.size, f_hi, t, s), abs=1e-9)
    assert res.n_points == t.size and res.baseline == T
    assert res.rank == 0 and res.n_alias_rejected == 0
    np.testing.assert_array_equal(res.candidate_is_alias, np.zeros(6, bool))


def _choice_series(rng, day_term=1.5):
    """1/day systematic (alias) > pure sine at f2 > 3-harmonic series at f1 (1-term power)."""
    t = np.sort(rng.uniform(0.0, 300.0, 400))
    f1, f2 = 1 / 1.93, 1 / 0.37
    m = (15 + day_term * np.sin(2 * np.pi * t + 0.3) + 1.0 * np.sin(2 * np.pi * f2 * t)
         + 0.9 * np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(4 * np.pi * f1 * t + 1.0)
         + 0.4 * np.sin(6 * np.pi * f1 * t + 2.0) + rng.normal(0, 0.01, t.size))
    return t, m, np.full(t.size, 0.01), f1, f2


@pytest.mark.parametrize("kwargs, pick, rank", [
    ({}, "f1", 1),
    ({"choice_harmonics": 1}, "f2", 0),
    ({"choice_harmonics": 2}, "f1", 1),  # 0.81 + 0.36 > 1
    ({"choice_power_ratio": 0.9}, "f2", 0),  # P(f1) / P(f2) = 0.81
    ({"n_choice": 2}, "f1", 1),
    ({"n_choice": 1}, "f2", 0),
    ({"n_candidates": 3}, "f1", 1),  # exactly two non-alias candidates
])
def test_harmonic_choice_rank_and_alias_count(rng, kwargs, pick, rank):
    t, m, s, f1, f2 = _choice_series(rng)
    res = find_period(t, m, s, PeriodSearchConfig(**kwargs))
    fr = res.candidate_frequencies
    assert fr[0] == pytest.approx(1.0, abs=2e-3) and res.candidate_is_alias[0]
    # (peak width 1/T = 0.0033 / day; the other terms shift the peaks a little)
    assert fr[1] == pytest.approx(f2, abs=1e-3) and fr[2] == pytest.approx(f1, abs=1e-3)
    assert not res.candidate_is_alias[1:3].any()
    assert res.frequency == (fr[2] if pick == "f1" else fr[1])
    assert res.n_alias_rejected == 1 and res.rank == rank
    assert res.frequency == fr[rank + 1] and res.power == res.candidate_powers[rank + 1]


def test_only_alias_candidates_keep_the_highest(rng):
    t = np.sort(rng.uniform(0.0, 100.0, 200))
    m = 15 + np.sin(2 * np.pi * t) + rng.normal(0, 0.01, t.size)
    s = np.full(t.size, 0.01)
    res = find_period(t, m, s, PeriodSearchConfig(n_candidates=1))
    assert res.candidate_is_alias.all() and res.candidate_frequencies.size == 1
    assert res.frequency == pytest.approx(1.0, abs=1e-4)
    assert res.n_alias_rejected == 0 and res.rank == 0


def test_default_alias_width_is_two_over_baseline(rng):
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 20.0, 150)), [20.0]])
    f = 2.12  # 0.1145 / day from 2 x the sidereal day: outside 2/T = 0.1, inside 0.15 and 0.2
    m = 15 + 0.3 * np.sin(2 * np.pi * f * t) + rng.normal(0, 0.01, t.size)
    s = np.full(t.size, 0.01)
    res = find_period(t, m, s, PeriodSearchConfig(n_candidates=5))
    assert res.frequency == pytest.approx(f, rel=1e-4) and res.n_alias_rejected == 0
    np.testing.assert_array_equal(res.candidate_is_alias,
                                  _alias_mask(res.candidate_frequencies, 0.1, 0.01, 20))
    wide = find_period(t, m, s, PeriodSearchConfig(n_candidates=5, alias_width=0.2))
    assert wide.candidate_frequencies[0] == pytest.approx(f, rel=1e-4)
    assert wide.candidate_is_alias[0] and wide.n_alias_rejected >= 1
    assert wide.frequency != pytest.approx(f, rel=1e-3)


def test_sigma_weights_the_search(rng):
    t, s = _uneven(rng, 150, 300.0, 0.01, 0.5)
    m = 15 + 0.2 * np.sin(2 * np.pi * t / 0.83) + rng.normal(0, s)
    res = find_period(t, m, s)
    assert res.period == pytest.approx(0.83, rel=1e-3)
    weighted = _power(t, m, s, res.frequency)
    assert res.power == pytest.approx(weighted, abs=1e-9)
    assert abs(weighted - _power(t, m, np.ones_like(s), res.frequency)) > 1e-2
    band = np.where(np.arange(t.size) % 3 == 0, "g", "r")
    multi = find_period_multiband(t, m, s, band)
    bands = [(t[band == b], m[band == b], s[band == b]) for b in ("g", "r")]
    assert multi.power == pytest.approx(_joint_power(bands, multi.frequency), abs=1e-9)
    assert multi.log10_fap == pytest.approx(
        _log10_fap(multi.power, t.size, 20.0, np.concatenate([b[0] for b in bands]), s[
            np.argsort(band, kind="stable")]), abs=1e-9)
    # sigma=None: unit weights, as explicit ones
    none = find_period_multiband(t, m, None, band)
    ones = find_period_multiband(t, m, np.ones_like(s), band)
    assert none.frequency == ones.frequency and none.power == ones.power
    assert none.power == pytest.approx(
        _joint_power([(b[0], b[1], np.ones_like(b[2])) for b in bands], none.frequency),
        abs=1e-9)


def test_multiband_weights_flat_and_short_bands(rng):
    P = 0.5731
    tg, sg = _uneven(rng, 120, 500.0, 0.02, 0.03)
    tr, sr = _uneven(rng, 100, 500.0, 0.1, 0.2)
    mg = 15 + 0.4 * np.sin(2 * np.pi * tg / P) + rng.normal(0, sg)
    mr = 14 + 0.3 * np.sin(2 * np.pi * tr / P) + rng.normal(0, sr)
    ta = np.sort(rng.uniform(0.0, 500.0, 20))  # band "a": flat, sorts first
    tz = np.array([10.0, 200.0, 400.0])  # band "z": three points, tiny weight
    mz = np.array([12.0, 12.0005, 12.0])
    t = np.concatenate([ta, tg, tr, tz])
    m = np.concatenate([np.full(20, 13.0), mg, mr, mz])
    s = np.concatenate([np.full(20, 0.05), sg, sr, np.ones(3)])
    band = np.repeat(["a", "g", "r", "z"], [20, 120, 100, 3])
    res = find_period_multiband(t, m, s, band)
    assert res.period == pytest.approx(P, rel=2e-4)
    assert res.n_points == 243
    ref = _joint_power([(tg, mg, sg), (tr, mr, sr), (tz, mz, np.ones(3))], res.frequency)
    assert res.power == pytest.approx(ref, abs=1e-8)
    # a two-point band is dropped
    res2 = find_period_multiband(t[:-1], m[:-1], s[:-1], band[:-1])
    assert res2.n_points == 240


def test_flat_and_nearly_flat_light_curves(rng):
    t = np.sort(rng.uniform(0.0, 50.0, 60))
    i = np.arange(60)
    # ptp exactly 1e-9 x max(1, |m|): flat
    flat = find_period(t, np.where(i % 2 == 1, 1e-9, 0.0), np.full(60, 1e-10))
    assert np.isnan(flat.frequency) and flat.candidate_frequencies.size == 0
    assert flat.n_points == 60 and flat.baseline == t[-1] - t[0]
    # ptp 1e-8 on 15 mag (threshold 1.5e-8): flat
    near = find_period(t, 15 + 0.5e-8 * np.sin(2 * np.pi * t / 3.1), np.full(60, 1e-10))
    assert np.isnan(near.frequency)
    # ptp 1.5e-9 around 0 (threshold 1e-9): a period, the GLS power being scale-free
    tiny = find_period(t, 0.75e-9 * np.sin(2 * np.pi * t / 3.1), np.full(60, 1e-10))
    assert tiny.period == pytest.approx(3.1, rel=1e-3)
    # total chi-square below 1 is still a signal
    weak = find_period(t, 15 + 0.01 * np.sin(2 * np.pi * t / 3.1), np.ones(60))
    assert weak.period == pytest.approx(3.1, rel=1e-3)
    # every band flat: nothing searched
    band = np.where(i % 2 == 0, "g", "r")
    none = find_period_multiband(t, np.where(band == "g", 15.0, 14.0), np.full(60, 0.1), band)
    assert np.isnan(none.frequency) and none.candidate_frequencies.size == 0
    assert none.n_points == 60


def test_point_count_baseline_and_single_candidate(rng):
    t = np.sort(rng.uniform(0.0, 30.0, 10))
    m = 15 + 0.5 * np.sin(2 * np.pi * t / 2.3)
    s = np.full(10, 0.01)
    res = find_period(t, m, s)  # exactly min_points
    assert np.isfinite(res.frequency) and res.n_points == 10
    assert np.isnan(find_period(t, m, s, PeriodSearchConfig(min_points=11)).frequency)
    # a baseline under one day
    t = np.sort(rng.uniform(0.0, 0.8, 40))
    res = find_period(t, 15 + 0.3 * np.sin(2 * np.pi * t / 0.2), np.full(40, 0.01),
                      PeriodSearchConfig(visit_span=0.0))
    assert res.period == pytest.approx(0.2, rel=1e-2) and res.baseline == t[-1] - t[0]
    # one candidate
    t = np.sort(rng.uniform(0.0, 300.0, 100))
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 0.61) + rng.normal(0, 0.02, 100)
    one = find_period(t, m, np.full(100, 0.02), PeriodSearchConfig(n_candidates=1))
    assert one.period == pytest.approx(0.61, rel=1e-4) and one.candidate_frequencies.size == 1


def test_flat_coarse_spectrum_gives_nan_snr():
    # two visits: two binned points, no coarse power anywhere
    t = np.concatenate([np.linspace(0.0, 0.02, 6), 3.0 + np.linspace(0.0, 0.02, 6)])
    m = 15 + 0.2 * np.sin(2 * np.pi * t / 0.07)
    res = find_period(t, m, np.full(12, 0.01))
    assert np.isfinite(res.frequency) and np.isnan(res.snr)


# --------------------------------------------------------------------------- kernels


def test_bin_visits_against_reference(rng):
    t = np.sort(np.concatenate([rng.uniform(0, 10, 30), 5 + rng.uniform(0, 0.03, 10)]))
    m = rng.normal(15, 1, t.size)
    s = rng.uniform(0.1, 2.0, t.size)
    for span in (0.01, 0.025, 0.3):
        got = impl.bin_visits(t, m, s, span, span)
        for a, b in zip(got, _bin(t, m, s, span), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_bin_visits_edges():
    s = np.array([0.5, 1.0, 2.0])
    m = np.array([1.0, 2.0, 4.0])
    w = 1 / s**2
    one = [np.sum(w * np.array([0.0, 0.01, 0.02])) / w.sum(), np.sum(w * m) / w.sum(),
           1 / np.sqrt(w.sum())]
    # a single visit (the last bin is the only one); its sigma is not 1
    got = impl.bin_visits(np.array([0.0, 0.01, 0.02]), m, s, 0.025, 0.025)
    np.testing.assert_allclose(np.concatenate(got), one, rtol=1e-12)
    # gap exactly max_gap and span exactly max_span: still one visit
    got = impl.bin_visits(np.array([0.0, 0.25, 0.5]), m, s, 0.25, 1.0)
    assert got[0].size == 1
    got = impl.bin_visits(np.array([0.0, 0.125, 0.25]), m, s, 0.5, 0.25)
    assert got[0].size == 1
    # a gap alone, a span alone, ends a visit
    got = impl.bin_visits(np.array([0.0, 0.02, 0.03]), m, s, 0.015, 1.0)
    np.testing.assert_allclose(got[0], [0.0, (0.02 + 0.25 * 0.03) / 1.25])
    np.testing.assert_allclose(got[1], [1.0, (2.0 + 0.25 * 4.0) / 1.25])
    np.testing.assert_allclose(got[2], [0.5, 1 / np.sqrt(1.25)])
    got = impl.bin_visits(np.array([0.0, 0.02, 0.04]), m, s, 1.0, 0.03)
    np.testing.assert_allclose(got[0], [(4 * 0.0 + 1 * 0.02) / 5, 0.04])
    np.testing.assert_allclose(got[1], [(4 * 1.0 + 2.0) / 5, 4.0])


@pytest.mark.parametrize("p, k, expected", [
    ([5.0, 1.0, 2.0, 0.0, 9.0], 3, [4, 0, 2]),  # maxima at both ends
    ([5.0, 4.0, 3.0, 2.0], 3, [0]),  # falling: only the first
    ([1.0, 2.0, 3.0, 4.0, 5.0], 2, [4]),  # rising: only the last
    ([0.0, 2.0, 2.0, 1.0, 3.0, 3.0], 4, [5, 2]),  # plateaus count at their right end
    ([0.0, 5.0, 0.0, 3.0, 0.0, 4.0, 0.0], 2, [1, 5]),
    ([0.0, 0.0, 0.0], 2, [2]),
])
def test_top_local_maxima_cases(p, k, expected):
    p = np.array(p)
    idx, mean, std = impl.top_local_maxima(p, k)
    np.testing.assert_array_equal(p[idx], p[expected])  # usable as indices
    np.testing.assert_array_equal(idx, expected)
    assert mean == pytest.approx(p.mean()) and std == pytest.approx(p.std())


def test_top_local_maxima_random(rng):
    for n in (2, 3, 10, 40):
        for k in (1, 2, 3, 7, 50):
            p = rng.random(n)
            idx, mean, std = impl.top_local_maxima(p, k)
            np.testing.assert_array_equal(idx, _local_maxima(p, k))
            assert mean == pytest.approx(p.mean(), abs=1e-12)
            assert std == pytest.approx(p.std(), abs=1e-9)


def _prep(t, m, s):
    w = 1 / s**2
    return t, m - np.sum(w * m) / w.sum(), w / w.sum()


def test_refine_peaks_against_reference(rng):
    t = np.sort(rng.uniform(0.0, 50.0, 80))
    f0 = 0.7131
    m = 15 + 0.4 * np.sin(2 * np.pi * f0 * t) + rng.normal(0, 0.01, 80)
    s = rng.uniform(0.01, 0.03, 80)
    step = 1 / (10 * 50.0)
    hw = 1.5 / (1.5 * 50.0)
    tt, y, w = _prep(t, m, s)
    cand = f0 + step * np.array([0.0, 0.37, -2.3, 4.4, -4.9, 10.0, -12.0, 7.6])
    f_lo, f_hi = f0 - 0.5 * step, f0 + 30 * step
    fr, pw = impl.refine_peaks(tt, y, w, np.array([1.0]), np.array([0, 80]), cand, hw, step,
                               f_lo, f_hi)
    for i, c in enumerate(cand):
        rf, rp = _refine([(t, m, s)], [1.0], c, hw, step, f_lo, f_hi)
        assert fr[i] == pytest.approx(rf, abs=1e-9 * step), i
        assert pw[i] == pytest.approx(rp, abs=1e-10), i
        assert f_lo <= fr[i] <= f_hi + step
    # the peak is found between grid points (the grid alone is up to step / 2 off)
    fr, _ = impl.refine_peaks(tt, y, w, np.array([1.0]), np.array([0, 80]),
                              np.array([f0 + 0.37 * step]), hw, step, 0.0, 10.0)
    assert abs(fr[0] - f0) < 0.05 * step


@pytest.mark.parametrize("offset", [0.3, 0.6, 1.4, -0.7, 2.0])
def test_refine_peaks_small_windows(rng, offset):
    # a window narrower than a step still has three points; peak near each grid point
    t = np.sort(rng.uniform(0.0, 50.0, 60))
    f0 = 1.3
    m = 15 + 0.4 * np.sin(2 * np.pi * f0 * t)
    s = np.full(60, 0.01)
    step = 0.002
    c = f0 - offset * step
    for hw in (0.4 * step, 1.05 * step):
        fr, pw = impl.refine_peaks(*_prep(t, m, s), np.array([1.0]), np.array([0, 60]),
                                   np.array([c]), hw, step, 0.0, 10.0)
        rf, rp = _refine([(t, m, s)], [1.0], c, hw, step, 0.0, 10.0)
        assert fr[0] == pytest.approx(rf, abs=1e-9 * step)
        assert pw[0] == pytest.approx(rp, abs=1e-10)


def test_refine_peaks_window_clipped_to_range(rng):
    t = np.sort(rng.uniform(0.0, 50.0, 60))
    m = 15 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    s = np.full(60, 0.01)
    step = 0.002
    args = (*_prep(t, m, s), np.array([1.0]), np.array([0, 60]))
    # the true peak lies just outside [f_lo, f_hi]: the boundary grid point is returned
    fr, pw = impl.refine_peaks(*args, np.array([0.5 + 2 * step]), 0.03, step,
                               0.5 + 1.5 * step, 10.0)
    assert fr[0] == 0.5 + 1.5 * step
    assert pw[0] == pytest.approx(_power(t, m, s, fr[0]), abs=1e-10)
    fr, pw = impl.refine_peaks(*args, np.array([0.5 - 2 * step]), 0.03, step, 0.1,
                               0.5 - 1.5 * step)
    rf, rp = _refine([(t, m, s)], [1.0], 0.5 - 2 * step, 0.03, step, 0.1, 0.5 - 1.5 * step)
    assert fr[0] == pytest.approx(rf, abs=1e-12) and pw[0] == pytest.approx(rp, abs=1e-10)


def test_refine_peaks_two_bands(rng):
    f0 = 0.4219
    ta, sa = _uneven(rng, 50, 80.0, 0.02, 0.05)
    tb, sb = _uneven(rng, 70, 80.0, 0.05, 0.1)
    ma = 15 + 0.5 * np.sin(2 * np.pi * f0 * ta) + rng.normal(0, sa)
    mb = 14 + 0.2 * np.sin(2 * np.pi * f0 * tb + 1.0) + rng.normal(0, sb)
    pa, pb = _prep(ta, ma, sa), _prep(tb, mb, sb)
    t, y, w = (np.concatenate([a, b]) for a, b in zip(pa, pb, strict=True))
    weight = np.array([0.7, 0.3])
    step = 1 / 800.0
    cand = f0 + step * np.array([0.4, -3.2, 25.0])
    fr, pw = impl.refine_peaks(t, y, w, weight, np.array([0, 50, 120]), cand, 0.02, step,
                               0.0, 5.0)
    for i, c in enumerate(cand):
        rf, rp = _refine([(ta, ma, sa), (tb, mb, sb)], weight, c, 0.02, step, 0.0, 5.0)
        assert fr[i] == pytest.approx(rf, abs=1e-9 * step)
        assert pw[i] == pytest.approx(rp, abs=1e-10)
        assert pw[i] == pytest.approx(0.7 * _power(ta, ma, sa, fr[i])
                                      + 0.3 * _power(tb, mb, sb, fr[i]), abs=1e-10)


def test_top_local_maxima_degenerate_arrays():
    idx, mean, std = impl.top_local_maxima(np.empty(0), 3)
    assert idx.size == 0 and mean == 0.0 and std == 0.0
    idx, mean, std = impl.top_local_maxima(np.array([3.0]), 2)
    np.testing.assert_array_equal(idx, [0])
    assert mean == 3.0 and std == 0.0
    # rounding makes E[p^2] - E[p]^2 negative here: the std is 0, not NaN
    idx, mean, std = impl.top_local_maxima(np.full(3, 0.1), 2)
    np.testing.assert_array_equal(idx, [2])
    assert std == 0.0


# --------------------------------------------------------------------------- input, GLS edges


def test_input_cleaning():
    from features.period import _as_series

    t = [3, 1, 2, 2, np.nan, 5, 4, 6, 7]
    m = [13, 11, 12, 99, 14, 15, np.inf, 16, 17]
    s = [0.1, 0.1, 0.2, 0.1, 0.1, 0.0, 0.1, -1.0, np.nan]
    tt, mm, ss = _as_series(t, m, s)
    np.testing.assert_array_equal(tt, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mm, [11.0, 12.0, 13.0])  # the first of repeated times
    np.testing.assert_array_equal(ss, [0.1, 0.2, 0.1])
    assert tt.dtype == mm.dtype == ss.dtype == np.float64
    tt, mm, ss = _as_series([1, 2, 3], [4, 5, 6], None)
    assert tt.dtype == mm.dtype == np.float64
    np.testing.assert_array_equal(ss, [1.0, 1.0, 1.0])
    tt, mm, _ = _as_series([2.0, 1.0], [5.0, 4.0], [0.1, 0.2])
    np.testing.assert_array_equal(tt, [1.0, 2.0])
    np.testing.assert_array_equal(mm, [4.0, 5.0])
    tt, mm, _ = _as_series([1.0, 1.0, 1.5, 2.0], [1.0, 2.0, 3.0, 4.0], None)  # sorted, repeats
    np.testing.assert_array_equal(tt, [1.0, 1.5, 2.0])
    np.testing.assert_array_equal(mm, [1.0, 3.0, 4.0])


def test_input_cleaning_keeps_first_of_many_repeats(rng):
    from features.period import _as_series

    t = rng.integers(0, 40, 300).astype(float)
    m = np.arange(300.0)
    tt, mm, _ = _as_series(t, m, None)
    u, first = np.unique(t, return_index=True)
    np.testing.assert_array_equal(tt, u)
    np.testing.assert_array_equal(mm, m[first])


def test_gls_edges(rng):
    t = np.arange(20.0)  # integer times: every phase equal at f = 0 and f = 1
    m = rng.normal(15, 1, 20)
    s = np.full(20, 0.1)
    np.testing.assert_array_equal(gls_power(t, m, s, [0.0, 1.0, 2.0]), [0.0, 0.0, 0.0])
    assert gls_power(t, np.zeros(20), s, [0.3])[0] == 0.0  # no variance
    f = np.array([[0.11, 0.23], [0.31, 0.47]])
    got = gls_power(t, m, s, f)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, [[_power(t, m, s, x) for x in row] for row in f], atol=1e-9)
    # the grid kernel: no variance adds nothing; three points are enough
    out = np.full(4, 0.5)
    impl.gls_accumulate(t, np.zeros(20), np.full(20, 0.05), 0.1, 0.1, 4, 1.0, out,
                        np.zeros((), np.float64))
    np.testing.assert_array_equal(out, 0.5)
    t3 = np.array([0.0, 0.3, 0.7])
    m3 = np.array([1.0, 2.0, 0.5])
    w3, y3 = impl._weights(m3, np.ones(3), 0, 3)
    out = np.zeros(3)
    impl.gls_accumulate(t3, y3, w3, 0.2, 0.1, 3, 1.0, out, np.zeros((), np.float64))
    ref = [_power(t3, m3, np.ones(3), 0.2 + 0.1 * k) for k in range(3)]
    np.testing.assert_allclose(out, ref, atol=1e-9)
    assert min(ref) > 0.5
