"""Turn a run's predictions into the report tables (metrics, confusion, predictions, runs).

The metrics and confusion counts are computed from the prediction rows
themselves (:func:`models.evaluation.metric_rows`, :func:`confusion_rows`),
so ``metrics.parquet`` can always be recomputed from ``predictions.parquet``.
Tables are written by :func:`pipeline.reports.write_report_table`; the
``runs`` row is written last, so a run appears in ``runs`` only when its
other tables are on disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["package_versions", "git_commit", "write_evaluation_reports", "write_run_row",
           "ROBUSTNESS_TABLES", "write_robustness_reports"]

_PACKAGES = ("lcpipe", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "light-curve",
             "numba", "skops", "tensorflow", "keras", "prefect", "prefect-dask")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run depends on (without importing them)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in _PACKAGES:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def git_commit() -> str | None:
    """Commit of the lcpipe source tree when it is a git checkout, else None."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def write_evaluation_reports(report_dir: str | os.PathLike[str], run_id: str,
                             prediction_paths: Sequence[str | os.PathLike[str]],
                             classes: Sequence[str],
                             rpca_model: str | os.PathLike[str] | None = None,
                             unknown_accuracy: float | None = None) -> dict[str, Any]:
    """Write the predictions, metrics, confusion and calibration tables of a run, and PNGs
    (confusion per model and split, reliability per split).

    Parameters
    ----------
    report_dir : path-like
        Report directory (:mod:`pipeline.reports`).
    run_id : str
        The run.
    prediction_paths : sequence of path-like
        Prediction files of each model (:func:`models.predictions.write_predictions`),
        splits 'test' and/or 'cv'.
    classes : sequence of str
        The run's classes (probability columns and metric rows).
    rpca_model : path-like, optional
        A saved robust-PCA model (:func:`pipeline.rpca_dmdt.save_rpca`) whose class
        templates are drawn into the run's figures (``rpca_templates.png``,
        ``rpca_class_parts.png``, and the templates as ``rpca_templates.parquet``).
    unknown_accuracy : float, optional
        With CV predictions: each model with probabilities gets the threshold of
        :func:`models.evaluation.choose_threshold` for this accuracy on its CV rows;
        its rows below it answer ``'unknown'`` (:func:`models.predictions.apply_unknown`),
        and the ``coverage`` table marks the threshold ``chosen``.

    Returns
    -------
    dict
        Paths of the tables and figures, the overall metric rows and
        ``unknown_thresholds`` (model -> threshold; empty without CV rows).
    """
    from pipeline.reports import (
        figure_path,
        plot_confusion,
        plot_reliability,
        write_report_table,
    )

    from .evaluation import (
        choose_threshold,
        confusion_rows,
        coverage_rows,
        metric_rows,
        reliability,
    )
    from .predictions import apply_unknown, read_predictions, with_agreement

    classes = [str(c) for c in classes]
    pred = with_agreement(pd.concat([read_predictions(p)[0] for p in prediction_paths],
                                    ignore_index=True))
    pred["run_id"] = run_id
    prob_cols = [f"prob_{c}" for c in classes]
    thresholds: dict[str, float] = {}
    if unknown_accuracy is not None:
        cv = pred[(pred["split"] == "cv") & pred["probability"].notna()
                  & pred["true_class"].notna()]
        for model, g in cv.groupby("model", sort=True):
            thresholds[str(model)] = choose_threshold(
                g["true_class"], g[prob_cols].to_numpy(np.float64), classes, unknown_accuracy)
        pred = apply_unknown(pred, thresholds)
    metrics, confusion, figures, calibration, coverage = [], [], [], [], []
    for (model, split), g in pred.groupby(["model", "split"], sort=True):
        proba = None if g["probability"].isna().all() else g[prob_cols].to_numpy(np.float64)
        for row in metric_rows(g["true_class"], g["predicted_class"], classes, proba):
            metrics.append({"run_id": run_id, "model": model, "split": split, **row})
        if proba is not None and g["true_class"].notna().all():
            rel = reliability(g["true_class"], proba, classes)[1]
            calibration.append(rel.assign(run_id=run_id, model=model, split=split))
            grid = list(np.round(np.arange(0, 1, 0.05), 2))
            tau = thresholds.get(str(model))
            cov = coverage_rows(g["true_class"], proba, classes,
                                grid + ([tau] if tau is not None else []))
            cov["chosen"] = [False] * len(grid) + ([True] if tau is not None else [])
            coverage.append(cov.assign(run_id=run_id, model=model, split=split))
        rows = confusion_rows(g["true_class"], g["predicted_class"], classes)
        confusion += [{"run_id": run_id, "model": model, "split": split, **r} for r in rows]
        cm = np.array([r["count"] for r in rows]).reshape(len(classes), len(classes))
        figures.append(str(plot_confusion(cm, classes,
                                          figure_path(report_dir, run_id,
                                                      f"confusion_{model}_{split}.png"),
                                          f"{model}, {split} ({len(g)} objects)")))
    calibration = (pd.concat(calibration, ignore_index=True) if calibration else
                   pd.DataFrame(columns=["run_id", "model", "split", "bin_low", "bin_high", "n",
                                         "confidence", "accuracy"]))
    for split, g in calibration.groupby("split", sort=True):
        figures.append(str(plot_reliability(
            g, figure_path(report_dir, run_id, f"reliability_{split}.png"),
            f"reliability, {split} (run {run_id})")))
    if rpca_model is not None:
        from pipeline.rpca_dmdt import load_rpca, write_rpca_templates

        model, meta = load_rpca(rpca_model)
        folder = figure_path(report_dir, run_id, "rpca_templates.png").parent
        figures += [str(p) for p in write_rpca_templates(model, meta["image_meta"], folder)]
    out = {
        "predictions": str(write_report_table(report_dir, "predictions", run_id,
                                              pred[_prediction_columns(classes)], classes)),
        "metrics": str(write_report_table(report_dir, "metrics", run_id,
                                          pd.DataFrame(metrics))),
        "confusion": str(write_report_table(report_dir, "confusion", run_id,
                                            pd.DataFrame(confusion))),
        "calibration": str(write_report_table(report_dir, "calibration", run_id, calibration)),
        "coverage": str(write_report_table(
            report_dir, "coverage", run_id,
            pd.concat(coverage, ignore_index=True) if coverage else pd.DataFrame(
                columns=["run_id", "model", "split", "threshold", "answered", "coverage",
                         "accuracy", "chosen"]))),
        "unknown_thresholds": thresholds,
        "figures": figures,
        "overall": [m for m in metrics if m["class"] == "__overall__"],
    }
    return out


