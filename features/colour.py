"""Multi-band features: joint period and colours.

These groups take all bands of one object at once, as a mapping
``band -> (t, m, sigma)``, instead of one light curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .base import check_lightcurve
from .fourier import fourier_fit
from .period import PeriodSearchConfig, _search

__all__ = ["ColourFeatures", "MultiBandPeriodFeatures"]

Series = tuple[np.ndarray, np.ndarray, np.ndarray]


class ColourFeatures:
    """Differences of median magnitudes between bands.

    Parameters
    ----------
    bands : sequence of str
        Band order; one feature ``"{a}-{b}"`` = median(m_a) - median(m_b), in
        mag, for every pair ``a`` before ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> g = ColourFeatures(["g", "r"])
    >>> t = np.arange(5.0)
    >>> g({"g": (t, np.full(5, 15.5), None), "r": (t, np.full(5, 15.0), None)}).tolist()
    [0.5]
    """

    fill_value = np.nan
    min_points = 1

    def __init__(self, bands: Sequence[str]) -> None:
        self.bands = tuple(bands)
        pairs = [(a, b) for i, a in enumerate(self.bands) for b in self.bands[i + 1:]]
        self._pairs = pairs
        self.names = tuple(f"{a}-{b}" for a, b in pairs)
        self.units = ("mag",) * len(pairs)
        self.descriptions = tuple(f"median {a} magnitude minus median {b} magnitude"
                                  for a, b in pairs)

    @property
    def size(self) -> int:
        """Number of features."""
        return len(self.names)

    def from_medians(self, medians: Mapping[str, float]) -> np.ndarray:
        """Colours from per-band median magnitudes (missing band -> NaN)."""
        return np.array([medians.get(a, np.nan) - medians.get(b, np.nan)
                         for a, b in self._pairs], dtype=np.float64)

    def __call__(self, series: Mapping[str, Series]) -> np.ndarray:
        """Colours of one object; ``series`` maps band -> (t, m, sigma)."""
        med = {b: float(np.median(s[1])) for b, s in series.items() if len(s[1]) > 0}
        return self.from_medians(med)


class MultiBandPeriodFeatures:
    """One period from all bands jointly, and each band's amplitude at it.

    The joint power is the chi-square weighted mean of per-band generalised
    Lomb-Scargle powers (see :mod:`features.period`).

    Parameters
    ----------
    bands : sequence of str
        Band order of the ``amp_{band}`` features.
    config : PeriodSearchConfig, optional
        Search settings.
    """

    fill_value = np.nan

    def __init__(self, bands: Sequence[str], config: PeriodSearchConfig | None = None) -> None:
        self.bands = tuple(bands)
        self.config = config
        self._config = config or PeriodSearchConfig()
        self.min_points = self._config.min_points
        base = [
            ("period", "day", "best period of the joint multi-band GLS search"),
            ("period_power", "1", "joint GLS power (chi2-weighted mean over bands)"),
            ("period_log10_fap", "dex", "log10 false-alarm probability of the joint peak"),
            ("period_snr", "1", "(power - mean) / std of the joint peak"),
            ("n_bands", "count", "bands with at least 3 points"),
        ]
        base += [(f"amp_{b}", "mag", f"amplitude of a sinusoid at the joint period in {b}")
                 for b in self.bands]
        self.names = tuple(x[0] for x in base)
        self.units = tuple(x[1] for x in base)
        self.descriptions = tuple(x[2] for x in base)

    @property
    def size(self) -> int:
        """Number of features."""
        return len(self.names)

    def __call__(self, series: Mapping[str, Series]) -> np.ndarray:
        """Features of one object; ``series`` maps band -> (t, m, sigma)."""
        checked = {b: check_lightcurve(*s) for b, s in series.items()}
        return self.compute_checked(checked)

    def compute_checked(self, series: Mapping[str, Series]) -> np.ndarray:
        """As ``__call__`` for series already passed through ``check_lightcurve``."""
        out = np.full(self.size, np.nan)
        used = {b: s for b, s in series.items() if s[0].size >= 3}
        out[4] = len(used)
        res = _search(list(used.values()), self._config)
        if not np.isfinite(res.frequency):
            return out
        out[0:4] = (res.period, res.power, res.log10_fap, res.snr)
        for i, b in enumerate(self.bands):
            if b in used:
                fit = fourier_fit(*used[b], res.period, n_harmonics=1)
                if fit is not None:
                    out[5 + i] = fit.amplitudes[0]
        out[~np.isfinite(out)] = np.nan
        return out
