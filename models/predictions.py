"""The one prediction schema of lcpipe, for every model, command and flow.

A prediction table is long: one row per object x model (x split), with
``run_id, object_id, split, fold, true_class, model, predicted_class,
probability``, one ``prob_<class>`` column per class, ``models_agree``, and the
``answer`` (the predicted class, or ``'unknown'`` below the model's confidence
threshold) with its ``unknown_reason``.
``lcpipe forest predict``, ``lcpipe cnn predict``, ``lcpipe classify`` and the
train flow's ``predictions`` report all write it; its Arrow schema is
:func:`pipeline.reports.table_schema` ``('predictions', classes)`` and its
columns are documented in ``docs/reports.md``.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PREDICTIONS_METADATA_KEY",
    "new_run_id",
    "prediction_frame",
    "class_columns",
    "with_agreement",
    "apply_unknown",
    "UNKNOWN",
    "write_predictions",
    "read_predictions",
    "check_predictions",
    "merge_predictions",
    "upsert_predictions",
]

#: File-metadata key of a stand-alone prediction file (JSON: classes, models, sources).
PREDICTIONS_METADATA_KEY = "lcpipe.predictions"


def new_run_id(prefix: str = "run") -> str:
    """A unique run id: ``<prefix>-YYYYmmddTHHMMSSZ-<6 hex>`` (UTC; starts with a letter)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix + '-' if prefix else ''}{stamp}-{secrets.token_hex(3)}"


def prediction_frame(object_id: Sequence[Any], model: str, classes: Sequence[Any],
                     proba: np.ndarray | None = None, predicted: Sequence[Any] | None = None,
                     *, run_id: str, split: str, fold: Sequence[int] | None = None,
                     true_class: Sequence[Any] | None = None) -> pd.DataFrame:
    """Prediction rows of one model.

    Parameters
    ----------
    object_id : sequence of str, shape (n,)
        Objects.
    model : str
        Model name, e.g. ``'forest'``, ``'cnn'``, ``'rpca_nearest'``.
    classes : sequence of str
        The model's classes: column order of ``proba`` and the ``prob_`` columns.
    proba : ndarray of shape (n, n_classes), optional
        Class probabilities; the predicted class is their argmax.
    predicted : sequence of str, optional
        Predicted classes, for a model without probabilities (then
        ``probability`` and the ``prob_`` columns are null).
    run_id : str
        Run that made the predictions.
    split : {'test', 'cv', 'train', 'classify'}
        Which part of the data: held-out test part, CV folds, training
        objects, or new objects of ``lcpipe classify``.
    fold : sequence of int, optional
        CV fold of each object (split ``'cv'``).
    true_class : sequence of str, optional
        Labels, where known.

    Returns
    -------
    pandas.DataFrame
        Columns in schema order; ``models_agree`` is null (see :func:`with_agreement`).
    """
    oid = np.asarray(object_id).astype(str)
    n = len(oid)
    cls = [str(c) for c in classes]
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != (n, len(cls)):
            raise ValueError(f"proba must have shape ({n}, {len(cls)}), got {proba.shape}")
        best = np.argmax(proba, axis=1) if n else np.zeros(0, np.int64)
        pred = np.asarray(cls, dtype=object)[best] if n else np.zeros(0, dtype=object)
        prob = proba[np.arange(n), best] if n else np.zeros(0)
    elif predicted is not None:
        pred = np.asarray(predicted).astype(str).astype(object)
        prob = np.full(n, np.nan)
    else:
        raise ValueError("give proba or predicted")
    frame = pd.DataFrame({
        "run_id": pd.Series([run_id] * n, dtype=object),
        "object_id": pd.Series(oid, dtype=object),
        "split": pd.Series([split] * n, dtype=object),
        "fold": pd.array(np.asarray(fold, dtype=np.int64) if fold is not None else [None] * n,
                         dtype="Int32"),
        "true_class": pd.Series(np.asarray(true_class).astype(str) if true_class is not None
                                else [None] * n, dtype=object),
        "model": pd.Series([model] * n, dtype=object),
        "predicted_class": pd.Series(pred, dtype=object),
        "probability": prob,
    })
    for j, c in enumerate(cls):
        frame[f"prob_{c}"] = proba[:, j] if proba is not None else np.nan
    frame["models_agree"] = pd.array([None] * n, dtype="boolean")
    frame["answer"] = pd.Series(pred, dtype=object)
    frame["unknown_reason"] = pd.Series([None] * n, dtype=object)
    return frame


