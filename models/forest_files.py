"""File-level random-forest workflows: train, predict and cross-validate from feature tables.

Each function reads a feature table written by ``lcpipe features``
(:func:`features.read_features`) and, where needed, a labels table
(:func:`pipeline.labels.read_labels`), and writes one output file
atomically. The ``lcpipe forest`` subcommands call exactly one of them.

Features used by default: every feature column of the table except the
apparent-magnitude levels (``mean``, ``median``, ``weighted_mean`` of each
band). Those encode distance and survey selection rather than variability
class; colours (magnitude differences) are kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_EXCLUDE",
    "TrainingSet",
    "select_feature_columns",
    "resolve_classes",
    "load_training_set",
    "train_forest_file",
    "predict_forest_file",
    "cv_forest_file",
]

#: Per-band features left out of the forest by default (apparent magnitude levels).
DEFAULT_EXCLUDE: tuple[str, ...] = ("mean", "median", "weighted_mean")

PREDICTIONS_METADATA_KEY = "lcpipe_predictions"


def select_feature_columns(meta: dict[str, Any],
                           exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[str]:
    """Feature columns of a table's metadata, minus per-band features named in ``exclude``.

    Parameters
    ----------
    meta : dict
        ``lcpipe_features`` metadata of a feature table.
    exclude : sequence of str, default=DEFAULT_EXCLUDE
        Feature names (without the ``band:`` prefix) to leave out.

    Returns
    -------
    list of str
    """
    drop = set(exclude)
    return [c for c in meta["feature_columns"] if c.split(":", 1)[-1] not in drop]


def resolve_classes(classes: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Expand a class selection.

    Parameters
    ----------
    classes : {"all", "paper7"}, comma-separated str, or sequence of str
        ``"paper7"`` is the 7 classes of Mahabal et al. (2017)
        (:data:`pipeline.labels.PAPER_CLASSES`); ``"all"`` every class in
        ``available``.
    available : sequence of str
        Classes present in the labels.

    Returns
    -------
    list of str

    Raises
    ------
    pipeline.errors.ConfigError
        A requested class is not among the labels.
    """
    from pipeline.errors import ConfigError
    from pipeline.labels import PAPER_CLASSES

    avail = sorted(set(map(str, available)))
    if isinstance(classes, str):
        if classes == "all":
            return avail
        if classes == "paper7":
            wanted = list(PAPER_CLASSES)
        else:
            wanted = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        wanted = list(map(str, classes))
    missing = [c for c in wanted if c not in avail]
    if missing:
        raise ConfigError(f"classes not in the labels: {', '.join(missing)} "
                          f"(available: {', '.join(avail)})")
    if len(wanted) < 2:
        raise ConfigError("need at least two classes")
    return wanted


@dataclass
class TrainingSet:
    """Labelled rows of a feature table.

    Attributes
    ----------
    X : pandas.DataFrame
        Feature columns of the labelled objects.
    y : ndarray of str
        Labels.
    object_id : ndarray of str
        Objects, in row order.
    feature_names : list of str
        Columns of ``X``.
    feature_set_version : str
        From the table's metadata.
    counts : dict
        Objects with features but no label, labels without features, objects
        of classes not selected, and per-class counts.
    """

    X: pd.DataFrame
    y: np.ndarray
    object_id: np.ndarray
    feature_names: list[str]
    feature_set_version: str
    counts: dict[str, Any] = field(default_factory=dict)


