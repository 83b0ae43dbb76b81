"""The Fourier entries of the feature vector against the series they describe (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from features.periodic import PeriodicFeatures


def test_fourier_features_are_the_constructed_series():
    """m(t) = 14 + sum_k A_k sin(2 pi k (t - t0) / P + phi_k), noise-free, well sampled:
    amplitudes, ratios and the phase differences phi_k1 = phi_k - k phi_1 (mod 2 pi) of the
    feature vector are the constructed ones; the fitted curve's peak-to-peak is the
    series' own."""
    rng = np.random.default_rng(11)
    P, A, phi = 0.37, (0.5, 0.2, 0.1, 0.05), (0.3, 2.0, -1.2, 0.7)
    t = np.sort(rng.uniform(0.0, 900.0, 700))
    t0 = t[0]

    def series(x):
        return 14.0 + sum(a * np.sin(2 * np.pi * (k + 1) * (x - t0) / P + p)
                          for k, (a, p) in enumerate(zip(A, phi, strict=True)))

    m = series(t)
    g = PeriodicFeatures()
    v = dict(zip(g.names, g(t, m, np.full(len(t), 0.01)), strict=True))
    assert v["period"] == pytest.approx(P, rel=1e-5)
    for k in range(4):
        assert v[f"fourier_amp{k + 1}"] == pytest.approx(A[k], abs=2e-3)
    assert v["fourier_r21"] == pytest.approx(A[1] / A[0], abs=5e-3)
    assert v["fourier_r31"] == pytest.approx(A[2] / A[0], abs=5e-3)
    for k, name in ((2, "fourier_phi21"), (3, "fourier_phi31")):
        want = np.mod(phi[k - 1] - k * phi[0], 2 * np.pi)
        got = v[name]
        assert 0.0 <= got < 2 * np.pi
        # compare on the circle (a value near 0 may come out near 2 pi)
        assert abs(np.angle(np.exp(1j * (got - want)))) < 0.02, (name, got, want)
    grid = series(t0 + P * np.linspace(0.0, 1.0, 20001))
    assert v["fourier_ptp"] == pytest.approx(grid.max() - grid.min(), abs=5e-3)
    assert v["fourier_explained"] == pytest.approx(1.0, abs=1e-4)
