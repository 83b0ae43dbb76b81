"""The Prefect flows end to end on the bundled real CRTS sample (paper7: 210 objects, 7 classes).

One train run (module fixture) is shared by most tests; a second identical run
checks the task cache. Settings are small (3 CNN epochs, 30 trees, one process)
so that the whole file runs in about a minute on two cores.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from flows.classify import classify
from flows.train import train
from models.settings import ClassifySettings, TrainSettings
from pipeline.demo import sample_paths
from pipeline.errors import InputError
from pipeline.reports import list_runs, read_report

MODELS = ("forest", "cnn", "rpca_nearest")
PAPER7 = ("EA", "EW", "LPV", "RRab", "RRc", "RRd", "RS_CVn")
CHUNK_TASKS = ("ingest", "dmdt-images", "features")
SETTINGS = TrainSettings(classes="paper7", chunk_size=60, n_jobs=1, cnn_preset="faithful",
                         cnn_epochs=3, forest_n_estimators=30, refit=False)


@dataclass
class Run:
    output: Path
    result: dict[str, Any]
    flow_run_id: Any

    @property
    def report_dir(self) -> Path:
        return self.output / "reports"

    @property
    def run_id(self) -> str:
        return self.result["run_id"]


def _train(output: Path, settings: TrainSettings = SETTINGS, data: Path | None = None,
           **kw: Any) -> Run:
    paths = sample_paths()
    state = train(data or paths["lightcurves"], paths["labels"], output, settings,
                  return_state=True, **kw)
    assert state.is_completed(), state
    return Run(output, state.result(), state.state_details.flow_run_id)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(tmp_path_factory.mktemp("train") / "run")


@pytest.fixture(scope="module")
def second_run(first_run: Run) -> Run:
    """The same flow again, same data, output folder and settings."""
    return _train(first_run.output)


def _sql(query: str, *params: Any) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute(query, list(params)).df()


def _table(report_dir: Path, table: str) -> str:
    return (f"read_parquet('{report_dir}/{table}/*/*.parquet', hive_partitioning = true, "
            "union_by_name = true)")


def _chunk_task_runs(flow_run_id: Any, n_expected: int, timeout: float = 60.0) -> list[Any]:
    """Task runs of the chunk tasks of a flow run, once the server has recorded them all.

    Prefect 3 reports task-run states as events that the server records
    asynchronously: poll until every expected run is there in a final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            runs = [r for r in runs if r.name.rsplit("-", 1)[0] in CHUNK_TASKS]
            if (len(runs) >= n_expected and all(r.state is not None and r.state.is_final()
                                                for r in runs)) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)


def _n_chunks(run: Run) -> int:
    return math.ceil(run.result["ingest"]["objects_out"] / SETTINGS.chunk_size)


# ----------------------------------------------------------------------------- 1. end to end


