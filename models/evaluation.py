"""Cross-validation and metrics shared by every lcpipe classifier.

The random forest, the CNN and the robust-PCA classifiers are all scored on
the *same* folds (:func:`stratified_folds` with the default seed), by the same
out-of-fold loop (:func:`cross_validate`) and the same report
(:func:`metrics_report`), so that their numbers can be compared directly.

Examples
--------
>>> import numpy as np
>>> from sklearn.dummy import DummyClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 3))
>>> y = np.repeat(["a", "b"], 20)
>>> folds = stratified_folds(y, n_splits=5, seed=0)
>>> res = cross_validate(DummyClassifier(strategy="prior"), X, y, folds)
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
import pandas as pd

__all__ = [
    "OOFResult",
    "SampleCopies",
    "stratified_folds",
    "train_test_split_stratified",
    "cross_validate",
    "metrics_report",
    "metric_rows",
    "confusion_rows",
    "format_report",
    "reliability",
    "apply_temperature",
    "fit_temperature",
    "calibrate_out_of_fold",
    "choose_threshold",
    "coverage_rows",
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

    Raises
    ------
    ConfigError
        Fewer than 2 folds, or more than the largest class has objects.
    """
    from sklearn.model_selection import StratifiedKFold

    from pipeline.errors import ConfigError

    y = np.asarray(y)
    largest = int(np.unique(y, return_counts=True)[1].max()) if len(y) else 0
    if n_splits < 2 or n_splits > largest:
        raise ConfigError(f"{n_splits} folds: need 2 to {max(largest, 2)} (the largest class "
                          f"has {largest} objects, and every fold needs one)")
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


@dataclass(frozen=True)
class SampleCopies:
    """Extra training inputs made from some samples (e.g. sparser-cadence copies).

    A fit parameter that :func:`cross_validate` restricts to each fold's
    training samples, so that no copy of a held-out object is trained on.

    Parameters
    ----------
    X : ndarray of shape (n_copies, ...)
        The copies (same shape per row as the samples).
    origin : ndarray of int64, shape (n_copies,)
        Row of the sample each copy was made from; a copy inherits its label.
    """

    X: np.ndarray
    origin: np.ndarray

    def __post_init__(self) -> None:
        origin = np.asarray(self.origin, dtype=np.int64)
        if origin.ndim != 1 or len(origin) != len(self.X):
            raise ValueError("origin must give one sample index per copy")
        object.__setattr__(self, "origin", origin)

    def __len__(self) -> int:
        return len(self.origin)

    def for_samples(self, idx: np.ndarray) -> SampleCopies:
        """Copies of samples ``idx`` only, with ``origin`` renumbered into ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        size = max(int(self.origin.max(initial=-1)), int(idx.max(initial=-1))) + 1
        pos = np.full(size, -1, dtype=np.int64)
        pos[idx] = np.arange(len(idx))
        sel = pos[self.origin] >= 0
        return SampleCopies(self.X[sel], pos[self.origin[sel]])


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


def _fold_fit_params(fit_params: dict[str, Any], train: np.ndarray) -> dict[str, Any]:
    """Restrict sample-derived fit parameters (``for_samples``) to a fold's training rows."""
    return {k: (v.for_samples(train) if hasattr(v, "for_samples") else v)
            for k, v in fit_params.items()}


