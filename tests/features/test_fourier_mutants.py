"""Values of features/fourier.py and features/periodic.py pinned against independent numbers.

Written against the surviving mutants of issue 17 (tools/mutation.py, group ``fourier``).
Every expected value comes from a computation in this file: a weighted least-squares
sine series solved with the normal equations (``_wls``), the documented definitions of
the doubled-period statistics applied to that fit, the Lafler-Kinman statistic written
out with numpy, or literal values of a constructed series. Pinned here:

* ``FourierFit.ratio`` is NaN when ``A_1 = 0``; the guard of ``fourier_fit`` at its
  edges (period <= 0 / non-finite, ``n = 2H + 1`` vs ``2H + 2`` points); the default
  ``H = 4``; ``t_ref`` (given or ``t[0]``) and the phases relative to it; ``chi2_const``.
* ``double_period_test``: f_odd, odd_fraction, min_diff, max_diff against the
  definitions (400-point model grid over ``2P``, +-60 points around the opposite
  phase), also for an eccentric binary whose secondary eclipse lies outside that window;
  too few points for the 2P fit (None); an exact fit (f_odd and odd_fraction NaN without
  a division by zero); f_odd < 1 and chi2_2P < 1 kept as they are.
* ``PeriodicFeatures``: units, the n_harmonics message, the second and third periodogram
  peaks (distinct by >= 1/T, aliases skipped, stop after two), features 9-19 against an
  independent fit at the reported period (ptp on 200 phases of one cycle, explained
  variance, reduced chi2 with one degree of freedom), the NaN entries of a light curve
  too short for the fits, and the folded Lafler-Kinman length with equal phases (ties in
  time order, no sortedness check by light-curve).
"""

from __future__ import annotations

import numpy as np
import pytest

from features.fourier import FourierFit, double_period_test, fourier_fit
from features.period import PeriodSearchConfig, find_period
from features.periodic import PeriodicFeatures

TWO_PI = 2.0 * np.pi


def _wls(t, m, sigma, period, n_harmonics, t_ref):
    """Weighted least squares of m = c0 + sum_k (a_k cos k x + b_k sin k x), x = 2 pi (t -
    t_ref) / P, solved with the normal equations; returns (c0, a, b, chi2, chi2_const)."""
    x = TWO_PI * (t - t_ref) / period
    cols = [np.ones_like(t)]
    for k in range(1, n_harmonics + 1):
        cols += [np.cos(k * x), np.sin(k * x)]
    X = np.column_stack(cols)
    w = np.ones_like(t) if sigma is None else 1.0 / sigma**2
    coef = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * m))
    chi2 = float(np.sum(w * (m - X @ coef) ** 2))
    chi2_const = float(np.sum(w * (m - np.average(m, weights=w)) ** 2))
    return coef[0], coef[1::2], coef[2::2], chi2, chi2_const


def _series(c0, a, b, phase):
    """The fitted series at phases (in cycles)."""
    k = np.arange(1, a.size + 1)
    kx = TWO_PI * np.multiply.outer(phase, k)
    return c0 + np.cos(kx) @ a + np.sin(kx) @ b


def _double_reference(t, m, sigma, period, n_harmonics):
    """The documented doubled-period statistics from independent fits at P and 2P."""
    *_, chi2_p, _ = _wls(t, m, sigma, period, n_harmonics, t[0])
    c0, a, b, chi2_2p, _ = _wls(t, m, sigma, 2 * period, 2 * n_harmonics, t[0])
    dof = t.size - (4 * n_harmonics + 1)
    f_odd = ((chi2_p - chi2_2p) / n_harmonics) / (chi2_2p / dof)
    amp2 = a**2 + b**2
    odd_fraction = np.sqrt(amp2[0::2].sum() / amp2.sum())
    curve = _series(c0, a, b, np.arange(400) / 400)  # 400 points over the 2P cycle
    i_min, i_max = int(np.argmax(curve)), int(np.argmin(curve))
    opposite = lambda i: (i + 200 + np.arange(-60, 61)) % 400  # noqa: E731
    return (max(f_odd, 0.0), odd_fraction, curve[i_min] - curve[opposite(i_min)].max(),
            curve[opposite(i_max)].min() - curve[i_max], chi2_2p)


