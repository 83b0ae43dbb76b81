"""Stacked ensemble: a logistic regression on the class probabilities of other models.

The meta-model sees, for each object, the out-of-fold probabilities of the base
models (the forest and the CNN) and learns how far to trust each one per class
(Wolpert 1992, "Stacked generalization"). It must be fitted on probabilities the
base models gave for objects they were not trained on (out-of-fold predictions of a
cross-validation), never on their training objects, or it learns to trust an
over-fitted model.

Inputs are log-probabilities (clipped at ``eps``), so a base model that is sure and
wrong costs the meta-model what it costs in log loss. The fitted model is plain
arrays (coefficients, intercepts, classes, base-model names): saved as ``.npz``,
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
    """Multinomial logistic regression on base models' probabilities.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 regularisation strength of the logistic regression.
    eps : float, default=1e-4
        Probability floor before the log before the log.
    base_models : sequence of str, optional
        Names of the base models, in the column order of ``X`` (metadata only).

    Attributes
    ----------
    classes_ : ndarray of str
    coef_ : ndarray of shape (n_classes, n_models * n_classes)
    intercept_ : ndarray of shape (n_classes,)
    """

    def __init__(self, C: float = 1.0, eps: float = 1e-4,
                 base_models: Sequence[str] | None = None) -> None:
        self.C = C
        self.eps = eps
        self.base_models = base_models

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> StackedClassifier:
        """Fit on concatenated base probabilities ``X`` (n, n_models * n_classes)."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(str)
        lr = LogisticRegression(C=self.C, max_iter=5000)
        lr.fit(self._z(X), y)
        self.classes_ = lr.classes_
        if len(self.classes_) == 2:  # binary: scikit-learn keeps one row; make it softmax
            w, b = lr.coef_[0] / 2, lr.intercept_[0] / 2
            self.coef_, self.intercept_ = np.vstack([-w, w]), np.array([-b, b])
        else:
            self.coef_, self.intercept_ = lr.coef_, lr.intercept_
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


def save_stack(model: StackedClassifier, path: str | os.PathLike[str],
               extra: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`StackedClassifier` as ``.npz`` (arrays only), atomically."""
    import json

    from pipeline.io import atomic_path

    check_is_fitted(model, "coef_")
    meta = {"format": STACK_FORMAT, "C": model.C, "eps": model.eps,
            "base_models": list(model.base_models or []), **(extra or {})}
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
    est = StackedClassifier(C=float(meta["C"]), eps=float(meta["eps"]),
                            base_models=list(meta["base_models"]))
    est.classes_, est.coef_, est.intercept_ = classes.astype(str), coef, intercept
    est.n_features_in_ = coef.shape[1]
    return est, meta
