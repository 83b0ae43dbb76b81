"""Robustness to the error bars: 1,000 CRTS light curves, K = 20 redraws, the shipped bundle.

    python benchmarks/bench_robustness.py [--objects 1000] [--draws 20] [--jobs 2]

Times :func:`models.robustness.error_robustness` (K + 1 classifications of the objects, as
``lcpipe robustness`` runs them) and, in the same run as its anchor, one classification of
the same objects (:func:`models.bundle.classify_chunk`); prints both, their ratio, and the
mean stability per model. Needs the shared CRTS set (../shared/data/crts).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CRTS = ROOT.parent / "shared" / "data" / "crts" / "lightcurves.parquet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if not CRTS.exists():
        print(f"{CRTS}: not found", file=sys.stderr)
        return 2

    import pyarrow.parquet as pq

    from models.bundle import classify_chunk
    from models.robustness import error_robustness
    from pipeline.contract import ColumnMap
    from pipeline.lightcurves import LightCurves, read_lightcurves
    from pipeline.validate import series_to_arrow

    lcs = read_lightcurves(CRTS, ColumnMap.from_spec("crts"))
    keep = np.isin(lcs.object_id, np.unique(lcs.object_id)[: args.objects])
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1])
                           for i in np.flatnonzero(keep)])
    sizes = np.diff(lcs.offsets)[keep]
    lcs = LightCurves(object_id=lcs.object_id[keep], band=lcs.band[keep],
                      offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64), t=lcs.t[rows],
                      mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])
    with tempfile.TemporaryDirectory() as tmp:
        chunk = Path(tmp) / "chunk.parquet"
        pq.write_table(series_to_arrow(lcs), chunk)
        classify_chunk("crts", chunk, Path(tmp) / "warm", "bench", n_jobs=args.jobs)  # loads
        t0 = time.perf_counter()
        classify_chunk("crts", chunk, Path(tmp) / "anchor", "bench", n_jobs=args.jobs)
        anchor = time.perf_counter() - t0
        t0 = time.perf_counter()
        objects, _, _ = error_robustness("crts", lcs, Path(tmp) / "rob", k=args.draws,
                                         n_jobs=args.jobs)
        total = time.perf_counter() - t0
    print(f"{args.objects} objects, K = {args.draws}, {args.jobs} processes")
    print(f"anchor: one classification {anchor:.1f} s")
    print(f"robustness: {total:.1f} s = {total / anchor:.1f} x the anchor "
          f"(K + 1 = {args.draws + 1} classifications)")
    for model, g in objects.groupby("model", sort=True):
        print(f"  {model}: mean stable fraction {g['stable_fraction'].mean():.3f}, "
              f"never changed {(g['stable_fraction'] == 1).mean():.3f}, "
              f"median probability spread {g['probability_std'].median():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
