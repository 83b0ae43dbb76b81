"""The flows on Dask: a real ``distributed.LocalCluster`` (2 worker processes) gives the results
of the default thread runner, row for row (classify) and score for score (train).

The Dask runs start a cluster each (~10 s; the classify workers also load TensorFlow), so
this file takes about two minutes on two cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows._runners import task_runner, uses_dask
from flows.classify import classify, companion_paths
from flows.cli import main
from flows.cli._common import run_flow
from flows.train import train
from models.settings import ClassifySettings, TrainSettings
from pipeline.demo import sample_paths
from pipeline.errors import ConfigError
from pipeline.reports import read_report

CLASSIFY = ClassifySettings(chunk_size=150, n_jobs=1)
TRAIN = TrainSettings(classes="paper7", chunk_size=60, n_jobs=1, cnn_preset="faithful",
                      cnn_epochs=2, forest_n_estimators=20, refit=False)


# --- task_runner and the options (no cluster) --------------------------------------------


def test_task_runner_default_address_and_local():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = task_runner()
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 2
    remote = task_runner(dask_address="tcp://10.0.0.1:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.1:8786"
    local = task_runner(dask_local=3)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_class == "distributed.LocalCluster"
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True,
                                    "dashboard_address": None}
    assert not uses_dask() and uses_dask(dask_local=1) and uses_dask(dask_address="x:1")


@pytest.mark.parametrize("kw", [{"dask_address": "tcp://127.0.0.1:8786", "dask_local": 2},
                                {"dask_local": 0}, {"dask_local": -1}, {"dask_address": " "}])
def test_task_runner_refuses(kw):
    with pytest.raises(ConfigError):
        task_runner(**kw)
    with pytest.raises(ConfigError):
        uses_dask(**kw)


def test_cli_dask_options(tmp_path, capsys):
    base = ["classify", "--model", "crts", "--data", str(sample_paths()["lightcurves"]),
            "-o", str(tmp_path / "p.parquet")]
    with pytest.raises(SystemExit) as exc:  # argparse: mutually exclusive
        main([*base, "--dask-address", "tcp://127.0.0.1:8786", "--dask-local", "2"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--dask-local", "0"])
    assert exc.value.code == 2 and capsys.readouterr().err.strip() == (
        "lcpipe classify: error: argument --dask-local: must be >= 1, got 0 "
        "(see lcpipe classify --help)")
    assert not (tmp_path / "p.parquet").exists()
    for cmd in ("train", "classify"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "--dask-address ADDR" in out and "--dask-local N" in out


def test_run_flow_sets_one_process_per_task_under_dask():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    calls = []

    class Flow:
        def with_options(self, task_runner):
            return lambda **kw: calls.append((task_runner, kw)) or kw

    s = ClassifySettings(n_jobs=2)
    ns = argparse.Namespace
    run_flow(ns(dask_address=None, dask_local=None), Flow(), settings=s, x=1)
    run_flow(ns(dask_address=None, dask_local=2), Flow(), settings=s, x=1)
    (r0, kw0), (r1, kw1) = calls
    assert isinstance(r0, ThreadPoolTaskRunner) and kw0 == {"settings": s, "x": 1}
    assert isinstance(r1, DaskTaskRunner) and kw1["x"] == 1
    assert kw1["settings"] == s.model_copy(update={"n_jobs": 1})


# --- real LocalCluster runs ---------------------------------------------------------------


def _sorted(path: Path, keys: list[str]) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(keys).reset_index(drop=True)


def test_classify_on_local_cluster_matches_threads(tmp_path, capsys):
    paths = sample_paths()
    ref = tmp_path / "threads.parquet"
    r_ref = classify("crts", paths["lightcurves"], ref, CLASSIFY)
    out = tmp_path / "dask.parquet"
    # the command line path: --dask-local 2 (settings get n_jobs=1 under Dask)
    assert main(["classify", "--model", "crts", "--data", str(paths["lightcurves"]), "-o",
                 str(out), "--dask-local", "2", "--chunk-size", "150", "--n-jobs", "2"]) == 0
    assert "435 objects classified" in capsys.readouterr().out
    a, b = _sorted(ref, ["object_id", "model"]), _sorted(out, ["object_id", "model"])
    assert len(a) == 3 * r_ref["objects_in"] == len(b)
    assert a["object_id"].tolist() == b["object_id"].tolist()
    assert a["model"].tolist() == b["model"].tolist()
    assert a["predicted_class"].tolist() == b["predicted_class"].tolist()
    prob = [c for c in a.columns if c.startswith("prob_")]
    assert prob and prob == [c for c in b.columns if c.startswith("prob_")]
    for model in ("forest", "cnn"):
        m = a["model"] == model
        np.testing.assert_allclose(b.loc[m, prob].to_numpy(float),
                                   a.loc[m, prob].to_numpy(float), rtol=1e-6, atol=1e-6)
    assert a.loc[a["model"] == "rpca_nearest", prob].isna().all().all()
    da = _sorted(companion_paths(ref)["rpca_distances"], ["object_id"])
    db = _sorted(companion_paths(out)["rpca_distances"], ["object_id"])
    assert list(da.columns) == list(db.columns)
    assert da["rpca_nearest"].tolist() == db["rpca_nearest"].tolist()
    num = [c for c in da.columns if c.startswith(("err_", "l1_"))]
    np.testing.assert_allclose(db[num].to_numpy(float), da[num].to_numpy(float),
                               rtol=1e-9, atol=1e-12)


def test_train_on_local_cluster_matches_threads(tmp_path):
    paths = sample_paths()
    runs = {}
    for name, runner in (("threads", task_runner()), ("dask", task_runner(dask_local=2))):
        r = train.with_options(task_runner=runner)(
            paths["lightcurves"], paths["labels"], tmp_path / name, TRAIN)
        m = read_report(r["report_dir"], "metrics", r["run_id"]).drop(columns="run_id")
        runs[name] = m.sort_values(["model", "split", "class"]).reset_index(drop=True)
    a, b = runs["threads"], runs["dask"]
    assert set(a["model"]) == {"forest", "cnn", "rpca_nearest"}
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)
