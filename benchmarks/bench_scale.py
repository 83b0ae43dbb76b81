"""Scale benchmark: ``lcpipe dmdt`` on a million simulated light curves, peak memory vs 2 GB.

Steps, each timed:

1. ``lcpipe simulate -n N`` into a work directory (a child process; reused when
   the directory already holds a simulation with the same N and seed).
2. ``pipeline.dmdt.dmdt_file`` (what ``lcpipe dmdt`` runs) on all N light curves
   in a child process; its peak resident memory comes from ``os.wait4``
   (the kernel's ``ru_maxrss`` of that process) and is compared with the 2 GB target.
3. Anchor: light-curve's ``DmDt.points_many`` on the first ``--anchor-n`` light
   curves with the same (Mahabal et al. 2017) edges, against lcpipe's
   ``compute_dmdt`` on the same light curves; the pair counts must agree.

Run ``python benchmarks/bench_scale.py`` (N = 1,000,000: about 200 million rows,
~4 GB of Parquet, allow tens of minutes on 2 cores) or ``--n 20000`` for a quick check.
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

import numpy as np

TARGET_BYTES = 2 * 1024**3

_DMDT_CHILD = """
import json, sys
from pipeline.dmdt import dmdt_file
summary = dmdt_file(sys.argv[1], sys.argv[2], n_jobs=int(sys.argv[3]))
print(json.dumps({k: summary[k] for k in ("objects", "pairs", "shape")}))
"""


def _run_child(cmd: list[str]) -> tuple[float, float, int, str]:
    """Run ``cmd``; return (wall s, CPU s, peak RSS bytes of that process, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd)}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss * 1024, out  # ru_maxrss is in KiB on Linux


def _existing(lc_path: Path, n: int, seed: int) -> bool:
    from pipeline.errors import InputError
    from pipeline.io import read_json_metadata
    from pipeline.simulate import METADATA_KEY

    if not lc_path.exists() or not (lc_path.parent / "labels.csv").exists():
        return False
    try:
        meta = read_json_metadata(lc_path, METADATA_KEY)
    except InputError:
        return False
    return meta.get("n") == n and meta.get("seed") == seed