#: The answer of a prediction not confident enough to be given (see :func:`apply_unknown`).
UNKNOWN = "unknown"


def apply_unknown(frame: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """Set ``answer`` to ``'unknown'`` where a model's top probability is below its threshold.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prediction rows (:func:`prediction_frame`).
    thresholds : dict
        Model name -> threshold on ``probability`` (chosen on CV predictions by
        :func:`models.evaluation.choose_threshold`). Models not named, and models
        without probabilities, always answer their predicted class.

    Returns
    -------
    pandas.DataFrame
        A copy with ``answer`` (the predicted class or ``'unknown'``) and
        ``unknown_reason`` (why, e.g. ``'top probability 0.41 < 0.62'``; null when answered).
    """
    frame = frame.copy()
    answer = frame["predicted_class"].astype(object).to_numpy().copy()
    reason = np.full(len(frame), None, dtype=object)
    prob = frame["probability"].to_numpy(dtype=np.float64, na_value=np.nan)
    model = frame["model"].astype(str).to_numpy()
    for m, tau in thresholds.items():
        low = (model == m) & (prob < tau)
        answer[low] = UNKNOWN
        reason[low] = [f"top probability {p:.3f} < {tau:.3f} (threshold of {m})"
                       for p in prob[low]]
    frame["answer"] = pd.Series(answer, index=frame.index, dtype=object)
    frame["unknown_reason"] = pd.Series(reason, index=frame.index, dtype=object)
    return frame


def class_columns(proba: np.ndarray | None, have: Any, classes: list[str]) -> np.ndarray | None:
    """Probability columns in ``classes`` order (a class the model lacks gets 0)."""
    if proba is None:
        return None
    have = [str(c) for c in have]
    if have == classes:
        return proba
    out = np.zeros((len(proba), len(classes)))
    out[:, [classes.index(c) for c in have]] = proba
    return out


def with_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Set ``models_agree``: all models with a row for the same object and split agree.

    An object predicted by only one model gets null (nothing to compare).
    """
    frame = frame.copy()
    g = frame.groupby(["object_id", "split"], sort=False)["predicted_class"]
    n_models = g.transform("size")
    agree = g.transform("nunique") == 1
    frame["models_agree"] = pd.array(np.where(n_models > 1, agree, None), dtype="boolean")
    return frame


def _prob_classes(frame: pd.DataFrame) -> list[str]:
    return [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike[str],
                      metadata: dict[str, Any] | None = None) -> Path:
    """Write a prediction table (one or more models) as one Parquet file, atomically.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows from :func:`prediction_frame` (concatenated over models).
    path : path-like
        Destination file.
    metadata : dict, optional
        Stored under :data:`PREDICTIONS_METADATA_KEY` with the classes and models.

    Returns
    -------
    Path
    """
    import pyarrow as pa

    from pipeline.io import write_parquet_atomic
    from pipeline.reports import METADATA_KEY, REPORT_SCHEMA_VERSION, table_schema

    classes = _prob_classes(frame)
    schema = table_schema("predictions", classes)
    table = pa.Table.from_pandas(frame[schema.names], preserve_index=False).cast(schema)
    meta = {"classes": classes, "models": sorted(map(str, frame["model"].unique())),
            **(metadata or {})}
    return write_parquet_atomic(table, path, metadata={
        PREDICTIONS_METADATA_KEY: meta,
        METADATA_KEY: {"schema_version": REPORT_SCHEMA_VERSION, "table": "predictions",
                       "run_id": str(frame["run_id"].iloc[0]) if len(frame) else None}})


def read_predictions(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a prediction file written by :func:`write_predictions`.

    Returns
    -------
    (pandas.DataFrame, dict)
        The rows and the :data:`PREDICTIONS_METADATA_KEY` metadata.

    Raises
    ------
    pipeline.errors.InputError
        Unreadable file, or not an lcpipe prediction file.
    """
    import pyarrow.parquet as pq

    from pipeline.errors import InputError
    from pipeline.io import read_json_metadata

    meta = read_json_metadata(path, PREDICTIONS_METADATA_KEY)
    try:
        import pyarrow as pa

        nullable = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
                    pa.bool_(): pd.BooleanDtype()}
        frame = pq.read_table(path).to_pandas(types_mapper=nullable.get)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(path, f"cannot read predictions: {exc}") from exc
    check_predictions(frame, path)
    return frame, meta


