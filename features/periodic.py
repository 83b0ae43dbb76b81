"""Periodic features: best period, periodogram peaks, Fourier shape, doubled-period test,
the period of the residuals (prewhitening) and period ratios.

One group, because every value depends on the same period search: the
search (:mod:`features.period`) runs once per light curve, then the light
curve is decomposed at the best period (:mod:`features.fourier`) and at
twice that period, and light-curve's Lafler-Kinman string length is
evaluated on the curve folded at both.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureGroup
from .fourier import double_period_test, fourier_fit
from .period import PeriodSearchConfig, _search

__all__ = ["PeriodicFeatures"]

_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("period", "day", "best period of the generalised Lomb-Scargle search (day aliases skipped)"),
    ("period_power", "1", "GLS power at the best period (fraction of variance explained)"),
    ("period_log10_fap", "dex", "log10 false-alarm probability of the best peak (Baluev 2008)"),
    ("period_snr", "1", "(power - mean) / std of the best peak against the coarse spectrum"),
    ("period_n_alias_rejected", "count", "stronger peaks skipped as day aliases"),
    ("peak2_period", "day", "period of the second-highest distinct periodogram peak"),
    ("peak2_power", "1", "GLS power of the second peak"),
    ("peak3_period", "day", "period of the third-highest distinct periodogram peak"),
    ("peak3_power", "1", "GLS power of the third peak"),
    ("fourier_amp1", "mag", "amplitude A1 of the 4-harmonic sine series at the period"),
    ("fourier_amp2", "mag", "amplitude A2"),
    ("fourier_amp3", "mag", "amplitude A3"),
    ("fourier_amp4", "mag", "amplitude A4"),
    ("fourier_r21", "1", "A2 / A1"),
    ("fourier_r31", "1", "A3 / A1"),
    ("fourier_phi21", "rad", "phi2 - 2 phi1 mod 2 pi (sine series)"),
    ("fourier_phi31", "rad", "phi3 - 3 phi1 mod 2 pi (sine series)"),
    ("fourier_ptp", "mag", "peak-to-peak amplitude of the fitted series"),
    ("fourier_explained", "fraction", "1 - chi2(series) / chi2(constant)"),
    ("fourier_reduced_chi2", "1", "chi2 of the series fit per degree of freedom"),
    ("folded_lk", "1", "Lafler-Kinman string length of the curve folded at the period"),
    ("double_folded_lk", "1", "Lafler-Kinman string length folded at twice the period"),
    ("double_f_odd", "1", "F statistic of the odd harmonics of an 8-harmonic fit at 2P"),
    ("double_odd_fraction", "fraction", "odd-harmonic share of the amplitude of the 2P fit"),
    ("double_min_diff", "mag", "depth difference of the two minima of the 2P fit"),
    ("double_max_diff", "mag", "height difference of the two maxima of the 2P fit"),
    # 1.1: a second period after the first is removed, and period ratios (a ratio is a
    # split no tree can make from the two periods alone: RRd pulsate in two modes with
    # P1/P0 ~ 0.745, eclipsing binaries show P/2 and P)
    ("prewhite_period", "day", "best period of the residuals of the 4-harmonic fit at the "
     "period (the same search)"),
    ("prewhite_power", "1", "GLS power of the residuals at that period"),
    ("prewhite_period_ratio", "1", "shorter / longer of period and prewhite_period"),
    ("peak2_period_ratio", "1", "shorter / longer of period and peak2_period"),
)


def _ratio(a: float, b: float) -> float:
    """Shorter / longer of two periods, in (0, 1]; NaN if either is missing."""
    if not (np.isfinite(a) and np.isfinite(b)) or min(a, b) <= 0:
        return np.nan
    return float(min(a, b) / max(a, b))


class PeriodicFeatures(FeatureGroup):
    """Period, periodogram peaks, Fourier decomposition and doubled-period features.

    Parameters
    ----------
    config : PeriodSearchConfig, optional
        Period-search settings (default: 0.05 d to 1000 d, see there).
    n_harmonics : int, default=4
        Harmonics of the Fourier decomposition (``2 * n_harmonics`` at 2P).
        Names ``fourier_amp1..4`` assume 4.

    Notes
    -----
    Fewer than ``config.min_points`` points, or a flat light curve, give NaN
    for every feature; values that need more points than a fit has
    parameters (the 8-harmonic 2P fit needs 18) are NaN individually.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> t = np.sort(rng.uniform(0.0, 2000.0, 300))
    >>> m = 14.0 + 0.5 * np.sin(2 * np.pi * t / 0.3) + rng.normal(0.0, 0.05, 300)
    >>> g = PeriodicFeatures()
    >>> v = dict(zip(g.names, g(t, m, np.full(300, 0.05))))
    >>> round(float(v["period"]), 4), round(float(v["fourier_amp1"]), 1)
    (0.3, 0.5)
    """

    def __init__(self, config: PeriodSearchConfig | None = None, n_harmonics: int = 4) -> None:
        import light_curve as lc

        self.config = config
        self.n_harmonics = n_harmonics
        if n_harmonics != 4:
            raise ValueError("PeriodicFeatures names assume n_harmonics=4")
        self._config = config or PeriodSearchConfig()
        self.min_points = self._config.min_points
        self.names = tuple(f[0] for f in _FEATURES)
        self.units = tuple(f[1] for f in _FEATURES)
        self.descriptions = tuple(f[2] for f in _FEATURES)
        self._lk = lc.LaflerKinmanStringLength()

    def _folded_lk(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray,
                   period: float) -> float:
        phase = np.mod(t - t[0], period) / period
        order = np.argsort(phase, kind="stable")
        return float(self._lk(phase[order], m[order], sigma[order], sorted=True, check=False,
                              fill_value=np.nan)[0])

    def _compute(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        out = np.full(self.size, np.nan)
        res = _search([(t, m, sigma)], self._config)
        if not np.isfinite(res.frequency):
            return out
        p = res.period
        out[0:5] = (p, res.power, res.log10_fap, res.snr, res.n_alias_rejected)
        # further distinct, non-alias peaks
        others: list[tuple[float, float]] = []
        taken = [res.frequency]
        tol = 1.0 / res.baseline
        for f, pw, alias in zip(res.candidate_frequencies, res.candidate_powers,
                                res.candidate_is_alias, strict=True):
            if alias or min(abs(f - x) for x in taken) < tol:
                continue
            others.append((1.0 / f, pw))
            taken.append(f)
            if len(others) == 2:
                break
        for i, (pp, pw) in enumerate(others):
            out[5 + 2 * i: 7 + 2 * i] = (pp, pw)

        fit = fourier_fit(t, m, sigma, p, self.n_harmonics)
        if fit is not None:
            out[9:13] = fit.amplitudes
            out[13] = fit.ratio(2)
            out[14] = fit.ratio(3)
            out[15] = fit.phase_difference(2)
            out[16] = fit.phase_difference(3)
            curve = fit.model(fit.t_ref + p * np.linspace(0.0, 1.0, 200, endpoint=False))
            out[17] = float(curve.max() - curve.min())
            out[18] = 1.0 - fit.chi2 / fit.chi2_const if fit.chi2_const > 0 else np.nan
            out[19] = fit.chi2 / fit.dof if fit.dof > 0 else np.nan
        out[20] = self._folded_lk(t, m, sigma, p)
        out[21] = self._folded_lk(t, m, sigma, 2.0 * p)
        dbl = double_period_test(t, m, sigma, p, self.n_harmonics, fit_p=fit)
        if dbl is not None:
            out[22:26] = (dbl.f_odd, dbl.odd_fraction, dbl.min_diff, dbl.max_diff)
        if fit is not None:
            res2 = _search([(t, m - fit.model(t), sigma)], self._config)
            if np.isfinite(res2.frequency):
                out[26:29] = (res2.period, res2.power, _ratio(p, res2.period))
        out[29] = _ratio(p, out[5])
        return out
