"""Stacked ensemble: a meta-model on the class probabilities of other models.

The meta-model sees, for each object, the out-of-fold probabilities of the base
models (the forest and the CNN) and learns how far to trust each one (Wolpert 1992,
"Stacked generalization"). It must be fitted on probabilities the base models gave
for objects they were not trained on (out-of-fold predictions of a cross-validation),
never on their training objects, or it learns to trust an over-fitted model.

Two meta-models, both on log-probabilities (clipped at ``eps``), so a base model that
is sure and wrong costs what it costs in log loss:

* ``'pool'`` (the default): a log-linear pool, ``p(c) ~ prod_m p_m(c) ** w_m`` with one
  weight ``w_m >= 0`` per base model, fitted by minimising the log loss (Genest & Zidek
  1986; a product of experts). With as many parameters as base models it cannot
  over-fit the rare classes: on CRTS (5-fold CV) it is 0.1-2 points more accurate than
  the logistic regression in all but one of the comparisons measured, with the lower
  log loss (docs/ensemble.md).
* ``'logistic'``: a multinomial logistic regression on all the log-probabilities
  (``n_classes * n_models`` inputs per class), which can learn per-class trust.

Both are stored as the same arrays (a pool is a logistic regression whose
coefficients are ``w_m`` on each model's own class and zero elsewhere, with no
intercepts): coefficients, intercepts, classes, base-model names; saved as ``.npz``,
loaded without pickle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from pipeline.errors import InputError

__all__ = ["StackedClassifier", "stack_inputs", "base_probabilities", "stack_predictions",
           "save_stack", "load_stack", "STACK_FORMAT"]

STACK_FORMAT = "lcpipe-stack/1"


def stack_inputs(probas: Sequence[np.ndarray]) -> np.ndarray:
    """The meta-model's input: base models' probabilities side by side.

    Parameters
    ----------
    probas : sequence of ndarray, each of shape (n, n_classes)
        Class probabilities of each base model, columns in the same class order.

    Returns
    -------
    ndarray of shape (n, n_models * n_classes)
    """
    return np.hstack([np.asarray(p, dtype=np.float64) for p in probas])


def base_probabilities(frames: dict[str, Any], bases: Sequence[str], classes: Sequence[str],
                       object_ids: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The stack's input from prediction tables of its base models.

    Parameters
    ----------
    frames : dict
        Base model name -> rows of lcpipe's prediction schema (one split).
    bases : sequence of str
        Base models, in the stack's column order.
    classes : sequence of str
        Classes, in the order of the probability columns.
    object_ids : sequence of str, optional
        Objects wanted, in this order; default: the objects every base model predicted,
        in the first base model's order.

    Returns
    -------
    (ndarray of str, ndarray of shape (n, n_bases * n_classes))
        Object ids and :func:`stack_inputs` of their probabilities.

    Raises
    ------
    InputError
        A base model is missing, or lacks a wanted object.
    """
    import pandas as pd

    cols = [f"prob_{c}" for c in classes]
    missing = [b for b in bases if b not in frames]
    if missing:
        raise InputError("stack", f"no predictions of its base model(s) {', '.join(missing)}")
    by = {b: frames[b].drop_duplicates("object_id").set_index("object_id") for b in bases}
    if object_ids is None:
        ids = pd.Index(by[bases[0]].index)
        for b in bases[1:]:
            ids = ids[ids.isin(by[b].index)]
    else:
        ids = pd.Index(np.asarray(object_ids).astype(str))
    for b in bases:
        lost = ~ids.isin(by[b].index)
        if lost.any():
            raise InputError(f"{b} predictions", "object missing from a base model of the stack",
                             object_id=ids[np.argmax(lost)])
    X = stack_inputs([by[b].loc[ids, cols].to_numpy(np.float64) for b in bases])
    return ids.to_numpy().astype(str), X