def test_train_writes_reports_bundle_and_figures(first_run: Run) -> None:
    rd, run_id = first_run.report_dir, first_run.run_id
    assert Path(first_run.result["report_dir"]) == rd
    for table in ("runs", "metrics", "confusion", "predictions", "quarantine"):
        assert (rd / table / f"run_id={run_id}" / "part-0.parquet").is_file(), table

    runs = read_report(rd, "runs", run_id)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["flow"], row["status"]) == ("train", "completed")
    assert row["objects_in"] == 435
    assert row["objects_quarantined"] == 0
    assert row["objects_classified"] == 210
    assert row["bundle"] == first_run.result["bundle"]
    assert json.loads(row["parameters"])["settings"]["classes"] == "paper7"

    counts = first_run.result["counts"]
    assert counts["n_used"] == 210
    assert counts["class_counts"] == dict.fromkeys(PAPER7, 30)
    assert first_run.result["failed_files"] == []
    assert first_run.result["failed_chunk_objects"] == 0

    for table in ("metrics", "confusion", "predictions"):
        frame = read_report(rd, table, run_id)
        assert set(frame["model"]) == set(MODELS), table
        assert set(frame["split"]) == {"test"}, table
    pred = read_report(rd, "predictions", run_id)
    # 20 % of each class held out: 6 of 30 -> 42 test objects, one row per model
    assert pred.groupby("model")["object_id"].nunique().to_dict() == dict.fromkeys(MODELS, 42)
    assert not pred.duplicated(["object_id", "model"]).any()
    assert set(pred["true_class"]) == set(PAPER7)
    assert [c for c in pred.columns if c.startswith("prob_")] == [f"prob_{c}" for c in PAPER7]

    bundle = Path(first_run.result["bundle"])
    assert bundle == first_run.output / "bundles" / run_id
    for f in ("bundle.json", "forest.skops", "cnn/model.keras", "rpca_nearest.npz"):
        assert (bundle / f).is_file(), f
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["classes"] == list(PAPER7)
    assert info["trained_on"] == "training part"
    assert info["n_objects"] == 210 - 42

    figures = rd / "figures" / f"run_id={run_id}"
    for name in [f"confusion_{m}_test.png" for m in MODELS] + ["rpca_templates.png"]:
        png = figures / name
        assert png.is_file(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


# ----------------------------------------------------------------------------- 2. metrics


def test_report_metrics_equal_duckdb_recomputation(first_run: Run) -> None:
    rd, run_id = first_run.report_dir, first_run.run_id
    pred, met, conf = (_table(rd, t) for t in ("predictions", "metrics", "confusion"))
    where = "run_id = ? AND split = 'test'"

    overall = _sql(f"""
        SELECT model, avg(CAST(predicted_class = true_class AS DOUBLE)) AS accuracy,
               count(*) AS support
        FROM {pred} WHERE {where} GROUP BY model ORDER BY model""", run_id)
    recall = _sql(f"""
        SELECT model, true_class AS class, avg(CAST(predicted_class = true_class AS DOUBLE))
               AS recall, count(*) AS support
        FROM {pred} WHERE {where} GROUP BY ALL""", run_id)
    precision = _sql(f"""
        SELECT model, predicted_class AS class,
               avg(CAST(predicted_class = true_class AS DOUBLE)) AS precision
        FROM {pred} WHERE {where} GROUP BY ALL""", run_id)
    metrics = _sql(f"SELECT * FROM {met} WHERE {where}", run_id)
    assert len(overall) == len(MODELS)
    assert len(metrics) == len(MODELS) * (len(PAPER7) + 1)

    for m in MODELS:
        rep = metrics[metrics["model"] == m].set_index("class")
        o = overall.set_index("model").loc[m]
        assert rep.loc["__overall__", "accuracy"] == pytest.approx(o["accuracy"])
        assert rep.loc["__overall__", "support"] == o["support"] == 42
        rec = recall[recall["model"] == m].set_index("class")
        prec = precision[precision["model"] == m].set_index("class")
        exp_rec, exp_prec = [], []
        for c in PAPER7:
            exp_rec.append(float(rec.loc[c, "recall"]))
            # a class never predicted has precision 0 in the report (zero_division=0)
            exp_prec.append(float(prec.loc[c, "precision"]) if c in prec.index else 0.0)
            assert rep.loc[c, "support"] == rec.loc[c, "support"], (m, c)
            assert rep.loc[c, "recall"] == pytest.approx(exp_rec[-1]), (m, c)
            assert rep.loc[c, "precision"] == pytest.approx(exp_prec[-1]), (m, c)
        assert rep.loc["__overall__", "recall"] == pytest.approx(np.mean(exp_rec))
        assert rep.loc["__overall__", "balanced_accuracy"] == pytest.approx(np.mean(exp_rec))
        assert rep.loc["__overall__", "precision"] == pytest.approx(np.mean(exp_prec))
        if m == "rpca_nearest":
            assert pd.isna(rep.loc["__overall__", "log_loss"])
        else:
            assert rep.loc["__overall__", "log_loss"] > 0

    grouped = _sql(f"""
        SELECT model, true_class, predicted_class, count(*) AS count
        FROM {pred} WHERE {where} GROUP BY ALL""", run_id)
    table = _sql(f"SELECT model, true_class, predicted_class, count FROM {conf} WHERE {where}",
                 run_id)
    assert len(table) == len(MODELS) * len(PAPER7) ** 2  # zero counts included
    key = ["model", "true_class", "predicted_class"]
    nonzero = table[table["count"] > 0].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(nonzero, grouped.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)

    # calibration bins recomputed in SQL from the predictions' top probability
    cal = _table(rd, "calibration")
    bins = _sql(f"""
        SELECT model, least(floor(probability * 10), 9) / 10 AS bin_low, count(*) AS n,
               avg(probability) AS confidence,
               avg(CAST(predicted_class = true_class AS DOUBLE)) AS accuracy
        FROM {pred} WHERE {where} AND probability IS NOT NULL GROUP BY ALL
        ORDER BY model, bin_low""", run_id)
    got = _sql(f"SELECT model, bin_low, n, confidence, accuracy FROM {cal} WHERE {where} "
               "ORDER BY model, bin_low", run_id)
    pd.testing.assert_frame_equal(got, bins, check_dtype=False)
    assert set(got["model"]) == set(MODELS) - {"rpca_nearest"}
    for m, g in got.groupby("model"):
        ece = float((g["n"] * (g["accuracy"] - g["confidence"]).abs()).sum() / g["n"].sum())
        rep = metrics[(metrics["model"] == m) & (metrics["class"] == "__overall__")]
        assert rep["ece"].iloc[0] == pytest.approx(ece)
        assert (figures := rd / "figures" / f"run_id={run_id}" / "reliability_test.png").is_file()
        assert figures.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- 3. cache


def test_second_identical_run_hits_the_chunk_cache(first_run: Run, second_run: Run) -> None:
    from prefect.client.schemas.objects import StateType

    assert second_run.run_id != first_run.run_id
    assert second_run.flow_run_id != first_run.flow_run_id
    n = 1 + 2 * _n_chunks(first_run)  # one ingest, then images and features per chunk

    first = _chunk_task_runs(first_run.flow_run_id, n)
    assert len(first) == n
    assert {r.state.name for r in first} == {"Completed"}  # computed, not cached

    second = _chunk_task_runs(second_run.flow_run_id, n)
    assert len(second) == n
    by_task: dict[str, list[str]] = {}
    for r in second:
        by_task.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
        assert r.state.type == StateType.COMPLETED
    assert by_task == {"ingest": ["Cached"],
                       "dmdt-images": ["Cached"] * _n_chunks(first_run),
                       "features": ["Cached"] * _n_chunks(first_run)}

    runs = list_runs(first_run.report_dir)
    assert list(runs["run_id"]) == [first_run.run_id, second_run.run_id]
    assert set(runs["status"]) == {"completed"}

    cols = ["model", "split", "class"]
    a, b = (read_report(first_run.report_dir, "metrics", r.run_id).drop(columns="run_id")
            .sort_values(cols).reset_index(drop=True) for r in (first_run, second_run))
    pd.testing.assert_frame_equal(a[cols], b[cols])
    for col in ("precision", "recall", "f1", "accuracy", "balanced_accuracy", "log_loss"):
        x, y = a[col].astype(float).to_numpy(), b[col].astype(float).to_numpy()
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=col)
    assert (a["support"] == b["support"]).all()


