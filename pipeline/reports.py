"""The report store: every run's summary, metrics, confusion counts and predictions as Parquet.

A report directory holds all runs, appended run after run, hive-partitioned by ``run_id``::

    REPORT_DIR/
      runs/run_id=<id>/part-0.parquet
      metrics/run_id=<id>/part-0.parquet
      confusion/run_id=<id>/part-0.parquet
      predictions/run_id=<id>/part-0.parquet
      figures/run_id=<id>/*.png

It is a versioned interface (:data:`REPORT_SCHEMA_VERSION`) that outside users read with
DuckDB, pandas or pyarrow; ``docs/reports.md`` documents every column and gives queries.

The ``run_id`` is not stored as a column inside the part files: it is the directory name
(hive partition) and the ``run_id`` entry of each file's ``lcpipe.report`` metadata. A
column inside the file would clash with the partition column in ``pandas.read_parquet``
(string vs dictionary). Each file is written atomically; writing a table again for the same
run replaces its file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import ConfigError, InputError
from .io import atomic_path, write_parquet_atomic

__all__ = [
    "OVERALL",
    "REPORT_SCHEMA_VERSION",
    "METADATA_KEY",
    "TABLES",
    "table_schema",
    "write_report_table",
    "read_report",
    "list_runs",
    "latest_run_id",
    "figure_path",
    "plot_confusion",
    "plot_reliability",
    "comparison_markdown",
    "robustness_markdown",
]

REPORT_SCHEMA_VERSION = "1.3"
METADATA_KEY = "lcpipe.report"
TABLES: tuple[str, ...] = ("runs", "metrics", "confusion", "predictions", "calibration",
                          "coverage", "importances", "class_features", "class_maps",
                          "activation_check", "robustness_objects", "robustness_classes",
                          "cadence", "adversarial_objects", "adversarial_classes")

#: ``class`` / ``predicted_class`` of the rows that summarise every class
OVERALL = "__overall__"
_OVERALL = OVERALL
_SPLITS: tuple[str, ...] = ("train", "cv", "test")
_STATUSES: tuple[str, ...] = ("completed", "failed")
_PROB_PREFIX = "prob_"
_RUN_ID_MAX = 128
# A run_id starts with a letter so that hive readers (pyarrow, pandas, DuckDB) infer the
# partition column as a string: "001" would be read as the integer 1 and "2024-01-01" as a
# date. DuckDB also reads these three words as dates.
_RUN_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_RUN_ID_WORDS = frozenset({"inf", "infinity", "epoch"})

_UTC = pa.timestamp("us", tz="UTC")

# (name, type, nullable) for every table but the per-class columns of predictions
_FIELDS: dict[str, tuple[tuple[str, pa.DataType, bool], ...]] = {
    "runs": (
        ("run_id", pa.string(), False),
        ("flow", pa.string(), False),
        ("status", pa.string(), False),
        ("started_utc", _UTC, False),
        ("finished_utc", _UTC, False),
        ("parameters", pa.string(), False),
        ("input_data_hash", pa.string(), False),
        ("lcpipe_version", pa.string(), False),
        ("package_versions", pa.string(), False),
        ("git_commit", pa.string(), True),
        ("stage_seconds", pa.string(), False),
        ("objects_in", pa.int64(), False),
        ("objects_quarantined", pa.int64(), False),
        ("objects_classified", pa.int64(), False),
        ("bundle", pa.string(), True),
        ("model_hashes", pa.string(), True),  # 1.2
    ),
    "metrics": (
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("split", pa.string(), False),
        ("class", pa.string(), False),
        ("precision", pa.float64(), True),
        ("recall", pa.float64(), True),
        ("f1", pa.float64(), True),
        ("support", pa.int64(), False),
        ("accuracy", pa.float64(), True),
        ("balanced_accuracy", pa.float64(), True),
        ("log_loss", pa.float64(), True),
        ("ece", pa.float64(), True),  # 1.1
    ),
    "confusion": (
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("split", pa.string(), False),
        ("true_class", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("count", pa.int64(), False),
    ),
    "predictions": (
        ("run_id", pa.string(), False),
        ("object_id", pa.string(), False),
        ("split", pa.string(), False),
        ("fold", pa.int32(), True),
        ("true_class", pa.string(), True),
        ("model", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("probability", pa.float64(), True),
    ),
    "calibration": (  # 1.1
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("split", pa.string(), False),
        ("bin_low", pa.float64(), False),
        ("bin_high", pa.float64(), False),
        ("n", pa.int64(), False),
        ("confidence", pa.float64(), False),
        ("accuracy", pa.float64(), False),
    ),
    "coverage": (  # 1.1
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("split", pa.string(), False),
        ("threshold", pa.float64(), False),
        ("answered", pa.int64(), False),
        ("coverage", pa.float64(), False),
        ("accuracy", pa.float64(), True),
        ("chosen", pa.bool_(), False),
    ),
    "importances": (  # 1.2
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("split", pa.string(), False),
        ("feature", pa.string(), False),
        ("importance", pa.float64(), False),
        ("importance_std", pa.float64(), False),
        ("rank", pa.int64(), False),
        ("repeats", pa.int64(), False),
        ("scoring", pa.string(), False),
    ),
    "class_features": (  # 1.2
        ("run_id", pa.string(), False),
        ("class", pa.string(), False),
        ("feature", pa.string(), False),
        ("objects", pa.int64(), False),
        ("missing", pa.int64(), False),
        ("mean", pa.float64(), True),
        ("std", pa.float64(), True),
        ("median", pa.float64(), True),
    ),
    "class_maps": (  # 1.2
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("kind", pa.string(), False),
        ("class", pa.string(), False),
        ("channel", pa.string(), False),
        ("dm_index", pa.int32(), False),
        ("dt_index", pa.int32(), False),
        ("dm_lo", pa.float64(), False),
        ("dm_hi", pa.float64(), False),
        ("dt_lo", pa.float64(), False),
        ("dt_hi", pa.float64(), False),
        ("value", pa.float64(), False),
        ("objects", pa.int64(), True),
    ),
    "activation_check": (  # 1.2
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("class", pa.string(), False),
        ("score", pa.float64(), False),
        ("best_real_score", pa.float64(), True),
        ("correlation_own", pa.float64(), True),
        ("best_other_class", pa.string(), True),
        ("correlation_best_other", pa.float64(), True),
        ("rank_own", pa.int64(), True),
    ),
    "robustness_objects": (  # 1.3
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("object_id", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("probability", pa.float64(), True),
        ("stable_fraction", pa.float64(), False),
        ("probability_std", pa.float64(), True),
        ("draws", pa.int64(), False),
    ),
    "robustness_classes": (  # 1.3
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("objects", pa.int64(), False),
        ("stable_fraction", pa.float64(), False),
        ("all_stable", pa.float64(), False),
        ("probability_std", pa.float64(), True),
    ),
    "cadence": (  # 1.3
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("fraction_kept", pa.float64(), False),
        ("points_kept", pa.float64(), False),
        ("objects", pa.int64(), False),
        ("labelled", pa.int64(), False),
        ("accuracy", pa.float64(), True),
        ("balanced_accuracy", pa.float64(), True),
        ("agreement", pa.float64(), False),
    ),
    "adversarial_objects": (  # 1.3
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("object_id", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("probability", pa.float64(), False),
        ("margin", pa.float64(), False),
        ("flip_sigma", pa.float64(), True),
        ("flipped_to", pa.string(), True),
        ("flip_probability", pa.float64(), True),
        ("points_moved", pa.int64(), False),
        ("within_1_sigma", pa.bool_(), False),
        ("candidates_tried", pa.int64(), False),
    ),
    "adversarial_classes": (  # 1.3
        ("run_id", pa.string(), False),
        ("model", pa.string(), False),
        ("predicted_class", pa.string(), False),
        ("objects", pa.int64(), False),
        ("median_flip_sigma", pa.float64(), True),
        ("within_1_sigma", pa.float64(), True),
        ("never_flipped", pa.float64(), True),
    ),
}
#: kinds of the class_maps table
MAP_KINDS: tuple[str, ...] = ("gradcam", "saliency", "activation_max")
_PREDICTIONS_TAIL = (("models_agree", pa.bool_(), True),
                     ("answer", pa.string(), True),  # 1.1
                     ("unknown_reason", pa.string(), True))  # 1.1
_JSON_COLUMNS = {"parameters": None, "package_versions": dict, "stage_seconds": dict,
                 "model_hashes": dict}
_OVERALL_ONLY = ("accuracy", "balanced_accuracy", "log_loss", "ece")
_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def table_schema(table: str, classes: Sequence[str] | None = None) -> pa.Schema:
    """Return the Arrow schema of a report table, ``run_id`` column included.

    Parameters
    ----------
    table : str
        One of :data:`TABLES`.
    classes : sequence of str, optional
        Class names, in column order. Required by ``predictions`` (one nullable float64
        column ``prob_<class>`` each, between ``probability`` and ``models_agree``, then
        ``answer`` and ``unknown_reason``); must be
        None for the other tables.

    Returns
    -------
    pyarrow.Schema
        Field names, types and nullability. The part files hold the same fields without
        ``run_id``, which is the hive partition (directory ``run_id=<id>``).

    Raises
    ------
    ConfigError
        Unknown table, missing or duplicate classes, or classes given for another table.
    """
    _check_table(table)
    fields = [pa.field(name, typ, nullable=nullable) for name, typ, nullable in _FIELDS[table]]
    if table != "predictions":
        if classes is not None:
            raise ConfigError(f"report table {table!r} has no per-class columns; pass classes=None")
        return pa.schema(fields)
    if classes is None:
        raise ConfigError("the predictions table needs its class names (classes=...)")
    classes = [str(c) for c in classes]
    if any(not c for c in classes):
        raise ConfigError("class names must not be empty")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ConfigError(f"duplicate class names: {', '.join(dup)}")
    fields += [pa.field(_PROB_PREFIX + c, pa.float64(), nullable=True) for c in classes]
    fields += [pa.field(n, t, nullable=nl) for n, t, nl in _PREDICTIONS_TAIL]
    return pa.schema(fields)


def write_report_table(
    report_dir: str | os.PathLike[str],
    table: str,
    run_id: str,
    data: pa.Table | pd.DataFrame,
    classes: Sequence[str] | None = None,
) -> Path:
    """Check one run's table against its schema and write it atomically.

    Parameters
    ----------
    report_dir : path-like
        Report directory (created if needed).
    table : str
        One of :data:`TABLES`.
    run_id : str
        Run identifier: a letter followed by letters, digits, ``_``, ``.`` or ``-``
        (at most 128 characters). Every row's ``run_id`` must equal it.
    data : pyarrow.Table or pandas.DataFrame
        Exactly the columns of :func:`table_schema` (any order). Values are cast to the
        schema types: e.g. integer object ids become strings, naive timestamps are taken
        as UTC and truncated to microseconds. NaN in float columns is stored as null.
    classes : sequence of str, optional
        For ``predictions``: the classes of the ``prob_<class>`` columns, in order.
        Default: taken from the ``prob_`` columns of ``data``.

    Returns
    -------
    Path
        ``report_dir/<table>/run_id=<run_id>/part-0.parquet``. An existing file of the same
        run and table is replaced.

    Raises
    ------
    ConfigError
        Bad table name or run_id, missing or extra columns, values that do not convert,
        nulls in a non-nullable column, rows of another run, or rows that break a table
        rule (one row in ``runs``; ``status`` in {'completed', 'failed'}; JSON columns;
        ``split`` in {'train', 'cv', 'test'} for metrics and confusion; overall-only
        metrics null in per-class rows; ``fold`` set exactly for ``split == 'cv'``).
    InputError
        The file cannot be written.
    """
    _check_table(table)
    _check_run_id(run_id)
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
    elif isinstance(data, pa.Table):
        names = list(data.column_names)
    else:
        raise ConfigError(f"{table} data must be a pandas DataFrame or a pyarrow Table, "
                          f"not {type(data).__name__}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{table} table: duplicate column(s) {', '.join(dup)}")
    if table == "predictions" and classes is None:
        classes = [n[len(_PROB_PREFIX):] for n in names if n.startswith(_PROB_PREFIX)]
    schema = table_schema(table, classes)
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise ConfigError(f"{table} table for run {run_id!r}: missing column(s) "
                          f"{', '.join(missing)}")
    extra = [n for n in names if n not in schema.names]
    if extra:
        raise ConfigError(f"{table} table for run {run_id!r}: unexpected column(s) "
                          f"{', '.join(extra)} (expected {', '.join(schema.names)})")
    columns = {f.name: _cast_column(data, f, table) for f in schema}
    for f in schema:
        n_null = columns[f.name].null_count
        if n_null and not f.nullable:
            raise ConfigError(f"{table} table: column {f.name!r} has {n_null} null value(s)")
    other = pc.unique(pc.filter(columns["run_id"], pc.not_equal(columns["run_id"], run_id)))
    if len(other):
        shown = ", ".join(repr(v) for v in other.to_pylist()[:3])
        raise ConfigError(f"{table} table for run {run_id!r} has rows of run(s) {shown}")
    _check_rows(table, columns)
    file_schema = schema.remove(schema.get_field_index("run_id"))
    out = pa.Table.from_arrays([columns[f.name] for f in file_schema], schema=file_schema)
    path = _run_dir(report_dir, table, run_id) / "part-0.parquet"
    meta = {"schema_version": REPORT_SCHEMA_VERSION, "table": table, "run_id": run_id}
    try:
        return write_parquet_atomic(out, path, metadata={METADATA_KEY: meta})
    except OSError as exc:
        raise InputError(path, f"cannot write report file ({exc})") from exc


def read_report(
    report_dir: str | os.PathLike[str],
    table: str,
    run_id: str | None = None,
) -> pd.DataFrame:
    """Read one report table, all runs or one, with the runs' columns united by name.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    table : str
        One of :data:`TABLES`.
    run_id : str, optional
        Read only this run. Default: every run.

    Returns
    -------
    pandas.DataFrame
        Columns in schema order with ``run_id`` (string) first; for predictions the
        ``prob_<class>`` columns of all runs read (null where a run lacks the class).
        Integer and boolean columns use pandas' nullable dtypes (``Int64``, ``Int32``,
        ``boolean``); timestamps are UTC. Rows in run_id order, then file order.
        Uses DuckDB when it is installed, pyarrow otherwise; both give the same frame.

    Raises
    ------
    InputError
        No such table (or run) in ``report_dir``; a file without lcpipe report metadata, of
        another table or run than its place says, or of another major schema version.
    """
    files = _table_files(report_dir, table, run_id)
    for f in files:
        _check_file(f, table)
    try:
        import duckdb  # noqa: F401
    except ImportError:
        engine = "pyarrow"
    else:
        engine = "duckdb"
    data = _read_files(files, table, engine)
    return data.to_pandas(types_mapper=_PANDAS_TYPES.get)


def list_runs(report_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Return the ``runs`` table sorted by start time (then run_id).

    Parameters
    ----------
    report_dir : path-like
        Report directory.

    Returns
    -------
    pandas.DataFrame
        One row per run whose summary has been written; index 0..n-1.

    Raises
    ------
    InputError
        ``report_dir`` has no runs table.
    """
    runs = read_report(report_dir, "runs")
    return runs.sort_values(["started_utc", "run_id"], kind="stable").reset_index(drop=True)


