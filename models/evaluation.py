"""Cross-validation and metrics shared by every lcpipe classifier.

The random forest, the CNN and the robust-PCA classifiers are all scored on
the *same* folds (:func:`stratified_folds` with the default seed), by the same
out-of-fold loop (:func:`cross_validate_oof`) and the same report
(:func:`metrics_report`), so that their numbers can be compared directly.

Examples
--------
>>> import numpy as np
>>> from sklearn.dummy import DummyClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 3))
>>> y = np.repeat(["a", "b"], 20)
>>> folds = stratified_folds(y, n_splits=5, seed=0)
>>> res = cross_validate_oof(lambda: DummyClassifier(strategy="prior"), X, y, folds)
>>> res.proba.shape
(40, 2)
>>> metrics_report(y, res.y_pred, res.classes)["balanced_accuracy"]
0.5
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "OOFResult",
    "stratified_folds",
    "cross_validate_oof",
    "metrics_report",
    "format_report",
]

#: One fold: (train indices, test indices) into the sample axis.
Fold = tuple[np.ndarray, np.ndarray]


def stratified_folds(y: Sequence[Any], n_splits: int = 5, seed: int = 0) -> list[Fold]:
    """Return the project's standard stratified k-fold split.

    This is ``StratifiedKFold(n_splits, shuffle=True, random_state=seed)``
    applied to ``y``; every lcpipe classifier uses it so that their scores
    come from identical folds.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_splits : int, default=5
        Number of folds.
    seed : int, default=0
        ``random_state`` of the shuffle.

    Returns
    -------
    list of (ndarray, ndarray)
        ``n_splits`` pairs of integer index arrays (train, test); the test
        parts are disjoint and cover every sample once.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(y)), y)]