def test_deleted_cache_is_recomputed(first_run: Run, second_run: Run) -> None:
    """Cached results whose files were deleted (work/cache removed) are recomputed."""
    import shutil

    shutil.rmtree(first_run.output / "work" / "cache")
    third = _train(first_run.output)
    assert third.result["failed_chunk_objects"] == 0
    assert third.result["ingest"] == first_run.result["ingest"]
    a = read_report(first_run.report_dir, "metrics", first_run.run_id)
    b = read_report(first_run.report_dir, "metrics", third.run_id)
    assert len(a) == len(b) and (a["support"].to_numpy() == b["support"].to_numpy()).all()
    # a rerun from scratch with the same inputs and seeds: identical predictions, every
    # probability bit for bit, and the same explanations
    for table, key in (("predictions", ["model", "split", "object_id"]),
                       ("importances", ["feature"]), ("class_features", ["class", "feature"]),
                       ("class_maps", ["kind", "class", "channel", "dm_index", "dt_index"]),
                       ("activation_check", ["class"])):
        x, y = (read_report(first_run.report_dir, table, r).drop(columns="run_id")
                .sort_values(key).reset_index(drop=True) for r in (first_run.run_id,
                                                                   third.run_id))
        assert len(x) > 0, table
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=table)
    # and the runs table traces both to the same data, settings (seeds) and packages
    runs = list_runs(first_run.report_dir).set_index("run_id")
    one, two = runs.loc[first_run.run_id], runs.loc[third.run_id]
    assert one["input_data_hash"] == two["input_data_hash"]
    assert one["input_data_hash"].startswith("sha256:")
    assert one["package_versions"] == two["package_versions"]
    p1, p2 = json.loads(one["parameters"]), json.loads(two["parameters"])
    assert p1["settings"] == p2["settings"] and p1["settings"]["seed"] == SETTINGS.seed
    from pipeline.hashing import file_hash

    hashes = json.loads(two["model_hashes"])
    assert set(hashes) == set(MODELS)
    for kind, h in hashes.items():  # the bundle's files as they are now
        assert h == file_hash(third.result["bundle"] + "/" + {
            "forest": "forest.skops", "cnn": "cnn", "rpca_nearest": "rpca_nearest.npz"}[kind])


