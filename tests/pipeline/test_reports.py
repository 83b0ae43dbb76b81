"""Report store: schemas, atomic writes, reading back with lcpipe, DuckDB, pandas and pyarrow.

The DuckDB queries and the pandas example of docs/reports.md are repeated here verbatim
(a test checks that they still match the document) and run against a report written here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipeline import reports
from pipeline.errors import ConfigError, InputError
from pipeline.reports import (
    METADATA_KEY,
    REPORT_SCHEMA_VERSION,
    TABLES,
    comparison_markdown,
    figure_path,
    latest_run_id,
    list_runs,
    plot_confusion,
    read_report,
    robustness_markdown,
    table_schema,
    write_report_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reports.md"

# ------------------------------------------------------------------ a report with four runs
# train-a and train-b complete (different class sets), train-c failed (its metrics are
# written but must not count), train-d has metrics but no runs row yet (still running).

RECALLS = {  # run -> split -> model -> (per-class recall, accuracy, balanced accuracy, log loss)
    "train-a": {
        "test": {
            "forest": ({"EA": 0.80, "EW": 0.90, "RRab": 1.00}, 0.90, 0.90, 0.30),
            "cnn": ({"EA": 0.60, "EW": 0.80, "RRab": 0.95}, 0.78, 0.7833, 0.50),
        },
        "cv": {"forest": ({"EA": 0.75, "EW": 0.85, "RRab": 0.95}, 0.85, 0.85, 0.35)},
    },
    "train-b": {
        "test": {
            "forest": ({"EW": 0.70, "Mira": 0.90, "RRab": 0.97}, 0.86, 0.8567, 0.40),
            "cnn": ({"EW": 0.95, "Mira": 0.85, "RRab": 0.90}, 0.90, 0.90, None),
        },
        "cv": {"forest": ({"EW": 0.72, "Mira": 0.88, "RRab": 0.96}, 0.80, 0.8533, 0.45)},
    },
    "train-c": {"test": {"forest": ({"EA": 1.0, "EW": 1.0, "RRab": 1.0}, 1.0, 1.0, 0.01)}},
    "train-d": {"test": {"cnn": ({"EA": 1.0, "EW": 1.0, "Mira": 1.0}, 1.0, 1.0, 0.01)}},
}
SUPPORT = 10  # objects per class
STARTED = {"train-a": "2025-01-01T10:00", "train-b": "2025-02-01T10:00",
           "train-c": "2025-03-01T10:00"}
STATUS = {"train-a": "completed", "train-b": "completed", "train-c": "failed"}


def _precision(recall: float) -> float:
    return round(recall - 0.05, 4)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


def metrics_frame(run_id: str) -> pd.DataFrame:
    rows = []
    for split, models in RECALLS[run_id].items():
        for model, (recall, acc, bacc, ll) in models.items():
            ps, rs, fs = [], [], []
            for cls, r in recall.items():
                p = _precision(r)
                ps.append(p), rs.append(r), fs.append(_f1(p, r))
                rows.append(dict(run_id=run_id, model=model, split=split, **{"class": cls},
                                 precision=p, recall=r, f1=_f1(p, r), support=SUPPORT,
                                 accuracy=None, balanced_accuracy=None, log_loss=None,
                                 ece=None))
            rows.append(dict(run_id=run_id, model=model, split=split, **{"class": "__overall__"},
                             precision=np.mean(ps), recall=np.mean(rs), f1=np.mean(fs),
                             support=SUPPORT * len(recall), accuracy=acc,
                             balanced_accuracy=bacc, log_loss=ll,
                             ece=None if ll is None else round(ll / 10, 4)))
    return pd.DataFrame(rows)


def confusion_frame(run_id: str) -> pd.DataFrame:
    rows = []
    for split, models in RECALLS[run_id].items():
        for model, (recall, *_rest) in models.items():
            classes = list(recall)
            for i, true in enumerate(classes):
                hit = round(recall[true] * SUPPORT)
                for j, pred in enumerate(classes):
                    count = hit if i == j else (SUPPORT - hit if j == (i + 1) % len(classes) else 0)
                    rows.append(dict(run_id=run_id, model=model, split=split, true_class=true,
                                     predicted_class=pred, count=count))
    return pd.DataFrame(rows)


# object -> model -> predicted class (test split); true classes below
PREDICTED = {
    "train-a": {"o1": {"forest": "EA", "cnn": "EA"}, "o2": {"forest": "EW", "cnn": "EA"},
                "o3": {"forest": "RRab", "cnn": "RRab"}},
    "train-b": {"o1": {"forest": "EW", "cnn": "EW"}, "o2": {"forest": "Mira", "cnn": "RRab"},
                "o3": {"forest": "RRab", "cnn": "RRab"}, "o4": {"forest": "EW", "cnn": "Mira"}},
}
TRUE = {"train-a": {"o1": "EA", "o2": "EW", "o3": "RRab"},
        "train-b": {"o1": "EW", "o2": "Mira", "o3": "RRab", "o4": None}}
CLASSES = {"train-a": ["EA", "EW", "RRab"], "train-b": ["EW", "Mira", "RRab"]}


def _probabilities(classes: list[str], predicted: str, model: str) -> dict[str, float]:
    top = 0.7 if model == "forest" else 0.6
    rest = (1 - top) / (len(classes) - 1)
    return {f"prob_{c}": (top if c == predicted else rest) for c in classes}


def predictions_frame(run_id: str) -> pd.DataFrame:
    rows = []
    classes = CLASSES[run_id]
    for obj, by_model in PREDICTED[run_id].items():
        agree = len(set(by_model.values())) == 1
        for model, pred in by_model.items():
            probs = _probabilities(classes, pred, model)
            rows.append(dict(run_id=run_id, object_id=obj, split="test", fold=None,
                             true_class=TRUE[run_id][obj], model=model, predicted_class=pred,
                             probability=probs[f"prob_{pred}"], **probs, models_agree=agree,
                             answer=pred if model == "forest" else "unknown",
                             unknown_reason=None if model == "forest" else "top probability "
                             "0.600 < 0.650 (threshold of cnn)"))
        # one CV prediction per object, forest only
        probs = _probabilities(classes, TRUE[run_id][obj] or classes[0], "forest")
        rows.append(dict(run_id=run_id, object_id=obj, split="cv", fold=int(obj[1:]) % 2,
                         true_class=TRUE[run_id][obj], model="forest",
                         predicted_class=TRUE[run_id][obj] or classes[0],
                         probability=0.7, **probs, models_agree=True,
                         answer=TRUE[run_id][obj] or classes[0], unknown_reason=None))
    return pd.DataFrame(rows)


def calibration_frame(run_id: str) -> pd.DataFrame:
    """Reliability rows: two confidence bins per (split, model) with probabilities."""
    rows = []
    for split, models in RECALLS[run_id].items():
        for model, (_r, acc, _b, ll) in models.items():
            if ll is None:
                continue
            rows += [dict(run_id=run_id, model=model, split=split, bin_low=0.6, bin_high=0.7,
                          n=10, confidence=0.65, accuracy=acc - 0.1),
                     dict(run_id=run_id, model=model, split=split, bin_low=0.9, bin_high=1.0,
                          n=20, confidence=0.95, accuracy=acc)]
    return pd.DataFrame(rows)


def coverage_frame(run_id: str) -> pd.DataFrame:
    """Accuracy against coverage at two thresholds per (split, model), the second chosen."""
    rows = []
    for split, models in RECALLS[run_id].items():
        for model, (_r, acc, _b, _ll) in models.items():
            rows += [dict(run_id=run_id, model=model, split=split, threshold=0.0, answered=30,
                          coverage=1.0, accuracy=acc, chosen=False),
                     dict(run_id=run_id, model=model, split=split, threshold=0.65, answered=0,
                          coverage=0.0, accuracy=None, chosen=True)]
    return pd.DataFrame(rows)


def importances_frame(run_id: str) -> pd.DataFrame:
    """Forest permutation importances of two features (1.2)."""
    return pd.DataFrame([dict(run_id=run_id, model="forest", split="test", feature=f, importance=v,
                              importance_std=0.01, rank=r, repeats=3, scoring="balanced_accuracy")
                         for r, (f, v) in enumerate([("period", 0.2), ("amplitude", 0.05)], 1)])


def class_features_frame(run_id: str) -> pd.DataFrame:
    """Per-class feature statistics; one class without a value of one feature (1.2)."""
    return pd.DataFrame([dict(run_id=run_id, **{"class": c}, feature="period", objects=n,
                              missing=2 - n, mean=m, std=0.1 if n else None, median=m)
                         for c, n, m in [("EA", 2, 1.5), ("EW", 0, None)]])


def class_maps_frame(run_id: str) -> pd.DataFrame:
    """One 1 x 2 map per kind and class (1.2)."""
    return pd.DataFrame([dict(run_id=run_id, model="cnn", kind=k, **{"class": "EA"},
                              channel="g", dm_index=0, dt_index=j, dm_lo=-0.1, dm_hi=0.1,
                              dt_lo=float(j + 1), dt_hi=float(j + 2), value=0.5 * j,
                              objects=None if k == "activation_max" else 4)
                         for k in ("gradcam", "saliency", "activation_max") for j in (0, 1)])


def activation_check_frame(run_id: str) -> pd.DataFrame:
    return pd.DataFrame([dict(run_id=run_id, model="cnn", **{"class": "EA"}, score=9.0,
                              best_real_score=4.0, correlation_own=0.6, best_other_class="EW",
                              correlation_best_other=0.3, rank_own=1)])


# robustness tables (1.3), train-a only: (model, object) -> (class, probability,
# stable_fraction, probability_std) with 2 redraws; the summaries are worked out by hand
ROBUST = {("forest", "o1"): ("EA", 0.9, 1.0, 0.01), ("forest", "o2"): ("EA", 0.8, 0.5, 0.1),
          ("forest", "o3"): ("EW", 0.7, 1.0, 0.05),
          ("rpca_nearest", "o1"): ("EA", None, 1.0, None),
          ("rpca_nearest", "o2"): ("EW", None, 0.0, None),
          ("rpca_nearest", "o3"): ("EW", None, 0.5, None)}


def robustness_frames(run_id: str) -> dict[str, pd.DataFrame]:
    objects = pd.DataFrame([dict(run_id=run_id, model=m, object_id=o, predicted_class=c,
                                 probability=p, stable_fraction=f, probability_std=sd, draws=2)
                            for (m, o), (c, p, f, sd) in ROBUST.items()])
    classes = pd.DataFrame(
        [dict(run_id=run_id, model=m, predicted_class=c, objects=n, stable_fraction=f,
              all_stable=a, probability_std=sd)
         for m, c, n, f, a, sd in [("forest", "EA", 2, 0.75, 0.5, 0.055),
                                   ("forest", "EW", 1, 1.0, 1.0, 0.05),
                                   ("forest", "__overall__", 3, 2.5 / 3, 2 / 3, 0.16 / 3),
                                   ("rpca_nearest", "EA", 1, 1.0, 1.0, None),
                                   ("rpca_nearest", "EW", 2, 0.25, 0.0, None),
                                   ("rpca_nearest", "__overall__", 3, 0.5, 1 / 3, None)]])
    cadence = pd.DataFrame(
        [dict(run_id=run_id, model=m, fraction_kept=f, points_kept=k, objects=3, labelled=3,
              accuracy=a, balanced_accuracy=a, agreement=g)
         for m, f, k, a, g in [("forest", 1.0, 1.0, 2 / 3, 1.0), ("forest", 0.5, 0.55, 1 / 3, 0.5),
                               ("rpca_nearest", 1.0, 1.0, 1 / 3, 1.0),
                               ("rpca_nearest", 0.5, 0.55, 1 / 3, 2 / 3)]])
    flips = pd.DataFrame(
        [dict(run_id=run_id, model="cnn", object_id=o, predicted_class=c, probability=0.8,
              margin=0.6, flip_sigma=f, flipped_to=t, flip_probability=None if f is None else 0.5,
              points_moved=0 if f is None else 3, within_1_sigma=f is not None and f <= 1,
              candidates_tried=64)
         for o, c, f, t in [("o1", "EA", 0.3, "EW"), ("o2", "EA", None, None),
                            ("o3", "EW", 2.0, "EA")]])
    flip_classes = pd.DataFrame(
        [dict(run_id=run_id, model="cnn", predicted_class=c, objects=n, median_flip_sigma=m,
              within_1_sigma=w, never_flipped=v)
         for c, n, m, w, v in [("EA", 2, np.inf, 0.5, 0.5), ("EW", 1, 2.0, 0.0, 0.0),
                               ("__overall__", 3, 2.0, 1 / 3, 1 / 3)]])
    return {"robustness_objects": objects, "robustness_classes": classes, "cadence": cadence,
            "adversarial_objects": flips, "adversarial_classes": flip_classes}


def runs_frame(run_id: str) -> pd.DataFrame:
    started = pd.Timestamp(STARTED[run_id], tz="UTC")
    return pd.DataFrame([dict(
        run_id=run_id, flow="train", status=STATUS[run_id], started_utc=started,
        finished_utc=started + pd.Timedelta(minutes=7),
        parameters=json.dumps({"models": ["forest", "cnn"], "seed": 1}),
        input_data_hash="sha256:" + "0" * 16, lcpipe_version="0.1.0",
        package_versions=json.dumps({"numpy": "2.1", "pyarrow": "20"}),
        git_commit=None if run_id == "train-a" else "abc1234",
        stage_seconds=json.dumps({"features": 1.5, "fit": 12.0}),
        objects_in=40, objects_quarantined=2, objects_classified=38,
        bundle=f"bundles/{run_id}" if STATUS[run_id] == "completed" else None,
        model_hashes=json.dumps({"forest": "sha256:" + "1" * 64})
        if STATUS[run_id] == "completed" else None)])


def write_run(report_dir: Path, run_id: str) -> None:
    """Write one run in the documented order: metrics, confusion, predictions, runs last."""
    write_report_table(report_dir, "metrics", run_id, metrics_frame(run_id))
    write_report_table(report_dir, "confusion", run_id, confusion_frame(run_id))
    write_report_table(report_dir, "calibration", run_id, calibration_frame(run_id))
    write_report_table(report_dir, "coverage", run_id, coverage_frame(run_id))
    write_report_table(report_dir, "importances", run_id, importances_frame(run_id))
    write_report_table(report_dir, "class_features", run_id, class_features_frame(run_id))
    write_report_table(report_dir, "class_maps", run_id, class_maps_frame(run_id))
    write_report_table(report_dir, "activation_check", run_id, activation_check_frame(run_id))
    if run_id == "train-a":
        for table, frame in robustness_frames(run_id).items():
            write_report_table(report_dir, table, run_id, frame)
    if run_id in PREDICTED:
        write_report_table(report_dir, "predictions", run_id, predictions_frame(run_id),
                           classes=CLASSES[run_id])
    if run_id in STATUS:
        write_report_table(report_dir, "runs", run_id, runs_frame(run_id))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    for run_id in ("train-a", "train-b", "train-c", "train-d"):
        write_run(root, run_id)
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------ schema and layout


def test_layout_metadata_and_file_types(report):
    files = _files(report)
    assert "runs/run_id=train-a/part-0.parquet" in files
    assert "predictions/run_id=train-b/part-0.parquet" in files
    assert not any(Path(f).name.startswith(".") for f in files)  # no temp files left
    for table in TABLES:
        path = report / table / "run_id=train-a" / "part-0.parquet"
        schema = pq.read_schema(path)
        meta = json.loads(schema.metadata[METADATA_KEY.encode()])
        assert meta == {"schema_version": REPORT_SCHEMA_VERSION, "table": table,
                        "run_id": "train-a"}
        classes = CLASSES["train-a"] if table == "predictions" else None
        expected = table_schema(table, classes)
        # the run is the directory name and the metadata, not a column of the file
        assert "run_id" not in schema.names
        assert schema.names == expected.names[1:]
        for field in schema:
            assert field.type == expected.field(field.name).type, field.name
            assert field.nullable == expected.field(field.name).nullable, field.name


def test_table_schema_types():
    runs = table_schema("runs")
    assert runs.field("started_utc").type == pa.timestamp("us", tz="UTC")
    assert runs.field("objects_in").type == pa.int64()
    assert runs.field("git_commit").nullable and not runs.field("flow").nullable
    pred = table_schema("predictions", ["b", "a"])
    assert pred.names[-5:] == ["prob_b", "prob_a", "models_agree", "answer", "unknown_reason"]
    assert pred.field("fold").type == pa.int32() and pred.field("fold").nullable
    assert pred.field("models_agree").type == pa.bool_()
    assert table_schema("metrics").names == [
        "run_id", "model", "split", "class", "precision", "recall", "f1", "support",
        "accuracy", "balanced_accuracy", "log_loss", "ece"]
    assert table_schema("calibration").names == [
        "run_id", "model", "split", "bin_low", "bin_high", "n", "confidence", "accuracy"]
    with pytest.raises(ConfigError, match="classes"):
        table_schema("predictions")
    with pytest.raises(ConfigError, match="per-class"):
        table_schema("metrics", ["a"])
    with pytest.raises(ConfigError, match="duplicate"):
        table_schema("predictions", ["a", "a"])
    with pytest.raises(ConfigError, match="unknown report table"):
        table_schema("nope")


# ------------------------------------------------------------------ reading back


def test_read_report_unions_class_sets(report):
    pred = read_report(report, "predictions")
    assert pred.columns[0] == "run_id"
    assert list(pred.columns[8:]) == ["prob_EA", "prob_EW", "prob_RRab", "prob_Mira",
                                      "models_agree", "answer", "unknown_reason"]
    assert sorted(pred["run_id"].unique()) == ["train-a", "train-b"]
    a = pred[pred["run_id"] == "train-a"]
    b = pred[pred["run_id"] == "train-b"]
    assert a["prob_Mira"].isna().all() and b["prob_EA"].isna().all()
    assert b["prob_Mira"].notna().all()
    assert str(pred["fold"].dtype) == "Int32" and str(pred["models_agree"].dtype) == "boolean"
    cv = pred[pred["split"] == "cv"]
    assert cv["fold"].notna().all() and pred.loc[pred["split"] == "test", "fold"].isna().all()
    expected = predictions_frame("train-b")
    got = read_report(report, "predictions", "train-b")
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_series_equal(got["probability"], expected["probability"])
    assert got["true_class"].isna().sum() == 3  # o4 has no label: 2 test rows + 1 cv row


def test_read_report_runs_and_metrics(report):
    runs = read_report(report, "runs")
    assert sorted(runs["run_id"]) == ["train-a", "train-b", "train-c"]
    assert str(runs["started_utc"].dt.tz) == "UTC"
    assert str(runs["objects_in"].dtype) == "Int64"
    row = runs.set_index("run_id").loc["train-b"]
    assert json.loads(row["package_versions"]) == {"numpy": "2.1", "pyarrow": "20"}
    assert row["finished_utc"] - row["started_utc"] == pd.Timedelta(minutes=7)
    assert pd.isna(runs.set_index("run_id").loc["train-a", "git_commit"])
    m = read_report(report, "metrics", "train-a")
    pd.testing.assert_frame_equal(
        m.drop(columns="support").reset_index(drop=True),
        metrics_frame("train-a").drop(columns="support").astype({
            "accuracy": float, "balanced_accuracy": float, "log_loss": float, "ece": float}),
        check_dtype=False)
    assert (m["support"] == SUPPORT).sum() == 9


def test_read_report_without_duckdb(report):
    """pyarrow alone reads the store (DuckDB is a test dependency only)."""
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "from pipeline.reports import comparison_markdown, read_report\n"
            f"p = read_report({str(report)!r}, 'predictions')\n"
            "print(len(p), list(p.columns[8:12]))\n"
            f"print(comparison_markdown({str(report)!r}).splitlines()[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.splitlines() == [
        f"{len(read_report(report, 'predictions'))} "
        "['prob_EA', 'prob_EW', 'prob_RRab', 'prob_Mira']",
        "## Model comparison: run `train-b`"]


@pytest.mark.parametrize("table", TABLES)
def test_duckdb_and_pyarrow_engines_agree(report, table):
    files = sorted((report / table).glob("run_id=*/*.parquet"))
    a = reports._read_files(files, table, "duckdb")
    b = reports._read_files(files, table, "pyarrow")
    assert a.schema == b.schema
    assert a.equals(b)


def test_outside_readers_see_run_id(report):
    """DuckDB, pandas and pyarrow read the hive partitions without lcpipe."""
    q = (f"SELECT * FROM read_parquet('{report}/metrics/*/*.parquet', "
         "hive_partitioning=true, union_by_name=true)")
    duck = duckdb.sql(q).df()
    assert set(duck["run_id"]) == {"train-a", "train-b", "train-c", "train-d"}
    types = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE {q}").fetchall()}
    assert types["run_id"] == "VARCHAR" and types["support"] == "BIGINT"
    pdf = pd.read_parquet(report / "metrics")
    assert set(pdf["run_id"].astype(str)) == {"train-a", "train-b", "train-c", "train-d"}
    dset = pads.dataset(report / "metrics", partitioning="hive").to_table()
    assert dset.schema.field("run_id").type == pa.string()
    assert set(dset.column("run_id").to_pylist()) == {"train-a", "train-b", "train-c", "train-d"}
    # predictions: DuckDB unions the class columns by name
    pred = duckdb.sql(f"SELECT * FROM read_parquet('{report}/predictions/*/*.parquet', "
                      "hive_partitioning=true, union_by_name=true)").df()
    assert {"prob_EA", "prob_Mira"} <= set(pred.columns)
    # one part file read alone names its run in the metadata
    alone = pq.read_table(report / "metrics" / "run_id=train-b" / "part-0.parquet")
    assert json.loads(alone.schema.metadata[b"lcpipe.report"])["run_id"] == "train-b"


@pytest.mark.parametrize("run_id", ["r20240101", "run-2024-01-01", "train_20250101T120000Z",
                                    "a", "x.1e3", "NaN", "true", "null"])
def test_accepted_run_ids_read_back_as_strings(tmp_path, run_id):
    write_report_table(tmp_path, "confusion", run_id, pd.DataFrame(dict(
        run_id=[run_id], model=["m"], split=["test"], true_class=["A"], predicted_class=["A"],
        count=[3])))
    glob = f"{tmp_path}/confusion/*/*.parquet"
    assert duckdb.sql(f"SELECT run_id FROM read_parquet('{glob}', hive_partitioning=true)"
                      ).fetchall() == [(run_id,)]
    assert pd.read_parquet(tmp_path / "confusion")["run_id"].astype(str).tolist() == [run_id]
    dset = pads.dataset(tmp_path / "confusion", partitioning="hive").to_table()
    assert dset.column("run_id").to_pylist() == [run_id]
    assert read_report(tmp_path, "confusion")["run_id"].tolist() == [run_id]


@pytest.mark.parametrize("run_id", ["", "001", "2024-01-01", "-5", "_x", ".x", "a b", "a/b",
                                    "run=1", "inf", "Infinity", "epoch", "é", "a" * 129, 7])
def test_bad_run_id(tmp_path, run_id):
    with pytest.raises(ConfigError, match="run_id"):
        write_report_table(tmp_path, "runs", run_id, runs_frame("train-a"))
    with pytest.raises(ConfigError, match="run_id"):
        figure_path(tmp_path, run_id, "x.png")
    assert _files(tmp_path) == []


def test_absent_table_and_run(tmp_path, report):
    with pytest.raises(InputError, match="no metrics table: not an lcpipe report directory"):
        read_report(tmp_path, "metrics")
    with pytest.raises(InputError, match="no runs table"):
        latest_run_id(tmp_path)
    with pytest.raises(InputError, match="no run 'train-z'"):
        read_report(report, "metrics", "train-z")
    with pytest.raises(ConfigError, match="unknown report table"):
        read_report(report, "figures")


def test_other_major_version_is_refused(tmp_path):
    write_run(tmp_path, "train-a")
    path = tmp_path / "metrics" / "run_id=train-a" / "part-0.parquet"
    table = pq.read_table(path)
    meta = {"schema_version": "2.0", "table": "metrics", "run_id": "train-a"}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    with pytest.raises(InputError, match="schema version 2.0"):
        read_report(tmp_path, "metrics")
    meta["schema_version"] = "1.7"  # a newer minor version is read
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    assert len(read_report(tmp_path, "metrics")) == len(metrics_frame("train-a"))
    pq.write_table(table.replace_schema_metadata(None), path)
    with pytest.raises(InputError, match="not an lcpipe report file"):
        read_report(tmp_path, "metrics")


@pytest.mark.parametrize("engine", ["pyarrow", "duckdb"])
def test_runs_of_version_1_0_read_with_null_ece(tmp_path, engine):
    """A 1.0 metrics file (no ``ece`` column) beside a 1.1 one: both read, ece null there."""
    write_run(tmp_path, "train-a")
    write_run(tmp_path, "train-b")
    path = tmp_path / "metrics" / "run_id=train-a" / "part-0.parquet"
    table = pq.read_table(path).drop_columns(["ece"])
    meta = {"schema_version": "1.0", "table": "metrics", "run_id": "train-a"}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    files = sorted((tmp_path / "metrics").glob("run_id=*/*.parquet"))
    m = reports._read_files(files, "metrics", engine).to_pandas()
    assert m.loc[m["run_id"] == "train-a", "ece"].isna().all()
    b = m[(m["run_id"] == "train-b") & (m["class"] == "__overall__")]
    assert b["ece"].notna().sum() == 2  # the models with a log loss


# ------------------------------------------------------------------ write errors


def test_missing_and_extra_columns(tmp_path):
    frame = metrics_frame("train-a")
    with pytest.raises(ConfigError, match="missing column.*log_loss"):
        write_report_table(tmp_path, "metrics", "train-a", frame.drop(columns="log_loss"))
    with pytest.raises(ConfigError, match="unexpected column.*comment"):
        write_report_table(tmp_path, "metrics", "train-a", frame.assign(comment="x"))
    pred = predictions_frame("train-a")
    with pytest.raises(ConfigError, match="missing column.*prob_Mira"):
        write_report_table(tmp_path, "predictions", "train-a", pred,
                           classes=["EA", "EW", "RRab", "Mira"])
    with pytest.raises(ConfigError, match="unexpected column.*prob_RRab"):
        write_report_table(tmp_path, "predictions", "train-a", pred, classes=["EA", "EW"])
    assert _files(tmp_path) == []


@pytest.mark.parametrize(("table", "change", "match"), [
    ("metrics", lambda f: f.assign(support=f["support"] + 0.5), "'support' does not convert"),
    ("metrics", lambda f: f.assign(model=None), "'model' has .* null"),
    ("metrics", lambda f: f.assign(run_id="train-b"), "rows of run"),
    ("metrics", lambda f: f.assign(split="valid"), "split 'valid'"),
    ("metrics", lambda f: f.assign(accuracy=0.5), "'accuracy' must be null in per-class rows"),
    ("runs", lambda f: f.assign(status="running"), "status 'running'"),
    ("runs", lambda f: f.assign(stage_seconds="[1]"), "'stage_seconds' must be a JSON object"),
    ("runs", lambda f: f.assign(parameters="{"), "'parameters' is not JSON"),
    ("runs", lambda f: pd.concat([f, f]), "exactly one row"),
    ("runs", lambda f: f.assign(started_utc="yesterday"), "'started_utc' does not convert"),
    ("predictions", lambda f: f.assign(fold=1), "fold must be set for split 'cv'"),
])
def test_bad_values_write_nothing(tmp_path, table, change, match):
    frames = {"metrics": metrics_frame, "runs": runs_frame, "predictions": predictions_frame}
    with pytest.raises(ConfigError, match=match):
        write_report_table(tmp_path, table, "train-a", change(frames[table]("train-a")))
    assert _files(tmp_path) == []


def test_failed_rewrite_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = write_report_table(tmp_path, "metrics", "train-a", metrics_frame("train-a"))
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        write_report_table(tmp_path, "metrics", "train-a",
                           metrics_frame("train-a").assign(support="many"))
    assert path.read_bytes() == before
    # a failure while the file is being put in place: the target name is taken by a directory
    blocked = tmp_path / "confusion" / "run_id=train-a" / "part-0.parquet"
    blocked.mkdir(parents=True)
    with pytest.raises(InputError, match="is an existing folder"):
        write_report_table(tmp_path, "confusion", "train-a", confusion_frame("train-a"))
    assert list(blocked.parent.iterdir()) == [blocked]  # the temporary file is gone
    assert _files(tmp_path) == ["metrics/run_id=train-a/part-0.parquet"]


def test_rewrite_replaces_the_run(tmp_path):
    write_run(tmp_path, "train-a")
    write_run(tmp_path, "train-b")
    frame = metrics_frame("train-a")
    frame = frame[frame["model"] == "forest"].assign(model="forest2")
    write_report_table(tmp_path, "metrics", "train-a", frame)
    m = read_report(tmp_path, "metrics")
    assert set(m.loc[m["run_id"] == "train-a", "model"]) == {"forest2"}
    assert set(m.loc[m["run_id"] == "train-b", "model"]) == {"forest", "cnn"}
    assert len(list((tmp_path / "metrics" / "run_id=train-a").iterdir())) == 1


def test_arrow_input_and_conversions(tmp_path):
    frame = predictions_frame("train-a")
    frame["object_id"] = frame["object_id"].str[1:].astype(int)  # integer ids become strings
    frame.loc[0, "prob_EA"] = np.nan  # NaN is stored as null
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_report_table(tmp_path, "predictions", "train-a", table.select(
        list(reversed(table.column_names))))  # column order is free
    got = read_report(tmp_path, "predictions")
    assert got["object_id"].iloc[0] == "1"
    assert pq.read_table(tmp_path / "predictions" / "run_id=train-a" / "part-0.parquet"
                         ).column("prob_EA").null_count == 1
    runs = runs_frame("train-a")
    runs["started_utc"] = runs["started_utc"].dt.tz_localize(None) + pd.Timedelta(1, "ns")
    write_report_table(tmp_path, "runs", "train-a", runs)  # naive = UTC; ns truncated
    assert list_runs(tmp_path)["started_utc"].iloc[0] == pd.Timestamp(STARTED["train-a"],
                                                                      tz="UTC")


# ------------------------------------------------------------------ runs, summary, figures


def test_list_runs_and_latest(report):
    assert list_runs(report)["run_id"].tolist() == ["train-a", "train-b", "train-c"]
    assert latest_run_id(report) == "train-b"
    assert latest_run_id(report, status="failed") == "train-c"
    assert latest_run_id(report, status=None) == "train-c"
    assert latest_run_id(report, flow="train") == "train-b"
    assert latest_run_id(report, flow="classify") is None


def test_comparison_markdown(report):
    text = comparison_markdown(report)
    assert text == comparison_markdown(report, "train-b")
    lines = text.splitlines()
    assert lines[0] == "## Model comparison: run `train-b`"
    table = [ln for ln in lines if ln.startswith("| ")]
    f1 = {m: np.mean([_f1(_precision(r), r) for r in RECALLS["train-b"]["test"][m][0].values()])
          for m in ("forest", "cnn")}
    f1_cv = np.mean([_f1(_precision(r), r) for r in RECALLS["train-b"]["cv"]["forest"][0].values()])
    assert table[:5] == [
        "| split | model | n | accuracy | balanced accuracy | macro-F1 | log loss | ECE |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| cv | forest | 30 | 0.800 | 0.853 | {f1_cv:.3f} | 0.450 | 0.045 |",
        f"| test | cnn | 30 | 0.900 | 0.900 | {f1['cnn']:.3f} | - | - |",
        f"| test | forest | 30 | 0.860 | 0.857 | {f1['forest']:.3f} | 0.400 | 0.040 |",
    ]
    assert "### Recall per class (split `test`)" in lines
    assert table[5:] == [
        "| class | cnn | forest |",
        "| --- | ---: | ---: |",
        "| EW | 0.950 | 0.700 |",
        "| Mira | 0.850 | 0.900 |",
        "| RRab | 0.900 | 0.970 |",
        "| model | threshold | answered | coverage | accuracy of answers |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| cnn | 0.650 | 0 | 0.000 | - |",
        "| forest | 0.650 | 0 | 0.000 | - |",
    ]
    assert "### 'unknown' below each model's threshold (split `test`" in text
    older = comparison_markdown(report, "train-a")
    assert "| test | forest | 30 | 0.900 | 0.900 |" in older
    assert "| EA | 0.800 | 0.600 |" in older


ROBUSTNESS_MARKDOWN = """\
### Stability under 2 redraws of the magnitudes from their error bars

