"""Ingest benchmark: reading and cleaning light-curve tables, and ``lcpipe dmdt`` end to end.

Data: 1,500 simulated light curves of 1,000 points (1.5 M rows, one band) written grouped
by object and time-ordered, the same rows shuffled, and the shared CRTS file (1.65 M raw
rows, when ``../shared`` is there). For each, best of ``--repeat`` runs in this process:

- floor: read the object ids (as dictionary codes) and times, check that rows are grouped
  by object and time-ordered;
- pyarrow: ``read_table`` + ``sort_by([object_id, t])`` (sorting only, no cleaning);
- pandas anchor: lcpipe's first cleaning (pandas ``duplicated``/``groupby`` and a global
  lexsort; kept as ``tests/pipeline/reference_clean.py``) after the same read;
- lcpipe: read + clean (``read_table`` + ``clean_frame``; the clean rows in memory), and
  ``lcpipe validate`` (``validate_file``: also writes the clean table and the quarantine).

Then ``lcpipe dmdt`` (``dmdt_file``, 2 threads, Mahabal et al. 2017 bins) against
light-curve's ``DmDt.points_many`` (2 threads) with its Parquet read and a pandas groupby,
on the grouped set, and where lcpipe's time goes (read, clean, group, kernel, write).

Run: ``python benchmarks/bench_ingest.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CRTS = ROOT.parent / "shared" / "data" / "crts" / "lightcurves.parquet"

from bench_dmdt import best  # noqa: E402 - benchmarks/ is on the path when run as a script


def make_sets(folder: Path, n_lc: int = 1500, n_pts: int = 1000, seed: int = 0
              ) -> dict[str, Path]:
    """The grouped and the shuffled 1.5 M-row sets (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.array([f"obj{i:05d}" for i in range(n_lc)], dtype=object), n_pts)
    t = (55000 + np.sort(rng.uniform(0, 3000, (n_lc, n_pts)), axis=1)).ravel()
    n = len(t)
    table = pa.table({"object_id": pa.array(ids, pa.string()),
                      "band": pa.array(np.full(n, "r", dtype=object), pa.string()),
                      "t": t, "mag": rng.normal(17, 0.5, n), "mag_err": rng.uniform(0.02, 0.2, n)})
    out = {"grouped": folder / "grouped.parquet", "shuffled": folder / "shuffled.parquet"}
    pq.write_table(table, out["grouped"])
    pq.write_table(table.take(rng.permutation(n)), out["shuffled"])
    return out


def floor(path: Path) -> bool:
    """Read ids (dictionary codes) and times; True when grouped by object and time-ordered."""
    import pyarrow.parquet as pq

    tab = pq.read_table(path, columns=["object_id", "t"], read_dictionary=["object_id"])
    ids = tab.column("object_id").unify_dictionaries()
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in ids.chunks])
    t = tab.column("t").to_numpy()
    new = np.r_[True, codes[1:] != codes[:-1]]
    grouped = len(np.unique(codes[new])) == int(new.sum())
    return bool(grouped and (np.diff(t)[~new[1:]] >= 0).all())


def pyarrow_sort(path: Path) -> None:
    import pyarrow.parquet as pq

    pq.read_table(path).sort_by([("object_id", "ascending"), ("t", "ascending")])


def light_curve_dmdt(path: Path, n_jobs: int) -> int:
    """light-curve's pair counts, its user's way: pandas read, groupby, points_many."""
    import light_curve
    import pandas as pd

    from pipeline.dmdt import BINS_PRESETS

    grid = BINS_PRESETS["mahabal2017"]
    dmdt = light_curve.DmDt(dt=np.array(grid.dt_edges), dm=np.array(grid.dm_edges),
                            dt_type="asis", dm_type="asis", n_jobs=n_jobs)
    df = pd.read_parquet(path, columns=["object_id", "t", "mag"])
    series = [(g["t"].to_numpy(), g["mag"].to_numpy())
              for _, g in df.sort_values(["object_id", "t"]).groupby("object_id", sort=False)]
    return len(dmdt.points_many(series, sorted=True))