def test_cv_folds_give_the_same_folds_to_every_model(tmp_path: Path) -> None:
    """With cv_folds, every model is scored out of fold on the same folds of the training
    part; the test part is untouched."""
    settings = SETTINGS.model_copy(update={"cv_folds": 3})
    run = _train(tmp_path / "cv", settings)
    pred = read_report(run.report_dir, "predictions", run.run_id)
    cv = pred[pred["split"] == "cv"]
    assert set(cv["model"]) == {"forest", "cnn", "rpca_nearest", "stack"}
    folds = {m: g.set_index("object_id")["fold"].sort_index() for m, g in cv.groupby("model")}
    pd.testing.assert_series_equal(folds["forest"], folds["cnn"], check_names=False)
    pd.testing.assert_series_equal(folds["forest"], folds["rpca_nearest"], check_names=False)
    assert set(folds["forest"].astype(int)) == {0, 1, 2}
    test_ids = set(pred.loc[pred["split"] == "test", "object_id"])
    assert not test_ids & set(cv["object_id"])
    metrics = read_report(run.report_dir, "metrics", run.run_id)
    assert {("cv", m) for m in folds} <= set(zip(metrics["split"], metrics["model"],
                                                 strict=True))

    # the stack: the log-linear pool of the base models' CV probabilities (one exponent
    # per model minimising the log loss), refitted here with another optimiser, gives its
    # test predictions; its own CV uses the folds
    from scipy.optimize import minimize

    cols = [f"prob_{c}" for c in PAPER7]

    def probs(split: str) -> tuple[pd.DataFrame, np.ndarray]:
        part = pred[pred["split"] == split]
        wide = {m: part[part["model"] == m].set_index("object_id").sort_index()
                for m in ("forest", "cnn", "stack")}
        x = np.hstack([wide[m][cols].to_numpy(float) for m in ("forest", "cnn")])
        return wide, np.log(np.clip(x, 1e-4, 1))

    (cv_w, x_cv), (te_w, x_te) = probs("cv"), probs("test")
    truth = np.searchsorted(PAPER7, cv_w["forest"]["true_class"].to_numpy(str))

    def pooled(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        z = w[0] * x[:, :7] + w[1] * x[:, 7:]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    w = minimize(lambda w: -np.mean(np.log(pooled(np.abs(w), x_cv)[np.arange(len(truth)),
                                                                     truth])),
                 np.ones(2), method="Nelder-Mead",
                 options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 4000}).x
    np.testing.assert_allclose(te_w["stack"][cols].to_numpy(float), pooled(np.abs(w), x_te),
                               rtol=1e-4, atol=1e-6)
    pd.testing.assert_series_equal(cv_w["stack"]["fold"], folds["forest"], check_names=False)
    assert ("test", "stack") in set(zip(metrics["split"], metrics["model"], strict=True))

    # the bundle holds the stack, and classify reproduces its test predictions
    bundle = Path(run.result["bundle"])
    assert json.loads((bundle / "bundle.json").read_text())["models"][-1] == "stack"
    table = pq.read_table(sample_paths()["lightcurves"])
    ids = sorted(te_w["stack"].index)
    data = tmp_path / "test_objects.parquet"
    pq.write_table(table.filter(pc.is_in(table.column("object_id").cast(pa.string()),
                                         value_set=pa.array(ids, pa.string()))), data)
    classify(str(bundle), data, tmp_path / "classified.parquet", ClassifySettings(n_jobs=1))
    got = pq.read_table(tmp_path / "classified.parquet").to_pandas()
    everything = got
    got = got[got["model"] == "stack"].set_index("object_id").sort_index()
    np.testing.assert_allclose(got[cols].to_numpy(float), te_w["stack"][cols].to_numpy(float),
                               rtol=1e-5, atol=1e-6)

    # calibration: the forest and the CNN are temperature-scaled (T in bundle.json); their
    # report test probabilities are p**(1/T), renormalised, of the raw ones, which a copy of
    # the bundle without its temperatures gives; classify applies the same temperatures
    info = json.loads((bundle / "bundle.json").read_text())
    assert set(info["temperatures"]) == {"forest", "cnn"}
    raw_bundle = tmp_path / "raw_bundle"
    shutil.copytree(bundle, raw_bundle)
    raw_info = {k: v for k, v in info.items() if k != "temperatures"}
    (raw_bundle / "bundle.json").write_text(json.dumps(raw_info))
    classify(str(raw_bundle), data, tmp_path / "raw.parquet", ClassifySettings(n_jobs=1))
    raw = pq.read_table(tmp_path / "raw.parquet").to_pandas()
    for m in ("forest", "cnn"):
        r = raw[raw["model"] == m].set_index("object_id").sort_index()[cols].to_numpy(float)
        scaled = r ** (1 / info["temperatures"][m])
        scaled /= scaled.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(te_w[m][cols].to_numpy(float), scaled, rtol=1e-5, atol=1e-6)
        mine = everything[everything["model"] == m].set_index("object_id").sort_index()
        np.testing.assert_allclose(mine[cols].to_numpy(float), scaled, rtol=1e-5, atol=1e-6)
        # the order of the classes, hence the answer, is the raw model's
        assert list(mine["predicted_class"]) == list(np.asarray(PAPER7)[r.argmax(axis=1)])

    # 'unknown': each model's threshold is the lowest top probability at which its CV
    # answers reach 0.95 accuracy, recomputed here by brute force over every candidate
    thresholds = json.loads((bundle / "bundle.json").read_text())["unknown_thresholds"]
    assert set(thresholds) == {"forest", "cnn", "stack"}
    cov = read_report(run.report_dir, "coverage", run.run_id)
    for m, tau in thresholds.items():
        g = cv_w[m] if m in cv_w else cv[cv["model"] == m].set_index("object_id")
        top = g[cols].to_numpy(float).max(axis=1)
        right = (np.asarray(PAPER7)[g[cols].to_numpy(float).argmax(axis=1)]
                 == g["true_class"].to_numpy())
        ok = [t for t in np.r_[0.0, np.unique(top)]
              if right[top >= t].size and right[top >= t].mean() >= 0.95]
        assert tau == (min(ok) if ok else pytest.approx(top.max(), abs=1e-9)), m
        rows = pred[(pred["model"] == m) & (pred["split"] == "test")]
        low = rows["probability"] < tau
        assert (rows.loc[low, "answer"] == "unknown").all(), m
        assert (rows.loc[~low, "answer"] == rows.loc[~low, "predicted_class"]).all(), m
        assert rows.loc[low, "unknown_reason"].str.contains(f"< {tau:.3f}").all(), m
        chosen = cov[(cov["model"] == m) & cov["chosen"]]
        assert set(chosen["split"]) == {"cv", "test"}
        assert chosen["threshold"].tolist() == [tau, tau]
        c = chosen.set_index("split").loc["test"]
        assert c["answered"] == (~low).sum()
    # classify applies the same thresholds
    cl = everything.set_index(["model", "object_id"]).sort_index()
    ex = pred[pred["split"] == "test"].set_index(["model", "object_id"]).sort_index()
    assert (cl.loc["stack", "answer"] == ex.loc["stack", "answer"]).all()


