"""Fourier decomposition of a light curve at a given period.

The model is the truncated sine series customary for pulsating stars
(Simon & Lee 1981, ApJ 248, 291)::

    m(t) = A_0 + sum_{k=1..H} A_k sin(k w (t - t_ref) + phi_k),   w = 2 pi / P

fitted by weighted linear least squares (weights ``1/sigma^2``). The shape
parameters ``R_k1 = A_k / A_1`` and ``phi_k1 = phi_k - k phi_1`` (mod 2 pi) do
not depend on ``t_ref``.

For eclipsing binaries a Lomb-Scargle search usually returns half the
orbital period. :func:`double_period_test` fits the light curve at ``2P``
with ``2H`` harmonics, which contains the ``P`` model, and measures what the
odd harmonics (different depths of the two minima or heights of the two
maxima) add: an F statistic and the depth differences of the fitted curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FourierFit", "fourier_fit", "DoublePeriodTest", "double_period_test"]

_TWO_PI = 2.0 * np.pi


@dataclass
class FourierFit:
    """A fitted sine series (see the module docstring).

    Attributes
    ----------
    period : float
        Period, days.
    t_ref : float
        Reference time of the phases, days (MJD).
    offset : float
        ``A_0``, mag.
    amplitudes : ndarray of shape (H,)
        ``A_k``, mag (>= 0).
    phases : ndarray of shape (H,)
        ``phi_k``, radians in [0, 2 pi).
    chi2 : float
        Weighted residual sum of squares ``sum((m - model)^2 / sigma^2)``.
    chi2_const : float
        The same for the constant (weighted-mean) model.
    n_points : int
        Points fitted.
    """

    period: float
    t_ref: float
    offset: float
    amplitudes: np.ndarray
    phases: np.ndarray
    chi2: float
    chi2_const: float
    n_points: int

    @property
    def n_harmonics(self) -> int:
        """Number of harmonics ``H``."""
        return int(self.amplitudes.size)

    @property
    def dof(self) -> int:
        """Residual degrees of freedom, ``n - (2H + 1)``."""
        return self.n_points - (2 * self.n_harmonics + 1)

    def ratio(self, k: int) -> float:
        """``R_k1 = A_k / A_1`` (1-based ``k``); NaN if ``A_1 = 0``."""
        a1 = self.amplitudes[0]
        return float(self.amplitudes[k - 1] / a1) if a1 > 0 else np.nan

    def phase_difference(self, k: int) -> float:
        """``phi_k1 = (phi_k - k phi_1) mod 2 pi``, radians (1-based ``k``)."""
        return float(np.mod(self.phases[k - 1] - k * self.phases[0], _TWO_PI))

    def model(self, t) -> np.ndarray:
        """Evaluate the series at times ``t`` (days); returns mag."""
        x = _TWO_PI * np.mod((np.asarray(t, dtype=np.float64) - self.t_ref) / self.period, 1.0)
        k = np.arange(1, self.n_harmonics + 1)
        return self.offset + np.sin(np.multiply.outer(x, k) + self.phases) @ self.amplitudes


def _design(t: np.ndarray, period: float, t_ref: float, n_harmonics: int) -> np.ndarray:
    x = _TWO_PI * np.mod((t - t_ref) / period, 1.0)
    kx = np.multiply.outer(x, np.arange(1, n_harmonics + 1))
    X = np.empty((t.size, 2 * n_harmonics + 1))
    X[:, 0] = 1.0
    X[:, 1::2] = np.cos(kx)
    X[:, 2::2] = np.sin(kx)
    return X


def fourier_fit(t, m, sigma, period: float, n_harmonics: int = 4,
                t_ref: float | None = None) -> FourierFit | None:
    """Fit a sine series of ``n_harmonics`` terms at ``period``.

    Parameters
    ----------
    t : array-like of shape (n,)
        Times, days.
    m : array-like of shape (n,)
        Magnitudes, mag.
    sigma : array-like of shape (n,) or None
        1-sigma errors, mag; None for equal weights.
    period : float
        Period, days.
    n_harmonics : int, default=4
        Number of harmonics ``H``.
    t_ref : float, optional
        Reference time of the phases, days; default ``t[0]``.

    Returns
    -------
    FourierFit or None
        None if the fit is undefined: ``n <= 2H + 1`` points, a non-finite or
        non-positive period, or a rank-deficient design (phases not covered).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0.0, 10.0, 200)
    >>> m = 12.0 + 0.4 * np.sin(2 * np.pi * t / 0.5 + 1.0) + 0.1 * np.sin(4 * np.pi * t / 0.5)
    >>> fit = fourier_fit(t, m, None, 0.5, n_harmonics=2, t_ref=0.0)
    >>> np.round(fit.amplitudes, 6).tolist(), round(fit.ratio(2), 6)
    ([0.4, 0.1], 0.25)
    """
    t = np.asarray(t, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    n = t.size
    if not (np.isfinite(period) and period > 0) or n <= 2 * n_harmonics + 1:
        return None
    w = np.ones(n) if sigma is None else 1.0 / np.asarray(sigma, dtype=np.float64) ** 2
    sw = np.sqrt(w)
    t_ref = float(t[0]) if t_ref is None else float(t_ref)
    X = _design(t, period, t_ref, n_harmonics)
    coef, _, rank, _ = np.linalg.lstsq(X * sw[:, None], m * sw, rcond=None)
    if rank < X.shape[1]:
        return None
    resid = m - X @ coef
    mean = np.dot(w, m) / w.sum()
    a = coef[1::2]  # cos terms = A sin(phi)
    b = coef[2::2]  # sin terms = A cos(phi)
    return FourierFit(
        period=float(period),
        t_ref=t_ref,
        offset=float(coef[0]),
        amplitudes=np.hypot(a, b),
        phases=np.mod(np.arctan2(a, b), _TWO_PI),
        chi2=float(np.dot(w, resid**2)),
        chi2_const=float(np.dot(w, (m - mean) ** 2)),
        n_points=n,
    )


@dataclass
class DoublePeriodTest:
    """What folding at twice the period adds (see :func:`double_period_test`).

    Attributes
    ----------
    f_odd : float
        F statistic of the odd harmonics of the ``2P`` fit
        (``((chi2_P - chi2_2P) / H) / (chi2_2P / dof_2P)``); about 1 when the
        period is right, large when the curve repeats only every ``2P``.
    odd_fraction : float
        ``sqrt(sum odd A_k^2 / sum A_k^2)`` of the ``2P`` fit, in [0, 1].
    min_diff : float
        Difference in depth of the two minima of the ``2P`` model (the
        deepest minimum and the faintest point half a cycle from it), mag >= 0.
    max_diff : float
        Difference of the two maxima (O'Connell effect), mag >= 0.
    """

    f_odd: float
    odd_fraction: float
    min_diff: float
    max_diff: float


def double_period_test(t, m, sigma, period: float, n_harmonics: int = 4,
                       fit_p: FourierFit | None = None) -> DoublePeriodTest | None:
    """Compare the fit at ``period`` with ``n_harmonics`` terms to ``2*period`` with twice as many.

    Parameters
    ----------
    t, m, sigma : array-like of shape (n,)
        Times (days), magnitudes and errors (mag); ``sigma`` may be None.
    period : float
        Period found by the search, days.
    n_harmonics : int, default=4
        Harmonics ``H`` at ``period`` (``2H`` at ``2 * period``).
    fit_p : FourierFit, optional
        The fit at ``period`` if already computed (same ``n_harmonics``).

    Returns
    -------
    DoublePeriodTest or None
        None when either fit is undefined.
    """
    if fit_p is None:
        fit_p = fourier_fit(t, m, sigma, period, n_harmonics)
    fit_2p = fourier_fit(t, m, sigma, 2.0 * period, 2 * n_harmonics)
    if fit_p is None or fit_2p is None or fit_2p.dof <= 0:
        return None
    if fit_2p.chi2 > 0:
        f_odd = ((fit_p.chi2 - fit_2p.chi2) / n_harmonics) / (fit_2p.chi2 / fit_2p.dof)
        f_odd = max(float(f_odd), 0.0)
    else:
        f_odd = np.nan
    amp = fit_2p.amplitudes
    total = float(np.sum(amp**2))
    odd_fraction = float(np.sqrt(np.sum(amp[0::2] ** 2) / total)) if total > 0 else np.nan
    phase = np.linspace(0.0, 2.0 * period, 400, endpoint=False) + fit_2p.t_ref
    curve = fit_2p.model(phase)
    half = 200
    i_min = int(np.argmax(curve))  # deepest minimum = faintest = largest magnitude
    i_max = int(np.argmin(curve))
    win = np.arange(-60, 61)  # +-0.15 of the 2P cycle around the opposite phase
    other_min = curve[(i_min + half + win) % 400].max()
    other_max = curve[(i_max + half + win) % 400].min()
    return DoublePeriodTest(
        f_odd=f_odd,
        odd_fraction=odd_fraction,
        min_diff=float(curve[i_min] - other_min),
        max_diff=float(other_max - curve[i_max]),
    )
