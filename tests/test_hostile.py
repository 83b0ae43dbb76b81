"""Hostile use of the commands: outputs over inputs, bad output paths, kills (issue 16, part).

Each case runs ``lcpipe`` in a fresh process and checks what a user would see: exit 2 with
one line naming the path (no traceback), the inputs byte-identical afterwards, no
temporary file left, no worker process left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.demo import sample_paths

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    src = sample_paths()
    shutil.copy(src["lightcurves"], tmp_path / "lc.parquet")
    shutil.copy(src["labels"], tmp_path / "labels.csv")
    os.symlink(tmp_path / "lc.parquet", tmp_path / "soft.parquet")
    os.link(tmp_path / "lc.parquet", tmp_path / "hard.parquet")
    (tmp_path / "adir").mkdir()
    return tmp_path


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["dmdt", "lc.parquet", "-o", "lc.parquet"], "is an input of this command"),
    (["features", "lc.parquet", "-o", "lc.parquet"], "is an input of this command"),
    (["dmdt", "lc.parquet", "-o", "soft.parquet"], "is an input of this command"),
    (["dmdt", "lc.parquet", "-o", "hard.parquet"], "is an input of this command"),
    (["validate", "lc.parquet", "-o", "."], "is an input of this command"),
    (["dmdt", "lc.parquet", "-o", "adir"], "is an existing folder"),
    (["features", "lc.parquet", "-o", "adir"], "is an existing folder"),
    (["dmdt", "lc.parquet", "-o", "labels.csv/x.parquet"], "labels.csv"),
])
def test_bad_outputs_are_refused_and_inputs_survive(work, argv, needle):
    """An output that is an input (directly, through a symbolic or a hard link, or as a
    file a command writes into its output folder), an existing folder, or a path under a
    file: exit 2, one line, every file as before, no temporary file."""
    if argv[0] == "validate":  # validate writes OUTDIR/lightcurves.parquet
        os.replace(work / "lc.parquet", work / "lightcurves.parquet")
        (work / "soft.parquet").unlink()
        os.symlink(work / "lightcurves.parquet", work / "soft.parquet")
        argv = ["validate", "lightcurves.parquet", "-o", "."]
    before = _digest(work)
    r = _run(*argv, cwd=work)
    _one_line_error(r, needle)
    assert _digest(work) == before
    assert not [p for p in work.rglob(".*") if p.is_file()], "temporary file left"


def _workers(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_feature_run_leaves_no_workers_and_no_half_file(work, sig):
    """``lcpipe features -j 2`` killed while its two worker processes compute: they stop
    with it (SIGKILL included: they watch their parent), no output and no temporary file
    appear, SIGINT/SIGTERM end with one line and exit 130/143."""
    big = work / "big.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(work / "lc.parquet")
    parts = []
    for k in range(4):  # four copies under new ids: enough work to be killed in
        ids = pa.array([f"{x}-{k}" for x in t.column("object_id").to_pylist()])
        parts.append(t.set_column(t.schema.get_field_index("object_id"), "object_id", ids))
    pq.write_table(pa.concat_tables(parts), big)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "features", str(big), "-o",
                             str(work / "feat.parquet"), "-j", "2"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # a test run started in the background inherits SIGINT ignored;
                            # the command as a user runs it has it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while len(_workers(parent)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _workers(parent)
    assert len(workers) >= 2, "the worker processes did not start"
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
        assert "Traceback" not in err
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"worker processes left: {[p.pid for p in alive]}"
    assert not (work / "feat.parquet").exists()
    if sig != signal.SIGKILL:  # SIGKILL may leave a hidden temporary file, never a visible one
        assert not [p for p in work.rglob(".*") if p.is_file()]


@pytest.fixture(scope="module")
def forest_files(tmp_path_factory) -> Path:
    """A feature table of the bundled sample, its labels and a small forest trained on it."""
    d = tmp_path_factory.mktemp("forest")
    src = sample_paths()
    shutil.copy(src["labels"], d / "labels.csv")
    r = _run("features", str(src["lightcurves"]), "-o", "feat.parquet", "-j", "2", cwd=d)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run("forest", "train", "feat.parquet", "--labels", "labels.csv", "-o", "m.skops",
             "--n-estimators", "20", cwd=d)
    assert r.returncode == 0, r.stderr[-2000:]
    return d


@pytest.mark.parametrize("argv,needle", [
    (["forest", "predict", "m.skops", "feat.parquet", "-o", "m.skops"],
     "is an input of this command"),
    (["forest", "predict", "m.skops", "feat.parquet", "-o", "feat.parquet"],
     "is an input of this command"),
    (["forest", "train", "feat.parquet", "--labels", "labels.csv", "-o", "labels.csv"],
     "is an input of this command"),
    (["forest", "train", "feat.parquet", "--labels", "labels.csv", "-o", "x.skops",
      "--n-estimators", "0"], "--n-estimators: must be >= 1"),
])
def test_forest_commands_refuse_in_one_line(forest_files, argv, needle):
    """The model, the feature table and the labels survive a command that names them as
    its output; a parameter the estimator refuses is one line, not a traceback."""
    before = _digest(forest_files)
    r = _run(*argv, cwd=forest_files)
    _one_line_error(r, needle)
    assert _digest(forest_files) == before


@pytest.mark.parametrize("command", ["dmdt", "features"])
def test_every_object_quarantined_is_one_line(tmp_path, command):
    """Nothing left after cleaning: one line with the quarantine counts, no output file."""
    import pandas as pd

    pd.DataFrame({"object_id": ["a", "a", "b"], "band": "r", "t": [1.0, 2.0, 3.0],
                  "mag": [15.0, 15.1, 15.2], "mag_err": 0.1}).to_parquet(
        tmp_path / "few.parquet", index=False)
    r = _run(command, "few.parquet", "-o", "out.parquet", cwd=tmp_path)
    _one_line_error(r, "few.parquet", "no light curve left after cleaning", "too_few_points")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few.parquet"]