# ----------------------------------------------------------------------------- 4. bad file


@pytest.fixture(scope="module")
def input_with_broken_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as 3 Parquet files (split by object) plus one file of garbage bytes."""
    folder = tmp_path_factory.mktemp("split-input")
    table = pq.read_table(sample_paths()["lightcurves"])
    ids = np.unique(np.asarray(table.column("object_id").to_pylist(), dtype=str))
    for k, part in enumerate(np.array_split(ids, 3)):
        mask = pc.is_in(table.column("object_id").cast(pa.string()),
                        value_set=pa.array(part, pa.string()))
        pq.write_table(table.filter(mask), folder / f"part-{k}.parquet")
    (folder / "broken.parquet").write_bytes(b"this is not a parquet file\n" * 40)
    return folder


def test_unreadable_input_file_is_quarantined(input_with_broken_file: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    lenient = TrainSettings(**{**SETTINGS.model_dump(), "max_failed_fraction": 0.5})
    run = _train(out, lenient, data=input_with_broken_file)

    assert [Path(f["file"]).name for f in run.result["failed_files"]] == ["broken.parquet"]
    q_path = out / "reports" / "quarantine" / f"run_id={run.run_id}" / "part-0.parquet"
    assert Path(run.result["quarantine"]) == q_path
    q = pq.read_table(q_path).to_pandas()
    bad = q[q["reason"].str.startswith("unreadable_file")]
    assert len(bad) == 1
    assert (bad.iloc[0]["object_id"], bad.iloc[0]["band"]) == ("*", "broken.parquet")
    runs = read_report(out / "reports", "runs", run.run_id)
    assert runs.iloc[0]["status"] == "completed"
    assert runs.iloc[0]["objects_in"] == 435  # the three readable files hold every object
    assert run.result["counts"]["n_used"] == 210

    strict = TrainSettings(**{**SETTINGS.model_dump(), "max_failed_fraction": 0.1})
    paths = sample_paths()
    with pytest.raises(InputError, match="max_failed_fraction"):
        train(input_with_broken_file, paths["labels"], out, strict, run_id="train-strict")
    runs = read_report(out / "reports", "runs", "train-strict")
    assert len(runs) == 1
    assert runs.iloc[0]["status"] == "failed"
    assert runs.iloc[0]["objects_classified"] == 0
    assert not (out / "bundles" / "train-strict").exists()
    assert not (out / "reports" / "metrics" / "run_id=train-strict").exists()


# ----------------------------------------------------------------------------- 5. failed chunk


def test_failed_chunk_quarantines_its_objects(first_run: Run, tmp_path: Path) -> None:
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows._common import fan_out, quarantine_path, write_quarantine
    from flows.tasks import images_task

    (ingest_json,) = (first_run.output / "work" / "cache").glob("ingest-*/ingest.json")
    ing = json.loads(ingest_json.read_text())
    chunks, objects = ing["chunks"][:3], ing["chunk_objects"][:3]
    # the third chunk: its first half only (a truncated Parquet file)
    data = Path(chunks[2]).read_bytes()
    bad = tmp_path / "chunk-bad.parquet"
    bad.write_bytes(data[: len(data) // 2])
    chunks[2] = str(bad)
    cache = tmp_path / "cache"
    grids, bands = ["mahabal2017"], ing["bands"]

    @flow(name="fan-out-test", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def fan() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return fan_out(lambda c: images_task.submit(c, cache, grids, bands), chunks, objects)

    results, failed = fan()
    assert sorted(results) == sorted(chunks[:2])
    for c in chunks[:2]:
        img = Path(results[c]["mahabal2017"])
        assert img.is_file()
        ids = pq.read_table(img, columns=["object_id"]).column("object_id").to_pylist()
        assert sorted(map(str, ids)) == sorted(objects[chunks.index(c)])
    assert sorted(r["object_id"] for r in failed) == sorted(objects[2])
    assert all(r["reason"].startswith("chunk_failed") for r in failed)
    assert all((r["band"], r["n_rows"]) == ("*", 0) for r in failed)

    path = quarantine_path(tmp_path / "reports", "fan-out-test")
    q = pq.read_table(write_quarantine(path, "fan-out-test", ing["quarantine"],
                                       failed)).to_pandas()
    q = q[q["reason"].str.startswith("chunk_failed")]
    assert sorted(q["object_id"]) == sorted(objects[2])


def test_failed_chunk_with_an_empty_error_message() -> None:
    from prefect import flow, task

    from flows._common import fan_out

    @task(name="out-of-memory")
    def out_of_memory(chunk: str) -> None:
        raise MemoryError()

    @flow(name="fan-out-empty-message")
    def fan() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return fan_out(lambda c: out_of_memory.submit(c), ["chunk-a"], [["obj-1", "obj-2"]])

    results, failed = fan()
    assert results == {}
    assert [r["reason"] for r in failed] == ["chunk_failed: MemoryError"] * 2


# ----------------------------------------------------------------------------- 6. round trip


def test_bundle_round_trip_reproduces_test_predictions(first_run: Run, tmp_path: Path) -> None:
    expected = read_report(first_run.report_dir, "predictions", first_run.run_id)
    test_ids = sorted(set(expected["object_id"]))
    table = pq.read_table(sample_paths()["lightcurves"])
    mask = pc.is_in(table.column("object_id").cast(pa.string()),
                    value_set=pa.array(test_ids, pa.string()))
    data = tmp_path / "test_objects.parquet"
    pq.write_table(table.filter(mask), data)

    out = tmp_path / "classified.parquet"
    res = classify(first_run.result["bundle"], data, out, ClassifySettings(n_jobs=1))
    assert res["objects_in"] == len(test_ids) == 42
    assert res["objects_quarantined"] == 0
    got = pq.read_table(out).to_pandas()
    assert set(got["split"]) == {"classify"}
    assert len(got) == len(test_ids) * len(MODELS)

    key = ["model", "object_id"]
    got = got.sort_values(key).reset_index(drop=True)
    exp = expected.sort_values(key).reset_index(drop=True)
    assert list(got["object_id"]) == list(exp["object_id"].astype(str))
    assert list(got["model"]) == list(exp["model"].astype(str))
    prob_cols = [f"prob_{c}" for c in PAPER7]
    for m in MODELS:
        g, e = got[got["model"] == m], exp[exp["model"] == m]
        assert list(g["predicted_class"]) == list(e["predicted_class"]), m
        gp, ep = g[prob_cols].to_numpy(float), e[prob_cols].to_numpy(float)
        if m == "rpca_nearest":  # no probabilities
            assert np.isnan(gp).all() and np.isnan(ep).all()
        else:
            np.testing.assert_allclose(gp, ep, rtol=1e-6, atol=1e-5 if m == "cnn" else 0,
                                       err_msg=m)

    dist = pq.read_table(res["rpca_distances"]).to_pandas()
    assert sorted(dist["object_id"]) == test_ids
    assert [c for c in dist.columns if c.startswith("err_")] == [f"err_{c}" for c in PAPER7]
    err = dist[[f"err_{c}" for c in PAPER7]].to_numpy()
    nearest = np.asarray(PAPER7)[np.argmin(err, axis=1)]
    assert list(nearest) == list(dist["rpca_nearest"])


def test_hybrid_network_in_reports_bundle_and_classify(tmp_path: Path) -> None:
    """With ``hybrid`` on, the two-branch network is evaluated beside the other models, its
    folder is in the bundle, and classify reproduces its test probabilities from the raw
    light curves (its scaler and feature list travel with it). With CV folds the stack
    pools the forest, the CNN and the hybrid, and classify reproduces it too."""
    settings = SETTINGS.model_copy(update={"hybrid": True, "explain": False, "cv_folds": 3})
    run = _train(tmp_path / "hyb", settings)
    pred = read_report(run.report_dir, "predictions", run.run_id)
    assert set(pred["model"]) == set(MODELS) | {"hybrid", "stack"}
    pred = pred[pred["split"] == "test"]
    hyb = pred[pred["model"] == "hybrid"].sort_values("object_id").reset_index(drop=True)
    prob_cols = [f"prob_{c}" for c in PAPER7]
    p = hyb[prob_cols].to_numpy(float)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert list(hyb["predicted_class"]) == list(np.asarray(PAPER7)[np.argmax(p, axis=1)])
    metrics = read_report(run.report_dir, "metrics", run.run_id)
    row = metrics[(metrics["model"] == "hybrid") & (metrics["class"] == "__overall__")
                  & (metrics["split"] == "test")]
    assert row["accuracy"].iloc[0] == pytest.approx(
        np.mean(hyb["predicted_class"].astype(str) == hyb["true_class"].astype(str)))
    bundle = Path(run.result["bundle"])
    assert (bundle / "hybrid" / "model.keras").is_file()
    meta = json.loads((bundle / "hybrid" / "model.json").read_text())
    assert meta["estimator"] == "HybridCNN" and meta["input_meta"]["feature_names"]

    table = pq.read_table(sample_paths()["lightcurves"])
    mask = pc.is_in(table.column("object_id").cast(pa.string()),
                    value_set=pa.array(list(hyb["object_id"].astype(str)), pa.string()))
    data = tmp_path / "test_objects.parquet"
    pq.write_table(table.filter(mask), data)
    res = classify(str(bundle), data, tmp_path / "c.parquet", ClassifySettings(n_jobs=1))
    out = pq.read_table(res["output"]).to_pandas()
    got = out[out["model"] == "hybrid"].sort_values("object_id").reset_index(drop=True)
    assert list(got["object_id"]) == list(hyb["object_id"].astype(str))
    np.testing.assert_allclose(got[prob_cols].to_numpy(float), p, rtol=1e-6, atol=1e-5)

    from models.stacking import load_stack

    stack, meta = load_stack(bundle / "stack.npz")
    assert stack.base_models == ["forest", "cnn", "hybrid"] and meta["method"] == "pool"
    assert stack.weights_.shape == (3,)
    want = pred[pred["model"] == "stack"].sort_values("object_id")
    got = out[out["model"] == "stack"].sort_values("object_id")
    assert list(got["object_id"]) == list(want["object_id"].astype(str))
    np.testing.assert_allclose(got[prob_cols].to_numpy(float),
                               want[prob_cols].to_numpy(float), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- 7. CLI


def test_cli_report_and_one_line_errors(first_run: Run, tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    """capfd, not capsys: Prefect's log handler writes to the stderr it found at start-up."""
    from flows.cli import main

    assert main(["report", str(first_run.output)]) == 0
    shown = capfd.readouterr().out
    assert "Model comparison" in shown
    table_rows = [ln for ln in shown.splitlines() if ln.startswith("| test |")]
    assert sorted(ln.split("|")[2].strip() for ln in table_rows) == sorted(MODELS)

    paths = sample_paths()
    out = tmp_path / "never"
    code = main(["train", "--data", str(paths["lightcurves"]), "--labels",
                 str(paths["labels"]), "-o", str(out), "--test-fraction", "1.5"])
    err = capfd.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lcpipe train: error:") and "--test-fraction" in lines[0]
    assert not out.exists()

    code = main(["classify", "--model", str(tmp_path / "nope"), "--data",
                 str(paths["lightcurves"]), "-o", str(tmp_path / "pred.parquet")])
    err = capfd.readouterr().err
    assert code == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("lcpipe classify: error:")]
    assert len(errors) == 1, err
    assert "nope" in errors[0] and "bundle" in errors[0]
    # the last thing printed (Prefect logs the failed flow run, with its traceback, before)
    assert err.rstrip().endswith(errors[0])
    assert not (tmp_path / "pred.parquet").exists()