def dmdt_stages(path: Path, out: Path) -> dict[str, float]:
    """lcpipe dmdt's work split by stage (one pass each, in sequence)."""
    from pipeline.contract import ColumnMap, iter_object_chunks
    from pipeline.dmdt import BINS_PRESETS, compute_dmdt
    from pipeline.validate import clean_frame

    grid = BINS_PRESETS["mahabal2017"]
    sec: dict[str, float] = {}
    t0 = time.perf_counter()
    frames = list(iter_object_chunks(path, ColumnMap()))
    sec["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = [clean_frame(f) for f in frames]
    sec["clean"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lcs = [r.series for r in results]
    sec["group"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = [compute_dmdt(x, grid, "paper") for x in lcs]
    sec["kernel"] = time.perf_counter() - t0
    import pyarrow as pa

    from pipeline.io import write_parquet_atomic

    t0 = time.perf_counter()
    flat = np.concatenate([im.images.reshape(len(im), -1) for im in images])
    ids = np.concatenate([im.object_id for im in images])
    write_parquet_atomic(pa.table({"object_id": pa.array(ids, pa.string()),
                                   "image": pa.FixedSizeListArray.from_arrays(
                                       pa.array(flat.ravel()), flat.shape[1])}), out)
    sec["write"] = time.perf_counter() - t0
    return sec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-jobs", type=int, default=2, help="threads of both dm-dt codes")
    args = ap.parse_args(argv)
    import numba

    from pipeline.contract import read_table
    from pipeline.dmdt import dmdt_file
    from pipeline.validate import clean_frame, validate_file
    from tests.pipeline.reference_clean import reference_clean_frame

    print(f"CPU: {platform.machine()}, {os.cpu_count()} logical cores; numba threads "
          f"{numba.config.NUMBA_NUM_THREADS}; best of {args.repeat}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_ingest.") as tmp:
        work = Path(tmp)
        sets = make_sets(work)
        if CRTS.exists():
            sets["crts"] = CRTS
        clean_frame(read_table(sets["grouped"]))  # compile / load the kernels
        hdr = f"{'set':<9} {'what':<42} {'s':>7} {'M rows/s':>9} {'x pandas':>9}"
        print(hdr + "\n" + "-" * len(hdr))
        for name, path in sets.items():
            n = len(read_table(path))
            rows = [
                ("floor: read ids + t, check order", best(lambda p=path: floor(p), args.repeat)),
                ("pyarrow read_table + sort_by", best(lambda p=path: pyarrow_sort(p),
                                                      args.repeat)),
                ("pandas anchor: read + first cleaning",
                 best(lambda p=path: reference_clean_frame(read_table(p)), args.repeat)),
                ("lcpipe read + clean", best(lambda p=path: clean_frame(read_table(p)),
                                             args.repeat)),
                ("lcpipe validate (+ write outputs)",
                 best(lambda p=path: validate_file(p, work / "validate"), args.repeat)),
            ]
            anchor = rows[2][1]
            for what, sec in rows:
                print(f"{name:<9} {what:<42} {sec:>7.3f} {n / sec / 1e6:>9.2f} "
                      f"{anchor / sec:>9.1f}", flush=True)
        g = sets["grouped"]
        out = work / "dmdt.parquet"
        dmdt_file(g, out, n_jobs=args.n_jobs)  # warm
        ours = best(lambda: dmdt_file(g, out, n_jobs=args.n_jobs), args.repeat)
        theirs = best(lambda: light_curve_dmdt(g, args.n_jobs), args.repeat)
        print(f"\ndm-dt end to end, 1,500 light curves x 1,000 points, {args.n_jobs} threads: "
              f"lcpipe dmdt {ours:.2f} s, light-curve (read + groupby + points_many) "
              f"{theirs:.2f} s: {theirs / ours:.1f}x (target >= 6x)")
        numba.set_num_threads(args.n_jobs)
        st = dmdt_stages(g, work / "stages.parquet")
        total = sum(st.values())
        print("lcpipe dmdt by stage: " + ", ".join(
            f"{k} {v:.3f} s ({v / total:.0%})" for k, v in st.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
