"""A catalogue of bad inputs and options, run through every ``lcpipe`` command (issue 16).

"Never lose a user's data, never show a traceback": for each case the command either
succeeds (exit 0) or stops with exit code 2 and exactly one non-empty line on stderr that
names the offending file, object or option (an argparse usage error, the usage block
followed by one ``error:`` line, counts as that one line), with no "Traceback" anywhere.
In every case the files that were there before are byte-identical afterwards and no
hidden (``.``-prefixed) file or folder is left in the working folder.

Each case states what it expects: ``ok`` (exit 0), ``error`` (the one-line error, with
some words it must contain) or ``either`` (both are acceptable answers to that input).
Cases that do not hold today are listed in ``KNOWN_FAILURES`` and run as strict xfails:
fixing one makes its xfail pass, and the entry must then be removed.

Most commands run in this process through :func:`flows.cli.main` (fast; stderr captured
at the file-descriptor level, warnings and uncaught exceptions rendered as a fresh
process would print them). The flow commands (``train``, ``classify``, ``reprocess``)
start a Prefect API and run as subprocesses, as does one TensorFlow command, to see
exactly what a user's terminal shows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline.demo import sample_paths

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("EA", "EW", "LPV", "RRab")  # 10 labelled objects each in the base sample


# --------------------------------------------------------------------------------------
# known failures: test id -> what happens today (strict xfail)
# --------------------------------------------------------------------------------------

KNOWN_FAILURES: dict[str, str] = {}


_CASE_IDS: set[str] = set()


def _params(cases: list[tuple[str, tuple]]) -> list:
    """pytest params with ids; the ids listed in KNOWN_FAILURES become strict xfails."""
    out = []
    for case_id, values in cases:
        _CASE_IDS.add(case_id)
        marks = ()
        if case_id in KNOWN_FAILURES:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case_id])
        out.append(pytest.param(*values, id=case_id, marks=marks))
    return out


# --------------------------------------------------------------------------------------
# running a command and checking what the user sees
# --------------------------------------------------------------------------------------

@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _subprocess(argv: list[str], cwd: Path, timeout: float = 300) -> Result:
    r = subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True,
                       text=True, timeout=timeout, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return Result(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def cli(capfd, monkeypatch) -> Iterator[Callable[[list[str], Path], Result]]:
    """Run ``lcpipe ARGV`` in this process, in folder ``cwd``; what a user would see.

    An exception that escapes :func:`flows.cli.main` is what Python would print (a
    traceback, exit 1); warnings are printed to stderr as a plain process does (deprecation
    warnings hidden).
    """

    def call(argv: list[str], cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        capfd.readouterr()
        extra = ""
        with warnings.catch_warnings(record=True) as caught:
            for category in (DeprecationWarning, PendingDeprecationWarning):
                warnings.filterwarnings("ignore", category=category)
            try:
                rc = main(list(argv))
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                rc, extra = 1, traceback.format_exc()
        out, err = capfd.readouterr()
        err += extra + "".join(warnings.formatwarning(w.message, w.category, w.filename,
                                                      w.lineno) for w in caught)
        return Result(rc, out, err)

    yield call
    pool_api = sys.modules.get("features.api")
    if pool_api is not None:  # worker processes of a `-j N` case
        pool_api.shutdown_pools()


def _error_line(r: Result) -> str:
    """The one error line of a refused command (bad options too: no usage block)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{r.stderr[-3000:]}"
    return lines[0]


