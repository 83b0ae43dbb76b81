"""Period search: GLS power against least squares, known periods, aliases, multi-band, FAP."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammaln

from features import _period_impl as impl
from features.period import (
    PeriodSearchConfig,
    find_period,
    find_period_multiband,
    gls_power,
    log10_fap_baluev,
)
from pipeline.errors import ConfigError
from tests.features.synthetic import crts_times, eclipsing, sinusoid


def _power_lstsq(t, m, sigma, f):
    """Independent GLS power: 1 - chi2(offset + sinusoid) / chi2(offset), weighted lstsq."""
    w = 1.0 / sigma**2
    sw = np.sqrt(w)
    X = np.column_stack([np.ones_like(t), np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)])
    coef = np.linalg.lstsq(X * sw[:, None], m * sw, rcond=None)[0]
    chi2 = np.sum(w * (m - X @ coef) ** 2)
    mean = np.sum(w * m) / np.sum(w)
    return 1.0 - chi2 / np.sum(w * (m - mean) ** 2)


def test_gls_power_matches_weighted_least_squares(rng):
    t = np.sort(rng.uniform(0, 500, 80))
    m = 15 + 0.2 * np.sin(2 * np.pi * t / 3.3) + rng.normal(0, 0.1, 80)
    sigma = rng.uniform(0.05, 0.2, 80)
    freqs = rng.uniform(0.001, 20, 25)
    ours = gls_power(t, m, sigma, freqs)
    ref = np.array([_power_lstsq(t - t[0], m, sigma, f) for f in freqs])
    # the reference shifts t (the power does not depend on the time origin)
    ref_abs = np.array([_power_lstsq(t, m, sigma, f) for f in freqs])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    np.testing.assert_allclose(ref, ref_abs, atol=1e-6)


@pytest.mark.parametrize("probe, atol", [(np.float64, 1e-9), (np.float32, 2e-4)])
def test_grid_kernel_matches_direct_power(rng, probe, atol):
    t = 55000 + np.sort(rng.uniform(0, 3000, 60))
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 0.77) + rng.normal(0, 0.1, 60)
    sigma = np.full(60, 0.1)
    w, y = impl._weights(m, sigma, 0, 60)
    f0, df, nf = 0.01, 1.0 / 4500, 20000
    out = np.zeros(nf)
    impl.gls_accumulate(t, y, w, f0, df, nf, 1.0, out, np.zeros((), probe))
    idx = np.array([0, 1, 17, 999, 12345, nf - 1])
    ref = gls_power(t, m, sigma, f0 + idx * df)
    np.testing.assert_allclose(out[idx], ref, atol=atol)


def test_bin_visits_weighted_means():
    t = np.array([0.0, 0.005, 0.01, 1.0, 1.004, 5.0])
    m = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 7.0])
    s = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0])
    tb, mb, sb = impl.bin_visits(t, m, s, 0.025, 0.025)
    w = 1 / s[:3] ** 2
    np.testing.assert_allclose(tb, [np.sum(w * t[:3]) / w.sum(), 1.002, 5.0])
    np.testing.assert_allclose(mb, [np.sum(w * m[:3]) / w.sum(), 5.0, 7.0])
    np.testing.assert_allclose(sb, [1 / np.sqrt(w.sum()), 1 / np.sqrt(2), 1.0])


def test_top_local_maxima():
    p = np.array([0.0, 3.0, 1.0, 5.0, 5.0, 2.0, 4.0, 0.0, 6.0])
    idx, mean, std = impl.top_local_maxima(p, 3)
    np.testing.assert_array_equal(idx, [8, 4, 6])
    assert mean == pytest.approx(p.mean()) and std == pytest.approx(p.std())
    assert impl.top_local_maxima(np.zeros(5), 2)[0].size <= 2


def test_alias_mask_windows():
    from features.period import _alias_mask

    f = np.array([0.5, 0.995, 1.0015, 1.015, 2.0003, 2.0055, 2.0030, 7.0191, 7.05, 25.0])
    got = _alias_mask(f, 0.001, 0.01, 20)
    # 1/day window is wide; j >= 2 windows are narrow around j and j * 1.0027379
    np.testing.assert_array_equal(got, [False, True, True, False, True, True, False, True,
                                        False, False])
    assert not _alias_mask(f, 0.001, 0.01, 0).any()


@pytest.mark.parametrize("period", [0.0612, 0.2831, 0.6123, 2.71, 35.3, 410.0])
def test_finds_known_sinusoid_on_crts_cadence(rng, period):
    t = crts_times(rng)
    m, s = sinusoid(t, period, 0.3, rng)
    res = find_period(t, m, s)
    assert res.period == pytest.approx(period, rel=2e-4 if period < 100 else 2e-2)
    # the reported power is the exact GLS power at the reported frequency
    assert res.power == pytest.approx(float(gls_power(t, m, s, [res.frequency])[0]), abs=1e-9)
    assert res.log10_fap < -10


def test_same_peak_as_dense_grid(rng):
    """Coarse-then-refine finds the maximum of a dense coherent grid (10 points per 1/T)."""
    hits = 0
    for _ in range(6):
        t = crts_times(rng, n_visits=60)
        m, s = sinusoid(t, rng.uniform(0.2, 5.0), 0.1, rng, noise=0.1)
        res = find_period(t, m, s, PeriodSearchConfig(alias_harmonics=0))
        T = t[-1] - t[0]
        w, y = impl._weights(m, s, 0, t.size)
        df = 1 / (10 * T)
        nf = int((20 - 1e-3) / df) + 1
        dense = np.zeros(nf)
        impl.gls_accumulate(t, y, w, 1e-3, df, nf, 1.0, dense, np.zeros((), np.float64))
        f_dense = 1e-3 + np.argmax(dense) * df
        hits += abs(res.frequency - f_dense) < 1.0 / T
        assert res.power >= dense.max() - 1e-6 or abs(res.frequency - f_dense) >= 1.0 / T
    assert hits >= 5


@pytest.mark.parametrize("seed", [1, 5])
def test_day_alias_is_skipped(seed):
    # nightly visits over 0-0.45 d of the night; a time-of-night systematic
    # (1 cycle per solar day) stronger than the star's signal
    rng = np.random.default_rng(seed)
    nights = np.arange(2900)
    nights = np.sort(rng.choice(nights[nights % 365 < 240], 75, replace=False))
    t = ((53500 + nights + rng.uniform(0.0, 0.45, 75))[:, None]
         + np.arange(4) * 0.0069).ravel()
    m = (15 + 0.3 * np.sin(2 * np.pi * t) + 0.1 * np.sin(2 * np.pi * t / 0.4137)
         + rng.normal(0.0, 0.02, t.size))
    s = np.full(t.size, 0.02)
    plain = find_period(t, m, s, PeriodSearchConfig(alias_harmonics=0))
    assert abs(plain.frequency - np.round(plain.frequency)) < 1e-3  # 1 or 2 per day
    res = find_period(t, m, s)
    assert res.period == pytest.approx(0.4137, rel=1e-3)
    assert res.n_alias_rejected >= 1
    assert res.candidate_is_alias[0]


def test_eclipsing_binary_period_or_half(rng):
    t = crts_times(rng)
    m, s = eclipsing(t, 1.3771, 0.8, 0.3, rng)
    res = find_period(t, m, s)
    ratio = 1.3771 / res.period
    assert ratio == pytest.approx(1.0, rel=1e-3) or ratio == pytest.approx(2.0, rel=1e-3)


def test_undefined_results_are_nan(rng):
    t = np.sort(rng.uniform(0, 100, 6))
    res = find_period(t, rng.normal(15, 0.1, 6), np.full(6, 0.1))
    assert np.isnan(res.period) and res.n_points == 6
    t = np.sort(rng.uniform(0, 100, 50))
    flat = find_period(t, np.full(50, 15.0), np.full(50, 0.1))
    assert np.isnan(flat.period) and np.isnan(flat.power)


def test_multiband_joint_period(rng):
    t = crts_times(rng, n_visits=40)
    band = np.where(rng.random(t.size) < 0.5, "g", "r")
    P = 0.5731
    amp = np.where(band == "g", 0.4, 0.25)
    m = 15 + amp * np.sin(2 * np.pi * t / P) + rng.normal(0, 0.05, t.size)
    m[band == "r"] -= 0.6
    s = np.full(t.size, 0.05)
    res = find_period_multiband(t, m, s, band)
    assert res.period == pytest.approx(P, rel=2e-4)
    # joint power = chi2-weighted mean of per-band powers (independent computation)
    chi0 = []
    pw = []
    for b in ("g", "r"):
        sel = band == b
        w = 1 / s[sel] ** 2
        mean = np.sum(w * m[sel]) / w.sum()
        chi0.append(np.sum(w * (m[sel] - mean) ** 2))
        pw.append(_power_lstsq(t[sel], m[sel], s[sel], res.frequency))
    assert res.power == pytest.approx(np.dot(chi0, pw) / np.sum(chi0), abs=1e-8)
    # one band: identical to the single-band search
    sel = band == "g"
    one = find_period_multiband(t[sel], m[sel], s[sel], band[sel])
    assert one.frequency == find_period(t[sel], m[sel], s[sel]).frequency


def _fap_reference(z, n, fmax, t):
    """astropy's fap_baluev (standard normalisation, unit weights), in plain floats."""
    nh, nk = n - 1, n - 3
    t_eff = np.sqrt(4 * np.pi * np.var(t))
    gamma = np.sqrt(2 / nh) * np.exp(gammaln(nh / 2) - gammaln((nh - 1) / 2))
    tau = gamma * fmax * t_eff * (1 - z) ** (0.5 * (nk - 1)) * np.sqrt(0.5 * nh * z)
    fs = (1 - z) ** (0.5 * nk)
    return 1 - (1 - fs) * np.exp(-tau)


@pytest.mark.parametrize("z", [0.05, 0.1, 0.2, 0.4])
def test_fap_matches_baluev_formula(rng, z):
    t = np.sort(rng.uniform(0, 1000, 100))
    ref = _fap_reference(z, 100, 20.0, t)
    assert log10_fap_baluev(z, 100, 20.0, t) == pytest.approx(np.log10(ref), abs=1e-9)


def test_fap_extremes_do_not_underflow(rng):
    t = np.sort(rng.uniform(0, 1000, 300))
    vals = [log10_fap_baluev(z, 300, 20.0, t) for z in (0.5, 0.9, 0.99)]
    assert all(np.isfinite(vals)) and vals[0] > vals[1] > vals[2] > -300
    assert log10_fap_baluev(0.0, 300, 20.0, t) == 0.0
    assert log10_fap_baluev(1.0, 300, 20.0, t) == -300.0


@pytest.mark.parametrize("kwargs", [
    {"period_min": 2.0, "period_max": 1.0},
    {"coarse_oversampling": 0.0},
    {"n_candidates": 0},
    {"visit_span": 0.1},
    {"min_points": 2},
])
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        PeriodSearchConfig(**kwargs)
