"""Reprocess benchmark: incremental runs of a growing survey against the full run.

Steps, each ``lcpipe reprocess --quiet`` in a fresh process (the shipped ``crts`` bundle,
simulated band ``V`` renamed ``CSS_V``):

1. a simulated survey of ``--n`` objects (default 200,000; CSS-like cadence of
   :mod:`pipeline.simulate`) in ``night-0.parquet``; the **full run** (anchor) classifies
   all of them;
2. 1 % of the objects get new points (their last 20 points again, 3,000 days later, with
   fresh noise) in ``night-1.parquet``; the **incremental run** re-reads and reclassifies
   those only; printed: its time as a fraction of the full run's (target < 5 %);
3. the same command again with no new data (idempotent: nothing written);
4. ``--dask-n`` objects (default 20,000) classified from scratch with the thread runner and
   with ``--dask-local 2`` (a LocalCluster of 2 worker processes): wall times, stage times
   and the speed-up; the predictions must be identical.

Run: ``python benchmarks/bench_reprocess.py`` (about 20 minutes on 2 cores), or
``--n 20000 --dask-n 5000`` for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reprocess(survey: Path, out: Path, *extra: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "flows.cli", "reprocess", "--quiet", "--survey", str(survey),
           "--model", "crts", "--bands", "V=CSS_V", "-o", str(out), *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return wall, res.stdout.strip().splitlines()[-1]


def _simulate(n: int, folder: Path) -> Path:
    from pipeline.simulate import simulate_survey

    folder.mkdir(parents=True, exist_ok=True)
    sim = simulate_survey(n, folder.with_name(folder.name + "_sim"), seed=7)  # labels stay out
    target = folder / "night-0.parquet"
    os.replace(sim.lightcurves, target)
    return target


def _grow(night0: Path, out: Path, fraction: float, seed: int = 1) -> int:
    """New points for every 1/fraction-th object: its last 20 points, 3,000 days later."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(night0)
    ids = pc.unique(t.column("object_id")).to_pylist()
    step = max(1, round(1 / fraction))
    chosen = pa.array(sorted(ids)[::step])
    sub = t.filter(pc.is_in(t.column("object_id"), value_set=chosen)).to_pandas()
    sub = sub.sort_values(["object_id", "t"]).groupby("object_id").tail(20).copy()
    rng = np.random.default_rng(seed)
    sub["t"] = sub["t"] + 3000.0
    sub["mag"] = sub["mag"] + rng.normal(0.0, sub["mag_err"].to_numpy())
    pq.write_table(pa.Table.from_pandas(sub, preserve_index=False), out)
    return len(chosen)


def _incremental(args: argparse.Namespace, work: Path, survey: Path, t0: float) -> None:
    """Steps 1-3: full run, 1 % grown incremental run, run with no new data."""
    night0 = _simulate(args.n, survey)
    print(f"simulated {args.n} objects in {time.perf_counter() - t0:.0f} s", flush=True)
    full, line_full = _reprocess(survey, work / "out")
    print(f"full run:        {full:8.1f} s  {line_full}", flush=True)
    n_grown = _grow(night0, survey / "night-1.parquet", args.fraction)
    inc, line_inc = _reprocess(survey, work / "out")
    print(f"incremental run: {inc:8.1f} s  {line_inc}  ({n_grown} objects got new points)",
          flush=True)
    stages = json.loads((work / "out" / "work" / "last_run.json").read_text())["stage_seconds"]
    print(f"  its stages: {stages}; start-up and exit "
          f"{inc - sum(stages.values()):.1f} s", flush=True)
    again, line_again = _reprocess(survey, work / "out")
    print(f"no new data:     {again:8.1f} s  {line_again}", flush=True)
    print(f"incremental / full = {inc / full:.1%} (target < 5 %)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="objects of the survey")
    ap.add_argument("--fraction", type=float, default=0.01, help="share that gets new points")
    ap.add_argument("--dask-n", type=int, default=20_000,
                    help="objects of the Dask comparison (0: skip)")
    ap.add_argument("--dask-only", action="store_true", help="only step 4")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    import platform

    print(f"CPU: {platform.machine()}, {os.cpu_count()} logical cores; python "
          f"{platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_reprocess.") as tmp:
        work = Path(args.work or tmp)
        survey = work / "survey"
        if args.dask_only:
            args.n = 0
        t0 = time.perf_counter()
        if args.n:
            _incremental(args, work, survey, t0)
        if args.dask_n:
            small = work / "survey_dask"
            _simulate(args.dask_n, small)
            local, _ = _reprocess(small, work / "dask_local_threads")
            dask, _ = _reprocess(small, work / "dask_cluster", "--dask-local", "2")
            import pandas as pd

            a = pd.read_parquet(work / "dask_local_threads" / "predictions.parquet")
            b = pd.read_parquet(work / "dask_cluster" / "predictions.parquet")
            same = a.drop(columns="run_id").equals(b.drop(columns="run_id"))
            for name in ("dask_local_threads", "dask_cluster"):
                st = json.loads((work / name / "work" / "last_run.json").read_text())
                print(f"  {name}: stages {st['stage_seconds']}")
            print(f"\n{args.dask_n} objects from scratch: thread runner {local:.1f} s, "
                  f"--dask-local 2 {dask:.1f} s (speed-up {local / dask:.2f}x); "
                  f"identical predictions: {same}", flush=True)
            print(json.dumps({"threads_s": round(local, 1), "dask_s": round(dask, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