| model | objects | class kept (mean) | never changes | top-probability spread |
| --- | ---: | ---: | ---: | ---: |
| forest | 3 | 0.833 | 0.667 | 0.053 |
| rpca_nearest | 3 | 0.500 | 0.333 | - |

Fraction of the redraws that keep the class, per predicted class:

| predicted class | forest | rpca_nearest |
| --- | ---: | ---: |
| EA | 0.750 | 1.000 |
| EW | 1.000 | 0.250 |

### Accuracy against the fraction of points kept

| fraction kept | points kept | forest | rpca_nearest |
| ---: | ---: | ---: | ---: |
| 1.000 | 1.000 | 0.667 | 0.333 |
| 0.500 | 0.550 | 0.333 | 0.333 |

### Adversarial check: smallest change [sigma] found to flip the class

| model | objects | median flip (sigma) | flip within 1 sigma | never flipped |
| --- | ---: | ---: | ---: | ---: |
| cnn | 3 | 2.000 | 0.333 | 0.333 |
"""


def test_robustness_markdown(report, tmp_path):
    """The robustness section, worked out by hand from the tables; it follows the model
    comparison of a run that has it; a run without robustness tables is an input error;
    without labels the cadence table shows the agreement."""
    assert robustness_markdown(report, "train-a") == ROBUSTNESS_MARKDOWN
    text = comparison_markdown(report, "train-a")
    assert text.endswith("\n" + ROBUSTNESS_MARKDOWN)
    assert "Stability under" not in comparison_markdown(report, "train-b")
    with pytest.raises(InputError, match="robustness_classes"):
        robustness_markdown(report, "train-b")
    frames = robustness_frames("rob-x")
    frames["cadence"] = frames["cadence"].assign(labelled=0, accuracy=None,
                                                 balanced_accuracy=None)
    for table in ("robustness_objects", "robustness_classes", "cadence"):
        write_report_table(tmp_path, table, "rob-x", frames[table])
    text = robustness_markdown(tmp_path, "rob-x")
    assert "### Agreement with the full light curves against the fraction of points kept" in text
    assert "| 0.500 | 0.550 | 0.500 | 0.667 |" in text and "Adversarial" not in text


def test_docs_query_robustness(tmp_path):
    """The documented query: the latest completed robustness run's per-class stability."""
    for run_id, started in (("rob-old", "2026-01-01"), ("rob-new", "2026-02-01")):
        for table, frame in robustness_frames(run_id).items():
            write_report_table(tmp_path, table, run_id, frame)
        runs = runs_frame("train-a").assign(run_id=run_id, flow="robustness",
                                            started_utc=pd.Timestamp(started, tz="UTC"))
        write_report_table(tmp_path, "runs", run_id, runs)
    classes = robustness_frames("x")["robustness_classes"]
    write_report_table(tmp_path, "robustness_classes", "rob-old",
                       classes.assign(run_id="rob-old", stable_fraction=0.0))
    rows = _sql(QUERY_ROBUSTNESS, tmp_path)
    assert rows[:3] == [("EA", "rpca_nearest", 1, 1.0, 1.0), ("EA", "forest", 2, 0.75, 0.5),
                        ("EW", "forest", 1, 1.0, 1.0)]
    assert rows[-2][:2] == ("__overall__", "forest") and len(rows) == 6


