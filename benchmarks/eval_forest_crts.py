"""Random-forest baseline on the real CRTS training set: one command, all numbers.

Usage::

    python benchmarks/eval_forest_crts.py [--jobs 2] [--trees 500] [--importances]

Steps: features of ``../shared/data/crts/lightcurves.parquet`` (``lcpipe
features``; cached by feature-set version under ``--cache``), then stratified
5-fold CV (``models.evaluation.stratified_folds``, seed 0, the folds every
lcpipe classifier uses) of :class:`models.forest.LightCurveForest` for the 7
classes of Mahabal et al. (2017) and for all 16 classes. Writes
``REPORT_DIR/forest_{paper7,all}.json`` (+ out-of-fold predictions) and
``REPORT_DIR/forest_crts.md``, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--cache", default="/tmp/lcpipe-cache", help="feature-table cache directory")
    ap.add_argument("--out", default=str(ROOT / "lcpipe-out" / "forest_crts"),
                    help="report directory")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--importances", action="store_true",
                    help="permutation importances on held-out folds (7 classes; slow)")
    ap.add_argument("--refresh", action="store_true", help="recompute the features")
    args = ap.parse_args(argv)

    from features import FEATURE_SET_VERSION, extract_features_file
    from models.evaluation import format_report
    from models.forest_files import cv_forest_file
    from pipeline.contract import ColumnMap

    data = Path(args.data)
    feats = Path(args.cache) / f"crts_features_v{FEATURE_SET_VERSION}.parquet"
    lines = ["# Random-forest baseline on CRTS (stratified 5-fold CV)", ""]
    if args.refresh or not feats.exists():
        s = extract_features_file(data / "lightcurves.parquet", feats, ColumnMap.from_spec("crts"),
                                  n_jobs=args.jobs)
        lines.append(f"Features: {s['n_objects']} light curves in {s['seconds']:.0f} s "
                     f"({s['lc_per_second']} LC/s, {args.jobs} processes), "
                     f"{s['n_values_nan']} NaN values.")
    else:
        lines.append(f"Features: cached {feats}.")
    out = Path(args.out)
    params = {"n_estimators": args.trees, "n_jobs": args.jobs, "random_state": 0}
    summary = []
    for classes in ("paper7", "all"):
        t0 = time.perf_counter()
        r = cv_forest_file(feats, data / "labels.csv", out / f"forest_{classes}.json",
                           classes=classes, params=params,
                           importances=args.importances and classes == "paper7")
        lines += ["", format_report(r, title=f"{classes}: {len(r['classes'])} classes, "
                                             f"{r['n_features']} features, {args.trees} trees "
                                             f"({time.perf_counter() - t0:.0f} s)")]
        if "permutation_importances" in r:
            lines += ["Top 15 permutation importances (balanced-accuracy drop, held-out folds):",
                      ""]
            lines += [f"- `{e['feature']}` {e['mean']:.4f} +- {e['std']:.4f}"
                      for e in r["permutation_importances"][:15]]
        summary.append((classes, len(r["classes"]), r["n"], r["accuracy"],
                        r["balanced_accuracy"], r["macro_f1"]))
    lines += ["", "| classes | n classes | n objects | accuracy | balanced accuracy | macro-F1 |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {c} | {k} | {n} | {a:.3f} | {b:.3f} | {f:.3f} |"
              for c, k, n, a, b, f in summary]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.io import atomic_path

    with atomic_path(out / "forest_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