def load_training_set(features_path: str | os.PathLike[str],
                      labels_path: str | os.PathLike[str],
                      classes: str | Sequence[str] = "all",
                      exclude: Sequence[str] = DEFAULT_EXCLUDE) -> TrainingSet:
    """Join a feature table with labels and keep the selected classes.

    Parameters
    ----------
    features_path : path-like
        Feature table (``lcpipe features`` output).
    labels_path : path-like
        Labels table (``object_id,label``).
    classes : str or sequence of str, default="all"
        See :func:`resolve_classes`.
    exclude : sequence of str, default=DEFAULT_EXCLUDE
        Per-band features to leave out.

    Returns
    -------
    TrainingSet

    Raises
    ------
    pipeline.errors.InputError
        No labelled object in the feature table.
    """
    from features.api import read_features
    from pipeline.errors import InputError
    from pipeline.labels import read_labels

    frame, meta = read_features(features_path)
    labels = read_labels(labels_path)
    cols = select_feature_columns(meta, exclude)
    lab = labels.reindex(frame["object_id"].to_numpy())
    has = lab.notna().to_numpy()
    if not has.any():
        raise InputError(labels_path, f"no object of {features_path} has a label")
    chosen = resolve_classes(classes, labels[labels.index.isin(frame["object_id"])].unique())
    keep = has & lab.isin(chosen).to_numpy()
    y = lab.to_numpy()[keep].astype(str)
    counts = {
        "n_features_rows": int(len(frame)),
        "n_unlabelled": int((~has).sum()),
        "n_labels_without_features": int((~labels.index.isin(frame["object_id"])).sum()),
        "n_other_classes": int((has & ~keep).sum()),
        "n_used": int(keep.sum()),
        "class_counts": {c: int(np.sum(y == c)) for c in chosen},
    }
    return TrainingSet(
        X=frame.loc[keep, cols].reset_index(drop=True),
        y=y,
        object_id=frame["object_id"].to_numpy()[keep].astype(str),
        feature_names=cols,
        feature_set_version=str(meta["feature_set_version"]),
        counts=counts,
    )


def train_forest_file(features_path: str | os.PathLike[str],
                      labels_path: str | os.PathLike[str],
                      out_path: str | os.PathLike[str],
                      classes: str | Sequence[str] = "all",
                      params: dict[str, Any] | None = None,
                      exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, Any]:
    """Train a :class:`models.forest.LightCurveForest` and save it with metadata.

    Parameters
    ----------
    features_path, labels_path : path-like
        Feature table and labels.
    out_path : path-like
        Model file (skops), written atomically.
    classes : str or sequence of str, default="all"
        See :func:`resolve_classes`.
    params : dict, optional
        Forest parameters.
    exclude : sequence of str, default=DEFAULT_EXCLUDE
        Per-band features to leave out.

    Returns
    -------
    dict
        Counts, classes, number of features, training-data hash, output path.
    """
    from .forest import LightCurveForest, save_forest, training_data_hash

    ts = load_training_set(features_path, labels_path, classes, exclude)
    model = LightCurveForest(**(params or {})).fit(ts.X, ts.y)
    digest = training_data_hash(ts.X.to_numpy(), ts.y, ts.feature_names, ts.object_id)
    save_forest(model, out_path, feature_names=ts.feature_names,
                feature_set_version=ts.feature_set_version, training_hash=digest,
                extra={"training_counts": ts.counts, "features_source": str(features_path),
                       "labels_source": str(labels_path)})
    return {"output": str(out_path), "classes": [str(c) for c in model.classes_],
            "n_features": len(ts.feature_names), "training_data_hash": digest, **ts.counts}