def latest_run_id(
    report_dir: str | os.PathLike[str],
    flow: str | None = None,
    status: str | None = "completed",
) -> str | None:
    """Return the run_id of the most recently started run that matches.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    flow : str, optional
        Only runs of this flow (``'train'``, ``'classify'``, ...). Default: any flow.
    status : {'completed', 'failed'} or None, default='completed'
        Only runs with this status; None accepts any.

    Returns
    -------
    str or None
        The run_id, or None if no run matches.

    Raises
    ------
    InputError
        ``report_dir`` has no runs table.
    """
    runs = list_runs(report_dir)
    if flow is not None:
        runs = runs[runs["flow"] == flow]
    if status is not None:
        runs = runs[runs["status"] == status]
    return None if runs.empty else str(runs["run_id"].iloc[-1])


def figure_path(report_dir: str | os.PathLike[str], run_id: str, name: str) -> Path:
    """Return ``report_dir/figures/run_id=<run_id>/<name>``, creating its directory.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    run_id : str
        Run identifier (same rules as :func:`write_report_table`).
    name : str
        File name, e.g. ``'confusion_forest_test.png'``; no directory part.

    Returns
    -------
    Path
        Where to write the figure (use :func:`pipeline.io.atomic_path`).

    Raises
    ------
    ConfigError
        Bad run_id, or ``name`` is empty, a directory reference or contains a separator.
    """
    _check_run_id(run_id)
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"figure name {name!r} must be a plain file name")
    path = Path(report_dir) / "figures" / f"run_id={run_id}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Draw a confusion matrix as a PNG file, written atomically.

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_classes)
        Counts; rows are true classes, columns predicted classes, both in ``classes`` order.
    classes : sequence of str
        Class names.
    path : path-like
        Destination PNG file (parent created).
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``. Each cell shows its count; its colour is the fraction of the row
        (the recall of the true class for the diagonal), from 0 to 1.

    Raises
    ------
    ConfigError
        ``matrix`` is not square with one row per class, or has negative or non-finite values.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    n = len(classes)
    if counts.shape != (n, n):
        raise ConfigError(f"confusion matrix of shape {counts.shape} does not match "
                          f"{n} classes")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ConfigError("confusion matrix counts must be finite and >= 0")
    totals = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    integral = bool(np.all(counts == np.round(counts)))

    side = max(4.0, 0.55 * n + 2.5)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class (recall on the diagonal)")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    size = 9 if n <= 10 else 7
    for i in range(n):
        for j in range(n):
            text = f"{int(counts[i, j])}" if integral else f"{counts[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=size,
                    color="white" if frac[i, j] > 0.5 else "black")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def plot_reliability(rows: pd.DataFrame, path: str | os.PathLike[str], title: str) -> Path:
    """Draw reliability diagrams (accuracy against confidence) of several models as a PNG.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of the ``calibration`` table: ``model``, ``n``, ``confidence``, ``accuracy``.
    path : path-like
        Destination PNG file (parent created), written atomically.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``: one line per model (marker area proportional to the bin's objects) and
        the diagonal of a calibrated model.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for model, g in rows.groupby("model", sort=True):
        size = 200 * g["n"].to_numpy() / max(int(rows["n"].max()), 1)
        line, = ax.plot(g["confidence"], g["accuracy"], lw=1.2, label=str(model))
        ax.scatter(g["confidence"], g["accuracy"], s=size, color=line.get_color(), alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("probability of the predicted class (bin mean)")
    ax.set_ylabel("fraction correct")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def comparison_markdown(report_dir: str | os.PathLike[str], run_id: str | None = None) -> str:
    """Summarise one run's models as Markdown tables.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    run_id : str, optional
        Run to show. Default: the latest completed run (by start time) that has metrics.

    Returns
    -------
    str
        A heading; a table with one row per (split, model): split, model, n (objects),
        accuracy, balanced accuracy, macro-F1, log loss and expected calibration error
        (3 decimals, ``-`` for null),
        sorted by split, then accuracy descending; then a table of per-class recall with
        one column per model, for the ``test`` split if present, else the first split;
        then, for runs with ``unknown`` thresholds, each model's threshold with the
        coverage and accuracy of its answers on the test split.

    Raises
    ------
    InputError
        No runs or metrics table, no completed run with metrics, or no metrics for ``run_id``.
    """
    if run_id is None:
        runs = list_runs(report_dir)
        done = runs.loc[runs["status"] == "completed", "run_id"].tolist()
        with_metrics = [r for r in done if _has_table(report_dir, "metrics", r)]
        if not with_metrics:
            raise InputError(report_dir, "no completed run with metrics")
        run_id = with_metrics[-1]
    metrics = read_report(report_dir, "metrics", run_id)
    overall = metrics[metrics["class"] == _OVERALL].copy()
    overall["_acc"] = overall["accuracy"].astype("float64")
    overall = overall.sort_values(["split", "_acc", "model"], ascending=[True, False, True],
                                  na_position="last", kind="stable")
    lines = [f"## Model comparison: run `{run_id}`", ""]
    lines += _markdown_table(
        ["split", "model", "n", "accuracy", "balanced accuracy", "macro-F1", "log loss",
         "ECE"],
        [[r.split, r.model, _fmt_int(r.support), _fmt(r.accuracy), _fmt(r.balanced_accuracy),
          _fmt(r.f1), _fmt(r.log_loss), _fmt(r.ece)] for r in overall.itertuples(index=False)],
        n_text=2,
    )
    per_class = metrics[metrics["class"] != _OVERALL]
    splits = sorted(per_class["split"].unique())
    if splits:
        split = "test" if "test" in splits else splits[0]
        rows = per_class[per_class["split"] == split]
        models = list(overall.loc[overall["split"] == split, "model"])
        models += [m for m in dict.fromkeys(rows["model"]) if m not in models]
        keys = zip(rows["model"], rows["class"], strict=True)
        recall = dict(zip(keys, rows["recall"], strict=True))
        classes = list(dict.fromkeys(rows["class"]))
        lines += ["", f"### Recall per class (split `{split}`)", ""]
        lines += _markdown_table(
            ["class", *models],
            [[c, *(_fmt(recall.get((m, c))) for m in models)] for c in classes],
            n_text=1,
        )
    if _has_table(report_dir, "coverage", run_id):
        cov = read_report(report_dir, "coverage", run_id)
        cov = cov[cov["chosen"].astype(bool)]
        split = "test" if "test" in set(cov["split"]) else None
        if split is not None:
            rows = cov[cov["split"] == split].sort_values("model", kind="stable")
            lines += ["", f"### 'unknown' below each model's threshold (split `{split}`; "
                      "thresholds chosen on the CV predictions)", ""]
            lines += _markdown_table(
                ["model", "threshold", "answered", "coverage", "accuracy of answers"],
                [[r.model, _fmt(r.threshold), _fmt_int(r.answered), _fmt(r.coverage),
                  _fmt(r.accuracy)] for r in rows.itertuples(index=False)],
                n_text=1,
            )
    if _has_table(report_dir, "robustness_classes", run_id):
        lines += ["", robustness_markdown(report_dir, run_id).rstrip("\n")]
    return "\n".join(lines) + "\n"


def robustness_markdown(report_dir: str | os.PathLike[str], run_id: str) -> str:
    """Summarise one run's robustness tables as Markdown.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    run_id : str
        A run with a ``robustness_classes`` table.

    Returns
    -------
    str
        Per model: the mean fraction of redraws that keep the class, the fraction of
        objects that never change and the mean spread of the top probability; the
        per-class fractions kept (one column per model); when present, the accuracy (or
        agreement with the full light curves) against the fraction of points kept, and the
        adversarial flip sizes (3 decimals, ``-`` for null).

    Raises
    ------
    InputError
        No robustness tables for ``run_id``.
    """
    cls = read_report(report_dir, "robustness_classes", run_id)
    draws = read_report(report_dir, "robustness_objects", run_id)["draws"]
    k = int(draws.iloc[0]) if len(draws) else 0
    overall = cls[cls["predicted_class"] == OVERALL].sort_values("model", kind="stable")
    lines = [f"### Stability under {k} redraws of the magnitudes from their error bars", ""]
    lines += _markdown_table(
        ["model", "objects", "class kept (mean)", "never changes", "top-probability spread"],
        [[r.model, _fmt_int(r.objects), _fmt(r.stable_fraction), _fmt(r.all_stable),
          _fmt(r.probability_std)] for r in overall.itertuples(index=False)],
        n_text=1,
    )
    per = cls[cls["predicted_class"] != OVERALL]
    models = list(overall["model"])
    kept = dict(zip(zip(per["model"], per["predicted_class"], strict=True),
                    per["stable_fraction"], strict=True))
    lines += ["", "Fraction of the redraws that keep the class, per predicted class:", ""]
    lines += _markdown_table(
        ["predicted class", *models],
        [[c, *(_fmt(kept.get((m, c))) for m in models)]
         for c in sorted(set(per["predicted_class"]))],
        n_text=1,
    )
    if _has_table(report_dir, "cadence", run_id):
        cad = read_report(report_dir, "cadence", run_id)
        labelled = bool((cad["labelled"] > 0).any())
        col = "accuracy" if labelled else "agreement"
        val = dict(zip(zip(cad["model"], cad["fraction_kept"], strict=True), cad[col],
                       strict=True))
        pts = cad.groupby("fraction_kept")["points_kept"].first()
        c_models = sorted(set(cad["model"]))
        lines += ["", f"### {'Accuracy' if labelled else 'Agreement with the full light curves'}"
                  " against the fraction of points kept", ""]
        lines += _markdown_table(
            ["fraction kept", "points kept", *c_models],
            [[_fmt(f), _fmt(pts[f]), *(_fmt(val.get((m, f))) for m in c_models)]
             for f in sorted(pts.index, reverse=True)],
            n_text=0,
        )
    if _has_table(report_dir, "adversarial_classes", run_id):
        adv = read_report(report_dir, "adversarial_classes", run_id)
        adv = adv[adv["predicted_class"] == OVERALL].sort_values("model", kind="stable")
        lines += ["", "### Adversarial check: smallest change [sigma] found to flip the class",
                  ""]
        lines += _markdown_table(
            ["model", "objects", "median flip (sigma)", "flip within 1 sigma",
             "never flipped"],
            [[r.model, _fmt_int(r.objects), _fmt(r.median_flip_sigma), _fmt(r.within_1_sigma),
              _fmt(r.never_flipped)] for r in adv.itertuples(index=False)],
            n_text=1,
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- helpers


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ConfigError(f"unknown report table {table!r}; expected one of {', '.join(TABLES)}")


def _check_run_id(run_id: object) -> None:
    if (
        not isinstance(run_id, str)
        or len(run_id) > _RUN_ID_MAX
        or not _RUN_ID_RE.fullmatch(run_id)
        or run_id.lower() in _RUN_ID_WORDS
    ):
        raise ConfigError(
            f"bad run_id {run_id!r}: use a letter followed by letters, digits, '_', '.' or '-' "
            f"(at most {_RUN_ID_MAX} characters; not inf, infinity or epoch)"
        )


def _run_dir(report_dir: str | os.PathLike[str], table: str, run_id: str) -> Path:
    return Path(report_dir) / table / f"run_id={run_id}"


def _has_table(report_dir: str | os.PathLike[str], table: str, run_id: str) -> bool:
    return any(_run_dir(report_dir, table, run_id).glob("*.parquet"))


def _column(data: pa.Table | pd.DataFrame, name: str) -> pa.ChunkedArray:
    if isinstance(data, pa.Table):
        return data.column(name)
    series = data[name]
    if isinstance(series, pd.DataFrame):  # duplicate labels were rejected already
        series = series.iloc[:, 0]
    return pa.chunked_array([pa.Array.from_pandas(series)])


def _cast_column(data: pa.Table | pd.DataFrame, field: pa.Field, table: str) -> pa.ChunkedArray:
    try:
        col = _column(data, field.name)
        options = pc.CastOptions(target_type=field.type, allow_time_truncate=True)
        col = pc.cast(col, options=options)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ConfigError(f"{table} table: column {field.name!r} does not convert to "
                          f"{field.type} ({exc})") from exc
    if pa.types.is_floating(field.type):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, field.type), col)
    return col


def _check_rows(table: str, columns: dict[str, pa.ChunkedArray]) -> None:
    def values(name: str) -> list[Any]:
        return columns[name].to_pylist()

    if table == "runs":
        if len(columns["run_id"]) != 1:
            raise ConfigError(f"runs table must have exactly one row, not {len(columns['run_id'])}")
        status = values("status")[0]
        if status not in _STATUSES:
            raise ConfigError(f"runs table: status {status!r} is not one of {_STATUSES}")
        for name, kind in _JSON_COLUMNS.items():
            text = values(name)[0]
            if text is None:  # a nullable JSON column
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"runs table: column {name!r} is not JSON ({exc})") from exc
            if kind is not None and not isinstance(value, kind):
                raise ConfigError(f"runs table: column {name!r} must be a JSON object")
    if table in ("metrics", "confusion", "calibration", "coverage", "importances"):
        bad = sorted(set(values("split")) - set(_SPLITS))
        if bad:
            raise ConfigError(f"{table} table: split {bad[0]!r} is not one of {_SPLITS}")
    if table == "class_maps":
        bad = sorted(set(values("kind")) - set(MAP_KINDS))
        if bad:
            raise ConfigError(f"class_maps table: kind {bad[0]!r} is not one of {MAP_KINDS}")
    if table == "metrics":
        per_class = pc.not_equal(columns["class"], _OVERALL)
        for name in _OVERALL_ONLY:
            if pc.any(pc.and_(per_class, pc.is_valid(columns[name]))).as_py():
                raise ConfigError(f"metrics table: {name!r} must be null in per-class rows "
                                  f"(it belongs to the {_OVERALL!r} row)")
    if table == "predictions":
        is_cv = pc.equal(columns["split"], "cv")
        has_fold = pc.is_valid(columns["fold"])
        if pc.any(pc.not_equal(is_cv, has_fold)).as_py():
            raise ConfigError("predictions table: fold must be set for split 'cv' "
                              "and null for every other split")


def _table_files(
    report_dir: str | os.PathLike[str], table: str, run_id: str | None
) -> list[Path]:
    _check_table(table)
    root = Path(report_dir) / table
    if run_id is None:
        files = sorted(root.glob("run_id=*/*.parquet")) if root.is_dir() else []
        if not files:
            raise InputError(report_dir, f"no {table} table: not an lcpipe report directory "
                                         "(or no run yet)")
        return files
    _check_run_id(run_id)
    files = sorted(_run_dir(report_dir, table, run_id).glob("*.parquet"))
    if not files:
        if not root.is_dir():
            raise InputError(report_dir, f"no {table} table: not an lcpipe report directory "
                                         "(or no run yet)")
        raise InputError(report_dir, f"no run {run_id!r} in the {table} table")
    return files


def _check_file(path: Path, table: str) -> None:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(path, f"cannot read Parquet file ({exc})") from exc
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise InputError(path, f"no '{METADATA_KEY}' metadata: not an lcpipe report file")
    version = str(meta["schema_version"])
    if version.split(".")[0] != REPORT_SCHEMA_VERSION.split(".")[0]:
        raise InputError(path, f"report schema version {version}; this lcpipe reads major "
                               f"version {REPORT_SCHEMA_VERSION.split('.')[0]} "
                               f"({REPORT_SCHEMA_VERSION})")
    run_id = path.parent.name.removeprefix("run_id=")
    if meta.get("table") != table or meta.get("run_id") != run_id:
        raise InputError(path, f"file of table {meta.get('table')!r}, run {meta.get('run_id')!r} "
                               f"found under {table}/run_id={run_id}")
    if "run_id" in schema.names:
        raise InputError(path, "unexpected run_id column: the run is the directory name")


def _read_files(files: Sequence[Path], table: str, engine: str) -> pa.Table:
    """Read part files into one table in canonical column order and types."""
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        try:
            rel = con.sql(
                "SELECT * FROM read_parquet($files, hive_partitioning = true, "
                "union_by_name = true, hive_types = {'run_id': 'VARCHAR'})",
                params={"files": [str(f) for f in files]},
            )
            result = rel.arrow()
            data = result.read_all() if isinstance(result, pa.RecordBatchReader) else result
        finally:
            con.close()
    else:
        parts = []
        for f in files:
            part = pq.read_table(f)
            run_id = f.parent.name.removeprefix("run_id=")
            parts.append(part.append_column("run_id", pa.array([run_id] * part.num_rows,
                                                                pa.string())))
        data = pa.concat_tables(parts, promote_options="default")
    classes = None
    if table == "predictions":
        classes = [n[len(_PROB_PREFIX):] for n in data.column_names if n.startswith(_PROB_PREFIX)]
    schema = table_schema(table, classes)
    extra = [n for n in data.column_names if n not in schema.names]  # newer minor versions
    # columns added by a later minor version are null in older files
    arrays = [data.column(f.name).cast(f.type) if f.name in data.column_names
              else pa.nulls(data.num_rows, f.type) for f in schema]
    arrays += [data.column(n) for n in extra]
    names = schema.names + extra
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(None)


def _fmt(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{float(value):.3f}"


def _fmt_int(value: Any) -> str:
    return "-" if value is None or value is pd.NA else str(int(value))


def _markdown_table(header: list[str], rows: list[list[str]], n_text: int) -> list[str]:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    align = ["---"] * n_text + ["---:"] * (len(header) - n_text)
    return [cells(header), "| " + " | ".join(align) + " |", *(cells(r) for r in rows)]