def test_comparison_markdown_first_split_without_test(tmp_path):
    frame = metrics_frame("train-a")
    write_report_table(tmp_path, "metrics", "train-a", frame[frame["split"] == "cv"])
    write_report_table(tmp_path, "runs", "train-a", runs_frame("train-a"))
    text = comparison_markdown(tmp_path)
    assert "### Recall per class (split `cv`)" in text
    assert "| EA | 0.750 |" in text
    with pytest.raises(InputError, match="no run 'train-b'"):
        comparison_markdown(tmp_path, "train-b")


def test_comparison_markdown_needs_a_completed_run(tmp_path):
    write_run(tmp_path, "train-c")
    with pytest.raises(InputError, match="no completed run with metrics"):
        comparison_markdown(tmp_path)


def test_plot_confusion_png(tmp_path):
    matrix = np.array([[8, 2, 0], [1, 9, 0], [0, 3, 7]])
    path = figure_path(tmp_path, "train-a", "confusion_forest_test.png")
    assert path == tmp_path / "figures" / "run_id=train-a" / "confusion_forest_test.png"
    assert path.parent.is_dir()
    out = plot_confusion(matrix, ["EA", "EW", "RRab"], path, "forest, test split")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000
    assert _files(tmp_path) == ["figures/run_id=train-a/confusion_forest_test.png"]
    with pytest.raises(ConfigError, match="does not match"):
        plot_confusion(matrix, ["EA", "EW"], tmp_path / "x.png", "x")
    for name in ("", "..", "a/b.png"):
        with pytest.raises(ConfigError, match="plain file name"):
            figure_path(tmp_path, "train-a", name)