def predict_forest_file(model_path: str | os.PathLike[str],
                        features_path: str | os.PathLike[str],
                        out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Predict classes for a feature table and write them as Parquet.

    Output columns: ``object_id``, ``predicted_class``, and ``prob_{class}``
    for every class of the model.

    Raises
    ------
    pipeline.errors.InputError
        The feature table has another feature-set version than the model, or
        lacks some of the model's feature columns.
    """
    import pyarrow as pa

    from features.api import read_features
    from pipeline.errors import InputError
    from pipeline.io import write_parquet_atomic

    from .forest import load_forest

    model, mmeta = load_forest(model_path)
    frame, fmeta = read_features(features_path)
    if str(fmeta["feature_set_version"]) != str(mmeta["feature_set_version"]):
        raise InputError(features_path,
                         f"feature-set version {fmeta['feature_set_version']!r}, but model "
                         f"{model_path} was trained on version "
                         f"{mmeta['feature_set_version']!r}; recompute the features with the "
                         "same lcpipe feature set (and period-search settings)")
    missing = [c for c in mmeta["feature_names"] if c not in frame.columns]
    if missing:
        raise InputError(features_path, f"{len(missing)} feature columns the model needs are "
                         f"missing, e.g. {missing[:3]} (bands differ?)")
    proba = model.predict_proba(frame[mmeta["feature_names"]])
    classes = [str(c) for c in model.classes_]
    out = pd.DataFrame({"object_id": frame["object_id"].astype(str),
                        "predicted_class": np.asarray(classes, dtype=object)[
                            np.argmax(proba, axis=1)]})
    for j, c in enumerate(classes):
        out[f"prob_{c}"] = proba[:, j]
    write_parquet_atomic(pa.Table.from_pandas(out, preserve_index=False), out_path, metadata={
        PREDICTIONS_METADATA_KEY: {
            "model": str(model_path),
            "classes": classes,
            "feature_set_version": mmeta["feature_set_version"],
            "training_data_hash": mmeta["training_data_hash"],
        }})
    counts = out["predicted_class"].value_counts()
    return {"output": str(out_path), "n_objects": int(len(out)),
            "predicted_counts": {c: int(counts.get(c, 0)) for c in classes}}


def cv_forest_file(features_path: str | os.PathLike[str],
                   labels_path: str | os.PathLike[str],
                   out_path: str | os.PathLike[str] | None = None,
                   classes: str | Sequence[str] = "paper7",
                   params: dict[str, Any] | None = None,
                   importances: bool = False,
                   n_repeats: int = 3,
                   n_splits: int = 5,
                   seed: int = 0,
                   exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, Any]:
    """Stratified k-fold CV of the forest on a labelled feature table.

    Parameters
    ----------
    features_path, labels_path : path-like
        Feature table and labels.
    out_path : path-like, optional
        JSON report, written atomically (and the out-of-fold predictions as
        ``<out_path stem>.oof.parquet`` beside it).
    classes : str or sequence of str, default="paper7"
        See :func:`resolve_classes`.
    params : dict, optional
        Forest parameters.
    importances : bool, default=False
        Permutation importances on the held-out folds.
    n_repeats : int, default=3
        Shuffles per feature and fold for the importances.
    n_splits : int, default=5
        Folds (:func:`models.evaluation.stratified_folds`).
    seed : int, default=0
        Fold seed.
    exclude : sequence of str, default=DEFAULT_EXCLUDE
        Per-band features to leave out.

    Returns
    -------
    dict
        JSON-serialisable report: metrics (accuracy, balanced accuracy,
        macro-F1, per-class recall and precision, confusion matrix), per-fold
        metrics, counts, settings, importances if requested.
    """
    import time
    from pathlib import Path

    import pyarrow as pa

    from pipeline.io import write_json_atomic, write_parquet_atomic

    from .forest import LightCurveForest, cross_validate_forest

    ts = load_training_set(features_path, labels_path, classes, exclude)
    t0 = time.perf_counter()
    params = dict(params or {})
    cv = cross_validate_forest(ts.X.to_numpy(), ts.y, feature_names=ts.feature_names,
                               params=params, n_splits=n_splits, seed=seed,
                               importances=importances, n_repeats=n_repeats)
    report: dict[str, Any] = {
        "classes_selection": classes if isinstance(classes, str) else list(classes),
        "n_splits": n_splits,
        "seed": seed,
        "params": LightCurveForest(**params).get_params(),
        "n_features": len(ts.feature_names),
        "feature_set_version": ts.feature_set_version,
        "features_source": str(features_path),
        "counts": ts.counts,
        **cv["report"],
        "folds": cv["fold_reports"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if importances:
        report["permutation_importances"] = cv["importances"]
    if out_path is not None:
        write_json_atomic(report, out_path)
        oof = cv["oof"]
        tab = pd.DataFrame({"object_id": ts.object_id, "label": ts.y,
                            "predicted_class": oof.y_pred, "fold": oof.fold})
        for j, c in enumerate(oof.classes):
            tab[f"prob_{c}"] = oof.proba[:, j]
        p = Path(out_path)
        write_parquet_atomic(pa.Table.from_pandas(tab, preserve_index=False),
                             p.with_name(p.stem + ".oof.parquet"))
    return report