# ----------------------------------------------------------------------------- 8. settings


@pytest.mark.parametrize("field, value", [("chunk_size", 0), ("max_failed_fraction", 1.5),
                                          ("test_fraction", 1.0), ("cnn_preset", "bogus"),
                                          ("classes", " ")])
def test_settings_reject_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        TrainSettings(**{field: value})
    assert [e["loc"] for e in exc.value.errors()] == [(field,)]
    with pytest.raises(ValidationError, match="extra"):
        TrainSettings(chunksize=10)


def test_flow_validates_settings_before_any_work(tmp_path: Path) -> None:
    paths = sample_paths()
    out = tmp_path / "never"
    with pytest.raises(ParameterTypeError, match="cnn_preset"):
        train(paths["lightcurves"], paths["labels"], out, settings={"cnn_preset": "bogus"})
    assert not out.exists()


# ----------------------------------------------------------------------------- 9. shipped


def test_shipped_bundle_loads_in_safe_mode() -> None:
    from models.bundle import load_bundle, resolve_bundle
    from models.training import load_model

    if not (resolve_bundle("crts") / "bundle.json").is_file():
        pytest.skip("shipped bundle not built yet")
    bundle = load_bundle("crts")
    assert set(bundle.models) == set(MODELS)
    classes = [str(c) for c in bundle.info["classes"]]
    cnn, meta = load_model("cnn", bundle.model_path("cnn"))
    assert [str(c) for c in cnn.classes_] == classes
    assert meta["input_meta"]
    forest, _ = load_model("forest", bundle.model_path("forest"))
    assert [str(c) for c in forest.classes_] == classes
    rpca, _ = load_model("rpca_nearest", bundle.model_path("rpca_nearest"))
    assert [str(c) for c in rpca.classes_] == classes