def cross_validate(
    estimator: Any,
    X: Any,
    y: Sequence[Any],
    folds: Sequence[Fold],
    *,
    fit_params: dict[str, Any] | None = None,
    fold_callback: Callable[[int, Any, Any, np.ndarray], Any] | None = None,
    keep_estimators: bool = False,
    log: Callable[[str], None] | None = None,
) -> OOFResult:
    """Fit a clone of ``estimator`` per fold and collect out-of-fold predictions.

    The one cross-validation loop of lcpipe (scikit-learn's ``cross_validate``
    is the model): the forest, the CNN and the robust-PCA classifiers all run
    through it, on the same folds.

    Parameters
    ----------
    estimator : estimator
        Unfitted scikit-learn style classifier (cloned with
        :func:`sklearn.base.clone` for each fold) with ``fit(X, y, **fit_params)``,
        ``predict(X)`` and optionally ``predict_proba(X)`` and ``classes_``.
    X : array-like of shape (n_samples, ...), DataFrame, or dict/tuple of those
        Inputs; rows are selected with ``X[idx]`` (``X.iloc[idx]`` for a
        DataFrame, per value for a dict or tuple, e.g. multi-input networks).
    y : array-like of shape (n_samples,)
        Class labels.
    folds : sequence of (train_idx, test_idx)
        Usually :func:`stratified_folds`. Every sample must be in exactly
        one test part.
    fit_params : dict, optional
        Passed to ``fit``; a value with a ``for_samples(idx)`` method (e.g.
        :class:`SampleCopies`, the CNN's augmentation) is restricted to each
        fold's training samples first.
    fold_callback : callable, optional
        ``fold_callback(i, fitted_estimator, X_test, y_test)`` is called after
        each fold; its return values are kept in ``OOFResult.fold_extras``
        (e.g. permutation importances on the held-out fold).
    keep_estimators : bool, default=False
        Keep each fold's fitted estimator in ``OOFResult.estimators``.
    log : callable, optional
        Called with one progress line per fold.

    Returns
    -------
    OOFResult
        Out-of-fold labels, probabilities and fold membership.

    Raises
    ------
    ValueError
        If the test parts of ``folds`` do not cover each sample exactly once.
    """
    from sklearn.base import clone

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
        est = clone(estimator)
        t0 = time.perf_counter()
        est.fit(_take(X, tr), y[tr], **_fold_fit_params(fit_params or {}, tr))
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
        if log is not None:
            acc = float(np.mean(y_pred[te] == y[te]))
            log(f"{type(est).__name__} fold {i + 1}/{len(folds)}: accuracy {acc:.3f}, "
                f"fit {result.fit_seconds[-1]:.1f} s")
    result.proba = proba
    return result


def train_test_split_stratified(y: Sequence[Any], test_size: float = 0.2, seed: int = 0
                                ) -> tuple[np.ndarray, np.ndarray]:
    """The one stratified train/test split of lcpipe (the same for every model).

    Classes too small to be split (a single object) go to the training part.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    test_size : float, default=0.2
        Fraction of each class held out, in (0, 1).
    seed : int, default=0
        ``random_state`` of the shuffle.

    Returns
    -------
    (ndarray, ndarray)
        Sorted integer indices of the training and the test part.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    idx = np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    single = np.isin(y, classes[counts < 2])
    tr, te = train_test_split(idx[~single], test_size=test_size, random_state=seed,
                              stratify=y[~single])
    return np.sort(np.concatenate([tr, idx[single]])), np.sort(te)


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


def metric_rows(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any],
                proba: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Rows of the ``metrics`` report table: one per class, then ``'__overall__'``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    classes : sequence of str
        The model's classes (column order of ``proba``).
    proba : ndarray of shape (n_samples, n_classes), optional
        Predicted probabilities, for the log loss (clipped at 1e-15 and renormalised:
        float32 network outputs sum to 1 only to ~1e-7).

    Returns
    -------
    list of dict
        Keys ``class``, ``precision``, ``recall``, ``f1``, ``support``,
        ``accuracy``, ``balanced_accuracy``, ``log_loss``, ``ece`` (:func:`reliability`,
        10 bins); per-class rows have None for the last four; the overall row has macro averages of
        precision, recall and F1 and ``support`` = number of samples.
    """
    from sklearn.metrics import log_loss, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    labels = [str(c) for c in classes]
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    rows = [{"class": c, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(s), "accuracy": None, "balanced_accuracy": None, "log_loss": None,
             "ece": None}
            for c, p, r, f, s in zip(labels, prec, rec, f1, support, strict=True)]
    rep = metrics_report(y_true, y_pred, labels)
    ll = ece = None
    if proba is not None and len(y_true) and np.isin(y_true, labels).all():
        p = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1.0)
        ll = float(log_loss(y_true, p / p.sum(axis=1, keepdims=True), labels=labels))
        ece = reliability(y_true, proba, labels)[0]
    rows.append({"class": "__overall__", "precision": float(np.mean(prec)),
                 "recall": float(np.mean(rec)), "f1": rep["macro_f1"],
                 "support": int(len(y_true)), "accuracy": rep["accuracy"],
                 "balanced_accuracy": rep["balanced_accuracy"], "log_loss": ll, "ece": ece})
    return rows