# ------------------------------------------------------------------ docs/reports.md examples

SQL_FROM = "hive_partitioning = true, union_by_name = true"

QUERY_COMPARISON = f"""
WITH runs AS (
    SELECT * FROM read_parquet('REPORT_DIR/runs/*/*.parquet', {SQL_FROM})
), metrics AS (
    SELECT * FROM read_parquet('REPORT_DIR/metrics/*/*.parquet', {SQL_FROM})
), latest AS (
    SELECT run_id FROM runs
    WHERE status = 'completed' AND run_id IN (SELECT run_id FROM metrics)
    ORDER BY started_utc DESC
    LIMIT 1
)
SELECT split, model, support AS n, accuracy, balanced_accuracy, f1 AS macro_f1, log_loss
FROM metrics
WHERE run_id = (SELECT run_id FROM latest) AND class = '__overall__'
ORDER BY split, accuracy DESC NULLS LAST, model;
"""

QUERY_BEST_PER_CLASS = f"""
SELECT m.class, m.run_id, m.model, m.recall, m.f1
FROM read_parquet('REPORT_DIR/metrics/*/*.parquet', {SQL_FROM}) AS m
JOIN read_parquet('REPORT_DIR/runs/*/*.parquet', {SQL_FROM}) AS r USING (run_id)
WHERE r.status = 'completed' AND m.split = 'test' AND m.class <> '__overall__'
QUALIFY row_number() OVER (
    PARTITION BY m.class ORDER BY m.recall DESC, m.f1 DESC, r.started_utc DESC, m.model
) = 1
ORDER BY m.class;
"""

