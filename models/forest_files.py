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
    "check_feature_table",
    "load_training_set",
    "train_forest_file",
    "predict_forest_file",
    "cv_forest_file",
]

#: Per-band features left out of the forest by default (apparent magnitude levels).
DEFAULT_EXCLUDE: tuple[str, ...] = ("mean", "median", "weighted_mean")


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
        See :func:`pipeline.labels.select_classes`.
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
    from pipeline.labels import join_labels, read_labels

    frame, meta = read_features(features_path)
    labels = read_labels(labels_path)
    cols = select_feature_columns(meta, exclude)
    joined = join_labels(frame["object_id"].to_numpy(), labels, classes, source=labels_path)
    return TrainingSet(
        X=frame.iloc[joined.index][cols].reset_index(drop=True),
        y=joined.y,
        object_id=joined.object_id,
        feature_names=cols,
        feature_set_version=str(meta["feature_set_version"]),
        counts=joined.counts,
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
        See :func:`pipeline.labels.select_classes`.
    params : dict, optional
        Forest parameters.
    exclude : sequence of str, default=DEFAULT_EXCLUDE
        Per-band features to leave out.

    Returns
    -------
    dict
        Counts, classes, number of features, training-data hash, output path.
    """
    from pipeline.hashing import data_hash

    from .forest import LightCurveForest, save_forest

    ts = load_training_set(features_path, labels_path, classes, exclude)
    model = LightCurveForest(**(params or {})).fit(ts.X, ts.y)
    digest = data_hash(ts.X.to_numpy(), ts.y, names=ts.feature_names, object_ids=ts.object_id)
    save_forest(model, out_path, feature_names=ts.feature_names,
                feature_set_version=ts.feature_set_version, training_hash=digest,
                extra={"training_counts": ts.counts, "features_source": str(features_path),
                       "labels_source": str(labels_path)})
    return {"output": str(out_path), "classes": [str(c) for c in model.classes_],
            "n_features": len(ts.feature_names), "training_data_hash": digest, **ts.counts}


def check_feature_table(fmeta: dict[str, Any], frame: pd.DataFrame, mmeta: dict[str, Any],
                        source: object, model_source: object) -> pd.DataFrame:
    """The model's feature columns of a feature table, after checking they match.

    Parameters
    ----------
    fmeta : dict
        ``lcpipe_features`` metadata of the table.
    frame : pandas.DataFrame
        The feature table.
    mmeta : dict
        Metadata of the forest (:func:`models.forest.load_forest`).
    source, model_source : str or path-like
        Named in errors.

    Returns
    -------
    pandas.DataFrame
        ``frame[mmeta['feature_names']]``.

    Raises
    ------
    pipeline.errors.InputError
        A feature-set version the model cannot read
        (:func:`features.api.versions_compatible`: another major version or period search,
        or an older minor version), or missing columns.
    """
    from features.api import versions_compatible
    from pipeline.errors import InputError

    if not versions_compatible(str(fmeta["feature_set_version"]),
                               str(mmeta["feature_set_version"])):
        raise InputError(source,
                         f"feature-set version {fmeta['feature_set_version']!r}, but model "
                         f"{model_source} was trained on version "
                         f"{mmeta['feature_set_version']!r}; recompute the features with the "
                         "same lcpipe feature set (and period-search settings)")
    missing = [c for c in mmeta["feature_names"] if c not in frame.columns]
    if missing:
        raise InputError(source, f"{len(missing)} feature columns the model needs are "
                         f"missing, e.g. {missing[:3]} (bands differ?)")
    return frame[mmeta["feature_names"]]


def predict_forest_file(model_path: str | os.PathLike[str],
                        features_path: str | os.PathLike[str],
                        out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Predict classes for a feature table and write them in lcpipe's prediction schema.

    Output: :func:`models.predictions.write_predictions` rows with model
    ``'forest'`` and split ``'classify'``.

    Raises
    ------
    pipeline.errors.InputError
        The feature table has another feature-set version than the model, or
        lacks some of the model's feature columns.
    """
    from features.api import read_features

    from .forest import load_forest
    from .predictions import new_run_id, prediction_frame, write_predictions

    model, mmeta = load_forest(model_path)
    frame, fmeta = read_features(features_path)
    X = check_feature_table(fmeta, frame, mmeta, features_path, model_path)
    classes = [str(c) for c in model.classes_]
    pred = prediction_frame(frame["object_id"], "forest", classes, model.predict_proba(X),
                            run_id=new_run_id("forest"), split="classify")
    write_predictions(pred, out_path, metadata={
        "model": str(model_path), "input": str(features_path),
        "feature_set_version": mmeta["feature_set_version"],
        "training_data_hash": mmeta["training_data_hash"]})
    counts = pred["predicted_class"].value_counts()
    return {"output": str(out_path), "n_objects": int(len(pred)),
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
        See :func:`pipeline.labels.select_classes`.
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

    from pipeline.io import write_json_atomic

    from .forest import LightCurveForest, cross_validate_forest
    from .predictions import new_run_id, prediction_frame, write_predictions

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
        pred = prediction_frame(ts.object_id, "forest", oof.classes, oof.proba,
                                run_id=new_run_id("forest-cv"), split="cv", fold=oof.fold,
                                true_class=ts.y)
        p = Path(out_path)
        write_predictions(pred, p.with_name(p.stem + ".oof.parquet"),
                          metadata={"input": str(features_path), "labels": str(labels_path)})
    return report
