"""Is the forest at its ceiling? Forest settings and gradient boosting on CRTS, three fold draws.

Usage::

    nice -n 10 python benchmarks/eval_forest_variants_crts.py [--jobs 2] [--seeds 0,1,2]
        [--classes paper7] [--variants base,entropy,...]

Steps: the cached feature table of ``benchmarks/eval_forest_crts.py`` (computed if
missing), then for each fold seed (``models.evaluation.stratified_folds(y, 5, seed)``;
seed 0 gives the folds of every README number) the out-of-fold predictions of
:class:`models.forest.LightCurveForest` with lcpipe's defaults and with one setting changed
at a time, of scikit-learn's ``HistGradientBoostingClassifier`` (500 iterations, learning
rate 0.05, balanced class weights, no early stopping) on the same features, and of the
average of the forest's and the boosting's probabilities. Prints a Markdown table
(accuracy and balanced accuracy per seed, and their mean) and writes it to
``REPORT_DIR/forest_variants.md`` with the raw rows in ``forest_variants.json``.

Issue 13 asks for >= 0.90 accuracy on the 7 classes; this measures whether another forest
setting or a boosted model gets there on more than one draw of the folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: one LightCurveForest setting changed from lcpipe's defaults per row
VARIANTS: dict[str, dict] = {
    "base": {},
    "entropy": {"criterion": "entropy"},
    "trees1000": {"n_estimators": 1000},
    "max_features0.3": {"max_features": 0.3},
    "class_weight_none": {"class_weight": None},
    "min_samples_leaf2": {"min_samples_leaf": 2},
}
BOOSTED = ("hgb", "forest+hgb")


def _boosting():
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=500, learning_rate=0.05,
                                          class_weight="balanced", early_stopping=False,
                                          random_state=0)


def _scores(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    return float(accuracy_score(y, pred)), float(balanced_accuracy_score(y, pred))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--cache", default="/tmp/lcpipe-cache", help="feature-table cache directory")
    ap.add_argument("--out", default=str(ROOT / "lcpipe-out" / "forest_variants_crts"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds, comma-separated")
    ap.add_argument("--classes", default="paper7", help="'paper7' or 'all'")
    ap.add_argument("--variants", default=",".join([*VARIANTS, *BOOSTED]))
    args = ap.parse_args(argv)

    from _crts import cached_features

    from features import FEATURE_SET_VERSION
    from models.evaluation import stratified_folds
    from models.forest import LightCurveForest
    from models.forest_files import load_training_set

    data = Path(args.data)
    feats = cached_features(data, Path(args.cache), args.jobs)
    ts = load_training_set(feats, data / "labels.csv", args.classes)
    X, y = np.asarray(ts.X, dtype=np.float64), np.asarray(ts.y)
    classes = np.unique(y)
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS) - set(BOOSTED))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {[*VARIANTS, *BOOSTED]}")
    seeds = [int(s) for s in args.seeds.split(",")]
    boosted = any(n in BOOSTED for n in names)  # forest+hgb needs both fits
    fits = [n for n in VARIANTS if n in names or (boosted and n == "base")]
    fits += ["hgb"] if boosted else []
    rows = []
    for seed in seeds:
        folds = stratified_folds(y, n_splits=5, seed=seed)
        proba: dict[str, np.ndarray] = {}
        for name in fits:
            t0 = time.perf_counter()
            P = np.zeros((len(y), len(classes)))
            for train, test in folds:
                model = (_boosting() if name == "hgb" else LightCurveForest(
                    **{"n_jobs": args.jobs, "random_state": 0, **VARIANTS[name]}))
                model.fit(X[train], y[train])
                assert list(model.classes_) == list(classes)
                P[test] = model.predict_proba(X[test])
            proba[name] = P
            if name in names:
                acc, bal = _scores(y, classes[P.argmax(1)])
                rows.append({"variant": name, "seed": seed, "accuracy": acc,
                             "balanced_accuracy": bal,
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(rows[-1]), flush=True)
        if "forest+hgb" in names:
            acc, bal = _scores(y, classes[((proba["base"] + proba["hgb"]) / 2).argmax(1)])
            rows.append({"variant": "forest+hgb", "seed": seed, "accuracy": acc,
                         "balanced_accuracy": bal, "seconds": 0.0})
            print(json.dumps(rows[-1]), flush=True)

    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"# Forest settings and boosting on CRTS ({args.classes}, {len(y)} objects, "
             f"feature set {FEATURE_SET_VERSION}, stratified 5-fold CV)", "",
             f"Accuracy / balanced accuracy per fold seed. `python "
             f"benchmarks/eval_forest_variants_crts.py --seeds {args.seeds} --classes "
             f"{args.classes}`", "",
             f"| variant | {head} | mean accuracy | mean balanced |",
             "|---|" + "---:|" * (len(seeds) + 2)]
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        cells = " | ".join(f"{r['accuracy']:.4f} / {r['balanced_accuracy']:.4f}" for r in mine)
        lines.append(f"| {name} | {cells} | {np.mean([r['accuracy'] for r in mine]):.4f} | "
                     f"{np.mean([r['balanced_accuracy'] for r in mine]):.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    from pipeline.io import atomic_path, write_json_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rows, out / "forest_variants.json")
    with atomic_path(out / "forest_variants.md") as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