def confusion_rows(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]
                   ) -> list[dict[str, Any]]:
    """Rows of the ``confusion`` report table: every (true, predicted) pair of ``classes``.

    Returns
    -------
    list of dict
        Keys ``true_class``, ``predicted_class``, ``count`` (zero counts included).
    """
    from sklearn.metrics import confusion_matrix

    labels = [str(c) for c in classes]
    cm = confusion_matrix(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str),
                          labels=labels)
    return [{"true_class": t, "predicted_class": p, "count": int(cm[i, j])}
            for i, t in enumerate(labels) for j, p in enumerate(labels)]


def reliability(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any],
                n_bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Expected calibration error and reliability-diagram data of the top-class probability.

    Objects are binned by their top probability (``n_bins`` equal bins on [0, 1], the
    last one closed); in each bin the mean top probability (confidence) is compared
    with the fraction of correct answers (accuracy). ECE is the mean of
    ``|accuracy - confidence|`` over bins weighted by their counts (Guo et al. 2017).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True classes.
    proba : ndarray of shape (n, n_classes)
        Class probabilities, columns in ``classes`` order.
    classes : sequence
        Class names.
    n_bins : int
        Number of confidence bins.

    Returns
    -------
    (float, pandas.DataFrame)
        ECE (probability units, 0 = calibrated) and one row per non-empty bin:
        ``bin_low``, ``bin_high``, ``n``, ``confidence``, ``accuracy``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true).astype(str)
    top = proba.argmax(axis=1)
    conf = proba[np.arange(len(proba)), top]
    correct = np.asarray([str(c) for c in classes], dtype=object)[top] == y
    b = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    ece = 0.0
    for k in range(n_bins):
        m = b == k
        if not m.any():
            continue
        acc, cf = float(correct[m].mean()), float(conf[m].mean())
        ece += m.sum() / len(y) * abs(acc - cf)
        rows.append({"bin_low": k / n_bins, "bin_high": (k + 1) / n_bins, "n": int(m.sum()),
                     "confidence": cf, "accuracy": acc})
    return float(ece), pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "confidence",
                                                   "accuracy"])


#: Bounds of a fitted temperature (dimensionless).
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
_LOG_FLOOR = 1e-12  # floor of the true class's probability in the log loss


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: ``softmax(log(p) / T)`` per row.

    For a network ``log(p)`` equals its logits up to a per-row constant, so this is the
    temperature scaling of Guo et al. (2017); for any model it keeps each row's order of
    classes (hence the argmax and the accuracy). ``T > 1`` softens over-confident
    probabilities, ``T < 1`` sharpens under-confident ones (a forest's vote fractions).

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Probabilities (rows summing to 1, each with a positive entry; zeros stay zero,
        as in ``p ** (1 / T)`` renormalised).
    temperature : float
        T > 0.

    Returns
    -------
    ndarray of shape (n, n_classes), float64
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    with np.errstate(divide="ignore"):  # log 0 = -inf: a zero stays exactly zero
        logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any]) -> float:
    """The temperature that minimises the log loss of :func:`apply_temperature`.

    Fitted on held-out predictions (e.g. out-of-fold), by a bounded scalar search on
    ``log T`` within :data:`TEMPERATURE_BOUNDS`.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True classes, each one of ``classes``.
    proba : ndarray of shape (n, n_classes)
        Probabilities, columns in ``classes`` order.
    classes : sequence
        Class names.

    Returns
    -------
    float
        T (1.0 for no objects).
    """
    from scipy.optimize import minimize_scalar

    cls = [str(c) for c in classes]
    y = np.asarray(y_true).astype(str)
    if len(y) == 0:
        return 1.0
    unknown = sorted(set(y) - set(cls))
    if unknown:
        raise ValueError(f"true classes not among the probability columns: {unknown[:3]}")
    col = {c: j for j, c in enumerate(cls)}
    idx = np.asarray([col[c] for c in y], dtype=np.int64)
    P = np.asarray(proba, dtype=np.float64)
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-np.mean(np.log(np.clip(apply_temperature(P, np.exp(log_t))[rows, idx],
                                             _LOG_FLOOR, 1.0))))

    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibrate_out_of_fold(y_true: Sequence[Any], proba: np.ndarray, fold: Sequence[int],
                          classes: Sequence[Any]) -> tuple[float, np.ndarray]:
    """Temperature of out-of-fold probabilities, and those probabilities calibrated.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True classes.
    proba : ndarray of shape (n, n_classes)
        Out-of-fold probabilities, columns in ``classes`` order.
    fold : array-like of int, shape (n,)
        Fold of each object.
    classes : sequence
        Class names.

    Returns
    -------
    (float, ndarray)
        The temperature fitted on every fold (for new objects), and the probabilities of
        fold k scaled by the temperature fitted on the other folds, so that no object's
        calibration saw its own label.
    """
    y = np.asarray(y_true)
    fold = np.asarray(fold)
    P = np.asarray(proba, dtype=np.float64)
    out = np.empty_like(P)
    for k in np.unique(fold):
        inner = fold != k
        out[~inner] = apply_temperature(P[~inner], fit_temperature(y[inner], P[inner], classes))
    return fit_temperature(y, P, classes), out


