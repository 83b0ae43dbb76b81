"""Real-data result: stratified 5-fold CV of the CNNs on the shared CRTS training set.

    nice -n 10 python benchmarks/eval_cnn_crts.py [-o lcpipe-out/cnn_crts] [--quick]

Runs :func:`models.cnn_workflows.cross_validate_cnn` (the folds of
``models.evaluation.stratified_folds(y, 5, seed=0)`` on objects sorted by
object_id, as every lcpipe classifier) twice:

* the 7 classes of Mahabal et al. (2017): representations ``paper`` and
  ``fine`` x architectures ``mahabal2017`` and ``vgg6``;
* all 16 classes: the faithful ``paper/mahabal2017``, ``fine/mahabal2017``
  and the best ``fine/vgg6``.

Each writes ``cv_results.md``, ``cv_results.json`` and
``oof_predictions.parquet`` under ``OUT/paper7`` and ``OUT/all``; the
summary tables are printed. About 20 min on 2 idle cores (session 4); ``--quick`` runs 2 folds
of the faithful and best runs only (a smoke test of the command, not a result).
Equivalent CLI: ``lcpipe cnn cv LC --labels L --classes paper7 --arch mahabal2017,vgg6
--representation paper,fine -o OUT/paper7``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRTS = ROOT.parent / "shared" / "data" / "crts"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "lcpipe-out" / "cnn_crts"))
    ap.add_argument("--quick", action="store_true", help="2 folds, faithful and best only")
    args = ap.parse_args()
    if not (CRTS / "lightcurves.parquet").exists():
        print(f"CRTS data not found under {CRTS}", file=sys.stderr)
        return 2

    from models.cnn_workflows import CVRun, cross_validate_cnn, cv_summary_table

    faithful, best = CVRun("paper", "mahabal2017"), CVRun("fine", "vgg6")
    plan = {
        "paper7": [faithful, CVRun("paper", "vgg6"), CVRun("fine", "mahabal2017"), best],
        "all": [faithful, CVRun("fine", "mahabal2017"), best],
    }
    n_splits = 5
    if args.quick:
        plan = {k: [faithful, best] for k in plan}
        n_splits = 2
    for classes, runs in plan.items():
        out = Path(args.output) / classes
        s = cross_validate_cnn(CRTS / "lightcurves.parquet", CRTS / "labels.csv", out, runs,
                               classes=classes, n_splits=n_splits,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"\n## {classes}: {len(s['classes'])} classes, {s['n_objects']} objects, "
              f"{n_splits}-fold CV\n")
        print(cv_summary_table(s))
        print(f"\n-> {out}/cv_results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
