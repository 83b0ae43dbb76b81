"""The feature-group protocol shared by every lcpipe feature group.

A feature group is a callable object with ``names``, ``descriptions``,
``units``, ``size``, ``fill_value`` and ``min_points``; calling it on one
light curve ``(t, m, sigma)`` returns a float64 vector of length ``size``.
Input handling lives here (as in light-curve's ``features/_base.py``):
arrays are converted to float64, checked to be finite with positive errors
and strictly increasing times (unsorted input is sorted), and a light curve
with fewer than ``min_points`` points gives ``fill_value`` everywhere.
Subclasses implement only ``_compute``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba as nb
import numpy as np

__all__ = ["FeatureGroup", "check_lightcurve"]


def check_lightcurve(t, m, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(t, m, sigma)`` as contiguous float64 arrays sorted by time.

    Parameters
    ----------
    t : array-like of shape (n,)
        Times, days.
    m : array-like of shape (n,)
        Magnitudes, mag.
    sigma : array-like of shape (n,) or None
        1-sigma errors, mag; None means 1 for every point.

    Returns
    -------
    tuple of ndarray

    Raises
    ------
    ValueError
        Different lengths, non-finite values, non-positive errors or repeated
        times (lcpipe never drops rows silently; clean them with
        :func:`pipeline.validate.clean_frame` first).
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    m = np.ascontiguousarray(m, dtype=np.float64)
    sigma = (np.ones_like(m) if sigma is None
             else np.ascontiguousarray(sigma, dtype=np.float64))
    if not (t.ndim == m.ndim == sigma.ndim == 1) or not (t.size == m.size == sigma.size):
        raise ValueError("t, m and sigma must be 1-d arrays of the same length")
    code = _scan(t, m, sigma)
    if code == 1:
        raise ValueError("t, m and sigma must be finite")
    if code == 2:
        raise ValueError("sigma must be positive")
    if code == 3:
        order = np.argsort(t, kind="stable")
        t, m, sigma = t[order], m[order], sigma[order]
        if np.diff(t).min() <= 0:
            raise ValueError("repeated times in one light curve")
    return t, m, sigma


@nb.njit(cache=True)
def _scan(t, m, sigma):
    """0: fine; 1: non-finite value; 2: sigma <= 0; 3: times not strictly increasing."""
    code = 0
    for i in range(t.size):
        if not (np.isfinite(t[i]) and np.isfinite(m[i]) and np.isfinite(sigma[i])):
            return 1
        if sigma[i] <= 0.0:
            return 2
        if i > 0 and t[i] <= t[i - 1]:
            code = 3
    return code


class FeatureGroup:
    """Base class of feature groups; see the module docstring.

    Subclasses set ``names``, ``descriptions`` and ``units`` (tuples of equal
    length) and ``min_points``, and implement ``_compute(t, m, sigma)`` for
    checked, time-sorted float64 arrays with at least ``min_points`` points.
    ``_compute`` returns a vector of length ``size`` and uses NaN for values
    it cannot define.
    """

    names: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    #: value used for features that cannot be computed
    fill_value: float = np.nan
    #: fewer points than this give ``fill_value`` for the whole group
    min_points: int = 1

    @property
    def size(self) -> int:
        """Number of features (length of the output vector)."""
        return len(self.names)

    def __call__(self, t, m, sigma=None) -> np.ndarray:
        """Features of one light curve.

        Parameters
        ----------
        t : array-like of shape (n,)
            Times, days (MJD).
        m : array-like of shape (n,)
            Magnitudes, mag.
        sigma : array-like of shape (n,), optional
            1-sigma errors, mag.

        Returns
        -------
        ndarray of shape (size,)
            float64; ``fill_value`` where undefined.
        """
        t, m, sigma = check_lightcurve(t, m, sigma)
        return self.compute_checked(t, m, sigma)

    def compute_checked(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """As ``__call__`` for input already passed through :func:`check_lightcurve`."""
        if t.size < self.min_points:
            return np.full(self.size, self.fill_value)
        out = np.asarray(self._compute(t, m, sigma), dtype=np.float64)
        if out.shape != (self.size,):
            raise RuntimeError(f"{type(self).__name__} returned {out.shape}, expected "
                               f"({self.size},)")
        if not math.isfinite(out.sum()):  # one reduction; NaN or inf somewhere
            out[~np.isfinite(out)] = self.fill_value
        return out

    def _compute(self, t: np.ndarray, m: np.ndarray, sigma: np.ndarray) -> Sequence[float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"