def _take(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array, DataFrame, or dict/tuple of them (multi-input models)."""
    if isinstance(X, dict):
        return {k: _take(v, idx) for k, v in X.items()}
    if isinstance(X, tuple):
        return tuple(_take(v, idx) for v in X)
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return np.asarray(X)[idx]


@dataclass
class OOFResult:
    """Out-of-fold predictions of a cross-validation run.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        Sorted class labels (``np.unique(y)``); the column order of ``proba``.
    y_true : ndarray of shape (n_samples,)
        The labels given.
    y_pred : ndarray of shape (n_samples,)
        Prediction for each sample by the model that did not see it.
    proba : ndarray of shape (n_samples, n_classes) or None
        Out-of-fold class probabilities (None if the estimator has no
        ``predict_proba``). A class missing from a fold's training part gets
        probability 0 in that fold.
    fold : ndarray of shape (n_samples,)
        Index of the fold in which each sample was held out.
    fit_seconds : list of float
        Wall time of each fold's ``fit``, in seconds.
    fold_extras : list
        What ``fold_callback`` returned for each fold (empty if none given).
    estimators : list
        The fitted estimators, one per fold, if ``keep_estimators`` was set.
    """

    classes: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    fold: np.ndarray
    fit_seconds: list[float] = field(default_factory=list)
    fold_extras: list[Any] = field(default_factory=list)
    estimators: list[Any] = field(default_factory=list)


def cross_validate_oof(
    estimator_factory: Callable[[], Any],
    X: Any,
    y: Sequence[Any],
    folds: Sequence[Fold],
    *,
    fold_callback: Callable[[int, Any, Any, np.ndarray], Any] | None = None,
    keep_estimators: bool = False,
) -> OOFResult:
    """Fit a fresh estimator per fold and collect out-of-fold predictions.

    Parameters
    ----------
    estimator_factory : callable
        Called with no argument once per fold; returns an unfitted estimator
        with ``fit(X, y)``, ``predict(X)`` and optionally ``predict_proba(X)``
        and ``classes_`` (scikit-learn conventions).
    X : array-like of shape (n_samples, ...), DataFrame, or dict/tuple of those
        Inputs; rows are selected with ``X[idx]`` (``X.iloc[idx]`` for a
        DataFrame, per value for a dict or tuple, e.g. multi-input networks).
    y : array-like of shape (n_samples,)
        Class labels.
    folds : sequence of (train_idx, test_idx)
        Usually :func:`stratified_folds`. Every sample must be in exactly
        one test part.
    fold_callback : callable, optional
        ``fold_callback(i, fitted_estimator, X_test, y_test)`` is called after
        each fold; its return values are kept in ``OOFResult.fold_extras``
        (e.g. permutation importances on the held-out fold).
    keep_estimators : bool, default=False
        Keep each fold's fitted estimator in ``OOFResult.estimators``.

    Returns
    -------
    OOFResult
        Out-of-fold labels, probabilities and fold membership.

    Raises
    ------
    ValueError
        If the test parts of ``folds`` do not cover each sample exactly once.
    """
    y = np.asarray(y)
    n = len(y)
    classes = np.unique(y)
    fold_of = np.full(n, -1, dtype=np.int64)
    for i, (_, te) in enumerate(folds):
        if np.any(fold_of[te] != -1):
            raise ValueError("folds overlap: a sample is in more than one test part")
        fold_of[te] = i
    if np.any(fold_of == -1):
        raise ValueError(f"folds leave {int(np.sum(fold_of == -1))} samples out of every test part")

    y_pred = np.empty(n, dtype=y.dtype)
    proba: np.ndarray | None = None
    result = OOFResult(classes=classes, y_true=y, y_pred=y_pred, proba=None, fold=fold_of)
    for i, (tr, te) in enumerate(folds):
        est = estimator_factory()
        t0 = time.perf_counter()
        est.fit(_take(X, tr), y[tr])
        result.fit_seconds.append(time.perf_counter() - t0)
        X_te = _take(X, te)
        if hasattr(est, "predict_proba"):
            p = np.asarray(est.predict_proba(X_te), dtype=np.float64)
            est_classes = np.asarray(est.classes_)
            if proba is None:
                proba = np.zeros((n, len(classes)), dtype=np.float64)
            cols = np.searchsorted(classes, est_classes)
            proba[np.ix_(te, cols)] = p
            y_pred[te] = est_classes[np.argmax(p, axis=1)]
        else:
            y_pred[te] = np.asarray(est.predict(X_te))
        if fold_callback is not None:
            result.fold_extras.append(fold_callback(i, est, X_te, y[te]))
        if keep_estimators:
            result.estimators.append(est)
    result.proba = proba
    return result


def metrics_report(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Summarise a classification as a JSON-serialisable dict.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    classes : sequence, optional
        Label order of the per-class entries and of the confusion matrix;
        default ``np.unique(y_true)``.

    Returns
    -------
    dict
        ``n`` (number of samples), ``classes`` (list of str),
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes
        present in ``y_true``), ``macro_f1`` (unweighted mean F1 over
        ``classes``), ``per_class_recall`` and ``per_class_precision`` and
        ``support`` (dicts keyed by class), and ``confusion_matrix`` (list of
        rows; row = true class, column = predicted class, in ``classes`` order).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if classes is None:
        classes = np.unique(y_true)
    labels = list(classes)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    prec, rec, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    return {
        "n": int(len(y_true)),
        "classes": [str(c) for c in labels],
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(rec[present])) if present.any() else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "per_class_recall": {str(c): float(r) for c, r in zip(labels, rec, strict=True)},
        "per_class_precision": {str(c): float(p) for c, p in zip(labels, prec, strict=True)},
        "support": {str(c): int(s) for c, s in zip(labels, support, strict=True)},
        "confusion_matrix": cm.astype(int).tolist(),
    }


def format_report(report: dict[str, Any], title: str | None = None) -> str:
    """Render a :func:`metrics_report` dict as Markdown (summary, recalls, confusion matrix).

    Parameters
    ----------
    report : dict
        Output of :func:`metrics_report`.
    title : str, optional
        Heading line.

    Returns
    -------
    str
        Markdown text.
    """
    classes = report["classes"]
    lines = [] if title is None else [f"### {title}", ""]
    lines += [
        f"n = {report['n']}: accuracy {report['accuracy']:.3f}, "
        f"balanced accuracy {report['balanced_accuracy']:.3f}, "
        f"macro-F1 {report['macro_f1']:.3f}",
        "",
        "| class | support | recall | precision |",
        "|---|---:|---:|---:|",
    ]
    for c in classes:
        lines.append(
            f"| {c} | {report['support'][c]} | {report['per_class_recall'][c]:.3f} "
            f"| {report['per_class_precision'][c]:.3f} |"
        )
    lines += ["", "Confusion matrix (rows true, columns predicted):", ""]
    lines.append("| true \\ pred | " + " | ".join(classes) + " |")
    lines.append("|---|" + "---:|" * len(classes))
    for c, row in zip(classes, report["confusion_matrix"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