def _lafler_kinman(phase, m):
    """Lafler-Kinman string length of m ordered by (phase, then time), wrapping around."""
    y = m[np.lexsort((np.arange(m.size), phase))]
    return np.sum((np.roll(y, -1) - y) ** 2) / (2 * np.sum((y - y.mean()) ** 2))


# ---------------------------------------------------------------------------- fourier_fit

def test_ratio_is_nan_when_a1_is_zero():
    fit = FourierFit(period=1.0, t_ref=0.0, offset=0.0, amplitudes=np.array([0.0, 0.1, 0.2]),
                     phases=np.zeros(3), chi2=0.0, chi2_const=1.0, n_points=20)
    with np.errstate(divide="raise", invalid="raise"):
        assert np.isnan(fit.ratio(2)) and np.isnan(fit.ratio(3))


def test_guard_edges():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0.0, 50.0, 40))
    m = 10.0 + 0.3 * np.sin(TWO_PI * t / 1.7) + rng.normal(0.0, 0.01, t.size)
    for period in (0.0, -1.7, np.nan, np.inf):
        assert fourier_fit(t, m, None, period, n_harmonics=4) is None, period
    # H = 4: 9 parameters; 9 points are too few, 10 leave one degree of freedom
    assert fourier_fit(t[:9], m[:9], None, 1.7, n_harmonics=4) is None
    fit = fourier_fit(t[:10], m[:10], None, 1.7, n_harmonics=4)
    assert fit.dof == 1 and fit.n_points == 10
    *_, chi2, _ = _wls(t[:10], m[:10], None, 1.7, 4, t[0])
    assert fit.chi2 == pytest.approx(chi2, rel=1e-6, abs=1e-12)
    # H = 6: 13 parameters
    assert fourier_fit(t[:13], m[:13], None, 1.7, n_harmonics=6) is None
    assert fourier_fit(t[:14], m[:14], None, 1.7, n_harmonics=6).dof == 1


def test_default_four_harmonics():
    t = np.linspace(0.0, 20.0, 60)
    m = np.sin(TWO_PI * t / 0.9)
    assert fourier_fit(t, m, None, 0.9).n_harmonics == 4
    ref = double_period_test(t + 1e-3 * np.cos(t), m, None, 0.9, n_harmonics=4)
    got = double_period_test(t + 1e-3 * np.cos(t), m, None, 0.9)
    assert got == ref


@pytest.mark.parametrize("t_ref", [None, 3.25])
def test_t_ref_and_phases(t_ref):
    """m = 12 + 0.4 sin(2 pi (t - t0) / P + 1.1) + 0.1 sin(4 pi (t - t0) / P + 2.5): the
    phases are those of the series written relative to t_ref (default t[0])."""
    rng = np.random.default_rng(8)
    t = np.sort(rng.uniform(1.0, 40.0, 80))
    P, t0 = 0.77, 0.4
    m = (12.0 + 0.4 * np.sin(TWO_PI * (t - t0) / P + 1.1)
         + 0.1 * np.sin(2 * TWO_PI * (t - t0) / P + 2.5))
    fit = fourier_fit(t, m, None, P, n_harmonics=2, t_ref=t_ref)
    ref = t[0] if t_ref is None else t_ref
    assert fit.t_ref == ref
    # sin(k w (t - t0) + phi) = sin(k w (t - ref) + phi + k w (ref - t0))
    want = np.mod(np.array([1.1, 2.5]) + TWO_PI * np.array([1, 2]) * (ref - t0) / P, TWO_PI)
    np.testing.assert_allclose(fit.amplitudes, [0.4, 0.1], atol=1e-10)
    d = np.angle(np.exp(1j * (fit.phases - want)))
    np.testing.assert_allclose(d, 0.0, atol=1e-9)


def test_chi2_const_is_weighted_variance_about_weighted_mean():
    rng = np.random.default_rng(21)
    t = np.sort(rng.uniform(0.0, 300.0, 150))
    sigma = rng.uniform(0.02, 0.4, t.size)
    m = 15.0 + 0.2 * np.sin(TWO_PI * t / 2.3) + rng.normal(0.0, sigma)
    fit = fourier_fit(t, m, sigma, 2.3, n_harmonics=3)
    _, _, _, chi2, chi2_const = _wls(t, m, sigma, 2.3, 3, t[0])
    assert fit.chi2_const == pytest.approx(chi2_const, rel=1e-9)
    assert fit.chi2 == pytest.approx(chi2, rel=1e-7)