def stack_predictions(model: StackedClassifier, frames: dict[str, Any], classes: Sequence[str],
                      *, run_id: str, split: str, object_ids: Sequence[str] | None = None,
                      true_class: Sequence[Any] | None = None) -> Any:
    """The stack's prediction rows from its base models' prediction rows (one split).

    ``frames``, ``classes`` and ``object_ids`` as in :func:`base_probabilities` (the base
    models are ``model.base_models``); ``run_id``, ``split`` and ``true_class`` as in
    :func:`models.predictions.prediction_frame`.
    """
    from .predictions import class_columns, prediction_frame

    ids, X = base_probabilities(frames, list(model.base_models or []), classes, object_ids)
    proba = class_columns(model.predict_proba(X), model.classes_, [str(c) for c in classes])
    return prediction_frame(ids, "stack", classes, proba, run_id=run_id, split=split,
                            true_class=true_class)


class StackedClassifier(ClassifierMixin, BaseEstimator):
    """Meta-model on base models' probabilities: a log-linear pool or a logistic regression.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 regularisation strength of the logistic regression (``'logistic'``
        only).
    eps : float, default=1e-4
        Probability floor before the log.
    base_models : sequence of str, optional
        Names of the base models, in the column order of ``X`` (metadata only).
    method : {'pool', 'logistic'}, default='pool'
        ``'pool'``: ``p(c) ~ prod_m p_m(c) ** w_m``, one weight ``w_m >= 0`` per base
        model, fitted by minimising the log loss (L-BFGS-B with the exact gradient);
        ``'logistic'``: multinomial logistic regression on every log-probability.
    classes : sequence of str, optional
        The classes of each model's probability columns, in their order (``'pool'``
        only); default: the sorted classes of ``y``. Give them when ``y`` may lack a
        class the base models know (a fold without a rare class): the pool then still
        answers with every class.

    Attributes
    ----------
    classes_ : ndarray of str
    coef_ : ndarray of shape (n_classes, n_models * n_classes)
    intercept_ : ndarray of shape (n_classes,)
    weights_ : ndarray of shape (n_models,)
        The pool's exponents (``'pool'`` only).
    """

    def __init__(self, C: float = 1.0, eps: float = 1e-4,
                 base_models: Sequence[str] | None = None, method: str = "pool",
                 classes: Sequence[str] | None = None) -> None:
        self.C = C
        self.eps = eps
        self.base_models = base_models
        self.method = method
        self.classes = classes

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> StackedClassifier:
        """Fit on concatenated base probabilities ``X`` (n, n_models * n_classes), each
        model's columns in the sorted order of the classes of ``y``."""
        from pipeline.errors import ConfigError

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(str)
        if self.method == "pool":
            cols = (np.unique(y) if self.classes is None
                    else np.asarray([str(c) for c in self.classes]))
            k = len(cols)
            unknown = sorted(set(y.tolist()) - set(cols.tolist()))
            if unknown:
                raise ValueError(f"y holds class {unknown[0]!r}, not among the probability "
                                 f"columns' classes")
            if X.ndim != 2 or X.shape[1] % k or not X.shape[1]:
                raise ValueError(f"a pool needs n_models x {k} probability columns (one per "
                                 f"class, {', '.join(cols)}), got shape {X.shape}; pass "
                                 "classes= if y lacks a class of the columns")
            self.classes_ = cols
            logs = self._z(X).reshape(len(X), -1, k).transpose(1, 0, 2)  # (models, n, k)
            where = {c: i for i, c in enumerate(cols)}
            self.weights_ = _fit_pool(logs, np.array([where[c] for c in y], dtype=np.int64))
            self.coef_ = np.hstack([w * np.eye(k) for w in self.weights_])
            self.intercept_ = np.zeros(k)
        elif self.method == "logistic":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=self.C, max_iter=5000)
            lr.fit(self._z(X), y)
            self.classes_ = lr.classes_
            if len(self.classes_) == 2:  # binary: scikit-learn keeps one row; make it softmax
                w, b = lr.coef_[0] / 2, lr.intercept_[0] / 2
                self.coef_, self.intercept_ = np.vstack([-w, w]), np.array([-b, b])
            else:
                self.coef_, self.intercept_ = lr.coef_, lr.intercept_
        else:
            raise ConfigError(f"stack method must be 'pool' or 'logistic', not {self.method!r}")
        self.n_features_in_ = X.shape[1]
        return self

    def _z(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.clip(X, self.eps, 1.0))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self, "coef_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} probability columns, "
                             f"got shape {X.shape}")
        logits = self._z(X) @ self.coef_.T + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _fit_pool(logs: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    """Exponents ``w >= 0`` minimising the mean log loss of ``softmax(sum_m w_m logs[m])``.

    Parameters
    ----------
    logs : ndarray of shape (n_models, n, n_classes)
        Log-probabilities of the base models.
    y_idx : ndarray of int, shape (n,)
        True class index of each row.
    """
    from scipy.optimize import minimize

    rows = np.arange(len(y_idx))
    own = logs[:, rows, y_idx]  # (models, n): each model's log-probability of the truth

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.tensordot(w, logs, axes=1)
        top = z.max(axis=1, keepdims=True)
        e = np.exp(z - top)
        norm = e.sum(axis=1, keepdims=True)
        lse = (top + np.log(norm))[:, 0]
        p = e / norm
        grad = -(own - np.einsum("mnk,nk->mn", logs, p)).mean(axis=1)
        return float(np.mean(lse - z[rows, y_idx])), grad

    res = minimize(loss, np.full(len(logs), 1.0 / len(logs)), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * len(logs), options={"maxiter": 500, "gtol": 1e-9})
    return np.asarray(res.x, dtype=np.float64)


def save_stack(model: StackedClassifier, path: str | os.PathLike[str],
               extra: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`StackedClassifier` as ``.npz`` (arrays only), atomically."""
    import json

    from pipeline.io import atomic_path

    check_is_fitted(model, "coef_")
    meta = {"format": STACK_FORMAT, "C": model.C, "eps": model.eps,
            "method": model.method, "base_models": list(model.base_models or []),
            **(extra or {})}
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, coef=model.coef_, intercept=model.intercept_,
                 classes=np.asarray(model.classes_, dtype=str),
                 meta=np.asarray(json.dumps(meta)))
    return Path(path)


def load_stack(path: str | os.PathLike[str]) -> tuple[StackedClassifier, dict[str, Any]]:
    """Load a model written by :func:`save_stack` (no pickle); checks shapes against classes.

    Raises
    ------
    InputError
        Missing, unreadable or inconsistent file.
    """
    import json
    import zipfile

    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            coef, intercept = z["coef"], z["intercept"]
            classes, meta = z["classes"], json.loads(str(z["meta"]))
    except FileNotFoundError as exc:
        raise InputError(p, "no such file") from exc
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(p, f"not an lcpipe stacked model ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != STACK_FORMAT:
        raise InputError(p, f"not an lcpipe stacked model (expected format {STACK_FORMAT})")
    k, n_base = len(classes), len(meta.get("base_models", []))
    if (len(set(classes.tolist())) != k or coef.shape != (k, n_base * k)
            or intercept.shape != (k,) or not np.all(np.isfinite(coef))):
        raise InputError(p, f"coefficients of shape {coef.shape} do not fit {k} distinct "
                         f"classes and {n_base} base models: a damaged model file")
    # files written before the pool existed hold a logistic regression
    method = meta.get("method", "logistic")
    est = StackedClassifier(C=float(meta["C"]), eps=float(meta["eps"]),
                            base_models=list(meta["base_models"]), method=method)
    est.classes_, est.coef_, est.intercept_ = classes.astype(str), coef, intercept
    if method == "pool":
        est.weights_ = np.array([coef[0, m * k] for m in range(n_base)])
    est.n_features_in_ = coef.shape[1]
    return est, meta
