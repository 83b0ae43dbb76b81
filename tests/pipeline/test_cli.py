"""Command line: subcommands end to end, clear one-line errors, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from flows.cli import main
from tests.helpers import make_frame


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_help_is_fast():
    t0 = time.perf_counter()
    r = _run("dmdt", "--help")
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0 and "--bins" in r.stdout
    assert elapsed < 2.0, f"lcpipe dmdt --help took {elapsed:.2f} s"
    r = _run("--help")
    assert r.returncode == 0 and "validate" in r.stdout and "dmdt" in r.stdout


@pytest.mark.parametrize("content,needle", [
    (None, "no such file"),
    (b"PAR1garbage", "cannot read"),
])
def test_bad_input_one_line_exit_2(tmp_path, content, needle):
    path = tmp_path / "in.parquet"
    if content is not None:
        path.write_bytes(content)
    for cmd in (["validate", str(path), "-o", str(tmp_path / "o")],
                ["dmdt", str(path), "-o", str(tmp_path / "o.parquet")]):
        r = _run(*cmd)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "in.parquet" in lines[0]


def test_missing_column_names_file_and_column(tmp_path, rng):
    make_frame(rng).drop(columns="mag").to_csv(tmp_path / "x.csv", index=False)
    r = _run("validate", str(tmp_path / "x.csv"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "x.csv" in r.stderr and "'mag'" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run("validate", str(tmp_path / "x.csv"), "-o", str(tmp_path / "o"), "--debug")
    assert "Traceback" in r.stderr


def test_validate_and_dmdt_in_process(tmp_path, rng, capsys):
    df = make_frame(rng, n_obj=4).rename(columns={"t": "MJD", "mag_err": "magerr"})
    df.to_csv(tmp_path / "raw.csv", index=False)
    rc = main(["validate", str(tmp_path / "raw.csv"), "--columns", "t=MJD,mag_err=magerr",
               "-o", str(tmp_path / "v"), "--min-points", "15"])
    assert rc == 0
    s = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert s["rows_in"] == len(df)
    rc = main(["dmdt", str(tmp_path / "v" / "lightcurves.parquet"), "-o",
               str(tmp_path / "d.parquet"), "--bins", "scope", "--norm", "max", "-j", "-1"])
    assert rc == 0
    out = pd.read_parquet(tmp_path / "d.parquet")
    assert len(out) == s["objects_out"]
    assert len(out["image"].iloc[0]) == 26 * 26
    assert "objects" in capsys.readouterr().out


def test_bad_option_values(tmp_path, rng, capsys):
    make_frame(rng).to_parquet(tmp_path / "x.parquet")
    assert main(["dmdt", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "d.parquet"),
                 "--bins", "nonsense"]) == 2
    assert main(["validate", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "v"),
                 "--columns", "t"]) == 2
    err = capsys.readouterr().err
    assert "unknown bins" in err and "NAME=SOURCE" in err


def test_demo_runs_the_main_job_on_bundled_data(tmp_path):
    """README command 1: the train flow on the bundled sample, in a fresh process with
    Prefect's ephemeral API; the comparison table printed; no TensorFlow C++ log lines."""
    from pipeline.reports import list_runs, read_report

    r = _run("demo", "--quiet", "-o", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "435 objects in" in r.stdout
    for model in ("forest", "cnn", "rpca_nearest", "stack"):
        assert f"| test | {model} |" in r.stdout
        assert f"| cv | {model} |" in r.stdout
    assert "### 'unknown' below each model's threshold" in r.stdout
    noise = [ln for ln in (r.stdout + r.stderr).splitlines()
             if "cuda" in ln.lower() or ln.startswith(("I0000", "E0000", "W0000"))]
    assert not noise, noise
    reports = tmp_path / "demo" / "reports"
    runs = list_runs(reports)
    assert list(runs["status"]) == ["completed"] and int(runs["objects_in"].iloc[0]) == 435
    metrics = read_report(reports, "metrics")
    assert set(metrics["model"]) == {"forest", "cnn", "rpca_nearest", "stack"}
    assert (tmp_path / "demo" / "bundles" / runs["run_id"].iloc[0] / "bundle.json").exists()


@pytest.mark.parametrize("argv", [
    ["forest", "--debug", "train", "F.parquet", "--labels", "L.csv", "-o", "M.skops"],
    ["forest", "train", "F.parquet", "--labels", "L.csv", "-o", "M.skops", "--debug"],
    ["cnn", "train", "D.parquet", "--labels", "L.csv", "-o", "M", "--debug"],
    ["cnn", "--debug", "predict", "D.parquet", "--model", "M", "-o", "P.parquet"],
    ["train", "--data", "D", "--labels", "L", "-o", "R", "--debug"],
    ["validate", "--debug", "IN", "-o", "OUT"],
])
def test_debug_is_accepted_at_every_level(argv):
    from flows.cli import _build_parser

    args = _build_parser(argv[0]).parse_args(argv)
    assert args.debug is True


def test_debug_defaults_off():
    from flows.cli import _build_parser

    args = _build_parser("forest").parse_args(["forest", "train", "F", "--labels", "L", "-o",
                                                "M"])
    assert getattr(args, "debug", False) is False