QUERY_DISAGREEMENTS = f"""
WITH predictions AS (
    SELECT * FROM read_parquet('REPORT_DIR/predictions/*/*.parquet', {SQL_FROM})
), latest AS (
    SELECT run_id FROM read_parquet('REPORT_DIR/runs/*/*.parquet', {SQL_FROM})
    WHERE status = 'completed' AND run_id IN (SELECT run_id FROM predictions)
    ORDER BY started_utc DESC
    LIMIT 1
)
SELECT object_id, split, true_class, model, predicted_class, probability
FROM predictions
WHERE run_id = (SELECT run_id FROM latest) AND NOT models_agree
ORDER BY split, object_id, model;
"""

QUERY_TREND = f"""
SELECT r.started_utc, m.run_id, m.model, m.accuracy, m.balanced_accuracy
FROM read_parquet('REPORT_DIR/metrics/*/*.parquet', {SQL_FROM}) AS m
JOIN read_parquet('REPORT_DIR/runs/*/*.parquet', {SQL_FROM}) AS r USING (run_id)
WHERE r.status = 'completed' AND m.split = 'test' AND m.class = '__overall__'
ORDER BY m.model, r.started_utc;
"""

PANDAS_EXAMPLE = """
import pandas as pd

runs = pd.read_parquet("REPORT_DIR/runs")
metrics = pd.read_parquet("REPORT_DIR/metrics")
completed = runs.loc[runs["status"] == "completed", "run_id"].astype(str)
overall = metrics[(metrics["class"] == "__overall__") & (metrics["split"] == "test")]
overall = overall[overall["run_id"].astype(str).isin(completed)]
accuracy = overall.pivot_table(index="run_id", columns="model", values="accuracy",
                               observed=True)
print(accuracy)
"""


