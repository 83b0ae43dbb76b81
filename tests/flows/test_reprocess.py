"""The reprocess flow on a growing simulated survey folder, and ``lcpipe reprocess`` killed
at random points and run again.

A module fixture plays one survey's history: a first night (full run), the same folder
again (nothing to do), a second night that adds points to some objects and brings new
ones (incremental run), and a fresh full run of the grown survey into another folder as
the reference. The expected counts come from the raw rows of the simulation (which
objects' point sets grew, which ids are unseen, which have fewer than ``min_points``),
never from the flow. Other scenarios (changed bundle, removed, touched or rewritten
file) run on copies of that history's folders.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.reprocess import reprocess
from models.bundle import resolve_bundle
from models.predictions import read_predictions
from models.settings import ClassifySettings
from pipeline.hashing import file_hash
from pipeline.simulate import SurveyConfig, simulate_lightcurves
from pipeline.survey import read_manifest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ClassifySettings(bands="V=CSS_V", chunk_size=100, n_jobs=1)
MIN_POINTS = SETTINGS.min_points
N_SIM = 300
N_FIRST = 260        # objects 0..259: first 80 % of their points in night 0
N_GROWN = 40         # objects 0..39: their later points in night 1 (when they have some)
NEW = slice(260, 290)  # whole light curves in night 1
NEW_SHORT = (290, 291)  # new in night 1 with 3 points: quarantined
SHORT = (296, 297, 298, 299)  # 3 points in night 0: quarantined; 296 gets the rest in night 1
DUP, NAN_ROW = 100, 101  # night 1 repeats a row of 100 and adds a NaN row to 101: no change
COUNTS = ("new", "changed", "unchanged", "quarantined")


def _write(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def _points(frame: pd.DataFrame) -> dict[str, frozenset]:
    """Per object the set of valid points: finite (t, mag, mag_err), duplicates once."""
    ok = frame[np.isfinite(frame[["t", "mag", "mag_err"]]).all(axis=1)]
    return {o: frozenset(zip(g["t"], g["mag"], g["mag_err"], strict=True))
            for o, g in ok.groupby("object_id")}


def _expected(before: pd.DataFrame | None, after: pd.DataFrame, reread: set[str]) -> dict:
    """Counts of a run from the raw rows: before/after survey, objects of changed files."""
    p0, p1 = _points(before) if before is not None else {}, _points(after)
    ok = {o for o, p in p1.items() if len(p) >= MIN_POINTS}
    new = {o for o in ok if o not in set(before["object_id"] if before is not None else ())}
    changed = {o for o in ok - new if p1[o] != p0.get(o)}
    return {"new": new, "changed": changed, "unchanged": ok - new - changed,
            "quarantined": {o for o in reread if o not in ok}, "classified": ok}


def _predictions(path: Path) -> pd.DataFrame:
    return read_predictions(path)[0]


def _content(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="run_id").sort_values(["object_id", "model"], ignore_index=True)


def _assert_same_predictions(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    pd.testing.assert_frame_equal(_content(a), _content(b), obj=what)


def _stamp(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_mtime_ns, st.st_ino, path.read_bytes()


def _run(survey: Path, output: Path, run_id: str, model: str = "crts"
         ) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = reprocess(survey, model, output, SETTINGS, run_id=run_id)
    return r, time.perf_counter() - t0


def _counts(r: dict[str, Any]) -> dict[str, int]:
    return {k: r[k] for k in COUNTS}


@dataclass
class History:
    sim: pd.DataFrame
    ids: list[str]
    survey: Path
    out: Path
    ref: Path
    night0: pd.DataFrame
    night1: pd.DataFrame
    runs: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    stamps: dict[str, Any] = field(default_factory=dict)
    first_predictions: pd.DataFrame | None = None

    def oid(self, i: int) -> str:
        return self.ids[i]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("reprocess")
    sim = simulate_lightcurves(N_SIM, seed=7, config=SurveyConfig(min_points=60,
                                                                 max_points=120)).lightcurves
    ids = sorted(sim["object_id"].unique())
    pos = {o: i for i, o in enumerate(ids)}
    idx = sim["object_id"].map(pos)
    cut = sim["t"].quantile(0.8)
    first3 = sim.groupby("object_id").cumcount() < 3
    night0 = pd.concat([sim[(idx < N_FIRST) & (sim["t"] < cut)],
                        sim[idx.isin(SHORT) & first3]], ignore_index=True)
    dup = night0[night0["object_id"] == ids[DUP]].iloc[[5]]
    nan = night0[night0["object_id"] == ids[NAN_ROW]].iloc[[0]].assign(t=cut + 1.0, mag=np.nan)
    night1 = pd.concat([sim[(idx < N_GROWN) & (sim["t"] >= cut)],
                        sim[idx.isin(range(NEW.start, NEW.stop))],
                        sim[idx.isin(NEW_SHORT) & first3],
                        sim[(idx == SHORT[0]) & ~first3],
                        dup, nan], ignore_index=True)
    survey, out, ref = root / "survey", root / "out", root / "ref"
    survey.mkdir()
    _write(night0, survey / "night-0.parquet")
    h = History(sim, ids, survey, out, ref, night0, night1)

    h.runs["first"] = _run(survey, out, "rp-first")
    h.first_predictions = _predictions(out / "predictions.parquet")
    h.stamps["before"] = {n: _stamp(out / n) for n in ("predictions.parquet", "manifest.parquet")}
    h.runs["again"] = _run(survey, out, "rp-again")
    h.stamps["after"] = {n: _stamp(out / n) for n in ("predictions.parquet", "manifest.parquet")}

    _write(night1, survey / "night-1.parquet")
    h.runs["night1"] = _run(survey, out, "rp-night1")
    h.runs["reference"] = _run(survey, ref, "rp-reference")
    return h


def _clone(h: History, dest: Path) -> tuple[Path, Path]:
    """Copies of the survey and output folders after night 1 (sizes and mtimes kept)."""
    shutil.copytree(h.survey, dest / "survey")
    shutil.copytree(h.out, dest / "out")
    return dest / "survey", dest / "out"


# -- first run, nothing new ----------------------------------------------------------------


def test_first_run_is_full_and_classifies_everything(history: History):
    r, _ = history.runs["first"]
    exp = _expected(None, history.night0, set(history.night0["object_id"]))
    assert r["full"] and r["reason"] == "first run", r
    assert _counts(r) == {"new": len(exp["new"]), "changed": 0, "unchanged": 0,
                          "quarantined": len(exp["quarantined"])}, r
    assert exp["quarantined"] == {history.oid(i) for i in SHORT}
    pred = history.first_predictions
    assert set(pred["object_id"]) == exp["classified"]
    assert set(pred["model"]) == {"forest", "cnn", "rpca_nearest"}
    assert len(pred) == 3 * len(exp["classified"])
    assert (pred["run_id"] == "rp-first").all()
    assert (pred["split"] == "classify").all()


def test_quarantined_objects_have_no_predictions(history: History):
    r, _ = history.runs["first"]
    short = {history.oid(i) for i in SHORT}
    assert r["quarantined"] == len(short)
    assert not short & set(history.first_predictions["object_id"])
    # after night 1: object SHORT[0] has its whole light curve; the others are still short
    man = read_manifest(history.out / "manifest.parquet").objects.set_index("object_id")
    pred = _predictions(history.out / "predictions.parquet")
    for o in [history.oid(i) for i in (*SHORT[1:], *NEW_SHORT)]:
        assert man.loc[o, "status"] == "quarantined" and pd.isna(man.loc[o, "content_hash"]), o
        assert o not in set(pred["object_id"]), o
    o = history.oid(SHORT[0])
    assert man.loc[o, "status"] == "classified" and o in set(pred["object_id"])


def test_nothing_new_returns_early_and_writes_nothing(history: History):
    """Speed is the benchmark's business (bench_reprocess.py); here: the run stops after the
    scan of the survey (no ingest, no classification) and rewrites nothing."""
    (r1, _), (r2, _) = history.runs["first"], history.runs["again"]
    assert not r2["full"] and (r2["new"], r2["changed"]) == (0, 0), r2
    assert r2["unchanged"] == r1["new"], r2
    assert set(r2["stage_seconds"]) <= {"scan"}, r2["stage_seconds"]
    for name, (mtime, ino, data) in history.stamps["before"].items():
        m2, i2, d2 = history.stamps["after"][name]
        assert (m2, i2) == (mtime, ino), f"{name} was rewritten"
        assert d2 == data, name


# -- night 1: incremental ------------------------------------------------------------------


def test_new_night_counts_match_an_independent_computation(history: History):
    r, _ = history.runs["night1"]
    reread = set(history.night1["object_id"])
    grown = pd.concat([history.night0, history.night1], ignore_index=True)
    exp = _expected(history.night0, grown, reread)
    assert not r["full"] and r["reason"] == "", r
    # the scenario is what it should be: some grown objects had no later point
    assert 0 < len(exp["changed"]) < N_GROWN + 1
    assert history.oid(SHORT[0]) in exp["changed"]
    assert exp["new"] == {history.oid(i) for i in range(NEW.start, NEW.stop)}
    assert exp["quarantined"] == {history.oid(i) for i in NEW_SHORT}
    assert {history.oid(DUP), history.oid(NAN_ROW)} <= exp["unchanged"]
    assert _counts(r) == {k: len(exp[k]) for k in COUNTS}, (r, {k: len(exp[k]) for k in COUNTS})


def test_incremental_table_equals_a_fresh_full_run(history: History):
    ref, _ = history.runs["reference"]
    assert ref["full"] and ref["reason"] == "first run"
    a = _predictions(history.out / "predictions.parquet")
    b = _predictions(history.ref / "predictions.parquet")
    _assert_same_predictions(a, b, "incremental vs full run")
    # the manifests agree on every object's hash and status
    ma = read_manifest(history.out / "manifest.parquet").objects.drop(columns="run_id")
    mb = read_manifest(history.ref / "manifest.parquet").objects.drop(columns="run_id")
    pd.testing.assert_frame_equal(ma, mb)


def test_run_ids_of_untouched_and_redone_objects(history: History):
    """Objects outside the changed files keep the first run's id, recomputed ones get the new
    one, in the predictions and in the manifest alike."""
    r, _ = history.runs["night1"]
    grown = pd.concat([history.night0, history.night1], ignore_index=True)
    exp = _expected(history.night0, grown, set(history.night1["object_id"]))
    redone = exp["new"] | exp["changed"]
    pred = _predictions(history.out / "predictions.parquet")
    by_obj = pred.groupby("object_id")["run_id"].agg(set)
    untouched = exp["classified"] - set(history.night1["object_id"])
    assert len(untouched) > 200
    assert all(by_obj[o] == {"rp-first"} for o in untouched)
    assert all(by_obj[o] == {"rp-night1"} for o in redone)
    man = read_manifest(history.out / "manifest.parquet")
    assert man.run_id == "rp-night1"
    mrun = man.objects.set_index("object_id")["run_id"]
    assert (mrun[sorted(untouched)] == "rp-first").all()
    assert (mrun[sorted(redone)] == "rp-night1").all()
    assert r["new"] + r["changed"] == len(redone)


def test_objects_reread_but_unchanged_keep_their_run_id(history: History):
    """Object DUP (an exact duplicate row in night 1) and NAN_ROW (a row that cleaning drops)
    are read again but their clean light curves did not change: not recomputed."""
    pred = _predictions(history.out / "predictions.parquet")
    man = read_manifest(history.out / "manifest.parquet").objects.set_index("object_id")
    for o in (history.oid(DUP), history.oid(NAN_ROW)):
        rows = pred[pred["object_id"] == o]
        assert man.loc[o, "run_id"] == "rp-first", o
        assert set(rows["run_id"]) == {man.loc[o, "run_id"]}, \
            f"{o}: predictions say {set(rows['run_id'])}, manifest {man.loc[o, 'run_id']}"


def test_manifest_records_bundle_files_and_hashes(history: History):
    man = read_manifest(history.out / "manifest.parquet")
    assert man.bundle_hash == file_hash(resolve_bundle("crts"))
    assert sorted(f.path for f in man.files) == ["night-0.parquet", "night-1.parquet"]
    for f in man.files:
        st = (history.survey / f.path).stat()
        assert (f.size, f.mtime_ns) == (st.st_size, st.st_mtime_ns)
    obj = man.objects
    assert obj["object_id"].is_unique
    cls = obj[obj["status"] == "classified"]
    assert cls["content_hash"].str.startswith("sha256:").all()
    pred = _predictions(history.out / "predictions.parquet")
    assert set(cls["object_id"]) == set(pred["object_id"])
    meta = read_predictions(history.out / "predictions.parquet")[1]
    assert meta["bundle_hash"] == man.bundle_hash and meta["run_id"] == "rp-night1"


# -- scenarios on copies -------------------------------------------------------------------


def test_changed_bundle_reclassifies_everything(history: History, tmp_path: Path):
    survey, out = _clone(history, tmp_path)
    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_bundle("crts"), bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["note"] = "copy for a test"
    (bundle / "bundle.json").write_text(json.dumps(info, indent=2))
    assert file_hash(bundle) != file_hash(resolve_bundle("crts"))

    r, _ = _run(survey, out, "rp-bundle", model=str(bundle))
    ref, _ = history.runs["reference"]
    assert r["full"] and r["reason"] == "model bundle changed", r
    assert _counts(r) == _counts(ref), (r, ref)
    pred = _predictions(out / "predictions.parquet")
    assert (pred["run_id"] == "rp-bundle").all()
    _assert_same_predictions(pred, _predictions(history.ref / "predictions.parquet"),
                             "same models, copied bundle")
    man = read_manifest(out / "manifest.parquet")
    assert man.bundle_hash == file_hash(bundle)
    assert (man.objects["run_id"] == "rp-bundle").all()
    # and with that bundle again: nothing to do
    r2, _ = _run(survey, out, "rp-bundle-again", model=str(bundle))
    assert not r2["full"] and (r2["new"], r2["changed"]) == (0, 0), r2


def test_removed_file_means_a_full_run(history: History, tmp_path: Path):
    survey, out = _clone(history, tmp_path)
    (survey / "night-1.parquet").unlink()
    r, _ = _run(survey, out, "rp-removed")
    first, _ = history.runs["first"]
    assert r["full"] and r["reason"] == "1 file(s) removed", r
    assert _counts(r) == _counts(first), (r, first)
    pred = _predictions(out / "predictions.parquet")
    assert (pred["run_id"] == "rp-removed").all()
    _assert_same_predictions(pred, history.first_predictions, "night 0 only")
    assert [f.path for f in read_manifest(out / "manifest.parquet").files] == ["night-0.parquet"]


def test_touched_file_recomputes_nothing(history: History, tmp_path: Path):
    survey, out = _clone(history, tmp_path)
    before = _predictions(out / "predictions.parquet")
    st = (survey / "night-0.parquet").stat()
    os.utime(survey / "night-0.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r, _ = _run(survey, out, "rp-touched")
    assert not r["full"] and (r["new"], r["changed"]) == (0, 0), r
    assert r["unchanged"] == len(set(before["object_id"])), r
    pd.testing.assert_frame_equal(_predictions(out / "predictions.parquet"), before)
    # the new mtime is recorded: the next run has nothing to read, and writes nothing
    stamps = {n: _stamp(out / n) for n in ("predictions.parquet", "manifest.parquet")}
    r2, _ = _run(survey, out, "rp-touched-again")
    assert (r2["new"], r2["changed"], r2["unchanged"]) == (0, 0, r["unchanged"]), r2
    assert {n: _stamp(out / n) for n in stamps} == stamps


def test_new_file_of_short_objects_only(history: History, tmp_path: Path):
    survey, out = _clone(history, tmp_path)
    before = _predictions(out / "predictions.parquet")
    short = history.sim[history.sim["object_id"].isin([history.oid(292), history.oid(293)])]
    _write(short.groupby("object_id").head(4), survey / "night-2.parquet")
    r, _ = _run(survey, out, "rp-short")
    assert not r["full"] and _counts(r) == {"new": 0, "changed": 0,
                                            "unchanged": len(set(before["object_id"])),
                                            "quarantined": 2}, r
    _assert_same_predictions(_predictions(out / "predictions.parquet"), before, "short only")
    man = read_manifest(out / "manifest.parquet").objects.set_index("object_id")
    assert (man.loc[[history.oid(292), history.oid(293)], "status"] == "quarantined").all()


def test_rewritten_file_that_loses_objects(history: History, tmp_path: Path):
    """Night 1 rewritten: object 265 no longer in it (nor anywhere), object 266 cut to 3 points.
    The table must be what a full run of the folder gives: neither of them."""
    survey, out = _clone(history, tmp_path)
    gone, cut = history.oid(265), history.oid(266)
    n1 = history.night1
    n1 = pd.concat([n1[~n1["object_id"].isin([gone, cut])],
                    n1[n1["object_id"] == cut].head(3)], ignore_index=True)
    _write(n1, survey / "night-1.parquet")
    r, _ = _run(survey, out, "rp-rewritten")
    assert not r["full"], r
    ref = _predictions(history.ref / "predictions.parquet")
    want = ref[~ref["object_id"].isin([gone, cut])]
    got = _predictions(out / "predictions.parquet")
    assert cut not in set(got["object_id"])
    man = read_manifest(out / "manifest.parquet").objects.set_index("object_id")
    assert man.loc[cut, "status"] == "quarantined"
    assert gone not in set(got["object_id"]), \
        f"{gone} left the survey but keeps its predictions (status {man.loc[gone, 'status']})"
    _assert_same_predictions(got, want, "after the rewrite")


# -- kill and resume ---------------------------------------------------------------------

N_KILL = 300
KILL_POINTS = 2
SUMMARY = re.compile(r"^(full run \(.*\)|incremental): new (\d+), changed (\d+), "
                     r"unchanged (\d+), quarantined (\d+) -> (.+)$", re.M)


@dataclass
class KillSetup:
    survey: Path
    env: dict[str, str]
    reference: pd.DataFrame
    seconds: float
    seed: int


def _cli(survey: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "reprocess", "--survey", str(survey),
            "--model", "crts", "-o", str(out), "--quiet", "--bands", "V=CSS_V",
            "--chunk-size", "100", "--n-jobs", "1"]


def _start(survey: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(_cli(survey, out), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory: pytest.TempPathFactory) -> KillSetup:
    """A survey of N_KILL objects in two files, and its uninterrupted CLI run (timed)."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("kill")
    sim = simulate_lightcurves(N_KILL, seed=11, config=SurveyConfig(min_points=60,
                                                                   max_points=120)).lightcurves
    survey = root / "survey"
    survey.mkdir()
    ids = sorted(sim["object_id"].unique())
    _write(sim[sim["object_id"].isin(ids[: N_KILL // 2])], survey / "a.parquet")
    _write(sim[sim["object_id"].isin(ids[N_KILL // 2:])], survey / "b.parquet")
    # the CLI talks to this session's test server, and keeps its results out of ~/.prefect
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOCAL_STORAGE_PATH": str(root / "prefect-results")}
    seed = int(os.environ.get("LCPIPE_KILL_SEED", random.SystemRandom().randrange(2**31)))
    t0 = time.perf_counter()
    text = _finish(_start(survey, root / "reference", env))
    seconds = time.perf_counter() - t0
    m = SUMMARY.search(text)
    assert m and m.group(1) == "full run (first run)" and int(m.group(2)) == N_KILL, text
    return KillSetup(survey, env, _predictions(root / "reference" / "predictions.parquet"),
                     seconds, seed)


def _check_after_kill(out: Path, msg: str) -> None:
    """No state a reader could mistake: manifest only with its predictions, no partial file."""
    if not out.exists():
        return
    top = [p for p in out.rglob("*") if p.is_file() and "work" not in p.relative_to(out).parts]
    names = {p.name for p in top}
    man, pred = out / "manifest.parquet", out / "predictions.parquet"
    assert not man.exists() or pred.exists(), f"manifest without predictions; {msg}"
    for p in top:
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            continue  # a temp file the kill left: never read by lcpipe
        assert p.suffix == ".parquet", f"unexpected file {p}; {msg}"
        pq.read_table(p)  # raises on a partial Parquet file
    assert names <= {"predictions.parquet", "manifest.parquet"} | {
        n for n in names if n.startswith(".") and n.endswith(".tmp")}, f"{names}; {msg}"
    if man.exists():
        m = read_manifest(man)
        classified = set(m.objects.loc[m.objects["status"] == "classified", "object_id"])
        assert classified <= set(_predictions(pred)["object_id"]), \
            f"the manifest claims objects without predictions; {msg}"


@pytest.mark.parametrize("k", range(KILL_POINTS))
def test_killed_run_resumes_to_the_uninterrupted_table(kill_setup: KillSetup, k: int,
                                                       tmp_path: Path):
    ks = kill_setup
    rng = random.Random(ks.seed + k)
    delay = rng.uniform(1.0, max(ks.seconds - 1.0, 1.0))
    msg = f"seed {ks.seed} (+{k}), kill after {delay:.2f} s of an {ks.seconds:.1f} s run"
    out = tmp_path / "out"

    proc = _start(ks.survey, out, ks.env)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    _check_after_kill(out, msg)
    # damaged temp files of the names atomic writes use: never read
    out.mkdir(exist_ok=True)
    for name in ("predictions.parquet", "manifest.parquet"):
        (out / f".{name}.planted.tmp").write_bytes(b"PAR1 partial")

    text = _finish(_start(ks.survey, out, ks.env))
    m = SUMMARY.search(text)
    assert m, f"{text[-2000:]}; {msg}"
    assert (int(m.group(2)) + int(m.group(3)) + int(m.group(4)), int(m.group(5))) \
        == (N_KILL, 0), f"{m.group(0)}; {msg}"
    _assert_same_predictions(_predictions(out / "predictions.parquet"), ks.reference,
                             f"resumed run; {msg}")
    man = read_manifest(out / "manifest.parquet")
    assert (man.objects["status"] == "classified").all() and len(man.objects) == N_KILL, msg
    _check_after_kill(out, msg)
