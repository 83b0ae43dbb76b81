"""Statistical features computed by the light-curve package (Malanchev et al. 2021).

lcpipe does not re-implement these: :class:`LightCurveFeatures` wraps one
``light_curve.Extractor`` (compiled Rust) and only adds the group protocol
of :mod:`features.base` (names, units, NaN fill).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import FeatureGroup

__all__ = ["LightCurveFeatures", "default_lightcurve_features"]


def default_lightcurve_features() -> list[tuple[object, tuple[str, ...]]]:
    """The default light-curve features, each with the units of its outputs.

    Returns
    -------
    list of (light_curve feature, tuple of str)
        31 evaluators giving 38 values.
    """
    import light_curve as lc

    mag, none, frac, slope = "mag", "1", "fraction", "mag/day"
    return [
        (lc.Amplitude(), (mag,)),
        (lc.AndersonDarlingNormal(), (none,)),
        (lc.BeyondNStd(1.0), (frac,)),
        (lc.BeyondNStd(2.0), (frac,)),
        (lc.Cusum(), (none,)),
        (lc.Eta(), (none,)),
        (lc.EtaE(), (none,)),
        (lc.ExcessVariance(), (none,)),
        (lc.InterPercentileRange(0.25), (mag,)),
        (lc.InterPercentileRange(0.1), (mag,)),
        (lc.Kurtosis(), (none,)),
        (lc.LinearFit(), (slope, slope, none)),
        (lc.LinearTrend(), (slope, slope, mag)),
        (lc.MagnitudePercentageRatio(0.4, 0.05), (none,)),
        (lc.MagnitudePercentageRatio(0.2, 0.1), (none,)),
        (lc.MaximumSlope(), (slope,)),
        (lc.Mean(), (mag,)),
        (lc.Median(), (mag,)),
        (lc.MedianAbsoluteDeviation(), (mag,)),
        (lc.MedianBufferRangePercentage(0.1), (frac,)),
        (lc.MedianBufferRangePercentage(0.2), (frac,)),
        (lc.PercentAmplitude(), (mag,)),
        (lc.PercentDifferenceMagnitudePercentile(0.05), (none,)),
        (lc.PercentDifferenceMagnitudePercentile(0.1), (none,)),
        (lc.ReducedChi2(), (none,)),
        (lc.Skew(), (none,)),
        (lc.StandardDeviation(), (mag,)),
        (lc.StetsonK(), (none,)),
        (lc.WeightedMean(), (mag,)),
        (lc.OtsuSplit(), (mag, mag, mag, frac)),
        (lc.Roms(), (none,)),
    ]


class LightCurveFeatures(FeatureGroup):
    """Features evaluated by one ``light_curve.Extractor``.

    Parameters
    ----------
    features : sequence of (light_curve feature, units), optional
        Evaluators and the units of their outputs; default
        :func:`default_lightcurve_features`.

    Attributes
    ----------
    names, descriptions, units : tuple of str
        As light-curve names and describes them; units as given.
    extractor : light_curve.Extractor
        The compiled extractor called on each light curve.

    Notes
    -----
    light-curve's own periodogram is not part of this group: on a grid that
    reaches 0.05 d over an 8-year baseline it manages only tens of light
    curves per second, so :class:`features.periodic.PeriodicFeatures` does the
    period search (coarse grid then refinement) and reports the peaks.

    Examples
    --------
    >>> import numpy as np
    >>> g = LightCurveFeatures()
    >>> t = np.arange(20.0)
    >>> v = g(t, np.sin(t), np.full(20, 0.1))
    >>> v.shape == (g.size,), float(v[g.names.index("amplitude")]) <= 1.0
    (True, True)
    """

    min_points = 4

    def __init__(self, features: Sequence[tuple[object, Sequence[str]]] | None = None) -> None:
        import light_curve as lc

        self.features = features
        pairs = list(default_lightcurve_features() if features is None else features)
        self.extractor = lc.Extractor(*[f for f, _ in pairs])
        self.names = tuple(self.extractor.names)
        self.descriptions = tuple(self.extractor.descriptions)
        self.units = tuple(u for _, units in pairs for u in units)
        if len(self.units) != len(self.names):
            raise ValueError(f"{len(self.units)} units given for {len(self.names)} outputs")

    def _compute(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        return self.extractor(t, m, sigma, fill_value=np.nan, sorted=True, check=False)

    def many(self, lcs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """Features of many checked light curves.

        One light-curve call per light curve (light-curve's own ``many`` with
        ``n_jobs=1`` measured slower per light curve here) and one pass over
        the result to turn non-finite values into ``fill_value``.

        Parameters
        ----------
        lcs : sequence of (t, m, sigma)
            float64 arrays already passed through
            :func:`features.base.check_lightcurve`.

        Returns
        -------
        ndarray of shape (len(lcs), size)
        """
        out = np.full((len(lcs), self.size), self.fill_value)
        ex = self.extractor
        for i, (t, m, s) in enumerate(lcs):
            if t.size >= self.min_points:
                out[i] = ex(t, m, s, fill_value=np.nan, sorted=True, check=False)
        if not math.isfinite(out.sum()):
            out[~np.isfinite(out)] = self.fill_value
        return out