def _top(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any]
         ) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and whether the top class is right, per object."""
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.argmax(axis=1)
    right = np.asarray([str(c) for c in classes], dtype=object)[top] == \
        np.asarray(y_true).astype(str)
    return proba[np.arange(len(proba)), top], right


def choose_threshold(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any],
                     target_accuracy: float) -> float:
    """The lowest threshold on the top probability at which the answers reach an accuracy.

    Objects are answered when their top probability is >= the threshold. Among the
    thresholds equal to an object's top probability (and 0), the lowest one whose
    answered objects are right at least ``target_accuracy`` of the time is returned:
    the most objects answered for that accuracy. Choose it on validation (out-of-fold)
    predictions, never on the test part.

    Parameters
    ----------
    y_true : array-like of shape (n,)
    proba : ndarray of shape (n, n_classes)
    classes : sequence
        Class names, the column order of ``proba``.
    target_accuracy : float
        Wanted accuracy of the answered objects, in (0, 1].

    Returns
    -------
    float
        The threshold (probability); 0.0 when every answer together reaches the
        target; just above the highest top probability (nothing answered) when no
        threshold does.
    """
    conf, right = _top(y_true, proba, classes)
    if not len(conf):
        return 0.0
    order = np.argsort(-conf, kind="stable")
    c, r = conf[order], right[order]
    acc = np.cumsum(r) / np.arange(1, len(r) + 1)  # accuracy of the k most confident
    # a threshold answers every object tied at it: only the last of a run of ties counts
    last = np.r_[c[1:] != c[:-1], True]
    ok = np.flatnonzero(last & (acc >= target_accuracy))
    if not len(ok):
        return float(np.nextafter(c[0], np.inf))
    k = int(ok[-1])
    return 0.0 if k == len(c) - 1 else float(c[k])


def coverage_rows(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any],
                  thresholds: Sequence[float] = tuple(np.round(np.arange(0, 1, 0.05), 2))
                  ) -> pd.DataFrame:
    """Accuracy against coverage: the answered fraction and its accuracy per threshold.

    Returns
    -------
    pandas.DataFrame
        ``threshold``, ``answered`` (objects with top probability >= threshold),
        ``coverage`` (their fraction), ``accuracy`` (of them; NaN when none).
    """
    conf, right = _top(y_true, proba, classes)
    rows = []
    for t in thresholds:
        m = conf >= t
        rows.append({"threshold": float(t), "answered": int(m.sum()),
                     "coverage": float(m.mean()) if len(m) else 0.0,
                     "accuracy": float(right[m].mean()) if m.any() else float("nan")})
    return pd.DataFrame(rows, columns=["threshold", "answered", "coverage", "accuracy"])