# --------------------------------------------------------------------- double_period_test

def _eb_like(seed, n=400):
    """2P-periodic series with unequal, phase-shifted minima and maxima, noisy."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 200.0, n))
    P = 0.61
    x = TWO_PI * t / (2 * P)
    m = (14.0 + 0.30 * np.cos(2 * x) + 0.08 * np.cos(x + 0.4) + 0.05 * np.sin(3 * x + 1.0)
         + 0.06 * np.cos(4 * x + 0.3) + rng.normal(0.0, 0.01, n))
    return t, m, rng.uniform(0.008, 0.015, n), P


@pytest.mark.parametrize("n_harmonics", [3, 4])
def test_double_period_statistics(n_harmonics):
    t, m, s, P = _eb_like(2)
    dbl = double_period_test(t, m, s, P, n_harmonics)
    f_odd, odd_fraction, min_diff, max_diff, _ = _double_reference(t, m, s, P, n_harmonics)
    assert dbl.f_odd == pytest.approx(f_odd, rel=1e-6)
    assert dbl.odd_fraction == pytest.approx(odd_fraction, rel=1e-8)
    assert dbl.min_diff == pytest.approx(min_diff, rel=1e-7, abs=1e-10)
    assert dbl.max_diff == pytest.approx(max_diff, rel=1e-7, abs=1e-10)
    assert dbl.f_odd > 100 and min_diff > 0.05
    # the same with the fit at P passed in
    fit_p = fourier_fit(t, m, s, P, n_harmonics)
    assert double_period_test(t, m, s, P, n_harmonics, fit_p=fit_p) == dbl


def test_double_period_eccentric_binary():
    """Eccentric binary: the secondary eclipse sits 0.25 of the 2P cycle after the phase
    opposite the primary, outside the +-0.15 window searched for the other minimum, so
    min_diff is measured against the window's edge, not the secondary eclipse."""
    rng = np.random.default_rng(5)
    n, P, w = 500, 0.83, 0.06
    t = np.sort(rng.uniform(0.0, 300.0, n))
    ph = np.mod(t / (2 * P), 1.0)

    def eclipse(centre):
        d = np.abs(np.mod(ph - centre + 0.5, 1.0) - 0.5)
        return np.exp(-0.5 * (d / w) ** 2)

    m = 13.0 + 0.6 * eclipse(0.0) + 0.35 * eclipse(0.75) + rng.normal(0.0, 0.01, n)
    s = np.full(n, 0.01)
    dbl = double_period_test(t, m, s, P, 4)
    f_odd, odd_fraction, min_diff, max_diff, _ = _double_reference(t, m, s, P, 4)
    assert min_diff > 0.35  # more than the difference of the two eclipse depths
    assert dbl.f_odd == pytest.approx(f_odd, rel=1e-6)
    assert dbl.odd_fraction == pytest.approx(odd_fraction, rel=1e-8)
    assert dbl.min_diff == pytest.approx(min_diff, rel=1e-7)
    assert dbl.max_diff == pytest.approx(max_diff, rel=1e-7)


def test_double_period_small_f_and_chi2():
    """A P-periodic curve with errors far above its noise: chi2 of the 2P fit < 1 and an
    F statistic of the odd harmonics < 1 (no odd signal), both kept as computed."""
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0.0, 100.0, 60))
    P = 1.3
    m = 13.0 + 0.2 * np.sin(TWO_PI * t / P) + rng.normal(0.0, 0.01, t.size)
    s = np.full(t.size, 0.5)
    dbl = double_period_test(t, m, s, P, 4)
    f_odd, odd_fraction, min_diff, max_diff, chi2_2p = _double_reference(t, m, s, P, 4)
    assert chi2_2p < 1 and 0 < f_odd < 1
    assert dbl.f_odd == pytest.approx(f_odd, rel=1e-6)
    assert dbl.odd_fraction == pytest.approx(odd_fraction, rel=1e-6)


