"""The deployments of ``prefect.yaml`` and ``lcpipe serve``, against a real Prefect server.

As a user would (docs/deployment.md): create the ``lcpipe`` process work pool, apply
``prefect.yaml`` with ``prefect deploy --all`` from the project root, trigger the classify
deployment with ``prefect deployment run``, execute it with ``prefect worker start --run-once``
started elsewhere (the deployment's pull step brings the run back to the project directory:
the input is given relative to it), and read the predictions. A bad ``settings`` value is
rejected when the run is created, naming the field, and nothing is written. ``lcpipe serve``
registers the same deployments and runs a triggered reprocess run itself.

The server fixture (conftest.py) starts ``prefect server start`` on 127.0.0.1; the whole
module takes about a minute and a half on two cores.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from flows.cli import main
from flows.cli.serve import DEPLOYMENTS, NO_SERVER, TAGS, TIMEZONE

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAMPLE = "pipeline/data/crts_sample/lightcurves.parquet"  # 435 objects, relative to ROOT
N_OBJECTS = 435
N_SERVED = 40  # objects of the survey reprocessed by `lcpipe serve`
MODELS = {"forest", "cnn", "rpca_nearest"}
SMALL = json.dumps({"n_jobs": 1})  # one feature process: the machine is small
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
HAS_REPROCESS = (ROOT / "flows" / "reprocess.py").exists()


def _yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _prefect(*args: str) -> list[str]:
    return [str(BIN / "prefect"), "--no-prompt", *args]


def _run_id(output: str) -> str:
    m = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert m, output
    return m.group(1)


def _wait_final(server, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = server.get(f"/flow_runs/{run_id}")
        if run["state_type"] in FINAL or time.monotonic() > deadline:
            return run
        time.sleep(1)


def _check_predictions(path: Path, n_objects: int = N_OBJECTS) -> None:
    pred = pq.read_table(path, columns=["object_id", "model"]).to_pandas()
    assert set(pred["model"]) == MODELS
    assert pred["object_id"].nunique() == n_objects
    assert len(pred) == n_objects * len(MODELS)


def _wait_children_exit(pid: int, timeout: float) -> None:
    proc = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while proc.children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.5)


def test_prefect_yaml_and_serve_declare_the_same_deployments():
    cfg = _yaml()
    deps = {d["name"]: d for d in cfg["deployments"]}
    assert list(deps) == list(DEPLOYMENTS) == ["train", "classify", "reprocess"]
    for name, d in deps.items():
        want = DEPLOYMENTS[name]
        assert d["entrypoint"] == f"{want['module'].replace('.', '/')}.py:{want['flow']}"
        assert d["parameters"] == want["parameters"]  # settings left at its defaults
        assert d["description"] == want["description"]
        assert d["tags"] == TAGS
        assert d["work_pool"]["name"] == "lcpipe"
    assert "schedules" not in deps["train"] and "schedules" not in deps["classify"]
    assert deps["reprocess"]["schedules"] == [
        {"cron": "0 6 * * *", "timezone": TIMEZONE, "active": False}]
    (step,) = cfg["pull"]
    assert list(step) == ["prefect.deployments.steps.set_working_directory"]


def test_serve_without_a_server_says_how_to_start_one(tmp_path, subprocess_env, procs):
    env = subprocess_env(tmp_path / "home")  # no PREFECT_API_URL, no profile
    rc, out = procs.run([str(BIN / "lcpipe"), "serve"], env=env, cwd=tmp_path, timeout=120)
    assert rc == 2, out
    assert out.strip().splitlines() == [f"lcpipe serve: error: {NO_SERVER}"]
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    env["PREFECT_API_URL"] = url
    rc, out = procs.run([str(BIN / "lcpipe"), "serve"], env=env, cwd=tmp_path, timeout=120)
    assert rc == 2, out
    (line,) = out.strip().splitlines()
    assert line.startswith(f"lcpipe serve: error: no Prefect server answers at "
                           f"PREFECT_API_URL={url} ("), line


@pytest.mark.parametrize(("argv", "message"), [
    (["--reprocess-cron", "61 * * * *"], "--reprocess-cron: Invalid cron string"),
    (["--model", "no-such-bundle"], "no-such-bundle: not a model bundle"),
])
def test_serve_rejects_bad_options_in_one_line(argv, message, capsys):
    assert main(["serve", *argv]) == 2  # before looking for a server
    err = capsys.readouterr().err
    assert err.startswith(f"lcpipe serve: error: {message}") and err.count("\n") == 1, err


def test_serve_limit_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--limit", "0"])
    assert exc.value.code == 2
    assert "--limit: must be a positive integer (got '0')" in capsys.readouterr().err


def test_prefect_yaml_deployments_run_on_a_process_worker(prefect_server, tmp_path):
    s = prefect_server
    run = s.procs.run
    rc, out = run(_prefect("work-pool", "create", "lcpipe", "--type", "process"),
                  env=s.env, cwd=tmp_path, timeout=120)
    assert rc == 0, out
    names = ["--all"] if HAS_REPROCESS else ["--name", "train", "--name", "classify"]
    rc, out = run(_prefect("deploy", *names), env=s.env, cwd=ROOT, timeout=240)
    assert rc == 0, out

    flows = {"train": "lcpipe-train", "classify": "lcpipe-classify",
             "reprocess": "lcpipe-reprocess"}
    for name, d in {d["name"]: d for d in _yaml()["deployments"]}.items():
        if name == "reprocess" and not HAS_REPROCESS:
            continue
        dep = s.deployment(f"{flows[name]}/{name}")
        assert dep["work_pool_name"] == "lcpipe"
        assert dep["parameters"] == d["parameters"]
        schema = dep["parameter_openapi_schema"]["properties"]
        assert set(d["parameters"]) | {"settings", "run_id"} == set(schema), name
        assert dep["pull_steps"] == [{"prefect.deployments.steps.set_working_directory":
                                      {"directory": str(ROOT)}}]
        if name == "reprocess":  # applied, but starts nothing until enabled
            (sched,) = dep["schedules"]
            assert sched["active"] is False
            assert sched["schedule"]["cron"] == "0 6 * * *"
            assert sched["schedule"]["timezone"] == "UTC"
        else:
            assert dep["schedules"] == []

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    pred = out_dir / "pred.parquet"
    rc, out = run(_prefect("deployment", "run", "lcpipe-classify/classify",
                           "--param", "model=crts", "--param", f"data={SAMPLE}",
                           "--param", f"output={pred}", "--param", f"settings={SMALL}"),
                  env=s.env, cwd=tmp_path, timeout=120)
    assert rc == 0, out
    run_id = _run_id(out)
    # the worker runs elsewhere: the relative input resolves through the pull step
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    for _ in range(3):  # --run-once: one poll; a run it did not see yet needs another
        rc, wout = run(_prefect("worker", "start", "--pool", "lcpipe", "--run-once"),
                       env=s.env, cwd=worker_dir, timeout=300)
        flow_run = _wait_final(s, run_id, timeout=5)
        if flow_run["state_type"] in FINAL:
            break
    assert flow_run["state_type"] == "COMPLETED", wout[-4000:]
    _check_predictions(pred)

    # a bad setting: the run is not even created; nothing is written
    bad = out_dir / "bad.parquet"
    dep_id = s.deployment("lcpipe-classify/classify")["id"]
    rc, out = run(_prefect("deployment", "run", "lcpipe-classify/classify",
                           "--param", f"data={SAMPLE}", "--param", f"output={bad}",
                           "--param", 'settings={"chunk_size": 0}'),
                  env=s.env, cwd=tmp_path, timeout=120)
    assert rc != 0, out
    assert "settings.chunk_size" in out and "minimum of 1" in out, out
    runs = s.post("/flow_runs/filter", {"deployments": {"id": {"any_": [dep_id]}}})
    assert [r["id"] for r in runs] == [run_id]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "pred.parquet", "pred.quarantine.parquet", "pred.rpca_distances.parquet", "pred.work"]


@pytest.mark.skipif(not HAS_REPROCESS, reason="flows/reprocess.py not there yet")
def test_lcpipe_serve_runs_a_triggered_reprocess(prefect_server, tmp_path):
    s = prefect_server
    survey = tmp_path / "survey"
    survey.mkdir()
    lc = pq.read_table(ROOT / SAMPLE)
    first = sorted(set(lc.column("object_id").to_pylist()))[:N_SERVED]
    pq.write_table(lc.filter(pc.is_in(lc.column("object_id"), pa.array(first))),
                   survey / "part-1.parquet")
    out = tmp_path / "reprocessed"
    log = tmp_path / "serve.log"
    served = s.procs.start([str(BIN / "lcpipe"), "serve", "--reprocess-cron", "0 6 * * *",
                            "--survey", "survey", "--model", "crts", "--output", "reprocessed",
                            "--limit", "1"], env=s.env, cwd=tmp_path, log=log)
    want = {"survey": str(survey), "model": "crts", "output": str(out)}
    deadline = time.monotonic() + 180
    while True:  # served: the reprocess deployment has the given parameters
        assert served.poll() is None, log.read_text()[-4000:]
        try:
            dep = s.deployment("lcpipe-reprocess/reprocess")
        except Exception:
            dep = {}
        if dep.get("parameters") == want:
            break
        assert time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(1)
    (sched,) = dep["schedules"]
    assert sched["active"] is True and sched["schedule"]["cron"] == "0 6 * * *"
    assert sched["schedule"]["timezone"] == "UTC"
    for name in ("train", "classify"):
        assert s.deployment(f"lcpipe-{name}/{name}")["parameters"] == \
            DEPLOYMENTS[name]["parameters"]

    rc, cli = s.procs.run(_prefect("deployment", "run", "lcpipe-reprocess/reprocess",
                                   "--param", f"settings={SMALL}"),
                          env=s.env, cwd=tmp_path, timeout=120)
    assert rc == 0, cli
    flow_run = _wait_final(s, _run_id(cli), timeout=300)
    assert flow_run["state_type"] == "COMPLETED", log.read_text()[-4000:]
    _check_predictions(out / "predictions.parquet", N_SERVED)
    _wait_children_exit(served.pid, timeout=60)  # the run's process has finished

    assert s.procs.stop(served) == 0, log.read_text()[-4000:]  # SIGTERM: a clean stop
    assert s.deployment("lcpipe-reprocess/reprocess")["paused"] is True