def check_predictions(frame: pd.DataFrame, source: object) -> None:
    """The contract of a prediction table, or InputError naming the first object that breaks it.

    Columns ``object_id``, ``model``, ``predicted_class``; one row per (run, object, model,
    split, fold); probabilities in [0, 1] (null for a model without them, e.g.
    ``rpca_nearest``), summing to 1 per row, their argmax the predicted class.
    """
    from pipeline.errors import InputError

    missing = [c for c in ("object_id", "model", "predicted_class") if c not in frame.columns]
    if missing:
        raise InputError(source, f"prediction table lacks {', '.join(missing)}")
    key = [c for c in ("run_id", "object_id", "model", "split", "fold") if c in frame.columns]
    dup = frame.duplicated(key)
    if dup.any():
        raise InputError(source, "predicted twice for the same run, model, split and fold",
                         object_id=frame.loc[dup, "object_id"].iloc[0])
    classes = _prob_classes(frame)
    if not classes or not len(frame):
        return
    p = frame[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64, na_value=np.nan)
    has = ~np.isnan(p).all(axis=1)
    q = p[has]
    bad = ~((q >= 0) & (q <= 1)).all(axis=1) | (np.abs(q.sum(axis=1) - 1) > 1e-6)
    if bad.any():
        raise InputError(source, "probabilities outside [0, 1] or not summing to 1",
                         object_id=frame.loc[has, "object_id"].iloc[int(np.argmax(bad))])
    arg = np.asarray(classes, dtype=object)[np.argmax(q, axis=1)]
    top = q.max(axis=1)
    pred = frame.loc[has, "predicted_class"].astype(str).to_numpy()
    # the named class must hold the largest probability (ties allowed)
    held = q[np.arange(len(q)), [classes.index(c) if c in classes else 0 for c in pred]]
    wrong = (held < top - 1e-12) | ~np.isin(pred, classes)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise InputError(source, f"predicted class {pred[i]!r} is not the most probable "
                         f"({arg[i]!r})", object_id=frame.loc[has, "object_id"].iloc[i])
    if "answer" in frame.columns:
        ans = frame["answer"]
        odd = ans.notna() & (ans != frame["predicted_class"]) & (ans != UNKNOWN)
        if odd.any():
            raise InputError(source, "answer is neither the predicted class nor "
                             f"{UNKNOWN!r}", object_id=frame.loc[odd, "object_id"].iloc[0])


def merge_predictions(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                      run_id: str, metadata: dict[str, Any] | None = None) -> Path:
    """Concatenate prediction files (e.g. a flow's chunks) into one, stamped with ``run_id``.

    Chunk results may come from the cache of an earlier run: their rows get this
    run's id.

    Returns
    -------
    Path
    """
    frame = pd.concat([read_predictions(p)[0] for p in paths], ignore_index=True)
    frame["run_id"] = run_id
    return write_predictions(frame, out, metadata)