QUERY_ROBUSTNESS = """
SELECT predicted_class, model, objects, stable_fraction, all_stable
FROM read_parquet('REPORT_DIR/robustness_classes/*/*.parquet', hive_partitioning = true)
WHERE run_id = (
    SELECT run_id FROM read_parquet('REPORT_DIR/runs/*/*.parquet', hive_partitioning = true)
    WHERE flow = 'robustness' AND status = 'completed'
    ORDER BY started_utc DESC LIMIT 1)
ORDER BY predicted_class, stable_fraction DESC;
"""


def _sql(query: str, report: Path) -> list[tuple]:
    return duckdb.sql(query.replace("REPORT_DIR", str(report))).fetchall()


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_docs_contain_the_tested_examples():
    doc = DOCS.read_text()
    blocks = [_normalise(b) for b in re.findall(r"```(?:sql|python)\n(.*?)```", doc, re.S)]
    for example in (QUERY_COMPARISON, QUERY_BEST_PER_CLASS, QUERY_DISAGREEMENTS, QUERY_TREND,
                    PANDAS_EXAMPLE, QUERY_ROBUSTNESS):
        assert _normalise(example) in blocks, example[:60]
    assert REPORT_SCHEMA_VERSION in doc
    for table in TABLES:  # every column is documented
        for name in table_schema(table, ["X"] if table == "predictions" else None).names:
            shown = "prob_<class>" if name == "prob_X" else name
            assert f"| `{shown}` |" in doc, (table, name)


