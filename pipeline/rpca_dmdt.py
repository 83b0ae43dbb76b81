"""Robust PCA of dm-dt image stacks: survey background, class backgrounds, individual part.

The "video surveillance" reading of a stack of dm-dt images (Mahabal et al.
2017): each flattened image is ``x = b + c_i + s + e`` with

``b``
    the low-rank part of the whole stack -- what every light curve of the
    survey shares through its cadence and photometric noise;
``c_i``
    the low-rank part of the images of class ``i`` once ``b`` is removed;
``s``
    a sparse part specific to the object;
``e``
    a small dense residual.

:class:`DmDtRPCA` fits ``b`` (one robust PCA of all images) and every
``c_i`` (one robust PCA per class of ``x - b``) and turns any image into
features: its coefficients on ``b``'s subspace, and for every class its
coefficients on that class's subspace, the reconstruction error and the
sparse energy ``||s||_1``. New images are projected robustly (least squares
with hard-thresholded outliers, the threshold learnt in training).
:class:`NearestSubspaceClassifier` assigns each image to the class whose
subspace reconstructs it best. :func:`rpca_dmdt_file` runs the decomposition
of a dm-dt Parquet file (``lcpipe rpca``). The output schema is documented in
``docs/rpca.md``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._version import __version__
from .errors import ConfigError, InputError
from .rpca import PCP, AltProj, _InvalidMatrix, _InvalidParameter

__all__ = [
    "DmDtRPCA",
    "NearestSubspaceClassifier",
    "rpca_dmdt_file",
    "save_rpca",
    "load_rpca",
    "write_rpca_templates",
    "rpca_feature_pipeline",
    "RPCA_FORMAT",
    "METADATA_KEY",
]

#: Format tag of the files written by :func:`rpca_dmdt_file` (bump on schema change).
RPCA_FORMAT = "lcpipe-rpca/1"
#: Parquet file-metadata key holding the format tag and the settings (JSON).
METADATA_KEY = "lcpipe.rpca"
_METHODS = ("altproj", "pcp")
#: pixel transforms applied before the decomposition
PIXEL_TRANSFORMS = ("sqrt", "none")


def _flatten(X: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, ...) images -> (N, d) rows and the image shape."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise _InvalidMatrix("images", "sparse input is not supported: pass a dense array")
    arr = np.asarray(X)
    if arr.ndim < 2:
        raise _InvalidMatrix("images", f"need an (N, ...) stack of images, got shape "
                             f"{arr.shape}: Reshape your data")
    return arr.reshape(arr.shape[0], -1), tuple(arr.shape[1:])


def _check_labels(y: Any, n: int) -> np.ndarray:
    """Class labels as a 1-D array (scikit-learn rules: no continuous, NaN or inf)."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise _InvalidMatrix("labels", "requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise _InvalidMatrix("labels", "Input y contains NaN or infinity")
    check_classification_targets(y)
    if len(y) != n:
        raise _InvalidMatrix("labels", f"need one label per image ({n}), got {len(y)}")
    return y


def _apply_transform(A: np.ndarray, how: str) -> np.ndarray:
    """Pixel transform: ``sqrt`` stabilises the variance of count-like pixels."""
    if how == "sqrt":
        if np.any(A < 0):
            raise _InvalidMatrix("images", "pixel_transform='sqrt' needs non-negative pixels")
        return np.sqrt(A)
    return A


