"""Real-data check of the "unknown" answer: leave one class out of training, see it come back.

    python benchmarks/eval_unknown_crts.py [--jobs 2] [--trees 500] [--accuracy 0.95]

For each of the 7 classes of Mahabal et al. (2017) on the shared CRTS set (features cached
by ``benchmarks/eval_forest_crts.py``): the forest is cross-validated (5 folds, seed 0)
on the other 6 classes, its threshold is chosen on those out-of-fold predictions
(:func:`models.evaluation.choose_threshold`, the answered objects reaching ``--accuracy``),
then a forest fitted on all 6 classes classifies the objects of the held-out class, which
it has never seen: the fraction below the threshold is the fraction that comes back
"unknown". Beside it: the coverage and accuracy of the known classes out of fold at that
threshold. Prints a Markdown table and writes it to ``OUT/unknown_crts.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--cache", default="/tmp/lcpipe-cache", help="feature-table cache directory")
    ap.add_argument("-o", "--out", default=str(ROOT / "lcpipe-out" / "unknown_crts"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--accuracy", type=float, default=0.95)
    args = ap.parse_args(argv)

    from _crts import cached_features

    from models.evaluation import choose_threshold
    from models.forest import LightCurveForest, cross_validate_forest
    from models.forest_files import load_training_set
    from pipeline.io import atomic_path

    data = Path(args.data)
    feats = cached_features(data, Path(args.cache), args.jobs)
    ts = load_training_set(feats, data / "labels.csv", "paper7")
    X, y = ts.X.to_numpy(), np.asarray(ts.y).astype(str)
    params = {"n_estimators": args.trees, "n_jobs": args.jobs, "random_state": 0}
    lines = [f"# 'unknown' on CRTS: one class left out of training (forest, {args.trees} trees, "
             f"threshold for {args.accuracy:.2f} accuracy on the CV of the other 6)", "",
             "| class left out | its objects | threshold | unknown | known classes: "
             "answered (CV) | accuracy answered (CV) | unknown (CV) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    t0 = time.perf_counter()
    totals = []
    for held in sorted(set(y)):
        keep = y != held
        cv = cross_validate_forest(X[keep], y[keep], params=params)
        oof = cv["oof"]
        tau = choose_threshold(y[keep], oof.proba, oof.classes, args.accuracy)
        top = oof.proba.max(axis=1)
        answered = top >= tau
        right = np.asarray(oof.classes)[oof.proba.argmax(axis=1)] == y[keep]
        model = LightCurveForest(**params).fit(X[keep], y[keep])
        unknown = model.predict_proba(X[~keep]).max(axis=1) < tau
        totals.append((int((~keep).sum()), int(unknown.sum())))
        lines.append(f"| {held} | {int((~keep).sum())} | {tau:.3f} | {unknown.mean():.3f} | "
                     f"{answered.mean():.3f} | {right[answered].mean():.3f} | "
                     f"{1 - answered.mean():.3f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    n, u = np.sum(totals, axis=0)
    lines += ["", f"All held-out objects: {u} of {n} ({u / n:.3f}) came back unknown; "
              f"{time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(args.out) / "unknown_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
