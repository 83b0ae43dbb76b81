"""Real-data result: the hybrid network (CNN branch + feature branch) under the same 5-fold CV.

    nice -n 10 python benchmarks/eval_hybrid_crts.py [--classes paper7,all] [--seeds 0,1]
        [-o lcpipe-out/hybrid_crts] [--folds 5]

The forest and the hybrid (:class:`models.hybrid.HybridCNN`, image branch ``vgg6`` on the
``fine`` representation, the ``best`` CNN preset) run through the one CV loop
(:func:`models.evaluation.cross_validate`) on the folds every lcpipe classifier uses
(``stratified_folds(y, 5, seed=0)`` on the labelled objects sorted by id, as
``benchmarks/eval_forest_crts.py`` and ``eval_cnn_crts.py``); the hybrid once per network
seed (mean and spread over seeds; with several seeds also their ensemble, the mean of
their probabilities, ``_seeds``), the forest once (its anchor in the same run), and the
stack of the two (:class:`models.stacking.StackedClassifier` on their out-of-fold
probabilities, cross-validated on the same folds as ``eval_stack_crts.py`` does). Features
are cached like ``eval_forest_crts.py`` (``--cache``). Prints accuracy, balanced accuracy,
macro-F1 and log loss per model and class set, and writes ``OUT/hybrid_crts.md`` and the
out-of-fold predictions ``OUT/hybrid_{classes}_seed{k}.oof.parquet``. The hybrid trains
without class weights (lcpipe's default); ``--class-weight balanced`` trains it with the capped
balanced weights (the output names gain ``_weighted``). ``--reuse`` reads the forest's and
the hybrid's out-of-fold predictions back from ``OUT`` where an earlier run wrote them (same
folds, checked) and recomputes the rest (the stacks, the seed ensemble): seconds instead of
about 30 minutes; their fit times then show as ``-``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--cache", default="/tmp/lcpipe-cache")
    ap.add_argument("-o", "--out", default=str(ROOT / "lcpipe-out" / "hybrid_crts"))
    ap.add_argument("--classes", default="paper7,all")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="read back the out-of-fold predictions an earlier run wrote to OUT")
    ap.add_argument("--class-weight", choices=["balanced", "none"], default="none",
                    help="the hybrid's class weights ('none', the default: every object "
                    "counts the same; 'balanced': the output names gain '_weighted')")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "lightcurves.parquet").exists():
        print(f"CRTS data not found under {data}", file=sys.stderr)
        return 2

    from _crts import cached_features
    from sklearn.metrics import log_loss

    from models.cnn import class_weight_from_name, tensorflow_environment
    from models.evaluation import (
        OOFResult,
        cross_validate,
        metrics_report,
        stratified_folds,
    )
    from models.forest import LightCurveForest
    from models.forest_files import load_training_set
    from models.hybrid import HybridCNN, hybrid_inputs
    from models.predictions import prediction_frame, read_predictions, write_predictions
    from models.representations import lightcurves_to_inputs
    from models.stacking import StackedClassifier, stack_inputs
    from pipeline.contract import ColumnMap
    from pipeline.io import atomic_path
    from pipeline.lightcurves import read_lightcurves

    tensorflow_environment()
    feats = cached_features(data, Path(args.cache), args.jobs)
    lcs = read_lightcurves(data / "lightcurves.parquet", ColumnMap.from_spec("crts"))
    img_ids, images, _ = lightcurves_to_inputs(lcs, "fine")
    img_ids = img_ids.astype(str)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    class_weight = class_weight_from_name(args.class_weight)
    tag = "_weighted" if class_weight else ""
    lines = [f"# Hybrid network vs forest on CRTS (stratified {args.folds}-fold CV)", ""]
    table = ["| classes | model | seed | accuracy | balanced accuracy | macro-F1 | log loss "
             "| fit s/fold |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for classes in args.classes.split(","):
        ts = load_training_set(feats, data / "labels.csv", classes)
        order = np.argsort(ts.object_id, kind="stable")
        ids, y = ts.object_id[order], ts.y[order]
        F = ts.X.to_numpy(np.float64)[order]
        pos = {o: i for i, o in enumerate(img_ids)}
        X_img = images[[pos[o] for o in ids]]
        folds = stratified_folds(y, args.folds, seed=0)

        def reused(name: str, seed: int, *, classes=classes, ids=ids, y=y, folds=folds):
            """The OOFResult an earlier run wrote for (name, seed), or None."""
            path = out / f"{name}_{classes}_seed{seed}.oof.parquet"
            if not (args.reuse and path.exists()):
                return None
            frame, _ = read_predictions(path)
            frame = frame.sort_values("object_id", kind="stable")
            fold = frame["fold"].to_numpy(np.int64)
            if not (np.array_equal(frame["object_id"].to_numpy(str), ids)
                    and np.array_equal(frame["true_class"].to_numpy(str), y)
                    and all(np.all(fold[te] == k) for k, (_, te) in enumerate(folds))):
                raise SystemExit(f"{path}: other objects, labels or folds than this run")
            cls = np.unique(y)
            proba = frame[[f"prob_{c}" for c in cls]].to_numpy(np.float64)
            return OOFResult(classes=cls, y_true=y, y_pred=cls[proba.argmax(axis=1)],
                             proba=proba, fold=fold)

        def score(oof, name: str, seed: int | str, seconds: float | None, *, classes=classes,
                  ids=ids, y=y, folds=folds) -> None:
            rep = metrics_report(y, oof.y_pred, oof.classes)
            p = np.clip(oof.proba, 1e-15, 1)  # float32 network outputs sum to 1 to ~1e-7
            ll = log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(oof.classes))
            table.append(f"| {classes} | {name} | {seed} | {rep['accuracy']:.3f} | "
                         f"{rep['balanced_accuracy']:.3f} | {rep['macro_f1']:.3f} | {ll:.3f} "
                         f"| {'-' if seconds is None else f'{seconds / len(folds):.0f}'} |")
            print(table[-1], flush=True)
            if seconds is None:  # read back from this very file: not rewritten
                return
            write_predictions(prediction_frame(ids, name, list(oof.classes), oof.proba,
                                               oof.y_pred, run_id=f"eval-{name}",
                                               split="cv", fold=oof.fold, true_class=y),
                              out / f"{name}_{classes}_seed{seed}.oof.parquet")

        t0 = time.perf_counter()
        forest = reused("forest", 0)
        if forest is None:
            forest = cross_validate(LightCurveForest(n_estimators=500, n_jobs=args.jobs,
                                                     random_state=0), F, y, folds)
        score(forest, "forest", 0, time.perf_counter() - t0 if forest.fit_seconds else None)
        X = hybrid_inputs(X_img, F)
        seed_probas = []
        for seed in seeds:
            t0 = time.perf_counter()
            oof = reused(f"hybrid{tag}", seed)
            if oof is None:
                oof = cross_validate(HybridCNN(arch="vgg6", epochs=args.epochs,
                                               random_state=seed, class_weight=class_weight),
                                     X, y, folds,
                                     log=lambda line: print(line, file=sys.stderr, flush=True))
            score(oof, f"hybrid{tag}", seed,
                  time.perf_counter() - t0 if oof.fit_seconds else None)
            seed_probas.append(oof.proba)
            # the stack of the forest and the hybrid, nested on the same folds
            t0 = time.perf_counter()
            st = cross_validate(StackedClassifier(base_models=["forest", "hybrid"]),
                                stack_inputs([forest.proba, oof.proba]), y, folds)
            score(st, f"stack_forest_hybrid{tag}", seed, time.perf_counter() - t0)
        if len(seeds) > 1:
            # the seed ensemble: the mean of the seeds' out-of-fold probabilities (every
            # seed's network saw the same training objects in a fold), and its stack
            mean = np.mean(seed_probas, axis=0)
            ens = replace(oof, proba=mean, y_pred=oof.classes[mean.argmax(axis=1)],
                          fit_seconds=[])
            seed_tag = "+".join(map(str, seeds))
            score(ens, f"hybrid{tag}_seeds", seed_tag, 0.0)
            st = cross_validate(StackedClassifier(base_models=["forest", "hybrid"]),
                                stack_inputs([forest.proba, mean]), y, folds)
            score(st, f"stack_forest_hybrid{tag}_seeds", seed_tag, 0.0)
    text = "\n".join(lines + table) + "\n"
    with atomic_path(out / f"hybrid_crts{tag}.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