def _robust_project(
    R: np.ndarray, V: np.ndarray, zeta: float, n_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit rows of ``R`` as ``C @ V + S + E`` with ``S`` hard-thresholded at ``zeta``.

    Alternates least squares on the orthonormal rows ``V`` and ``S = H_zeta(R - C V)``
    (at most ``n_iter`` times; ``zeta = inf`` is plain least squares).

    Returns
    -------
    C : ndarray (N, r)
        Coefficients.
    S : ndarray (N, d)
        Sparse part.
    E : ndarray (N, d)
        Dense residual ``R - C V - S``.
    """
    S = np.zeros_like(R)
    if np.isfinite(zeta):
        # a fixed number of rounds, so that each row's result is independent of the others
        for _ in range(max(1, n_iter)):
            C = (R - S) @ V.T
            E = R - C @ V
            S = np.where(np.abs(E) > zeta, E, 0.0)
    C = (R - S) @ V.T
    return C, S, R - C @ V - S


def _projection_threshold(D: np.ndarray, S: np.ndarray) -> float:
    """Hard threshold for new images: flags the same fraction of entries as training.

    ``D = R - L`` (sparse plus dense residual of the training fit), ``S`` its
    sparse part. The threshold is the ``1 - f`` quantile of ``|D|`` with ``f``
    the fraction of non-zeros of ``S``; ``inf`` if ``S`` is empty.
    """
    nnz = int(np.count_nonzero(S))
    if nnz == 0:
        return float("inf")
    a = np.abs(D).ravel()
    return float(np.partition(a, a.size - nnz - 1)[a.size - nnz - 1])


def _orth_rows(V: np.ndarray, r: int) -> np.ndarray:
    """First ``r`` rows of a row basis (orthonormal already)."""
    return np.ascontiguousarray(V[:r], dtype=np.float64)


def _fit_parts(A: np.ndarray, y: np.ndarray, est: DmDtRPCA) -> dict[str, Any]:
    """Fit ``b`` and every ``c_i``; return model state and the training decomposition."""
    classes = np.unique(y)
    fits: list[dict[str, Any]] = []

    def rpca(rank: int) -> AltProj | PCP:
        if est.method == "altproj":
            return AltProj(rank=rank, tol=est.tol, max_iter=est.max_iter)
        return PCP(tol=est.tol, max_iter=est.max_iter)

    def record(part: str, n_obj: int, fitted: Any) -> None:
        fits.append({"part": part, "n_objects": int(n_obj), "rank": int(fitted.rank_),
                     "n_iter": int(fitted.n_iter_), "converged": bool(fitted.converged_),
                     "threshold": float(fitted.threshold_),
                     "sparse_fraction": float(np.count_nonzero(fitted.sparse_))
                     / max(fitted.sparse_.size, 1)})

    bg = rpca(est.rank_background).fit(A)
    record("background", len(A), bg)
    Lb = np.asarray(bg.low_rank_, dtype=np.float64)
    Vb = _orth_rows(bg.components_, est.rank_background)
    zeta_b = _projection_threshold(A - Lb, bg.sparse_)
    R = A - Lb
    d = A.shape[1]
    Lc = np.zeros_like(A)
    S = np.zeros_like(A)
    class_components = []
    zeta_c = np.empty(len(classes))
    for i, c in enumerate(classes):
        idx = np.flatnonzero(y == c)
        fc = rpca(est.rank_class).fit(R[idx])
        record(str(c), len(idx), fc)
        Lc[idx] = fc.low_rank_
        S[idx] = fc.sparse_
        class_components.append(_orth_rows(fc.components_, est.rank_class))
        zeta_c[i] = _projection_threshold(R[idx] - fc.low_rank_, fc.sparse_)
    class_mean = np.zeros((len(classes), d))
    class_template = np.zeros((len(classes), d))
    for i, c in enumerate(classes):
        sel = y == c
        class_mean[i] = Lc[sel].mean(axis=0)
        class_template[i] = (Lb[sel] + Lc[sel]).mean(axis=0)
    return {
        "classes": classes,
        "background_components": Vb,
        "background_threshold": zeta_b,
        "class_components": class_components,
        "class_thresholds": zeta_c,
        "background_template": Lb.mean(axis=0),
        "class_means": class_mean,
        "class_templates": class_template,
        "fits": fits,
        # training decomposition x = b + c + s + e, per object
        "b": Lb,
        "c": Lc,
        "s": S,
    }


def _check_common_params(est: Any) -> None:
    for name in ("rank_background", "rank_class", "max_iter", "n_project_iter"):
        v = getattr(est, name)
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < (
                0 if name.startswith("rank") else 1):
            raise _InvalidParameter(f"{name} must be a non-negative integer "
                                    f"({'>= 1' if not name.startswith('rank') else '>= 0'}), "
                                    f"got {v!r}")
    if est.method not in _METHODS:
        raise _InvalidParameter(f"method must be one of {list(_METHODS)}, got {est.method!r}")
    if est.pixel_transform not in PIXEL_TRANSFORMS:
        raise _InvalidParameter(f"pixel_transform must be one of {list(PIXEL_TRANSFORMS)}, "
                                f"got {est.pixel_transform!r}")
    if not isinstance(est.tol, float | int) or not est.tol > 0:
        raise _InvalidParameter(f"tol must be > 0, got {est.tol!r}")


class DmDtRPCA(TransformerMixin, BaseEstimator):
    """Decompose dm-dt images into survey background, class background and sparse parts.

    ``fit(X, y)`` runs one robust PCA of all images (background ``b``, rank
    ``rank_background``) and one per class on what ``b`` leaves (class part
    ``c_i``, rank ``rank_class``). ``transform(X)`` gives, for every image,
    features usable by any classifier:

    - ``rpca_b_<k>``: coefficients on ``b``'s subspace (``k < rank_background``);
    - for every class ``<c>``: ``rpca_<c>_c<k>``, the coefficients of ``x - b``
      on the class subspace (``k < rank_class``; zero beyond the rank a small
      class supports), ``rpca_<c>_err``, the reconstruction error
      ``||x - b - c - s||_2``, and ``rpca_<c>_l1``, the sparse energy ``||s||_1``.

    Projections are robust: ``s`` is hard-thresholded at the level that
    flagged the same fraction of pixels in training. ``fit_transform`` returns
    cross-fitted (out-of-fold) features for the training images, like
    :class:`sklearn.preprocessing.TargetEncoder`, so that a downstream model
    does not learn from reconstruction errors of images that shaped the
    subspaces; ``fit(X, y).transform(X)`` gives the in-sample ones.

    Parameters
    ----------
    rank_background : int, default=1
        Rank of the survey background ``b``.
    rank_class : int, default=5
        Rank of each class part ``c_i`` (less for a class with fewer images).
    pixel_transform : {'sqrt', 'none'}, default='sqrt'
        Applied to every pixel first: ``sqrt`` stabilises the variance of
        pixels that count pairs (decomposition, templates and features are
        then in square-root pixel units).
    method : {'altproj', 'pcp'}, default='altproj'
        Robust PCA solver (:class:`pipeline.rpca.AltProj` or
        :class:`pipeline.rpca.PCP`; PCP's rank is set by its ``lam`` and its
        basis is truncated to the ranks above).
    tol : float, default=1e-3
        Tolerance of every robust PCA fit.
    max_iter : int, default=200
        Iteration cap of every robust PCA fit (a fit that hits it warns).
    n_project_iter : int, default=10
        Alternations of the robust projection of an image.
    cv : int or None, default=5
        Folds of the cross-fitting in ``fit_transform``; ``None`` disables it.
    random_state : int, default=0
        Seed of the cross-fitting folds.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    image_shape_ : tuple of int
        Shape of one image, e.g. ``(22, 24, 1)``.
    background_components_ : ndarray of shape (rank_b, n_pixels)
        Orthonormal basis of ``b``'s subspace.
    class_components_ : list of ndarray of shape (rank_i, n_pixels)
        Orthonormal basis of each class subspace.
    background_template_ : ndarray of shape (n_pixels,)
        Mean of ``b`` over the training images.
    class_means_ : ndarray of shape (n_classes, n_pixels)
        Mean of ``c_i`` over the images of each class (the class background).
    class_templates_ : ndarray of shape (n_classes, n_pixels)
        Mean of ``b + c_i`` over each class: the class template image.
    background_threshold_, class_thresholds_ : float, ndarray of shape (n_classes,)
        Hard thresholds of the robust projections (pixel units).
    fits_ : list of dict
        Convergence record of every robust PCA fit (part, rank, n_iter,
        converged, threshold, sparse_fraction).
    n_iter_ : int
        Iterations of all robust PCA fits together.
    n_features_in_ : int
        Pixels per image.
    """

    def __init__(self, rank_background: int = 1, rank_class: int = 5, *,
                 pixel_transform: str = "sqrt", method: str = "altproj", tol: float = 1e-3,
                 max_iter: int = 200, n_project_iter: int = 10, cv: int | None = 5,
                 random_state: int = 0) -> None:
        self.rank_background = rank_background
        self.rank_class = rank_class
        self.pixel_transform = pixel_transform
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.n_project_iter = n_project_iter
        self.cv = cv
        self.random_state = random_state

    # -------------------------------------------------------------- fitting
    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        A, shape = _flatten(X)
        try:
            A = validate_data(self, A, dtype=np.float64, ensure_all_finite=True, reset=reset)
        except ValueError as exc:
            raise _InvalidMatrix("images", str(exc)) from exc
        if reset:
            self.image_shape_ = shape
        return _apply_transform(A, self.pixel_transform)

    def _set_state(self, state: dict[str, Any]) -> None:
        self.classes_ = state["classes"]
        self.background_components_ = state["background_components"]
        self.background_threshold_ = state["background_threshold"]
        self.class_components_ = state["class_components"]
        self.class_thresholds_ = state["class_thresholds"]
        self.background_template_ = state["background_template"]
        self.class_means_ = state["class_means"]
        self.class_templates_ = state["class_templates"]
        self.fits_ = state["fits"]

    def fit(self, X: Any, y: Any = None) -> DmDtRPCA:
        """Fit ``b`` on all images and one ``c_i`` per class.

        Parameters
        ----------
        X : array-like of shape (n_images, n_dm, n_dt[, n_bands]) or (n_images, n_pixels)
            dm-dt images (any normalisation; features are in its pixel units).
        y : array-like of shape (n_images,)
            Class labels.

        Returns
        -------
        self
        """
        self._fit_with_parts(X, y)
        return self

    def _fit_with_parts(self, X: Any, y: Any) -> dict[str, Any]:
        _check_common_params(self)
        A = self._validate(X, reset=True)
        y = _check_labels(y, len(A))
        state = _fit_parts(A, y, self)
        self._set_state(state)
        self.n_iter_ = int(sum(f["n_iter"] for f in state["fits"]))
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------- features
    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns of :meth:`transform` (see the class docstring)."""
        check_is_fitted(self)
        names = [f"rpca_b_{k}" for k in range(self.rank_background)]
        for c in self.classes_:
            names += [f"rpca_{c}_c{k}" for k in range(self.rank_class)]
            names += [f"rpca_{c}_err", f"rpca_{c}_l1"]
        return np.asarray(names, dtype=object)

    def decompose(self, X: Any) -> dict[str, np.ndarray]:
        """Robust projections of images on the fitted subspaces.

        Parameters
        ----------
        X : array-like of shape (n_images, ...)
            Images of the training shape.

        Returns
        -------
        dict
            ``b_coef`` (n, rank_background) coefficients on ``b``'s basis
            (zero-padded); ``class_coef`` (n, n_classes, rank_class); ``err``
            (n, n_classes) reconstruction errors ``||x - b - c_i - s_i||_2``;
            ``l1`` (n, n_classes) sparse energies ``||s_i||_1`` (pixel units).
        """
        check_is_fitted(self)
        A = self._validate(X, reset=False)
        return self._decompose(A)

    def _decompose(self, A: np.ndarray) -> dict[str, np.ndarray]:
        n = len(A)
        K = len(self.classes_)
        Vb = self.background_components_
        a, _, _ = _robust_project(A, Vb, self.background_threshold_, self.n_project_iter)
        R = A - a @ Vb  # what b leaves, sparse part included (as in training)
        b_coef = np.zeros((n, self.rank_background))
        b_coef[:, : a.shape[1]] = a
        class_coef = np.zeros((n, K, self.rank_class))
        err = np.empty((n, K))
        l1 = np.empty((n, K))
        for i, V in enumerate(self.class_components_):
            C, S, E = _robust_project(R, V, self.class_thresholds_[i], self.n_project_iter)
            class_coef[:, i, : C.shape[1]] = C
            err[:, i] = np.linalg.norm(S + E, axis=1)  # ||x - b - c_i||: s counts as error
            l1[:, i] = np.abs(S).sum(axis=1)
        return {"b_coef": b_coef, "class_coef": class_coef, "err": err, "l1": l1}

    @staticmethod
    def _features(parts: dict[str, np.ndarray]) -> np.ndarray:
        n, K, _ = parts["class_coef"].shape
        per_class = np.concatenate(
            [parts["class_coef"], parts["err"][:, :, None], parts["l1"][:, :, None]], axis=2)
        return np.hstack([parts["b_coef"], per_class.reshape(n, -1)])

    def transform(self, X: Any) -> np.ndarray:
        """RPCA features of images (columns: :meth:`get_feature_names_out`).

        Parameters
        ----------
        X : array-like of shape (n_images, ...)
            Images of the training shape.

        Returns
        -------
        ndarray of shape (n_images, n_features_out)
        """
        return self._features(self.decompose(X))

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit on all images; return out-of-fold features for them (``cv`` folds).

        Each image's features come from subspaces fitted without it
        (stratified ``cv``-fold split seeded by ``random_state``); a class
        absent from an inner training part takes the full fit's subspace.
        With ``cv=None`` this is ``fit(X, y).transform(X)``.
        """
        self.fit(X, y)
        if self.cv is None:
            return self.transform(X)
        from sklearn.model_selection import StratifiedKFold

        raw = _flatten(X)[0]  # untransformed pixels: each inner fit transforms them itself
        y = _check_labels(y, len(raw))
        out = np.empty((len(raw), len(self.get_feature_names_out())))
        n_splits = int(self.cv)
        if n_splits < 2 or n_splits > len(raw):
            raise _InvalidParameter(f"cv must be in [2, n_images], got {self.cv!r}")
        skf = StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state)
        with warnings.catch_warnings():
            # classes smaller than cv are expected (they are handled below)
            warnings.filterwarnings("ignore", message="The least populated class",
                                    category=UserWarning)
            splits = list(skf.split(raw, y))
        for tr, te in splits:
            inner = DmDtRPCA(**self.get_params()).fit(raw[tr], y[tr])
            merged = self._merged_with(inner)
            out[te] = self._features(merged._decompose(merged._validate(raw[te], reset=False)))
        return out

    def _merged_with(self, inner: DmDtRPCA) -> DmDtRPCA:
        """``inner`` with this fit's subspaces for classes it has not seen."""
        if np.array_equal(inner.classes_, self.classes_):
            return inner
        pos = {c: i for i, c in enumerate(inner.classes_)}
        comps, thr = [], np.empty(len(self.classes_))
        for i, c in enumerate(self.classes_):
            j = pos.get(c)
            comps.append(self.class_components_[i] if j is None else inner.class_components_[j])
            thr[i] = self.class_thresholds_[i] if j is None else inner.class_thresholds_[j]
        inner.classes_ = self.classes_
        inner.class_components_ = comps
        inner.class_thresholds_ = thr
        return inner


class NearestSubspaceClassifier(ClassifierMixin, BaseEstimator):
    """Assign each dm-dt image to the class whose RPCA subspace reconstructs it best.

    Fits a :class:`DmDtRPCA` (survey background ``b``, one subspace ``c_i``
    per class) and predicts ``argmin_i ||x - b - c_i - s_i||_2`` (robust
    reconstruction errors, :meth:`DmDtRPCA.decompose`).

    Parameters
    ----------
    rank_background, rank_class, pixel_transform, method, tol, max_iter, n_project_iter
        As in :class:`DmDtRPCA`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    decomposition_ : DmDtRPCA
        The fitted decomposition.
    n_iter_ : int
        Iterations of all its robust PCA fits.
    n_features_in_ : int
        Pixels per image.
    """

    def __init__(self, rank_background: int = 1, rank_class: int = 5, *,
                 pixel_transform: str = "sqrt", method: str = "altproj", tol: float = 1e-3,
                 max_iter: int = 200, n_project_iter: int = 10) -> None:
        self.rank_background = rank_background
        self.rank_class = rank_class
        self.pixel_transform = pixel_transform
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.n_project_iter = n_project_iter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X: Any, y: Any = None) -> NearestSubspaceClassifier:
        """Fit the decomposition on labelled images (see :meth:`DmDtRPCA.fit`)."""
        self.decomposition_ = DmDtRPCA(
            self.rank_background, self.rank_class, pixel_transform=self.pixel_transform,
            method=self.method, tol=self.tol, max_iter=self.max_iter,
            n_project_iter=self.n_project_iter, cv=None,
        ).fit(X, y)
        self.classes_ = self.decomposition_.classes_
        self.n_features_in_ = self.decomposition_.n_features_in_
        self.n_iter_ = self.decomposition_.n_iter_
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Minus the reconstruction error in each class subspace.

        Returns
        -------
        ndarray of shape (n_images, n_classes), or (n_images,) for two classes
            (``err_0 - err_1``: positive means ``classes_[1]``, scikit-learn's
            binary convention).
        """
        check_is_fitted(self)
        err = self.decomposition_.decompose(X)["err"]
        if len(self.classes_) == 2:
            return err[:, 0] - err[:, 1]
        return -err

    def predict(self, X: Any) -> np.ndarray:
        """Class of the nearest subspace for each image."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def rpca_feature_pipeline(n_image_columns: int, classifier: Any, **rpca_params: Any) -> Any:
    """scikit-learn pipeline: RPCA features of the image columns + other columns -> classifier.

    The input is one array whose first ``n_image_columns`` columns are the
    flattened dm-dt images and the rest other features (light-curve features,
    NaN allowed); :class:`DmDtRPCA` is fitted inside each training fold only.

    Parameters
    ----------
    n_image_columns : int
        Pixels per image (e.g. 528).
    classifier : estimator
        Final classifier, e.g. ``models.forest.LightCurveForest()``.
    **rpca_params
        Parameters of :class:`DmDtRPCA`.

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    features = ColumnTransformer(
        [("rpca", DmDtRPCA(**rpca_params), list(range(n_image_columns)))],
        remainder="passthrough",
    )
    return Pipeline([("features", features), ("classifier", classifier)])


# ---------------------------------------------------------------------- files


def _template_table(model: DmDtRPCA, meta: dict[str, Any]) -> Any:
    """Long table of template images and subspace bases (schema in docs/rpca.md)."""
    import pyarrow as pa

    n_dm, n_dt, n_b = model.image_shape_
    dm = np.asarray(meta["dm_edges"], dtype=np.float64)
    dt = np.asarray(meta["dt_edges"], dtype=np.float64)
    bands = list(meta.get("bands") or [str(i) for i in range(n_b)])
    i_dm, i_dt, i_b = np.meshgrid(np.arange(n_dm), np.arange(n_dt), np.arange(n_b),
                                  indexing="ij")
    i_dm, i_dt, i_b = i_dm.ravel(), i_dt.ravel(), i_b.ravel()
    rows: list[tuple[str, str, int, np.ndarray]] = [
        ("background", "mean", 0, model.background_template_)]
    rows += [("background", "component", k + 1, v)
             for k, v in enumerate(model.background_components_)]
    for i, c in enumerate(model.classes_):
        rows.append((str(c), "mean", 0, model.class_means_[i]))
        rows.append((str(c), "template", 0, model.class_templates_[i]))
        rows += [(str(c), "component", k + 1, v)
                 for k, v in enumerate(model.class_components_[i])]
    n_pix = len(i_dm)
    cols: dict[str, list[Any]] = {k: [] for k in ("template", "kind", "component")}
    for name, kind, comp, _ in rows:
        cols["template"].append(np.repeat(name, n_pix))
        cols["kind"].append(np.repeat(kind, n_pix))
        cols["component"].append(np.full(n_pix, comp, dtype=np.int16))
    reps = len(rows)
    return pa.table({
        "template": pa.array(np.concatenate(cols["template"]).astype(str), pa.string()),
        "kind": pa.array(np.concatenate(cols["kind"]).astype(str), pa.string()),
        "component": pa.array(np.concatenate(cols["component"]), pa.int16()),
        "band": pa.array(np.tile(np.asarray(bands, dtype=str)[i_b], reps), pa.string()),
        "dm_index": pa.array(np.tile(i_dm, reps).astype(np.int16), pa.int16()),
        "dt_index": pa.array(np.tile(i_dt, reps).astype(np.int16), pa.int16()),
        "dm_lo": pa.array(np.tile(dm[i_dm], reps), pa.float64()),
        "dm_hi": pa.array(np.tile(dm[i_dm + 1], reps), pa.float64()),
        "dt_lo": pa.array(np.tile(dt[i_dt], reps), pa.float64()),
        "dt_hi": pa.array(np.tile(dt[i_dt + 1], reps), pa.float64()),
        "value": pa.array(np.concatenate([r[3] for r in rows]), pa.float64()),
    })


def _plot_templates(path: Path, images: list[tuple[str, np.ndarray]], meta: dict[str, Any],
                    title: str, diverging: bool) -> None:
    """Grid of dm-dt images with physical axes (edges in mag and days) -> PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io import atomic_path

    dm = np.asarray(meta["dm_edges"], dtype=np.float64)
    dt = np.asarray(meta["dt_edges"], dtype=np.float64)
    ncol = min(4, len(images))
    nrow = -(-len(images) // ncol)
    fig = Figure(figsize=(3.6 * ncol, 3.3 * nrow), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    dm_ticks = [k for k, e in enumerate(dm) if e in (-8, -3, -1, 0, 1, 3, 8)]
    dt_ticks = list(range(0, len(dt), 4))
    for ax in axes.ravel()[len(images):]:
        ax.set_visible(False)
    for ax, (name, img) in zip(axes.ravel(), images, strict=False):
        if diverging:
            lim = float(np.max(np.abs(img))) or 1.0
            im = ax.imshow(img, origin="lower", aspect="auto", cmap="RdBu_r",
                           vmin=-lim, vmax=lim, extent=(0, len(dt) - 1, 0, len(dm) - 1))
        else:
            im = ax.imshow(img, origin="lower", aspect="auto", cmap="viridis",
                           extent=(0, len(dt) - 1, 0, len(dm) - 1))
        ax.set_xticks(dt_ticks, [f"{dt[k]:.3g}" for k in dt_ticks], fontsize=7)
        ax.set_yticks(dm_ticks, [f"{dm[k]:g}" for k in dm_ticks], fontsize=7)
        ax.set_xlabel("Δt [days] (bin edges)", fontsize=8)
        ax.set_ylabel("Δm [mag] (bin edges)", fontsize=8)
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def rpca_dmdt_file(
    dmdt_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    rank_background: int = 1,
    rank_class: int = 5,
    pixel_transform: str = "sqrt",
    method: str = "altproj",
    tol: float = 1e-3,
    max_iter: int = 200,
    min_class_size: int = 1,
) -> dict[str, Any]:
    """Decompose the dm-dt images of a file into ``b``, ``c_i`` and ``s``; write the results.

    Parameters
    ----------
    dmdt_path : path-like
        dm-dt Parquet written by ``lcpipe dmdt`` (:func:`pipeline.dmdt.dmdt_file`).
    labels_path : path-like
        Labels table (:func:`pipeline.labels.read_labels`).
    outdir : path-like
        Output directory: ``rpca_objects.parquet``, ``rpca_templates.parquet``,
        ``rpca_templates.png``, ``rpca_class_parts.png``, ``rpca_summary.json``.
    rank_background, rank_class, pixel_transform, method, tol, max_iter
        See :class:`DmDtRPCA`.
    min_class_size : int, default=1
        Classes with fewer labelled images are left out of the fit (their
        objects are reported as not fitted, with features).

    Returns
    -------
    dict
        The summary also written to ``rpca_summary.json``.

    Raises
    ------
    InputError
        Unreadable inputs, non-finite images, or no labelled image.
    """
    import pandas as pd
    import pyarrow as pa

    from .dmdt import read_dmdt
    from .io import write_json_atomic, write_parquet_atomic
    from .labels import read_labels

    if min_class_size < 1:
        raise ConfigError(f"min_class_size must be >= 1, got {min_class_size}")
    out = Path(outdir)
    img = read_dmdt(dmdt_path)
    labels = read_labels(labels_path)
    oid = np.asarray(img.object_id, dtype=str)
    if len(np.unique(oid)) != len(oid):
        raise InputError(dmdt_path, "object_id is not unique")
    lab = labels.reindex(oid).to_numpy(dtype=object)
    labelled = pd.notna(lab)
    counts = pd.Series(lab[labelled]).value_counts()
    small = sorted(str(c) for c in counts.index[counts < min_class_size])
    fit_mask = labelled & ~np.isin(lab.astype(str), small)
    if not fit_mask.any() and labelled.any():
        raise ConfigError(f"--min-class-size {min_class_size}: every class is smaller "
                          f"(largest {int(counts.max())} labelled images)")
    if not fit_mask.any():
        raise InputError(labels_path, f"no labelled image to fit (labels match "
                         f"{int(labelled.sum())} of {len(oid)} objects in {dmdt_path})")
    X = np.asarray(img.images, dtype=np.float64)
    if not np.isfinite(X).all():
        raise InputError(dmdt_path, "non-finite pixel values")
    y_fit = lab[fit_mask].astype(str)
    model = DmDtRPCA(rank_background, rank_class, pixel_transform=pixel_transform,
                     method=method, tol=tol, max_iter=max_iter, cv=None)
    parts = model._fit_with_parts(X[fit_mask], y_fit)
    A = model._validate(X, reset=False)  # flattened, transformed
    dec = model._decompose(A)
    feats = model._features(dec)
    names = list(model.get_feature_names_out())
    nearest = model.classes_[np.argmin(dec["err"], axis=1)]
    # own-class training decomposition x = b + c + s + e (fitted objects only)
    n = len(oid)
    sparse_l1 = np.full(n, np.nan)
    resid = np.full(n, np.nan)
    b_norm = np.full(n, np.nan)
    c_norm = np.full(n, np.nan)
    Af = A[fit_mask]
    e = Af - parts["b"] - parts["c"] - parts["s"]
    sparse_l1[fit_mask] = np.abs(parts["s"]).sum(axis=1)
    resid[fit_mask] = np.linalg.norm(e, axis=1)
    b_norm[fit_mask] = np.linalg.norm(parts["b"], axis=1)
    c_norm[fit_mask] = np.linalg.norm(parts["c"], axis=1)
    label_col = pa.array([None if not ok else str(v) for v, ok in zip(lab, labelled,
                                                                       strict=True)],
                         pa.string())
    cols: dict[str, Any] = {
        "object_id": pa.array(oid, pa.string()),
        "label": label_col,
        "fitted": pa.array(fit_mask, pa.bool_()),
        "nearest_class": pa.array(nearest.astype(str), pa.string()),
        # objects not fitted have no own-class decomposition: null, as docs/rpca.md says
        "b_norm": pa.array(b_norm, pa.float64(), mask=~fit_mask),
        "c_norm": pa.array(c_norm, pa.float64(), mask=~fit_mask),
        "sparse_l1": pa.array(sparse_l1, pa.float64(), mask=~fit_mask),
        "residual_norm": pa.array(resid, pa.float64(), mask=~fit_mask),
    }
    for j, name in enumerate(names):
        cols[name] = pa.array(feats[:, j], pa.float64())
    settings = {
        "rank_background": rank_background, "rank_class": rank_class,
        "pixel_transform": pixel_transform, "method": method,
        "tol": tol, "max_iter": max_iter, "min_class_size": min_class_size,
        "n_project_iter": model.n_project_iter,
    }
    meta = {
        "format": RPCA_FORMAT, "version": __version__, "settings": settings,
        "classes": [str(c) for c in model.classes_], "feature_columns": names,
        "image_shape": list(model.image_shape_), "dm_edges": img.meta["dm_edges"],
        "dt_edges": img.meta["dt_edges"], "bands": img.meta.get("bands"),
        "norm": img.meta.get("norm"), "source": str(dmdt_path),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(pa.table(cols), out / "rpca_objects.parquet",
                         metadata={METADATA_KEY: meta})
    write_rpca_templates(model, img.meta, out, metadata={METADATA_KEY: meta})
    not_converged = [f["part"] for f in model.fits_ if not f["converged"]]
    summary = {
        "format": RPCA_FORMAT,
        "version": __version__,
        "input": str(dmdt_path),
        "labels": str(labels_path),
        "objects": n,
        "fitted": int(fit_mask.sum()),
        "unlabelled": int((~labelled).sum()),
        "left_out_small_classes": {c: int(counts[c]) for c in small},
        "labels_without_image": int((~labels.index.isin(oid)).sum()),
        "classes": {str(c): int((y_fit == c).sum()) for c in model.classes_},
        "in_sample_nearest_subspace_accuracy": float(
            np.mean(nearest[fit_mask] == y_fit)),
        "fits": model.fits_,
        "not_converged": not_converged,
        "settings": settings,
        "outputs": {k: str(out / k) for k in ("rpca_objects.parquet", "rpca_templates.parquet",
                                              "rpca_templates.png", "rpca_class_parts.png")},
    }
    write_json_atomic(summary, out / "rpca_summary.json")
    return json.loads(json.dumps(summary, default=str))


_RPCA_MODEL_FORMAT = "lcpipe-rpca-model/1"


def save_rpca(model: DmDtRPCA, path: str | os.PathLike[str],
              extra: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`DmDtRPCA` as ``.npz`` (arrays only, no pickle), atomically.

    Parameters
    ----------
    model : DmDtRPCA
        Fitted model.
    path : path-like
        Destination (``.npz``).
    extra : dict, optional
        JSON-serialisable metadata kept beside the parameters (e.g. image meta).

    Returns
    -------
    Path
    """
    from .io import atomic_path

    check_is_fitted(model)
    meta = {"format": _RPCA_MODEL_FORMAT, "params": model.get_params(),
            "classes": [str(c) for c in model.classes_],
            "image_shape": list(model.image_shape_), "fits": model.fits_,
            "n_iter": int(model.n_iter_), "version": __version__, **(extra or {})}
    arrays = {
        "meta_json": np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8),
        "background_components": model.background_components_,
        "background_threshold": np.asarray(model.background_threshold_, dtype=np.float64),
        "class_thresholds": np.asarray(model.class_thresholds_, dtype=np.float64),
        "background_template": model.background_template_,
        "class_means": model.class_means_,
        "class_templates": model.class_templates_,
    }
    for i, comp in enumerate(model.class_components_):
        arrays[f"class_components_{i}"] = comp
    with atomic_path(path, fsync=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load_rpca(path: str | os.PathLike[str]) -> tuple[DmDtRPCA, dict[str, Any]]:
    """Load a model written by :func:`save_rpca` (no code is executed: arrays only).

    Returns
    -------
    (DmDtRPCA, dict)
        The fitted model and its metadata.

    Raises
    ------
    InputError
        Missing, unreadable or foreign file.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(data["meta_json"].tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(p, f"cannot read robust-PCA model: {exc}") from exc
    if meta.get("format") != _RPCA_MODEL_FORMAT:
        raise InputError(p, f"not an lcpipe robust-PCA model (format {meta.get('format')!r})")
    model = DmDtRPCA(**meta["params"])
    classes = np.asarray(meta["classes"])
    model._set_state({
        "classes": classes,
        "background_components": data["background_components"],
        "background_threshold": float(data["background_threshold"]),
        "class_components": [data[f"class_components_{i}"] for i in range(len(classes))],
        "class_thresholds": data["class_thresholds"],
        "background_template": data["background_template"],
        "class_means": data["class_means"],
        "class_templates": data["class_templates"],
        "fits": meta["fits"],
    })
    model.image_shape_ = tuple(meta["image_shape"])
    model.n_iter_ = int(meta["n_iter"])
    model.n_features_in_ = int(np.prod(model.image_shape_))
    return model, meta


def write_rpca_templates(model: DmDtRPCA, image_meta: dict[str, Any],
                         outdir: str | os.PathLike[str], prefix: str = "rpca_",
                         metadata: dict[str, Any] | None = None) -> list[Path]:
    """Write a fitted model's templates: Parquet (long table) and two PNG grids.

    Files: ``<prefix>templates.parquet`` (schema in docs/rpca.md),
    ``<prefix>templates.png`` (survey background and each class template
    ``b + c_i``) and ``<prefix>class_parts.png`` (each class background ``c_i``).

    Parameters
    ----------
    model : DmDtRPCA
        Fitted model.
    image_meta : dict
        dm-dt metadata of the images (``dm_edges`` [mag], ``dt_edges`` [days], ``bands``, ``norm``).
    outdir : path-like
        Output directory.
    prefix : str, default='rpca_'
        File-name prefix.
    metadata : dict, optional
        File metadata of the Parquet table.

    Returns
    -------
    list of Path
    """
    from .io import write_parquet_atomic

    out = Path(outdir)
    shape = model.image_shape_
    units = (f"sqrt of {image_meta.get('norm')} pixels" if model.pixel_transform == "sqrt"
             else f"{image_meta.get('norm')} pixels")

    def as_img(v: np.ndarray) -> np.ndarray:
        return v.reshape(shape)[:, :, 0]  # PNG: first band (all bands are in the Parquet)

    paths = [out / f"{prefix}templates.parquet", out / f"{prefix}templates.png",
             out / f"{prefix}class_parts.png"]
    write_parquet_atomic(_template_table(model, image_meta), paths[0], metadata=metadata)
    _plot_templates(paths[1],
                    [("background b (mean)", as_img(model.background_template_))]
                    + [(f"{c}: b + c_i", as_img(model.class_templates_[i]))
                       for i, c in enumerate(model.classes_)],
                    image_meta, f"dm-dt class templates ({units})", diverging=False)
    _plot_templates(paths[2],
                    [(f"{c}: c_i", as_img(model.class_means_[i]))
                     for i, c in enumerate(model.classes_)],
                    image_meta, "class backgrounds c_i (mean over the class, b removed)",
                    diverging=True)
    return paths
