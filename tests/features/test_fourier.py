"""Fourier decomposition and the doubled-period test against constructed light curves."""

from __future__ import annotations

import numpy as np
import pytest

from features.fourier import double_period_test, fourier_fit
from tests.features.synthetic import crts_times, eclipsing, sinusoid


@pytest.mark.parametrize("t_ref", [0.0, 53512.3])
def test_recovers_constructed_series(rng, t_ref):
    P, amps, phis = 0.5671, np.array([0.4, 0.15, 0.07]), np.array([0.3, 2.0, 4.5])
    t = crts_times(rng)
    x = 2 * np.pi * (t - 53500.0) / P
    m = 15.0 + sum(a * np.sin(k * x + p)
                   for k, (a, p) in enumerate(zip(amps, phis, strict=True), start=1))
    fit = fourier_fit(t, m, None, P, n_harmonics=4, t_ref=t_ref)
    np.testing.assert_allclose(fit.amplitudes, [*amps, 0.0], atol=1e-9)
    assert fit.offset == pytest.approx(15.0, abs=1e-9)
    assert fit.ratio(2) == pytest.approx(0.15 / 0.4, abs=1e-9)
    assert fit.ratio(3) == pytest.approx(0.07 / 0.4, abs=1e-9)
    # phi_k1 = phi_k - k phi_1 (mod 2 pi) does not depend on the time origin
    assert fit.phase_difference(2) == pytest.approx(np.mod(2.0 - 2 * 0.3, 2 * np.pi), abs=1e-8)
    assert fit.phase_difference(3) == pytest.approx(np.mod(4.5 - 3 * 0.3, 2 * np.pi), abs=1e-8)
    np.testing.assert_allclose(fit.model(t), m, atol=1e-9)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-12)


def test_weighted_fit_matches_normal_equations(rng):
    t = crts_times(rng, n_visits=30)
    m, _ = sinusoid(t, 1.234, 0.2, rng, noise=0.1)
    sigma = rng.uniform(0.03, 0.3, t.size)
    fit = fourier_fit(t, m, sigma, 1.234, n_harmonics=2, t_ref=t[0])
    # independent: solve the weighted normal equations with numpy.linalg.solve
    x = 2 * np.pi * (t - t[0]) / 1.234
    X = np.column_stack([np.ones_like(t), np.cos(x), np.sin(x), np.cos(2 * x), np.sin(2 * x)])
    W = np.diag(1 / sigma**2)
    coef = np.linalg.solve(X.T @ W @ X, X.T @ W @ m)
    np.testing.assert_allclose(fit.amplitudes, np.hypot(coef[1::2], coef[2::2]), rtol=1e-9)
    assert fit.chi2 == pytest.approx(float(np.sum((m - X @ coef) ** 2 / sigma**2)), rel=1e-9)


def test_undefined_fits():
    t = np.arange(8.0)
    assert fourier_fit(t, np.sin(t), None, 1.3, n_harmonics=4) is None  # 8 <= 2*4+1
    assert fourier_fit(np.arange(30.0), np.sin(np.arange(30.0)), None, np.nan) is None
    # all points at one phase: rank-deficient design
    t = np.arange(30.0) * 2.0
    assert fourier_fit(t, np.ones(30), None, 2.0, n_harmonics=1) is None


def test_double_period_separates_eclipsing_binary_from_sinusoid(rng):
    t = crts_times(rng)
    P = 0.8123
    m_eb, s_eb = eclipsing(t, P, 0.8, 0.3, rng)
    dbl = double_period_test(t, m_eb, s_eb, P / 2)  # the half period a periodogram reports
    assert dbl.f_odd > 50
    assert dbl.min_diff == pytest.approx(0.5, abs=0.08)
    assert dbl.odd_fraction > 0.3
    m_sin, s_sin = sinusoid(t, P, 0.3, rng, noise=0.02)
    ref = double_period_test(t, m_sin, s_sin, P)
    assert ref.f_odd < 5
    assert ref.min_diff < 0.02 and ref.odd_fraction < 0.1
