"""Robust PCA: split a matrix into a low-rank and a sparse part, ``M = L + S``.

Two estimators share one scikit-learn style API:

:class:`AltProj`
    Non-convex alternating projections (Netrapalli et al. 2014,
    arXiv:1410.7660): stage-wise rank, hard thresholding of ``S``.
:class:`PCP`
    Principal component pursuit, ``min ||L||_* + lambda ||S||_1`` s.t.
    ``L + S = M``, by the inexact augmented Lagrange multiplier method
    (Lin, Chen & Ma 2010, arXiv:1009.5055) -- the convex reference.

``fit(M)`` sets ``low_rank_``, ``sparse_``, ``rank_``, ``n_iter_``,
``converged_`` (plus ``components_``, ``singular_values_`` and
``history_``). A fit that stops at ``max_iter`` warns with
:class:`sklearn.exceptions.ConvergenceWarning` and has ``converged_ = False``.
Neither estimator takes a full SVD of the matrix per iteration (see
:mod:`pipeline._rpca_impl`). The method, its deviations from the paper and
the numbers are in ``docs/rpca.md``.

Examples
--------
>>> import numpy as np
>>> from pipeline.rpca import AltProj
>>> rng = np.random.default_rng(0)
>>> L0 = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 40))
>>> S0 = np.zeros_like(L0)
>>> S0[rng.random(L0.shape) < 0.05] = 20.0
>>> est = AltProj(rank=3).fit(L0 + S0)
>>> est.rank_, est.converged_
(3, True)
>>> bool(np.linalg.norm(est.low_rank_ - L0) < 1e-5 * np.linalg.norm(L0))
True
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import validate_data

from . import _rpca_impl
from .errors import ConfigError, InputError

__all__ = ["AltProj", "PCP", "available_methods"]


class _InvalidMatrix(InputError, ValueError):
    """Matrix that cannot be decomposed (a ValueError too, as scikit-learn expects)."""


class _InvalidParameter(ConfigError, ValueError):
    """Bad estimator parameter (a ValueError too, as scikit-learn expects)."""


def available_methods() -> list[str]:
    """Names of the robust PCA methods: ``['altproj', 'pcp']``."""
    return _rpca_impl.available_methods()


def _check_number(name: str, value: Any, *, low: float, integer: bool = False,
                  none_ok: bool = False, strict: bool = False) -> None:
    if value is None and none_ok:
        return
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value > low if strict else value >= low
        ok = ok and np.isfinite(value)
    if not ok:
        what = "an integer" if integer else "a number"
        rel = ">" if strict else ">="
        extra = " or None" if none_ok else ""
        raise _InvalidParameter(f"{name} must be {what} {rel} {low}{extra}, got {value!r}")


class _BaseRPCA(BaseEstimator):
    """Shared fitting logic: validation, orientation, attributes, warnings."""

    def _check_params(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _solve(self, M: np.ndarray) -> _rpca_impl.RPCAResult:  # pragma: no cover
        raise NotImplementedError

    def fit(self, M: Any, y: Any = None) -> _BaseRPCA:
        """Decompose ``M`` into ``low_rank_ + sparse_`` (+ a small dense residual).

        Parameters
        ----------
        M : array-like of shape (n_samples, n_features)
            Matrix to decompose, e.g. one flattened dm-dt image per row.
            float32 input is decomposed in float32, anything else in float64.
            It is not modified.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        self

        Raises
        ------
        InputError (also ValueError)
            If ``M`` is not a finite, non-empty 2-D numeric array.
        ConfigError (also ValueError)
            If a parameter is out of range.
        """
        self._check_params()
        try:
            A = validate_data(self, M, dtype=[np.float64, np.float32], order="C",
                              ensure_all_finite=True, ensure_min_samples=1,
                              ensure_min_features=1)
        except ValueError as exc:
            raise _InvalidMatrix("M", str(exc)) from exc
        transposed = A.shape[0] < A.shape[1]
        work = np.ascontiguousarray(A.T) if transposed else A
        res = self._solve(work)
        if transposed:
            self.low_rank_ = res.low_rank.T
            self.sparse_ = res.sparse.T
            self.components_ = np.ascontiguousarray(res.left.T)
        else:
            self.low_rank_ = res.low_rank
            self.sparse_ = res.sparse
            self.components_ = res.components
        self.rank_ = int(res.rank)
        self.singular_values_ = res.singular_values
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        self.threshold_ = float(res.threshold)
        if res.column_thresholds is not None:
            self.column_thresholds_ = res.column_thresholds
        self.history_ = res.history
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__} stopped at max_iter={self.max_iter} before reaching "
                f"tol={self.tol}; the decomposition is approximate (converged_ is False)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self


class AltProj(_BaseRPCA):
    """Robust PCA by non-convex alternating projections (Netrapalli et al. 2014).

    Algorithm 1 of arXiv:1410.7660: stages of increasing target rank ``k``;
    each iteration takes the rank-``k`` projection ``L = P_k(M - S)`` and the
    hard thresholding ``S = H_zeta(M - L)`` with
    ``zeta = beta (sigma_{k+1}(M - S) + 2^-t sigma_k(M - S))``, ``t`` the
    iteration within the stage. Deviations from the paper are listed in
    ``docs/rpca.md``.

    Parameters
    ----------
    rank : int or None, default=None
        Target rank ``r``. ``None``: unknown; stages go on while
        ``sigma_{k+1}(M - S) > rank_tol * sigma_1(M - S)``. A rank ``>=
        min(n_samples, n_features)`` gives the exact answer ``L = M, S = 0``;
        ``rank=0`` gives ``L = 0, S = M``.
    beta : float or None, default=None
        Thresholding parameter. ``None``: measured every iteration as
        ``max|L_ij| / sigma_1(L)`` of the current iterate (the paper uses
        ``mu^2 r / sqrt(mn)`` from an assumed incoherence ``mu``).
    tol : float, default=1e-7
        The last stage has converged when ``||M - L - S||_F <= tol ||M||_F``
        (exact split), or ``||L_t - L_{t-1}||_F <= tol ||L_t||_F`` once the
        threshold has reached its floor ``beta sigma_{k+1}``, or -- with that
        floor fixed -- when the objective ``||M - L - S||_F^2 + zeta^2
        ||S||_0`` decreases by less than ``tol`` relative (noisy data).
    max_iter : int, default=100
        Maximum number of iterations over all stages.
    rank_tol : float, default=1e-3
        Relative singular value below which the rank is final (``rank=None``).
    rank_ratio : float, default=0.5
        A stage raises the rank from ``k`` to take in every singular value
        ``>= rank_ratio * sigma_{k+1}(M - S)``; ``1.0`` is the paper's one
        rank per stage.
    oversample : int, default=4
        Extra columns of the warm-started subspace iteration.
    noise_floor : float, default=3.0
        The threshold of each column never goes below ``noise_floor * 1.4826 *
        median|M - L|`` over that column (a robust standard deviation of its
        dense residual), so that dense noise is not declared sparse; ``0`` is
        the paper's noiseless rule. (Columns of the tall orientation: rows when
        ``M`` has more columns than rows.)

    Attributes
    ----------
    low_rank_ : ndarray of shape (n_samples, n_features)
        Low-rank part ``L``.
    sparse_ : ndarray of shape (n_samples, n_features)
        Sparse part ``S`` (exact zeros off its support).
    rank_ : int
        Rank of ``low_rank_``.
    components_ : ndarray of shape (rank_, n_features)
        Orthonormal rows spanning the row space of ``low_rank_``.
    singular_values_ : ndarray of shape (rank_,)
        Singular values of ``low_rank_``.
    threshold_ : float
        Last common hard threshold ``zeta`` (before the noise floors).
    column_thresholds_ : ndarray
        Last threshold of each column, ``max(zeta, noise floor)`` (of each row
        when ``M`` has more columns than rows).
    n_iter_ : int
        Iterations run (one truncated SVD each).
    converged_ : bool
        Whether ``tol`` was reached before ``max_iter``.
    history_ : dict of lists
        Per iteration: ``rank``, ``threshold``, ``rel_change`` (of ``L``),
        ``rel_residual`` (``||M - L - S||_F / ||M||_F``) and ``objective``.
    n_features_in_ : int
        Number of columns of ``M``.

    See Also
    --------
    PCP : the convex reference.
    """

    def __init__(self, rank: int | None = None, *, beta: float | None = None,
                 tol: float = 1e-7, max_iter: int = 100, rank_tol: float = 1e-3,
                 rank_ratio: float = 0.5, oversample: int = 4,
                 noise_floor: float = 3.0) -> None:
        self.rank = rank
        self.beta = beta
        self.tol = tol
        self.max_iter = max_iter
        self.rank_tol = rank_tol
        self.rank_ratio = rank_ratio
        self.oversample = oversample
        self.noise_floor = noise_floor

    def _check_params(self) -> None:
        _check_number("rank", self.rank, low=0, integer=True, none_ok=True)
        _check_number("beta", self.beta, low=0, none_ok=True, strict=True)
        _check_number("tol", self.tol, low=0, strict=True)
        _check_number("max_iter", self.max_iter, low=1, integer=True)
        _check_number("rank_tol", self.rank_tol, low=0)
        _check_number("rank_ratio", self.rank_ratio, low=0, strict=True)
        if self.rank_ratio > 1:
            raise _InvalidParameter(f"rank_ratio must be <= 1, got {self.rank_ratio!r}")
        _check_number("oversample", self.oversample, low=1, integer=True)
        _check_number("noise_floor", self.noise_floor, low=0)

    def _solve(self, M: np.ndarray) -> _rpca_impl.RPCAResult:
        return _rpca_impl.altproj(
            M, None if self.rank is None else int(self.rank), beta=self.beta, tol=self.tol,
            max_iter=int(self.max_iter), rank_tol=self.rank_tol, rank_ratio=self.rank_ratio,
            oversample=int(self.oversample), noise_floor=float(self.noise_floor))


class PCP(_BaseRPCA):
    """Principal component pursuit by the inexact ALM method (Lin, Chen & Ma 2010).

    Solves ``min ||L||_* + lam ||S||_1`` subject to ``L + S = M``, the convex
    robust PCA of Candes et al. (2011), with Algorithm 5 of arXiv:1009.5055
    and the authors' default continuation (``mu_0 = 1.25 / ||M||_2``, ``mu``
    multiplied by ``rho`` each iteration up to ``1e7 mu_0``). Each singular
    value thresholding uses the eigen-decomposition of the small Gram matrix.

    Parameters
    ----------
    lam : float or None, default=None
        Weight of ``||S||_1``; ``None`` is ``1 / sqrt(max(n_samples, n_features))``.
    mu : float or None, default=None
        Initial penalty; ``None`` is ``1.25 / ||M||_2``.
    rho : float, default=1.5
        Growth factor of ``mu`` per iteration (> 1).
    tol : float, default=1e-7
        Converged when ``||M - L - S||_F <= tol ||M||_F``.
    max_iter : int, default=500
        Maximum number of iterations.

    Attributes
    ----------
    low_rank_, sparse_, rank_, components_, singular_values_ : ndarray or int
        As in :class:`AltProj`.
    n_iter_, converged_, history_, n_features_in_ : int, bool, dict, int
        As in :class:`AltProj`.
    threshold_ : float
        Last soft threshold ``lam / mu`` applied to ``S``.
    lambda_ : float
        The ``lam`` used.

    See Also
    --------
    AltProj : the faster non-convex method.
    """

    def __init__(self, lam: float | None = None, *, mu: float | None = None, rho: float = 1.5,
                 tol: float = 1e-7, max_iter: int = 500) -> None:
        self.lam = lam
        self.mu = mu
        self.rho = rho
        self.tol = tol
        self.max_iter = max_iter

    def _check_params(self) -> None:
        _check_number("lam", self.lam, low=0, none_ok=True, strict=True)
        _check_number("mu", self.mu, low=0, none_ok=True, strict=True)
        _check_number("rho", self.rho, low=1, strict=True)
        _check_number("tol", self.tol, low=0, strict=True)
        _check_number("max_iter", self.max_iter, low=1, integer=True)

    def _solve(self, M: np.ndarray) -> _rpca_impl.RPCAResult:
        m, n = M.shape
        self.lambda_ = 1.0 / np.sqrt(max(m, n)) if self.lam is None else float(self.lam)
        return _rpca_impl.pcp_ialm(M, lam=self.lambda_, mu=self.mu, rho=self.rho,
                                   tol=self.tol, max_iter=int(self.max_iter))