def _check(r: Result, expect: str, needles: tuple[str, ...]) -> None:
    """``ok``: exit 0; ``error``: exit 2 and one line holding each needle (``a|b``: either
    word); ``either``: one of the two. Never a traceback."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if expect == "ok" or (expect == "either" and r.returncode == 0):
        assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
        return
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    line = _error_line(r)
    assert ": error: " in line, line
    for needle in needles:
        assert any(n.lower() in line.lower() for n in needle.split("|")), (needle, line)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob(".*")]


def _log(argv: list[str], r: Result) -> None:
    """With LCPIPE_HOSTILE_LOG=FILE, append each case's outcome to FILE (JSON lines): the
    material of the failure report."""
    path = os.environ.get("LCPIPE_HOSTILE_LOG")
    if path:
        import json

        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        with open(path, "a") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "?"),
                                "argv": argv, "rc": r.returncode, "n_lines": len(lines),
                                "first": lines[0] if lines else "",
                                "last": lines[-1] if lines else ""}) + "\n")


def _run_case(run: Callable[[list[str], Path], Result], work: Path, argv: list[str],
              expect: str, needles: tuple[str, ...]) -> Result:
    before = _digest(work)
    r = run(argv, work)
    _log(argv, r)
    after = _digest(work)
    assert {k: after.get(k) for k in before} == before, "an input file changed or vanished"
    assert not _hidden(work), f"hidden files left: {_hidden(work)}"
    _check(r, expect, needles)
    return r


# --------------------------------------------------------------------------------------
# the good files every case starts from
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """40 real CRTS light curves of 4 classes, their labels, dm-dt images (paper and
    fine/counts), features and a 10-tree forest."""
    d = tmp_path_factory.mktemp("catalogue-base")
    src = sample_paths()
    lab = pd.read_csv(src["labels"])
    lab = lab[lab["label"].isin(CLASSES)].groupby("label").head(10)[["object_id", "label"]]
    lab.to_csv(d / "labels.csv", index=False)
    lc = pd.read_parquet(src["lightcurves"], columns=["object_id", "t", "mag", "mag_err",
                                                      "band"])
    lc = lc[lc["object_id"].isin(lab["object_id"])].reset_index(drop=True)
    lc.to_parquet(d / "lc.parquet", index=False)
    few = lab.groupby("label").head(3)["object_id"]  # 12 objects: the bad-table cases
    lc[lc["object_id"].isin(few)].reset_index(drop=True).to_parquet(d / "small.parquet",
                                                                     index=False)
    for argv in (["dmdt", "lc.parquet", "-o", "dmdt.parquet"],
                 ["dmdt", "lc.parquet", "-o", "dmdtc.parquet", "--norm", "counts",
                  "--bins", "lcpipe_fine"],
                 ["features", "lc.parquet", "-o", "feat.parquet"],
                 ["forest", "train", "feat.parquet", "--labels", "labels.csv", "-o",
                  "m.skops", "--n-estimators", "10"]):
        assert main([str(d / a) if a.endswith((".parquet", ".csv", ".skops")) else a
                     for a in argv]) == 0, argv
    return d


@pytest.fixture(scope="module")
def cnn_base(base, tmp_path_factory) -> Path:
    """A one-epoch mahabal2017 CNN on the paper dm-dt images (imports TensorFlow here)."""
    d = tmp_path_factory.mktemp("catalogue-cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rc = main(["cnn", "train", str(base / "dmdt.parquet"), "--labels",
                   str(base / "labels.csv"), "-o", str(d / "cnn"), "--arch", "mahabal2017",
                   "--epochs", "1"])
    assert rc == 0
    return d / "cnn"


@pytest.fixture
def work(base, tmp_path) -> Path:
    w = tmp_path / "w"
    shutil.copytree(base, w)
    return w


# --------------------------------------------------------------------------------------
# builders of bad files (each writes into folder d and returns the name to pass)
# --------------------------------------------------------------------------------------

def _lc(d: Path) -> pd.DataFrame:
    return pd.read_parquet(d / "small.parquet")


def _write(df: pd.DataFrame, d: Path, name: str = "bad.parquet") -> str:
    df.to_parquet(d / name, index=False)
    return name


def _write_table(t: pa.Table, d: Path, name: str = "bad.parquet") -> str:
    pq.write_table(t, d / name)
    return name


def _missing(d: Path) -> str:
    return "nothere.parquet"


def _empty_file(d: Path) -> str:
    (d / "empty.parquet").write_bytes(b"")
    return "empty.parquet"


def _text_as_parquet(d: Path) -> str:
    (d / "text.parquet").write_text("object_id,t,mag,mag_err\nthis is not a parquet file\n")
    return "text.parquet"


def _truncated(source: str) -> Callable[[Path], str]:
    def build(d: Path) -> str:
        data = (d / source).read_bytes()
        (d / "cut.parquet").write_bytes(data[: len(data) // 2])
        return "cut.parquet"
    return build


def _zero_rows_of(source: str) -> Callable[[Path], str]:
    def build(d: Path) -> str:
        t = pq.read_table(d / source)
        return _write_table(t.slice(0, 0), d, "zero.parquet")
    return build


def _lc_without(col: str) -> Callable[[Path], str]:
    return lambda d: _write(_lc(d).drop(columns=[col]), d)


def _lc_mag_string(d: Path) -> str:
    df = _lc(d)
    df["mag"] = df["mag"].map(lambda v: f"{v:.3f}")
    return _write(df, d)


def _lc_t_string(d: Path) -> str:
    df = _lc(d)
    df["t"] = df["t"].astype(str)
    df.loc[::7, "t"] = "n/a"
    return _write(df, d)


def _lc_mag_err_null_type(d: Path) -> str:
    t = pa.Table.from_pandas(_lc(d), preserve_index=False)
    i = t.schema.get_field_index("mag_err")
    return _write_table(t.set_column(i, "mag_err", pa.nulls(len(t))), d)


def _lc_mag_err_all_nan(d: Path) -> str:
    df = _lc(d)
    df["mag_err"] = np.nan
    return _write(df, d)


def _lc_nan_inf(d: Path) -> str:
    df = _lc(d)
    df.loc[::11, "mag"] = np.nan
    df.loc[3::13, "mag_err"] = np.inf
    df.loc[5::17, "t"] = -np.inf
    df.loc[7::19, "mag"] = np.inf
    return _write(df, d)


def _lc_nonpositive_err(d: Path) -> str:
    df = _lc(d)
    df.loc[::5, "mag_err"] = 0.0
    df.loc[2::5, "mag_err"] = -0.1
    return _write(df, d)


def _lc_all_nonpositive_err(d: Path) -> str:
    df = _lc(d)
    df["mag_err"] = -df["mag_err"]
    return _write(df, d)


def _lc_duplicated(d: Path) -> str:
    df = _lc(d)
    return _write(pd.concat([df, df], ignore_index=True), d)


def _lc_shuffled_duplicated(d: Path) -> str:
    df = _lc(d)
    both = pd.concat([df, df.iloc[::3]], ignore_index=True)
    return _write(both.sample(frac=1.0, random_state=1), d)


def _lc_stray_spaces(d: Path) -> str:
    df = _lc(d)
    df.loc[::2, "object_id"] = " " + df.loc[::2, "object_id"] + "  "
    return _write(df, d)


def _lc_null_ids(d: Path) -> str:
    df = _lc(d)
    df.loc[::9, "object_id"] = None
    return _write(df, d)


def _lc_all_null_ids(d: Path) -> str:
    df = _lc(d)
    df["object_id"] = None
    df["object_id"] = df["object_id"].astype("string")
    return _write(df, d)


def _lc_int_ids(d: Path) -> str:
    df = _lc(d)
    df["object_id"] = pd.factorize(df["object_id"])[0] + 1000
    return _write(df, d)


def _lc_band_float(d: Path) -> str:
    df = _lc(d)
    df["band"] = 0.5
    return _write(df, d)


def _lc_as_csv(d: Path) -> str:
    _lc(d).to_csv(d / "lc.csv", index=False)
    return "lc.csv"


def _csv_header_only(d: Path) -> str:
    (d / "header.csv").write_text("object_id,t,mag,mag_err,band\n")
    return "header.csv"


def _csv_binary(d: Path) -> str:
    (d / "junk.csv").write_bytes(bytes(range(256)) * 8)
    return "junk.csv"


def _parquet_named_csv(d: Path) -> str:
    shutil.copy(d / "small.parquet", d / "really_parquet.csv")
    return "really_parquet.csv"


def _empty_dir(d: Path) -> str:
    (d / "nofiles").mkdir()
    return "nofiles"


def _dir_good_and_junk(d: Path) -> str:
    (d / "mixed").mkdir()
    shutil.copy(d / "small.parquet", d / "mixed" / "a.parquet")
    (d / "mixed" / "b.parquet").write_text("junk\n")
    return "mixed"


def _dangling_link(d: Path) -> str:
    os.symlink(d / "gone.parquet", d / "dangling.parquet")
    return "dangling.parquet"


def _lc_extreme_t(d: Path) -> str:
    df = _lc(d)
    df.loc[::10, "t"] = 1e300
    return _write(df, d)


def _lc_upper_case_columns(d: Path) -> str:
    return _write(_lc(d).rename(columns=str.upper), d)


def _lc_duplicate_column(d: Path) -> str:
    t = pa.Table.from_pandas(_lc(d), preserve_index=False)
    t = t.append_column("mag", pa.array(np.full(len(t), 99.0)))
    return _write_table(t, d)


def _lc_int_mag(d: Path) -> str:
    df = _lc(d)
    df["mag"] = df["mag"].round().astype("int64")
    return _write(df, d)


def _lc_mag_list(d: Path) -> str:
    t = pa.Table.from_pandas(_lc(d), preserve_index=False)
    i = t.schema.get_field_index("mag")
    mags = pa.array([[v] for v in t.column("mag").to_pylist()], pa.list_(pa.float64()))
    return _write_table(t.set_column(i, "mag", mags), d)


def _lc_t_datetime(d: Path) -> str:
    df = _lc(d)
    df["t"] = pd.Timestamp("1858-11-17") + pd.to_timedelta(df["t"], unit="D")
    return _write(df, d)


def _lc_band_all_null(d: Path) -> str:
    df = _lc(d)
    df["band"] = pd.Series([None] * len(df), dtype="string")
    return _write(df, d)


def _csv_semicolons(d: Path) -> str:
    _lc(d).to_csv(d / "semi.csv", index=False, sep=";")
    return "semi.csv"


def _existing(name: str) -> Callable[[Path], str]:
    return lambda d: name


# (id, builder, expected, needles); {NAME} in a needle is the returned name
LC_CASES: list[tuple[str, Callable[[Path], str], str, tuple[str, ...]]] = [
    ("missing_file", _missing, "error", ("{NAME}",)),
    ("empty_file", _empty_file, "error", ("{NAME}",)),
    ("text_named_parquet", _text_as_parquet, "error", ("{NAME}",)),
    ("truncated_parquet", _truncated("small.parquet"), "error", ("{NAME}",)),
    ("zero_rows", _zero_rows_of("small.parquet"), "error", ("{NAME}",)),
    ("no_object_id", _lc_without("object_id"), "error", ("{NAME}", "object_id")),
    ("no_t", _lc_without("t"), "error", ("{NAME}", "'t'|column t|t column|`t`|: t|(t)")),
    ("no_mag", _lc_without("mag"), "error", ("{NAME}", "mag")),
    ("no_mag_err", _lc_without("mag_err"), "error", ("{NAME}", "mag_err")),
    ("mag_string", _lc_mag_string, "error", ("{NAME}", "mag")),
    ("t_string", _lc_t_string, "error", ("{NAME}",)),
    ("mag_err_null_type", _lc_mag_err_null_type, "error", ("{NAME}", "mag_err")),
    ("mag_err_all_nan", _lc_mag_err_all_nan, "error", ("{NAME}",)),
    ("nan_inf_values", _lc_nan_inf, "ok", ()),
    ("some_nonpositive_mag_err", _lc_nonpositive_err, "ok", ()),
    ("all_negative_mag_err", _lc_all_nonpositive_err, "error", ("{NAME}",)),
    ("duplicate_rows", _lc_duplicated, "ok", ()),
    ("shuffled_duplicate_rows", _lc_shuffled_duplicated, "ok", ()),
    ("ids_stray_spaces", _lc_stray_spaces, "ok", ()),
    ("some_null_ids", _lc_null_ids, "ok", ()),
    ("all_null_ids", _lc_all_null_ids, "error", ("{NAME}",)),
    ("integer_ids", _lc_int_ids, "ok", ()),
    ("band_float", _lc_band_float, "error", ("{NAME}", "band")),
    ("csv_good", _lc_as_csv, "ok", ()),
    ("csv_header_only", _csv_header_only, "error", ("{NAME}",)),
    ("csv_binary_junk", _csv_binary, "error", ("{NAME}",)),
    ("parquet_named_csv", _parquet_named_csv, "either", ("{NAME}",)),
    ("empty_folder", _empty_dir, "error", ("{NAME}",)),
    ("folder_good_and_junk", _dir_good_and_junk, "either", ("b.parquet",)),
    ("dangling_symlink", _dangling_link, "error", ("{NAME}",)),
    ("extreme_t", _lc_extreme_t, "ok", ()),
    ("upper_case_columns", _lc_upper_case_columns, "ok", ()),
    ("duplicate_mag_column", _lc_duplicate_column, "error", ("{NAME}", "duplicate")),
    ("integer_mag", _lc_int_mag, "ok", ()),
    ("mag_list_type", _lc_mag_list, "error", ("{NAME}", "mag")),
    ("t_datetime", _lc_t_datetime, "error", ("{NAME}", "'t'|column t|t column|`t`|: t|(t)")),
    ("band_all_null", _lc_band_all_null, "error", ("{NAME}",)),
    ("csv_semicolon_separated", _csv_semicolons, "error", ("{NAME}",)),
    ("dmdt_table_as_lightcurves", _existing("dmdt.parquet"), "error", ("{NAME}",)),
    ("feature_table_as_lightcurves", _existing("feat.parquet"), "error", ("{NAME}",)),
]

# a different answer from some commands: validate writes a report of what it dropped
LC_EXPECT_OVERRIDES = {
    ("validate", "mag_err_all_nan"): "either",
    ("validate", "all_negative_mag_err"): "either",
    ("validate", "all_null_ids"): "either",
    ("validate", "band_all_null"): "either",
}


def _lc_argv(command: str, name: str) -> list[str]:
    return {"validate": ["validate", name, "-o", "out"],
            "dmdt": ["dmdt", name, "-o", "out.parquet"],
            "features": ["features", name, "-o", "out.parquet"]}[command]


LC_PARAMS = _params([
    (f"{cmd}-{cid}", (cmd, build, LC_EXPECT_OVERRIDES.get((cmd, cid), expect), needles))
    for cmd in ("validate", "dmdt", "features")
    for cid, build, expect, needles in LC_CASES
])


@pytest.mark.parametrize("command,build,expect,needles", LC_PARAMS)
def test_light_curve_tables(cli, work, command, build, expect, needles):
    """validate, dmdt and features on every bad light-curve table."""
    name = build(work)
    needles = tuple(n.replace("{NAME}", name) for n in needles)
    _run_case(cli, work, _lc_argv(command, name), expect, needles)


@pytest.mark.parametrize("command", _params([("validate-ids_stray_spaces_one_object",
                                                ("validate",))]))
def test_ids_with_stray_spaces_stay_one_object(cli, work, command):
    """An id written with stray spaces on some rows (' X  ' beside 'X') is the same object,
    as in the labels (``read_labels`` strips them): refused in one line, or kept whole,
    never split silently into two light curves of half the points each."""
    name = _lc_stray_spaces(work)
    r = _run_case(cli, work, ["validate", name, "-o", "out"], "either", (name,))
    if r.returncode == 0:
        ids = pd.read_parquet(work / "out" / "lightcurves.parquet")["object_id"]
        assert ids.nunique() == _lc(work)["object_id"].str.strip().nunique(), \
            sorted(ids.unique())[:4]


# --------------------------------------------------------------------------------------
# options with nonsense values
# --------------------------------------------------------------------------------------

def _garbage_json(d: Path) -> None:
    (d / "bins.json").write_text("{not json")


def _bins_no_edges(d: Path) -> None:
    (d / "bins.json").write_text('{"dm_edges": [1, 0]}')


OPTION_CASES: list[tuple[str, list[str], str, tuple[str, ...], Callable | None]] = [
    # dmdt
    ("dmdt-jobs_0", ["dmdt", "small.parquet", "-o", "o.parquet", "-j", "0"], "error",
     ("jobs",), None),
    ("dmdt-jobs_-5", ["dmdt", "small.parquet", "-o", "o.parquet", "-j", "-5"], "error",
     ("jobs",), None),
    ("dmdt-chunk_rows_0", ["dmdt", "small.parquet", "-o", "o.parquet", "--chunk-rows", "0"],
     "error", ("chunk",), None),
    ("dmdt-chunk_rows_-1", ["dmdt", "small.parquet", "-o", "o.parquet", "--chunk-rows",
                            "-1"], "error", ("chunk",), None),
    ("dmdt-bins_missing_file", ["dmdt", "small.parquet", "-o", "o.parquet", "--bins",
                                "nothere.json"], "error", ("nothere.json",), None),
    ("dmdt-bins_garbage_json", ["dmdt", "small.parquet", "-o", "o.parquet", "--bins",
                                "bins.json"], "error", ("bins.json",), _garbage_json),
    ("dmdt-bins_bad_edges", ["dmdt", "small.parquet", "-o", "o.parquet", "--bins",
                             "bins.json"], "error", ("bins.json|edges",), _bins_no_edges),
    ("dmdt-bins_unknown_name", ["dmdt", "small.parquet", "-o", "o.parquet", "--bins",
                                "nosuchgrid"], "error", ("nosuchgrid",), None),
    ("dmdt-bands_unknown", ["dmdt", "small.parquet", "-o", "o.parquet", "--bands", "NOPE"],
     "error", ("NOPE",), None),
    ("dmdt-time_window_inverted", ["dmdt", "small.parquet", "-o", "o.parquet", "--t-min",
                                   "100000", "--t-max", "0"], "error", ("t_min|t-min|t_max|"
                                                                         "t-max|window",),
     None),
    ("dmdt-min_points_-1", ["dmdt", "small.parquet", "-o", "o.parquet", "--min-points",
                            "-1"], "either", ("min",), None),
    ("dmdt-columns_unknown_source", ["dmdt", "small.parquet", "-o", "o.parquet",
                                     "--columns", "t=NOPE"], "error", ("NOPE",), None),
    ("dmdt-columns_unknown_key", ["dmdt", "small.parquet", "-o", "o.parquet", "--columns",
                                  "bogus=t"], "error", ("bogus",), None),
    ("dmdt-columns_garbage", ["dmdt", "small.parquet", "-o", "o.parquet", "--columns",
                              "garbage"], "error", ("garbage|columns",), None),
    # features
    ("features-jobs_0", ["features", "small.parquet", "-o", "o.parquet", "-j", "0"], "error",
     ("jobs",), None),
    ("features-jobs_-5", ["features", "small.parquet", "-o", "o.parquet", "-j", "-5"],
     "error", ("jobs",), None),
    ("features-chunk_rows_0", ["features", "small.parquet", "-o", "o.parquet",
                               "--chunk-rows", "0"], "error", ("chunk",), None),
    ("features-period_min_0", ["features", "small.parquet", "-o", "o.parquet",
                               "--period-min", "0"], "error", ("period",), None),
    ("features-period_min_negative", ["features", "small.parquet", "-o", "o.parquet",
                                      "--period-min", "-1"], "error", ("period",), None),
    ("features-period_max_below_min", ["features", "small.parquet", "-o", "o.parquet",
                                       "--period-min", "10", "--period-max", "1"], "error",
     ("period",), None),
    ("features-bands_unknown", ["features", "small.parquet", "-o", "o.parquet", "--bands",
                                "NOPE"], "error", ("NOPE",), None),
    # validate
    ("validate-min_points_-5", ["validate", "small.parquet", "-o", "out", "--min-points",
                                "-5"], "either", ("min",), None),
    ("validate-t_min_nan", ["validate", "small.parquet", "-o", "out", "--t-min", "nan"],
     "error", ("t_min|t-min",), None),
    ("validate-columns_empty_source", ["validate", "small.parquet", "-o", "out",
                                       "--columns", "mag="], "error", ("mag",), None),
    # forest train
    ("forest_train-n_estimators_-3", ["forest", "train", "feat.parquet", "--labels",
                                      "labels.csv", "-o", "x.skops", "--n-estimators", "-3"],
     "error", ("n_estimators|n-estimators",), None),
    ("forest_train-min_samples_leaf_0", ["forest", "train", "feat.parquet", "--labels",
                                         "labels.csv", "-o", "x.skops",
                                         "--min-samples-leaf", "0"], "error",
     ("min_samples_leaf|min-samples-leaf",), None),
    ("forest_train-max_features_word", ["forest", "train", "feat.parquet", "--labels",
                                        "labels.csv", "-o", "x.skops", "--max-features",
                                        "lots"], "error", ("max_features|max-features",), None),
    ("forest_train-max_features_0", ["forest", "train", "feat.parquet", "--labels",
                                     "labels.csv", "-o", "x.skops", "--max-features", "0"],
     "error", ("max_features|max-features",), None),
    ("forest_train-max_features_1.5", ["forest", "train", "feat.parquet", "--labels",
                                       "labels.csv", "-o", "x.skops", "--max-features", "1.5"],
     "error", ("max_features|max-features",), None),
    ("forest_train-jobs_0", ["forest", "train", "feat.parquet", "--labels", "labels.csv",
                             "-o", "x.skops", "--n-estimators", "5", "-j", "0"], "error",
     ("jobs",), None),
    ("forest_train-seed_-1", ["forest", "train", "feat.parquet", "--labels", "labels.csv",
                              "-o", "x.skops", "--n-estimators", "5", "--seed", "-1"],
     "error", ("seed|random_state",), None),
    ("forest_train-classes_unknown", ["forest", "train", "feat.parquet", "--labels",
                                      "labels.csv", "-o", "x.skops", "--classes", "NOPE,EA"],
     "error", ("NOPE",), None),
    ("forest_train-classes_one", ["forest", "train", "feat.parquet", "--labels",
                                  "labels.csv", "-o", "x.skops", "--classes", "EA"],
     "error", ("class",), None),
    # forest cv
    ("forest_cv-folds_0", ["forest", "cv", "feat.parquet", "--labels", "labels.csv",
                           "--classes", "all", "--n-estimators", "5", "--folds", "0"],
     "error", ("fold",), None),
    ("forest_cv-folds_1", ["forest", "cv", "feat.parquet", "--labels", "labels.csv",
                           "--classes", "all", "--n-estimators", "5", "--folds", "1"],
     "error", ("fold",), None),
    ("forest_cv-folds_50", ["forest", "cv", "feat.parquet", "--labels", "labels.csv",
                            "--classes", "all", "--n-estimators", "5", "--folds", "50"],
     "error", ("fold",), None),
    ("forest_cv-n_estimators_0", ["forest", "cv", "feat.parquet", "--labels", "labels.csv",
                                  "--classes", "all", "--n-estimators", "0"], "error",
     ("n_estimators|n-estimators",), None),
    # rpca
    ("rpca-rank_background_-1", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o",
                                 "r", "--rank-background", "-1"], "error", ("rank",), None),
    ("rpca-rank_class_0", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o", "r",
                           "--rank-class", "0"], "either", ("rank",), None),
    ("rpca-rank_class_1000", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o", "r",
                              "--rank-class", "1000"], "either", ("rank",), None),
    ("rpca-tol_-1", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o", "r", "--tol",
                     "-1"], "error", ("tol",), None),
    ("rpca-max_iter_0", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o", "r",
                         "--max-iter", "0"], "error", ("iter",), None),
    ("rpca-min_class_size_1000", ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o",
                                  "r", "--min-class-size", "1000"], "error", ("class",), None),
    # simulate
    ("simulate-n_0", ["simulate", "-n", "0", "-o", "sim"], "error", ("-n",), None),
    ("simulate-n_-1", ["simulate", "-n", "-1", "-o", "sim"], "error", ("-n",), None),
    ("simulate-chunk_objects_0", ["simulate", "-n", "5", "-o", "sim", "--chunk-objects",
                                  "0"], "error", ("chunk",), None),
    ("simulate-classes_unknown", ["simulate", "-n", "5", "-o", "sim", "--classes", "NOPE"],
     "error", ("NOPE",), None),
    ("simulate-classes_empty", ["simulate", "-n", "5", "-o", "sim", "--classes", ","],
     "error", ("class",), None),
    ("simulate-bands_unknown", ["simulate", "-n", "5", "-o", "sim", "--bands", "q"],
     "error", ("'q'|band",), None),
    ("simulate-fewer_objects_than_classes", ["simulate", "-n", "2", "-o", "sim"], "ok", (),
     None),
    ("simulate-seed_-1", ["simulate", "-n", "5", "-o", "sim", "--seed", "-1"], "error",
     ("seed",), None),
    # lcpipe robustness: refused before any work (no TensorFlow model is run)
    ("robustness-draws_0", ["robustness", "small.parquet", "--model", "crts", "-o", "rob",
                            "-k", "0"], "error", ("--draws", ">= 1"), None),
    ("robustness-jobs_0", ["robustness", "small.parquet", "--model", "crts", "-o", "rob",
                           "-j", "0"], "error", ("--jobs",), None),
    ("robustness-model_missing", ["robustness", "small.parquet", "--model", "nothere", "-o",
                                  "rob"], "error", ("nothere", "bundle"), None),
    ("robustness-output_is_a_file", ["robustness", "small.parquet", "--model", "crts", "-o",
                                     "labels.csv"], "error", ("labels.csv", "not a folder"),
     None),
    ("robustness-input_missing", ["robustness", "nothere.parquet", "--model", "crts", "-o",
                                  "rob"], "error", ("nothere.parquet",), None),
    # lcpipe explain
    ("explain-object_unknown", ["explain", "--model", "crts", "--data", "small.parquet",
                                "--objects", "NOPE", "-o", "ex"], "error", ("NOPE",), None),
    ("explain-objects_empty", ["explain", "--model", "crts", "--data", "small.parquet",
                               "--objects", ",", "-o", "ex"], "error", ("--objects",), None),
    ("explain-model_missing", ["explain", "--model", "nothere", "--data", "small.parquet",
                               "--objects", "x", "-o", "ex"], "error", ("nothere", "bundle"),
     None),
    ("explain-output_is_a_file", ["explain", "--model", "crts", "--data", "small.parquet",
                                  "--objects", "x", "-o", "labels.csv"], "error",
     ("labels.csv", "not a folder"), None),
    ("robustness-cadence_0", ["robustness", "small.parquet", "--model", "crts", "-o", "rob",
                              "--cadence", "0.5,0"], "error", ("--cadence", "(0, 1]"), None),
    ("robustness-cadence_words", ["robustness", "small.parquet", "--model", "crts", "-o",
                                  "rob", "--cadence", "half"], "error", ("--cadence", "half"),
     None),
    ("robustness-labels_without_cadence", ["robustness", "small.parquet", "--model", "crts",
                                           "-o", "rob", "--labels", "labels.csv"], "error",
     ("--labels", "--cadence"), None),
    ("robustness-labels_missing", ["robustness", "small.parquet", "--model", "crts", "-o",
                                   "rob", "--cadence", "0.5", "--labels", "nothere.csv"],
     "error", ("nothere.csv",), None),
]


@pytest.mark.parametrize("argv,expect,needles,setup", _params(
    [(cid, (argv, expect, needles, setup)) for cid, argv, expect, needles, setup
     in OPTION_CASES]))
def test_nonsense_options(cli, work, argv, expect, needles, setup):
    """Zero, negative or meaningless option values: one line naming the option."""
    if setup is not None:
        setup(work)
    _run_case(cli, work, argv, expect, needles)


# --------------------------------------------------------------------------------------
# labels tables
# --------------------------------------------------------------------------------------

def _labels(d: Path) -> pd.DataFrame:
    return pd.read_csv(d / "labels.csv")


def _labels_write(df: pd.DataFrame, d: Path) -> str:
    df.to_csv(d / "bad_labels.csv", index=False)
    return "bad_labels.csv"


def _labels_missing(d: Path) -> str:
    return "nothere.csv"


def _labels_empty(d: Path) -> str:
    (d / "empty.csv").write_bytes(b"")
    return "empty.csv"


def _labels_no_label(d: Path) -> str:
    return _labels_write(_labels(d)[["object_id"]], d)


def _labels_no_object_id(d: Path) -> str:
    return _labels_write(_labels(d)[["label"]], d)


def _labels_header_only(d: Path) -> str:
    (d / "bad_labels.csv").write_text("object_id,label\n")
    return "bad_labels.csv"


def _labels_conflicting(d: Path) -> str:
    df = _labels(d)
    twin = df.iloc[[0]].copy()
    twin["label"] = "RRab" if twin["label"].iloc[0] != "RRab" else "EA"
    return _labels_write(pd.concat([df, twin], ignore_index=True), d)


def _labels_repeated(d: Path) -> str:
    df = _labels(d)
    return _labels_write(pd.concat([df, df.iloc[:5]], ignore_index=True), d)


def _labels_one_class(d: Path) -> str:
    df = _labels(d)
    df["label"] = "EA"
    return _labels_write(df, d)


def _labels_no_overlap(d: Path) -> str:
    df = _labels(d)
    df["object_id"] = "X" + df["object_id"]
    return _labels_write(df, d)


def _labels_some_empty(d: Path) -> str:
    df = _labels(d)
    df.loc[::7, "label"] = None
    return _labels_write(df, d)


def _labels_stray_spaces(d: Path) -> str:
    df = _labels(d)
    df["object_id"] = " " + df["object_id"] + " "
    return _labels_write(df, d)


def _labels_parquet(d: Path) -> str:
    _labels(d).to_parquet(d / "labels.parquet", index=False)
    return "labels.parquet"


def _labels_numeric(d: Path) -> str:
    df = _labels(d)
    df["label"] = pd.factorize(df["label"])[0]
    return _labels_write(df, d)


LABEL_CASES: list[tuple[str, Callable[[Path], str], str, tuple[str, ...]]] = [
    ("missing_file", _labels_missing, "error", ("{NAME}",)),
    ("empty_file", _labels_empty, "error", ("{NAME}",)),
    ("no_label_column", _labels_no_label, "error", ("{NAME}", "label")),
    ("no_object_id_column", _labels_no_object_id, "error", ("{NAME}", "object_id")),
    ("header_only", _labels_header_only, "error", ("{NAME}",)),
    ("conflicting_duplicate_ids", _labels_conflicting, "error", ("{NAME}",)),
    ("repeated_identical_rows", _labels_repeated, "ok", ()),
    ("one_class", _labels_one_class, "error", ("class",)),
    ("no_id_in_common", _labels_no_overlap, "error", ("{NAME}|label",)),
    ("some_labels_empty", _labels_some_empty, "either", ("{NAME}",)),
    ("ids_stray_spaces", _labels_stray_spaces, "either", ("{NAME}",)),
    ("parquet_labels", _labels_parquet, "ok", ()),
    ("numeric_labels", _labels_numeric, "ok", ()),
    ("lightcurves_as_labels", _existing("small.parquet"), "error", ("{NAME}",)),
]


def _labels_argv(command: str, name: str) -> list[str]:
    return {"forest_train": ["forest", "train", "feat.parquet", "--labels", name, "-o",
                             "x.skops", "--n-estimators", "5"],
            "forest_cv": ["forest", "cv", "feat.parquet", "--labels", name, "--classes",
                          "all", "--n-estimators", "5", "--folds", "3"],
            "rpca": ["rpca", "dmdt.parquet", "--labels", name, "-o", "r"]}[command]


# robust PCA decomposes one class as well as several (it classifies nothing)
LABEL_EXPECT_OVERRIDES = {("rpca", "one_class"): "either"}

LABEL_PARAMS = _params([
    (f"{cmd}-{cid}", (cmd, build, LABEL_EXPECT_OVERRIDES.get((cmd, cid), expect), needles))
    for cmd in ("forest_train", "forest_cv", "rpca")
    for cid, build, expect, needles in LABEL_CASES
])


@pytest.mark.parametrize("command,build,expect,needles", LABEL_PARAMS)
def test_label_tables(cli, work, command, build, expect, needles):
    """forest train, forest cv and rpca on every bad labels table."""
    name = build(work)
    needles = tuple(n.replace("{NAME}", name) for n in needles)
    _run_case(cli, work, _labels_argv(command, name), expect, needles)


# --------------------------------------------------------------------------------------
# feature tables and forest model files
# --------------------------------------------------------------------------------------

def _feat(d: Path) -> pa.Table:
    return pq.read_table(d / "feat.parquet")


def _feat_write(t: pa.Table, d: Path, name: str = "bad_feat.parquet") -> str:
    pq.write_table(t, d / name)
    return name


def _feat_set(d: Path, col: str, values: pa.Array) -> str:
    t = _feat(d)
    return _feat_write(t.set_column(t.schema.get_field_index(col), col, values), d)


FEAT_COL = "CSS_V:amplitude"


def _feat_drop_column(d: Path) -> str:
    t = _feat(d)
    return _feat_write(t.drop_columns([FEAT_COL]), d)


def _feat_string_column(d: Path) -> str:
    t = _feat(d)
    vals = pa.array([f"{v:.4f}" for v in t.column(FEAT_COL).to_pylist()])
    return _feat_set(d, FEAT_COL, vals)


def _feat_inf(d: Path) -> str:
    t = _feat(d)
    vals = np.array(t.column(FEAT_COL).to_pylist(), dtype=float)
    vals[::3] = np.inf
    return _feat_set(d, FEAT_COL, pa.array(vals))


def _feat_nan(d: Path) -> str:
    t = _feat(d)
    vals = np.array(t.column(FEAT_COL).to_pylist(), dtype=float)
    vals[::3] = np.nan
    return _feat_set(d, FEAT_COL, pa.array(vals))


def _feat_no_object_id(d: Path) -> str:
    return _feat_write(_feat(d).drop_columns(["object_id"]), d)


def _feat_duplicate_ids(d: Path) -> str:
    t = _feat(d)
    return _feat_write(pa.concat_tables([t, t.slice(0, 5)]), d)


def _feat_no_metadata(d: Path) -> str:
    return _feat_write(_feat(d).replace_schema_metadata(None), d)


def _feat_stray_spaces(d: Path) -> str:
    t = _feat(d)
    ids = pa.array([f" {v} " for v in t.column("object_id").to_pylist()])
    return _feat_set(d, "object_id", ids)


FEATURE_CASES: list[tuple[str, Callable[[Path], str], str, tuple[str, ...]]] = [
    ("missing_file", _missing, "error", ("{NAME}",)),
    ("empty_file", _empty_file, "error", ("{NAME}",)),
    ("text_named_parquet", _text_as_parquet, "error", ("{NAME}",)),
    ("truncated_parquet", _truncated("feat.parquet"), "error", ("{NAME}",)),
    ("zero_rows", _zero_rows_of("feat.parquet"), "error", ("{NAME}",)),
    ("missing_feature_column", _feat_drop_column, "either", ("{NAME}", FEAT_COL)),
    ("string_feature_column", _feat_string_column, "error", ("{NAME}", FEAT_COL)),
    ("inf_values", _feat_inf, "either", ("{NAME}", FEAT_COL)),
    ("nan_values", _feat_nan, "ok", ()),
    ("no_object_id", _feat_no_object_id, "error", ("{NAME}", "object_id")),
    ("duplicate_object_ids", _feat_duplicate_ids, "error", ("{NAME}",)),
    ("metadata_stripped", _feat_no_metadata, "either", ("{NAME}",)),
    ("ids_stray_spaces", _feat_stray_spaces, "either", ("{NAME}",)),
    ("lightcurves_as_features", _existing("small.parquet"), "error", ("{NAME}",)),
    ("dmdt_as_features", _existing("dmdt.parquet"), "error", ("{NAME}",)),
]

# forest predict has a model that names its columns: a missing one cannot be predicted
FEATURE_EXPECT_OVERRIDES = {
    ("forest_predict", "missing_feature_column"): "error",
    ("forest_predict", "ids_stray_spaces"): "ok",
}


def _features_argv(command: str, name: str) -> list[str]:
    return {"forest_train": ["forest", "train", name, "--labels", "labels.csv", "-o",
                             "x.skops", "--n-estimators", "5"],
            "forest_predict": ["forest", "predict", "m.skops", name, "-o", "p.parquet"],
            "forest_cv": ["forest", "cv", name, "--labels", "labels.csv", "--classes", "all",
                          "--n-estimators", "5", "--folds", "3"]}[command]


FEATURE_PARAMS = _params([
    (f"{cmd}-{cid}", (cmd, build, FEATURE_EXPECT_OVERRIDES.get((cmd, cid), expect), needles))
    for cmd in ("forest_train", "forest_predict", "forest_cv")
    for cid, build, expect, needles in FEATURE_CASES
])


@pytest.mark.parametrize("command,build,expect,needles", FEATURE_PARAMS)
def test_feature_tables(cli, work, command, build, expect, needles):
    """forest train, predict and cv on every bad feature table."""
    name = build(work)
    needles = tuple(n.replace("{NAME}", name) for n in needles)
    _run_case(cli, work, _features_argv(command, name), expect, needles)


def _model_dir(d: Path) -> str:
    (d / "modeldir").mkdir()
    return "modeldir"


def _model_text(d: Path) -> str:
    (d / "junk.skops").write_text("this is not a model\n")
    return "junk.skops"


def _model_empty(d: Path) -> str:
    (d / "empty.skops").write_bytes(b"")
    return "empty.skops"


def _model_truncated(d: Path) -> str:
    data = (d / "m.skops").read_bytes()
    (d / "cut.skops").write_bytes(data[: len(data) // 2])
    return "cut.skops"


FOREST_MODEL_CASES: list[tuple[str, Callable[[Path], str]]] = [
    ("missing_file", lambda d: "nothere.skops"),
    ("empty_file", _model_empty),
    ("text_file", _model_text),
    ("truncated", _model_truncated),
    ("parquet_as_model", _existing("feat.parquet")),
    ("folder", _model_dir),
]


@pytest.mark.parametrize("build", _params(
    [(f"forest_predict-model_{cid}", (build,)) for cid, build in FOREST_MODEL_CASES]))
def test_forest_model_files(cli, work, build):
    """forest predict with a model file that is not one: one line naming it."""
    name = build(work)
    _run_case(cli, work, ["forest", "predict", name, "feat.parquet", "-o", "p.parquet"],
              "error", (name,))


# --------------------------------------------------------------------------------------
# dm-dt tables (rpca) and the report folder
# --------------------------------------------------------------------------------------

def _dmdt_image_strings(d: Path) -> str:
    t = pq.read_table(d / "dmdt.parquet")
    i = t.schema.get_field_index("image")
    return _feat_write(t.set_column(i, "image", pa.array(["x"] * len(t))), d, "bad_dmdt.parquet")


def _dmdt_no_metadata(d: Path) -> str:
    t = pq.read_table(d / "dmdt.parquet").replace_schema_metadata(None)
    return _feat_write(t, d, "bad_dmdt.parquet")


def _dmdt_duplicate_ids(d: Path) -> str:
    t = pq.read_table(d / "dmdt.parquet")
    return _feat_write(pa.concat_tables([t, t.slice(0, 3)]), d, "bad_dmdt.parquet")


DMDT_CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("missing_file", _missing, "error"),
    ("text_named_parquet", _text_as_parquet, "error"),
    ("truncated_parquet", _truncated("dmdt.parquet"), "error"),
    ("zero_rows", _zero_rows_of("dmdt.parquet"), "error"),
    ("lightcurves_as_dmdt", _existing("small.parquet"), "error"),
    ("features_as_dmdt", _existing("feat.parquet"), "error"),
    ("image_column_strings", _dmdt_image_strings, "error"),
    ("metadata_stripped", _dmdt_no_metadata, "error"),
    ("duplicate_object_ids", _dmdt_duplicate_ids, "error"),
]


@pytest.mark.parametrize("build,expect", _params(
    [(f"rpca-{cid}", (build, expect)) for cid, build, expect in DMDT_CASES]))
def test_rpca_dmdt_tables(cli, work, build, expect):
    """rpca on a dm-dt table that is missing, broken or another kind of table."""
    name = build(work)
    _run_case(cli, work, ["rpca", name, "--labels", "labels.csv", "-o", "r"], expect,
              (name,))


def _reports_junk(d: Path) -> str:
    (d / "rep" / "runs").mkdir(parents=True)
    (d / "rep" / "runs" / "part-0.parquet").write_text("junk")
    return "rep"


REPORT_CASES = [
    ("missing_folder", ["report", "nothere"], ("nothere",), None),
    ("empty_folder", ["report", "nofiles"], ("nofiles",), _empty_dir),
    ("file_not_folder", ["report", "small.parquet"], ("small.parquet",), None),
    ("junk_runs_table", ["report", "rep"], ("rep",), _reports_junk),
    ("junk_runs_table_list", ["report", "rep", "--runs"], ("rep",), _reports_junk),
]


@pytest.mark.parametrize("argv,needles,setup", _params(
    [(f"report-{cid}", (argv, needles, setup)) for cid, argv, needles, setup in REPORT_CASES]))
def test_report_folders(cli, work, argv, needles, setup):
    """report on a folder that holds no reports."""
    if setup is not None:
        setup(work)
    _run_case(cli, work, argv, "error", needles)


# --------------------------------------------------------------------------------------
# output paths: a new deep folder (created) or a path under a file (refused)
# --------------------------------------------------------------------------------------

OUTPUT_COMMANDS = {
    "validate": ["validate", "small.parquet", "-o", "{OUT}"],
    "dmdt": ["dmdt", "small.parquet", "-o", "{OUT}/d.parquet"],
    "features": ["features", "small.parquet", "-o", "{OUT}/f.parquet"],
    "forest_train": ["forest", "train", "feat.parquet", "--labels", "labels.csv", "-o",
                     "{OUT}/m.skops", "--n-estimators", "5"],
    "forest_predict": ["forest", "predict", "m.skops", "feat.parquet", "-o",
                       "{OUT}/p.parquet"],
    "forest_cv": ["forest", "cv", "feat.parquet", "--labels", "labels.csv", "--classes",
                  "all", "--n-estimators", "5", "--folds", "3", "-o", "{OUT}/cv.json"],
    "rpca": ["rpca", "dmdt.parquet", "--labels", "labels.csv", "-o", "{OUT}"],
    "simulate": ["simulate", "-n", "5", "-o", "{OUT}"],
}


@pytest.mark.parametrize("command,where,expect", _params(
    [(f"{cmd}-output_{where}", (cmd, where, expect)) for cmd in OUTPUT_COMMANDS
     for where, expect in (("new_deep_folder", "ok"), ("under_a_file", "error"))]))
def test_output_paths(cli, work, command, where, expect):
    """An output in folders that do not exist yet is written (folders created); one under
    a file is refused in one line naming the path."""
    out = "new/deep/folder" if where == "new_deep_folder" else "labels.csv/sub"
    argv = [a.replace("{OUT}", out) for a in OUTPUT_COMMANDS[command]]
    _run_case(cli, work, argv, expect, ("labels.csv",))
    if expect == "ok":
        assert any((work / out).iterdir())


# --------------------------------------------------------------------------------------
# the CNN (TensorFlow in this process once; one case in a fresh process)
# --------------------------------------------------------------------------------------

def _cnn_dir(d: Path) -> Path:
    return d / "cnn"


def _cnn_empty(d: Path) -> str:
    (d / "emptymodel").mkdir()
    return "emptymodel"


def _cnn_garbage_json(d: Path) -> str:
    (_cnn_dir(d) / "model.json").write_text("{garbage")
    return "cnn"


def _cnn_no_keras(d: Path) -> str:
    (_cnn_dir(d) / "model.keras").unlink()
    return "cnn"


def _cnn_garbage_keras(d: Path) -> str:
    (_cnn_dir(d) / "model.keras").write_bytes(b"not a keras file")
    return "cnn"


def _cnn_classes_mismatch(d: Path) -> str:
    import json

    meta = json.loads((_cnn_dir(d) / "model.json").read_text())
    meta["classes"] = meta["classes"][:-1]
    (_cnn_dir(d) / "model.json").write_text(json.dumps(meta))
    return "cnn"


CNN_CASES: list[tuple[str, list[str], str, tuple[str, ...], Callable | None]] = [
    # bad model folders
    ("cnn_predict-model_missing", ["cnn", "predict", "dmdt.parquet", "--model", "nothere",
                                   "-o", "p.parquet"], "error", ("nothere",), None),
    ("cnn_predict-model_empty_folder", ["cnn", "predict", "dmdt.parquet", "--model", "{M}",
                                        "-o", "p.parquet"], "error", ("{M}",), _cnn_empty),
    ("cnn_predict-model_garbage_json", ["cnn", "predict", "dmdt.parquet", "--model", "{M}",
                                        "-o", "p.parquet"], "error", ("{M}", "model.json"),
     _cnn_garbage_json),
    ("cnn_predict-model_keras_missing", ["cnn", "predict", "dmdt.parquet", "--model", "{M}",
                                         "-o", "p.parquet"], "error", ("{M}",), _cnn_no_keras),
    ("cnn_predict-model_keras_garbage", ["cnn", "predict", "dmdt.parquet", "--model", "{M}",
                                         "-o", "p.parquet"], "error", ("{M}",),
     _cnn_garbage_keras),
    ("cnn_predict-model_classes_mismatch", ["cnn", "predict", "dmdt.parquet", "--model",
                                            "{M}", "-o", "p.parquet"], "error", ("{M}",),
     _cnn_classes_mismatch),
    ("cnn_predict-model_is_forest_file", ["cnn", "predict", "dmdt.parquet", "--model",
                                          "m.skops", "-o", "p.parquet"], "error",
     ("m.skops",), None),
    ("cnn_saliency-model_empty_folder", ["cnn", "saliency", "dmdt.parquet", "--model", "{M}",
                                         "-o", "sal"], "error", ("{M}",), _cnn_empty),
    # bad dm-dt inputs to a good model
    ("cnn_predict-lightcurves_as_dmdt", ["cnn", "predict", "small.parquet", "--model", "cnn",
                                         "-o", "p.parquet"], "error", ("small.parquet",),
     None),
    ("cnn_predict-other_representation", ["cnn", "predict", "dmdtc.parquet", "--model",
                                          "cnn", "-o", "p.parquet"], "error",
     ("dmdtc.parquet|cnn",), None),
    ("cnn_predict-zero_rows", ["cnn", "predict", "zero.parquet", "--model", "cnn", "-o",
                               "p.parquet"], "error", ("zero.parquet",),
     _zero_rows_of("dmdt.parquet")),
    ("cnn_saliency-features_as_dmdt", ["cnn", "saliency", "feat.parquet", "--model", "cnn",
                                       "-o", "sal"], "error", ("feat.parquet",), None),
    ("cnn_saliency-unknown_object", ["cnn", "saliency", "dmdt.parquet", "--model", "cnn",
                                     "-o", "sal", "--objects", "NOPE"], "error", ("NOPE",),
     None),
    ("cnn_predict-output_under_a_file", ["cnn", "predict", "dmdt.parquet", "--model", "cnn",
                                         "-o", "labels.csv/p.parquet"], "error",
     ("labels.csv",), None),
    ("cnn_predict-output_new_deep_folder", ["cnn", "predict", "dmdt.parquet", "--model",
                                            "cnn", "-o", "a/b/c/p.parquet"], "ok", (), None),
    # training: labels and options
    ("cnn_train-labels_one_class", ["cnn", "train", "dmdt.parquet", "--labels", "{M}", "-o",
                                    "net", "--epochs", "1"], "error", ("class",),
     _labels_one_class),
    ("cnn_train-labels_conflicting", ["cnn", "train", "dmdt.parquet", "--labels", "{M}",
                                      "-o", "net", "--epochs", "1"], "error", ("{M}",),
     _labels_conflicting),
    ("cnn_train-lightcurves_as_dmdt", ["cnn", "train", "small.parquet", "--labels",
                                       "labels.csv", "-o", "net", "--epochs", "1"], "error",
     ("small.parquet",), None),
    ("cnn_train-epochs_-1", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv", "-o",
                             "net", "--epochs", "-1"], "error", ("epoch",), None),
    ("cnn_train-epochs_0", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv", "-o",
                            "net", "--epochs", "0"], "error", ("epoch",), None),
    ("cnn_train-batch_size_0", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv",
                                "-o", "net", "--epochs", "1", "--batch-size", "0"], "error",
     ("batch",), None),
    ("cnn_train-learning_rate_-1", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv",
                                    "-o", "net", "--epochs", "1", "--learning-rate", "-1"],
     "error", ("learning",), None),
    ("cnn_train-patience_-1", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv",
                               "-o", "net", "--epochs", "1", "--patience", "-1"], "error",
     ("patience",), None),
    ("cnn_train-augment_without_lightcurves", ["cnn", "train", "dmdt.parquet", "--labels",
                                               "labels.csv", "-o", "net", "--epochs", "1",
                                               "--augment", "2"], "error",
     ("lightcurves|augment",), None),
    ("cnn_train-augment_-1", ["cnn", "train", "dmdt.parquet", "--labels", "labels.csv", "-o",
                              "net", "--epochs", "1", "--augment", "-1"], "error",
     ("augment",), None),
    ("cnn_cv-missing_file", ["cnn", "cv", "nothere.parquet", "--labels", "labels.csv", "-o",
                             "cv", "--epochs", "1"], "error", ("nothere.parquet",), None),
    ("cnn_cv-folds_1", ["cnn", "cv", "small.parquet", "--labels", "labels.csv", "-o", "cv",
                        "--classes", "all", "--epochs", "1", "--folds", "1"], "error",
     ("fold",), None),
]


@pytest.mark.parametrize("argv,expect,needles,setup", _params(
    [(cid, (argv, expect, needles, setup)) for cid, argv, expect, needles, setup
     in CNN_CASES]))
def test_cnn(cli, work, cnn_base, argv, expect, needles, setup):
    """cnn predict, saliency, train and cv with bad models, tables, labels and options."""
    shutil.copytree(cnn_base, work / "cnn")
    name = setup(work) if setup is not None else None
    argv = [a.replace("{M}", name) if name else a for a in argv]
    needles = tuple(n.replace("{M}", name) if name else n for n in needles)
    _run_case(cli, work, argv, expect, needles)


@pytest.mark.parametrize("argv,needles", _params([
    ("cnn_predict-fresh_process-model_classes_mismatch",
     (["cnn", "predict", "dmdt.parquet", "--model", "cnn", "-o", "p.parquet"],
      ("cnn", "classes"))),
]))
def test_cnn_fresh_process(work, cnn_base, argv, needles):
    """What the terminal shows when the command imports TensorFlow itself (the network is
    loaded before the error is found)."""
    shutil.copytree(cnn_base, work / "cnn")
    _cnn_classes_mismatch(work)
    _run_case(_subprocess, work, argv, "error", needles)


# --------------------------------------------------------------------------------------
# flow commands (Prefect): each a fresh process, a handful
# --------------------------------------------------------------------------------------

FLOW_CASES: list[tuple[str, list[str], str, tuple[str, ...], Callable | None]] = [
    ("classify-missing_file", ["classify", "--model", "crts", "--data", "nothere.parquet",
                               "-o", "p.parquet", "--quiet"], "error",
     ("nothere.parquet",), None),
    ("classify-text_named_parquet", ["classify", "--model", "crts", "--data", "text.parquet",
                                     "-o", "p.parquet", "--quiet"], "error",
     ("text.parquet",), _text_as_parquet),
    ("classify-model_is_forest_file", ["classify", "--model", "m.skops", "--data",
                                       "small.parquet", "-o", "p.parquet", "--quiet"],
     "error", ("m.skops",), None),
    ("classify-n_jobs_0", ["classify", "--model", "crts", "--data", "small.parquet", "-o",
                           "p.parquet", "--quiet", "--n-jobs", "0"], "error", ("n_jobs|n-jobs",),
     None),
    ("classify-output_under_a_file", ["classify", "--model", "crts", "--data",
                                      "small.parquet", "-o", "labels.csv/p.parquet",
                                      "--quiet"], "error", ("labels.csv",), None),
    ("train-labels_no_label_column", ["train", "--data", "lc.parquet", "--labels", "{M}",
                                      "-o", "run", "--quiet"], "error", ("{M}", "label"),
     _labels_no_label),
    ("train-test_fraction_1.5", ["train", "--data", "lc.parquet", "--labels", "labels.csv",
                                 "-o", "run", "--quiet", "--test-fraction", "1.5"], "error",
     ("test_fraction|test-fraction",), None),
    ("reprocess-survey_missing", ["reprocess", "--survey", "nothere", "--model", "crts",
                                  "-o", "rep", "--quiet"], "error", ("nothere",), None),
]


@pytest.mark.parametrize("argv,expect,needles,setup", _params(
    [(cid, (argv, expect, needles, setup)) for cid, argv, expect, needles, setup
     in FLOW_CASES]))
def test_flow_commands(work, argv, expect, needles, setup):
    """train, classify and reprocess (Prefect) with bad data, bundles and options,
    run with --quiet: one line, nothing left behind."""
    name = setup(work) if setup is not None else None
    argv = [a.replace("{M}", name) if name else a for a in argv]
    needles = tuple(n.replace("{M}", name) if name else n for n in needles)
    _run_case(_subprocess, work, argv, expect, needles)


def test_known_failures_name_real_cases():
    """Every KNOWN_FAILURES entry is the id of a case above (a renamed case would otherwise
    lose its xfail silently)."""
    assert not set(KNOWN_FAILURES) - _CASE_IDS, sorted(set(KNOWN_FAILURES) - _CASE_IDS)