def upsert_predictions(previous: str | os.PathLike[str] | None,
                       new: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                       run_id: str, drop: set[str] | None = None,
                       metadata: dict[str, Any] | None = None,
                       only: set[str] | None = None) -> Path:
    """The latest prediction per object: ``previous`` rows, replaced by ``new`` ones.

    Rows of ``previous`` whose object has rows in ``new`` or is in ``drop`` are removed;
    ``new`` rows are stamped with ``run_id`` (they may come from a cache). Rows are sorted
    by object and model, so the same content always gives the same file.

    Parameters
    ----------
    previous : path-like or None
        The current table (None or a missing file: start empty).
    new : sequence of path-like
        Prediction files of the objects recomputed.
    out : path-like
        Output (may be ``previous``: written atomically).
    run_id : str
        The run that computed ``new``.
    drop : set of str, optional
        Objects to remove without a replacement (e.g. quarantined now).
    metadata : dict, optional
        Stored under :data:`PREDICTIONS_METADATA_KEY`.
    only : set of str, optional
        Take only these objects' rows from ``new`` (a recomputed chunk also holds objects
        that did not change: they keep their previous rows and run_id).

    Returns
    -------
    Path
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline.io import write_parquet_atomic
    from pipeline.reports import METADATA_KEY, REPORT_SCHEMA_VERSION

    # Arrow all the way: a survey's table has ~10^6 rows and only a few change
    tables = [_read_prediction_table(p) for p in new]
    fresh = pa.concat_tables(tables) if tables else None
    if fresh is not None:
        if only is not None:
            fresh = fresh.filter(pc.is_in(fresh.column("object_id"),
                                          value_set=pa.array(sorted(only), pa.string())))
        i = fresh.schema.get_field_index("run_id")
        fresh = fresh.set_column(i, fresh.schema.field(i),
                                 pa.array(np.full(fresh.num_rows, run_id, dtype=object),
                                          pa.string()))
    gone = set(drop or ())
    if fresh is not None:
        gone |= set(pc.unique(fresh.column("object_id")).to_pylist())
    old = None
    if previous is not None and Path(previous).exists():
        old = _read_prediction_table(previous)
        if fresh is not None and old.schema != fresh.schema:
            raise ValueError(f"{previous}: its columns differ from the new predictions' "
                             "(another model's classes?)")
        old = old.filter(pc.invert(pc.is_in(old.column("object_id"),
                                            value_set=pa.array(sorted(gone), pa.string()))))
    parts = [t for t in (old, fresh) if t is not None]
    if not parts:
        raise ValueError("no predictions to write")
    table = pa.concat_tables(parts).sort_by([("object_id", "ascending"),
                                             ("model", "ascending")])
    classes = [c[len("prob_"):] for c in table.column_names if c.startswith("prob_")]
    models = sorted(pc.unique(table.column("model")).to_pylist())
    return write_parquet_atomic(table, out, metadata={
        PREDICTIONS_METADATA_KEY: {"classes": classes, "models": models, **(metadata or {})},
        METADATA_KEY: {"schema_version": REPORT_SCHEMA_VERSION, "table": "predictions",
                       "run_id": table.column("run_id")[0].as_py() if table.num_rows
                       else None}})


def _read_prediction_table(path: str | os.PathLike[str]) -> Any:
    """A prediction file as an Arrow table in its schema (metadata dropped), or InputError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.errors import InputError
    from pipeline.io import read_json_metadata
    from pipeline.reports import table_schema

    meta = read_json_metadata(path, PREDICTIONS_METADATA_KEY)
    try:
        table = pq.read_table(path)
        schema = table_schema("predictions", [str(c) for c in meta.get("classes", [])])
        for f in schema:  # columns of a later minor schema version: null in older files
            if f.name not in table.column_names and f.nullable:
                table = table.append_column(f, pa.nulls(table.num_rows, f.type))
        return table.select(schema.names).cast(schema).replace_schema_metadata(None)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(path, f"cannot read predictions: {exc}") from exc
