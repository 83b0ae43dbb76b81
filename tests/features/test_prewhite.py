"""The prewhitening features and period ratios (feature set 1.1), against independent fits.

A double-mode pulsator is built from two sinusoids with the RRd period ratio: the main period,
the residual period, its power and the ratios are recomputed here with numpy least squares
(a 4-harmonic series removed, then the fraction of the residuals' weighted variance that one
sinusoid with a free mean explains: the generalised Lomb-Scargle power of Zechmeister &
Kuerster 2009).
"""

from __future__ import annotations

import numpy as np
import pytest

from features.api import versions_compatible
from features.periodic import PeriodicFeatures

P0, P1 = 0.55, 0.55 * 0.745  # fundamental and first overtone (RRd); 0.5 d = 2/day is a day alias


def _double_mode(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 1500.0, n))
    sigma = np.full(n, 0.02)
    m = (15.0 + 0.30 * np.sin(2 * np.pi * t / P0) + 0.12 * np.sin(2 * np.pi * t / P1 + 1.0)
         + rng.normal(0.0, 0.02, n))
    return t, m, sigma


def _wls_residuals(t, m, sigma, period, n_harmonics=4):
    x = 2 * np.pi * t / period
    cols = [np.ones_like(t)]
    for k in range(1, n_harmonics + 1):
        cols += [np.sin(k * x), np.cos(k * x)]
    A = np.column_stack(cols) / sigma[:, None]
    coef, *_ = np.linalg.lstsq(A, m / sigma, rcond=None)
    return m - (A * sigma[:, None]) @ coef


def _gls_power(t, r, sigma, period):
    w = 1 / sigma**2
    mean = np.sum(w * r) / np.sum(w)
    chi2_0 = np.sum(w * (r - mean) ** 2)
    x = 2 * np.pi * t / period
    A = np.column_stack([np.ones_like(t), np.sin(x), np.cos(x)]) / sigma[:, None]
    coef, *_ = np.linalg.lstsq(A, r / sigma, rcond=None)
    chi2 = np.sum((r / sigma - A @ coef) ** 2)
    return 1 - chi2 / chi2_0


def test_double_mode_pulsator():
    t, m, sigma = _double_mode()
    g = PeriodicFeatures()
    v = dict(zip(g.names, g(t, m, sigma), strict=True))
    assert v["period"] == pytest.approx(P0, rel=1e-4)
    assert v["prewhite_period"] == pytest.approx(P1, rel=1e-4)
    assert v["prewhite_period_ratio"] == pytest.approx(v["prewhite_period"] / v["period"],
                                                        rel=1e-12)
    assert v["prewhite_period_ratio"] == pytest.approx(0.745, abs=1e-3)
    r = _wls_residuals(t, m, sigma, v["period"])
    assert v["prewhite_power"] == pytest.approx(_gls_power(t, r, sigma, v["prewhite_period"]),
                                                abs=1e-6)
    # most of what is left after the main mode is the overtone: 0.12^2/2 vs 0.02^2 of noise
    assert v["prewhite_power"] > 0.9
    ref = min(v["period"], v["peak2_period"]) / max(v["period"], v["peak2_period"])
    assert v["peak2_period_ratio"] == pytest.approx(ref, rel=1e-12)
    assert 0 < v["peak2_period_ratio"] <= 1


def test_single_mode_leaves_noise():
    """One sinusoid: the residual period explains only noise (small power)."""
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0.0, 1500.0, 400))
    sigma = np.full(400, 0.02)
    m = 15.0 + 0.3 * np.sin(2 * np.pi * t / P0) + rng.normal(0.0, 0.02, 400)
    v = dict(zip(PeriodicFeatures().names, PeriodicFeatures()(t, m, sigma), strict=True))
    assert v["period"] == pytest.approx(P0, rel=1e-4)
    r = _wls_residuals(t, m, sigma, v["period"])
    assert v["prewhite_power"] == pytest.approx(_gls_power(t, r, sigma, v["prewhite_period"]),
                                                abs=1e-6)
    assert v["prewhite_power"] < 0.2


def test_flat_light_curve_gives_nan():
    t = np.linspace(0.0, 100.0, 50)
    v = dict(zip(PeriodicFeatures().names,
                 PeriodicFeatures()(t, np.full(50, 15.0), np.full(50, 0.02)), strict=True))
    for name in ("prewhite_period", "prewhite_power", "prewhite_period_ratio",
                 "peak2_period_ratio"):
        assert np.isnan(v[name]), name


@pytest.mark.parametrize(("table", "model", "ok"), [
    ("1.1", "1.1", True), ("1.1", "1.0", True),  # a newer minor version only adds features
    ("1.0", "1.1", False), ("2.0", "1.1", False), ("1.2", "2.0", False),
    ("1.1+ab12cd34", "1.0+ab12cd34", True), ("1.1+ab12cd34", "1.0", False),
    ("1.1", "1.0+ab12cd34", False), ("odd", "odd", True), ("odd", "1.0", False),
])
def test_versions_compatible(table, model, ok):
    assert versions_compatible(table, model) is ok
