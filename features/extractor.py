"""Concatenation of feature groups into one group."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import FeatureGroup, check_lightcurve

__all__ = ["Extractor"]


class Extractor(FeatureGroup):
    """Several feature groups acting as one (as ``light_curve.Extractor`` does).

    Parameters
    ----------
    *groups : FeatureGroup
        Groups whose outputs are concatenated, in order. Names must be unique.

    Attributes
    ----------
    names, descriptions, units : tuple of str
        Concatenation over the groups.
    min_points : int
        Smallest ``min_points`` of the groups; each group still fills its own
        features when the light curve is shorter than its ``min_points``.

    Examples
    --------
    >>> from features.lightcurve import LightCurveFeatures
    >>> from features.periodic import PeriodicFeatures
    >>> ex = Extractor(LightCurveFeatures(), PeriodicFeatures())
    >>> ex.size == LightCurveFeatures().size + PeriodicFeatures().size
    True
    """

    def __init__(self, *groups: FeatureGroup) -> None:
        if not groups:
            raise ValueError("Extractor needs at least one feature group")
        self.groups = groups
        self.names = tuple(n for g in groups for n in g.names)
        self.descriptions = tuple(d for g in groups for d in g.descriptions)
        self.units = tuple(u for g in groups for u in g.units)
        dup = {n for n in self.names if self.names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names: {sorted(dup)}")
        self.min_points = min(g.min_points for g in groups)

    def compute_checked(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        return np.concatenate([g.compute_checked(t, m, sigma) for g in self.groups])

    def many(self, lcs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
             checked: bool = False) -> np.ndarray:
        """Features of many light curves, shape ``(len(lcs), size)``.

        Groups with a ``many`` method get the whole batch at once; the others
        are called per light curve.

        Parameters
        ----------
        lcs : sequence of (t, m, sigma)
            Light curves (times in days, magnitudes and errors in mag).
        checked : bool, default=False
            The light curves already went through
            :func:`features.base.check_lightcurve` (skip the check).
        """
        checked = list(lcs) if checked else [check_lightcurve(*lc) for lc in lcs]
        parts = []
        for g in self.groups:
            if hasattr(g, "many"):
                parts.append(g.many(checked))
            else:
                vals = np.full((len(checked), g.size), g.fill_value)
                for i, (t, m, s) in enumerate(checked):
                    vals[i] = g.compute_checked(t, m, s)
                parts.append(vals)
        return np.hstack(parts) if parts else np.empty((len(lcs), 0))