def test_double_period_too_few_points_for_2p_fit():
    rng = np.random.default_rng(9)
    t = np.sort(rng.uniform(0.0, 30.0, 30))
    m = 11.0 + 0.2 * np.sin(TWO_PI * t / 0.8) + rng.normal(0.0, 0.02, t.size)
    # H = 4: the P fit needs 10 points, the 8-harmonic 2P fit 18
    for n in (10, 14, 17):
        assert fourier_fit(t[:n], m[:n], None, 0.8, 4) is not None
        assert double_period_test(t[:n], m[:n], None, 0.8, 4) is None
    dbl = double_period_test(t[:18], m[:18], None, 0.8, 4)  # 2P fit with one dof
    f_odd, *_ = _double_reference(t[:18], m[:18], None, 0.8, 4)
    assert dbl.f_odd == pytest.approx(f_odd, rel=1e-5)


def test_double_period_exact_fit():
    """m = 0 is fitted exactly (chi2 = 0, all amplitudes 0): f_odd and odd_fraction are
    NaN, computed without dividing by zero; the two minima and maxima are equal."""
    t = np.sort(np.random.default_rng(1).uniform(0.0, 40.0, 50))
    with np.errstate(divide="raise", invalid="raise"):
        dbl = double_period_test(t, np.zeros(t.size), None, 0.9)
    assert np.isnan(dbl.f_odd) and np.isnan(dbl.odd_fraction)
    assert dbl.min_diff == 0.0 and dbl.max_diff == 0.0


# ---------------------------------------------------------------------- PeriodicFeatures

def test_units_and_constructor():
    cfg = PeriodSearchConfig(period_max=100.0)
    g = PeriodicFeatures(cfg)
    assert g.config is cfg
    assert g.units == ("day", "1", "dex", "1", "count", "day", "1", "day", "1",
                       "mag", "mag", "mag", "mag", "1", "1", "rad", "rad", "mag", "fraction",
                       "1", "1", "1", "1", "fraction", "mag", "mag",
                       "day", "1", "1", "1")  # 1.1: prewhitened period, power, two ratios
    with pytest.raises(ValueError, match=r"^PeriodicFeatures names assume n_harmonics=4$"):
        PeriodicFeatures(n_harmonics=3)


def test_second_and_third_peaks():
    """Periods P1 (strongest), P2 and P3 plus a 2/day systematic (an alias candidate,
    stronger than P2): peaks 2 and 3 are P2 and P3 with their periodogram powers. P2 lies
    1.5/T from P1 (its refined peak 1.7/T), distinct by the >= 1/T rule."""
    rng = np.random.default_rng(17)
    n, T = 600, 400.0
    t = np.sort(rng.uniform(0.0, T, n))
    f1 = 1 / 0.731
    f2, f3 = f1 + 1.5 / T, 1 / 3.37
    m = (15.0 + 0.5 * np.sin(TWO_PI * f1 * t) + 0.35 * np.sin(TWO_PI * f2 * t + 1.0)
         + 0.2 * np.sin(TWO_PI * f3 * t + 2.0) + 0.35 * np.sin(TWO_PI * 2.0 * t)
         + rng.normal(0.0, 0.02, n))
    s = np.full(n, 0.02)
    g = PeriodicFeatures()
    v = dict(zip(g.names, g(t, m, s), strict=True))
    res = find_period(t, m, s)
    assert v["period"] == pytest.approx(1 / f1, rel=1e-4)
    assert v["peak2_period"] == pytest.approx(1 / f2, rel=1e-3)
    assert 1.0 < (1 / v["peak2_period"] - 1 / v["period"]) * res.baseline < 2.0
    assert v["peak3_period"] == pytest.approx(1 / f3, rel=1e-3)
    for name in ("peak2", "peak3"):
        f = 1 / v[f"{name}_period"]
        i = int(np.argmin(np.abs(res.candidate_frequencies - f)))
        assert v[f"{name}_period"] == pytest.approx(1 / res.candidate_frequencies[i], rel=1e-12)
        assert v[f"{name}_power"] == pytest.approx(res.candidate_powers[i], rel=1e-12)
    # the 2/day systematic is a stronger candidate, skipped as an alias
    alias = res.candidate_frequencies[res.candidate_is_alias]
    assert np.any(np.abs(alias - 2.0) < 1e-3)