def test_docs_query_comparison(report):
    rows = _sql(QUERY_COMPARISON, report)
    assert [r[:4] for r in rows] == [("cv", "forest", 30, 0.80), ("test", "cnn", 30, 0.90),
                                     ("test", "forest", 30, 0.86)]
    assert rows[1][6] is None and rows[2][6] == pytest.approx(0.40)
    # the same numbers as comparison_markdown
    text = comparison_markdown(report)
    for split, model, n, acc, bacc, f1, ll in rows:
        ll_text = "-" if ll is None else f"{ll:.3f}"
        assert f"| {split} | {model} | {n} | {acc:.3f} | {bacc:.3f} | {f1:.3f} | {ll_text} |" \
            in text


def test_docs_query_best_per_class(report):
    rows = _sql(QUERY_BEST_PER_CLASS, report)
    assert [r[:4] for r in rows] == [
        ("EA", "train-a", "forest", 0.80),  # train-c (failed) and train-d (no runs row) ignored
        ("EW", "train-b", "cnn", 0.95),
        ("Mira", "train-b", "forest", 0.90),
        ("RRab", "train-a", "forest", 1.00),
    ]


def test_docs_query_disagreements(report):
    rows = _sql(QUERY_DISAGREEMENTS, report)
    assert rows == [
        ("o2", "test", "Mira", "cnn", "RRab", 0.6), ("o2", "test", "Mira", "forest", "Mira", 0.7),
        ("o4", "test", None, "cnn", "Mira", 0.6), ("o4", "test", None, "forest", "EW", 0.7),
    ]


def test_docs_query_trend(report):
    rows = _sql(QUERY_TREND, report)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("train-a", "cnn", 0.78), ("train-b", "cnn", 0.90),
        ("train-a", "forest", 0.90), ("train-b", "forest", 0.86),
    ]
    assert rows[0][0] < rows[1][0]


def test_docs_pandas_example(report, capsys):
    exec(PANDAS_EXAMPLE.replace("REPORT_DIR", str(report)), {})
    out = capsys.readouterr().out
    lines = [ln.split() for ln in out.splitlines()]
    assert lines[-2] == ["train-a", "0.78", "0.90"]
    assert lines[-1] == ["train-b", "0.90", "0.86"]


def test_docs_python_blocks_run(report, capsys):
    """Every Python block of docs/reports.md runs against the test report."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(block.replace("REPORT_DIR", str(report)), {})
    assert "## Model comparison: run `train-b`" in capsys.readouterr().out