def _anchor(n_anchor: int, seed: int, jobs: int) -> dict[str, float]:
    """light-curve DmDt vs lcpipe compute_dmdt on the first n_anchor simulated objects."""
    import light_curve as lc
    import numba

    from pipeline.dmdt import compute_dmdt, get_bins
    from pipeline.lightcurves import LightCurves
    from pipeline.simulate import simulate_lightcurves

    # the first objects of the survey file, regenerated (the simulation is deterministic)
    lcs = LightCurves.from_frame(simulate_lightcurves(n_anchor, seed=seed).lightcurves)
    bins = get_bins("mahabal2017")
    dmdt = lc.DmDt(dt=np.asarray(bins.dt_edges), dm=np.asarray(bins.dm_edges),
                   dt_type="asis", dm_type="asis", norm=[], n_jobs=jobs)
    series = [(t, m) for _, _, t, m, _ in lcs]
    numba.set_num_threads(min(jobs, numba.config.NUMBA_NUM_THREADS))
    # warm up both (numba compilation, thread pools)
    dmdt.points_many(series[:10], sorted=True)
    compute_dmdt(LightCurves.from_frame(
        simulate_lightcurves(3, seed=seed).lightcurves), bins, norm="counts")

    t0, c0 = time.perf_counter(), time.process_time()
    anchor = dmdt.points_many(series, sorted=True)  # (N, n_dt, n_dm) float
    t_anchor, c_anchor = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ours = compute_dmdt(lcs, bins, norm="counts")
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    ours_counts = ours.images[..., 0]  # (N, n_dm, n_dt), one band
    anchor_counts = np.transpose(anchor, (0, 2, 1)).astype(np.int64)
    if not np.array_equal(ours_counts, anchor_counts):
        bad = np.flatnonzero((ours_counts != anchor_counts).any(axis=(1, 2)))
        raise SystemExit(f"dm-dt counts differ from light-curve for {len(bad)} objects, "
                         f"first {ours.object_id[bad[0]]}")
    return {"n": len(series), "anchor_s": t_anchor, "lcpipe_s": t_ours,
            "anchor_cpu": c_anchor, "lcpipe_cpu": c_ours, "pairs": float(ours.n_pairs.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="light curves (default 1e6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the simulation and dm-dt output go (default: a fixed "
                             "directory in the system temp dir, reused between runs)")
    parser.add_argument("--fresh", action="store_true", help="simulate even if present")
    parser.add_argument("--jobs", type=int, default=1,
                        help="threads for dm-dt counting, lcpipe and anchor (default 1)")
    parser.add_argument("--anchor-n", type=int, default=2000,
                        help="light curves in the light-curve DmDt anchor (default 2000)")
    args = parser.parse_args(argv)

    default = Path(tempfile.gettempdir()) / f"lcpipe-bench-scale-n{args.n}-s{args.seed}"
    workdir = args.workdir or default
    workdir.mkdir(parents=True, exist_ok=True)
    lc_path = workdir / "lightcurves.parquet"
    rows = []

    if args.fresh or not _existing(lc_path, args.n, args.seed):
        wall, cpu, rss, _ = _run_child([sys.executable, "-m", "flows.cli", "simulate",
                                        "-n", str(args.n), "-o", str(workdir),
                                        "--seed", str(args.seed)])
        rows.append(("lcpipe simulate (child)", args.n, wall, cpu, rss))
    else:
        print(f"reusing {lc_path}")
    import pyarrow.parquet as pq

    n_rows = pq.ParquetFile(lc_path).metadata.num_rows

    out = workdir / "dmdt.parquet"
    wall, cpu, rss, text = _run_child([sys.executable, "-c", _DMDT_CHILD, str(lc_path),
                                       str(out), str(args.jobs)])
    summary = json.loads(text.strip().splitlines()[-1])
    if summary["objects"] != args.n:
        raise SystemExit(f"dm-dt wrote {summary['objects']} images for {args.n} light curves")
    rows.append(("lcpipe dmdt_file (child, streaming)", args.n, wall, cpu, rss))
    dmdt_rss = rss

    anc = _anchor(min(args.anchor_n, args.n), args.seed, args.jobs)
    rows.append(("anchor: light-curve DmDt.points_many", anc["n"], anc["anchor_s"],
                 anc["anchor_cpu"], None))
    rows.append(("lcpipe compute_dmdt (same subsample)", anc["n"], anc["lcpipe_s"],
                 anc["lcpipe_cpu"], None))

    print(f"\n{args.n:,} light curves, {n_rows:,} rows, {summary['pairs']:,} pairs, "
          f"image {summary['shape']}; CPU cores {os.cpu_count()}, threads {args.jobs}")
    print("(wall time depends on the machine's load; CPU s is the process's user + system)")
    print(f"{'step':40s} {'LC':>10s} {'wall s':>9s} {'CPU s':>9s} {'LC/s':>10s} "
          f"{'LC/CPU s':>10s} {'peak RSS':>10s}")
    for name, n, sec, cpu, peak in rows:
        mem = "" if peak is None else f"{peak / 1024**2:,.0f} MB"
        print(f"{name:40s} {n:>10,d} {sec:9.2f} {cpu:9.2f} {n / sec:10,.0f} "
              f"{n / max(cpu, 1e-9):10,.0f} {mem:>10s}")
    ratio = anc["anchor_s"] / anc["lcpipe_s"]
    ratio_cpu = anc["anchor_cpu"] / anc["lcpipe_cpu"]
    print(f"speed ratio lcpipe / light-curve: {ratio:.2f}x wall, {ratio_cpu:.2f}x CPU "
          "(pair counts identical on the subsample)")
    verdict = "within" if dmdt_rss <= TARGET_BYTES else "ABOVE"
    print(f"dm-dt peak memory {dmdt_rss / 1024**3:.2f} GB: {verdict} the 2 GB target")
    return 0 if dmdt_rss <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