def test_fourier_features_match_independent_fit():
    """Features 9-19 are those of a weighted 4-harmonic fit at the reported period with
    t_ref = t[0]: amplitudes, ratios, phi_21, phi_31, the peak-to-peak of the series on
    200 phases of one cycle, 1 - chi2/chi2_const and chi2 / (n - 9). The errors are far
    above the noise (chi2_const < 1)."""
    rng = np.random.default_rng(23)
    n = 300
    t = np.sort(rng.uniform(0.0, 600.0, n))
    P = 0.5377
    x = TWO_PI * (t - t[0]) / P
    m = (16.0 + 0.3 * np.sin(x + 0.6) + 0.12 * np.sin(2 * x + 2.2) + 0.05 * np.sin(3 * x + 4.0)
         + rng.normal(0.0, 0.01, n))
    s = rng.uniform(4.0, 8.0, n)
    g = PeriodicFeatures()
    v = g(t, m, s)
    p = v[0]
    assert p == pytest.approx(P, rel=1e-4)
    c0, a, b, chi2, chi2_const = _wls(t, m, s, p, 4, t[0])
    amp = np.hypot(a, b)
    phi = np.arctan2(a, b)
    np.testing.assert_allclose(v[9:13], amp, rtol=1e-6, atol=1e-9)
    assert v[13] == pytest.approx(amp[1] / amp[0], rel=1e-6)
    assert v[14] == pytest.approx(amp[2] / amp[0], rel=1e-6)
    for k, i in ((2, 15), (3, 16)):
        d = np.angle(np.exp(1j * (v[i] - (phi[k - 1] - k * phi[0]))))
        assert abs(d) < 1e-6
    curve = _series(c0, a, b, np.arange(200) / 200)
    assert v[17] == pytest.approx(curve.max() - curve.min(), rel=1e-7)
    assert chi2_const < 1
    assert v[18] == pytest.approx(1 - chi2 / chi2_const, rel=1e-7)
    assert v[19] == pytest.approx(chi2 / (n - 9), rel=1e-6)


def test_ten_points_one_degree_of_freedom():
    """10 points (the default minimum): the 4-harmonic fit has one degree of freedom, its
    reduced chi2 is chi2 / 1; the doubled-period features need 18 points and are NaN."""
    rng = np.random.default_rng(31)
    t = np.sort(rng.uniform(0.0, 60.0, 10))
    m = 12.0 + 0.4 * np.sin(TWO_PI * t / 2.9) + rng.normal(0.0, 0.05, 10)
    s = np.full(10, 0.05)
    v = PeriodicFeatures()(t, m, s)
    *_, chi2, _ = _wls(t, m, s, v[0], 4, t[0])
    assert np.isfinite(v[9:20]).all()
    assert v[19] == pytest.approx(chi2, rel=1e-5)
    assert np.isnan(v[22:26]).all()


def test_too_short_for_the_fourier_fit():
    """8 points with min_points = 5: the search and the folded lengths are defined, the
    4-harmonic fit (9 parameters) and the doubled-period test are not."""
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 30.0, 8))
    m = 12.0 + 0.4 * np.sin(TWO_PI * t / 1.9) + rng.normal(0.0, 0.05, 8)
    s = np.full(8, 0.05)
    v = PeriodicFeatures(PeriodSearchConfig(min_points=5))(t, m, s)
    assert np.isfinite(v[[0, 5, 6, 7, 8, 20, 21]]).all()
    assert np.isnan(v[9:20]).all() and np.isnan(v[22:26]).all()
    p = v[0]
    assert v[20] == pytest.approx(_lafler_kinman(np.mod(t - t[0], p) / p, m), rel=1e-9)
    assert v[21] == pytest.approx(_lafler_kinman(np.mod(t - t[0], 2 * p) / (2 * p), m),
                                  rel=1e-9)


def test_folded_lafler_kinman_with_equal_phases():
    """A 6-hour cadence folded at 1 day: ten points at each of four phases. Equal phases
    stay in time order, and light-curve is told the phases are sorted (its own check
    rejects equal neighbours)."""
    rng = np.random.default_rng(0)
    t = 100.0 + 0.25 * np.arange(40)
    m = rng.normal(14.0, 0.3, 40)
    g = PeriodicFeatures()
    got = g._folded_lk(t, m, np.full(40, 0.1), 1.0)
    assert got == pytest.approx(_lafler_kinman(np.mod(t - t[0], 1.0), m), rel=1e-12)