def test_copy_of_bundle_is_self_contained(first_run: Run, tmp_path: Path) -> None:
    """A bundle folder moved elsewhere still loads (no absolute paths to the run inside)."""
    from models.bundle import load_bundle
    from models.training import load_model

    moved = tmp_path / "moved"
    shutil.copytree(first_run.result["bundle"], moved)
    bundle = load_bundle(moved)
    assert bundle.path == moved and bundle.models == list(MODELS)
    for kind in MODELS:
        model, _ = load_model(kind, bundle.model_path(kind))
        assert [str(c) for c in model.classes_] == list(PAPER7), kind


def test_explanation_tables_against_recomputation(first_run: Run) -> None:
    """The run's per-class explanations: class feature means recomputed by DuckDB from the
    run's feature file and labels; importances ranked by their drop; every maximising
    image scores above the best real training image of its class; the class maps hold
    every cell of every class."""
    from models.training import read_split

    rd, rid = first_run.report_dir, first_run.run_id
    work = first_run.output / "work" / "runs" / rid
    feats = read_report(rd, "class_features", rid)
    split = read_split(work / "split.parquet")
    frame = pd.read_parquet(work / "features.parquet").merge(
        split[["object_id", "label"]], on="object_id")
    con = duckdb.connect()
    con.register("frame", frame)
    for feature in list(feats["feature"].unique())[:5]:
        ref = con.execute(f'SELECT label, count("{feature}") AS n, avg("{feature}") AS m '
                          f'FROM frame WHERE isfinite("{feature}") GROUP BY label').df()
        got = feats[feats["feature"] == feature].set_index("class")
        for _, r in ref.iterrows():
            assert got.loc[r["label"], "objects"] == r["n"]
            assert got.loc[r["label"], "mean"] == pytest.approx(r["m"], rel=1e-9)
    con.close()
    assert set(feats["class"]) == set(split["label"])
    imp = read_report(rd, "importances", rid).sort_values("rank")
    assert (np.diff(imp["importance"].to_numpy()) <= 0).all()
    assert set(imp["feature"]) == set(feats["feature"])
    check = read_report(rd, "activation_check", rid)
    assert set(check["class"]) == set(PAPER7)
    assert (check["score"] > check["best_real_score"]).all()
    assert check["rank_own"].between(1, len(PAPER7)).all()
    maps = read_report(rd, "class_maps", rid)
    cells = maps.groupby(["kind", "class"]).size()
    assert set(maps["kind"]) == {"gradcam", "saliency", "activation_max"}
    for kind in ("gradcam", "saliency", "activation_max"):  # every cell of every class
        per_class = cells.xs(kind)
        assert set(per_class.index) == set(PAPER7) and per_class.nunique() == 1
    assert cells.xs("gradcam").iloc[0] == 22 * 24  # the faithful grid, one map
    gc = maps[maps["kind"] == "gradcam"]
    assert gc["value"].between(0, 1).all()
    assert (first_run.report_dir / "figures" / f"run_id={rid}"
            / "cnn_activation_max_by_class.png").exists()