def _prediction_columns(classes: Sequence[str]) -> list[str]:
    from pipeline.reports import table_schema

    return table_schema("predictions", classes).names


def write_run_row(report_dir: str | os.PathLike[str], run_id: str, *, flow: str, status: str,
                  started: _dt.datetime, parameters: dict[str, Any], input_data_hash: str,
                  stage_seconds: dict[str, float], objects_in: int, objects_quarantined: int,
                  objects_classified: int, bundle: str | None = None,
                  model_hashes: dict[str, str] | None = None) -> Path:
    """Write the run's row of the ``runs`` table (last, after its other tables).

    ``model_hashes``: model name -> content hash of its file in the bundle (null for a
    failed run).

    Returns
    -------
    Path
    """
    from pipeline._version import __version__
    from pipeline.reports import write_report_table

    row = {
        "run_id": run_id, "flow": flow, "status": status,
        "started_utc": started, "finished_utc": _dt.datetime.now(_dt.UTC),
        "parameters": json.dumps(parameters, default=str, sort_keys=True),
        "input_data_hash": input_data_hash, "lcpipe_version": __version__,
        "package_versions": json.dumps(package_versions(), sort_keys=True),
        "git_commit": git_commit(),
        "stage_seconds": json.dumps({k: round(float(v), 3) for k, v in stage_seconds.items()}),
        "objects_in": int(objects_in), "objects_quarantined": int(objects_quarantined),
        "objects_classified": int(objects_classified), "bundle": bundle,
        "model_hashes": None if model_hashes is None else json.dumps(model_hashes,
                                                                      sort_keys=True),
    }
    return write_report_table(report_dir, "runs", run_id, pd.DataFrame([row]))


#: Report tables of the robustness tests (:func:`models.robustness.robustness_tables`).
ROBUSTNESS_TABLES: tuple[str, ...] = ("robustness_objects", "robustness_classes", "cadence",
                                      "adversarial_objects", "adversarial_classes")


def write_robustness_reports(report_dir: str | os.PathLike[str], run_id: str,
                             tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write the robustness tables of a run (:data:`ROBUSTNESS_TABLES`, those given).

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    run_id : str
        The run.
    tables : dict
        Report-table name -> frame without ``run_id`` (as
        :func:`models.robustness.robustness_tables` returns them).

    Returns
    -------
    list of Path
        The files written.
    """
    from pipeline.errors import ConfigError
    from pipeline.reports import table_schema, write_report_table

    unknown = sorted(set(tables) - set(ROBUSTNESS_TABLES))
    if unknown:
        raise ConfigError(f"not robustness tables: {', '.join(unknown)}")
    out = []
    for name in ROBUSTNESS_TABLES:
        if name not in tables:
            continue
        cols = table_schema(name).names
        frame = tables[name].assign(run_id=run_id)
        out.append(write_report_table(report_dir, name, run_id, frame[cols]))
    return out