def test_robustness_of_the_test_part_uses_the_evaluated_models(tmp_path: Path) -> None:
    """With robustness_draws and a refitted bundle, the robustness tables cover exactly
    the test objects, answered by the models fitted on the training part (their answers on
    the measured light curves are the test predictions of the run, not the refitted
    bundle's); the cadence accuracy at fraction 1 is the test accuracy of the metrics; the
    CNN is searched adversarially from the same answers."""
    settings = SETTINGS.model_copy(update={"refit": True, "explain": False,
                                           "robustness_draws": 2})
    run = _train(tmp_path / "rob", settings)
    rd, rid = run.report_dir, run.run_id
    pred = read_report(rd, "predictions", rid)
    test = pred[pred["split"] == "test"]
    objs = read_report(rd, "robustness_objects", rid)
    assert set(objs["model"]) == set(MODELS) and (objs["draws"] == 2).all()
    for model in MODELS:
        got = objs[objs["model"] == model].set_index("object_id")["predicted_class"]
        ref = test[test["model"] == model].set_index("object_id")["predicted_class"]
        assert sorted(got.index) == sorted(ref.index)
        assert (got.sort_index().astype(str) == ref.sort_index().astype(str)).all(), model
    metrics = read_report(rd, "metrics", rid)
    cad = read_report(rd, "cadence", rid)
    assert sorted(set(cad["fraction_kept"])) == [0.5, 0.7, 0.9, 1.0]
    for model in MODELS:
        acc = metrics[(metrics["model"] == model) & (metrics["split"] == "test")
                      & (metrics["class"] == "__overall__")]["accuracy"].iloc[0]
        row = cad[(cad["model"] == model) & (cad["fraction_kept"] == 1.0)].iloc[0]
        assert row["accuracy"] == pytest.approx(acc) and row["labelled"] == len(
            test[test["model"] == model])
    flips = read_report(rd, "adversarial_objects", rid)
    assert set(flips["model"]) == {"cnn"}
    cnn = objs[objs["model"] == "cnn"].set_index("object_id")["predicted_class"]
    assert (flips.set_index("object_id")["predicted_class"].sort_index().astype(str)
            == cnn.sort_index().astype(str)).all()
    runs = list_runs(rd)
    assert "robustness" in json.loads(runs["stage_seconds"].iloc[0])
    assert "Stability under 2 redraws" in run.result["comparison"]
