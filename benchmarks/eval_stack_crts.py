"""Real-data result: the stacked ensemble of the forest and the CNN under the same 5-fold CV.

    python benchmarks/eval_stack_crts.py [--forest DIR] [--cnn DIR] [-o OUT]

Reads the out-of-fold probabilities written by ``benchmarks/eval_forest_crts.py``
(``DIR/forest_{paper7,all}.oof.parquet``) and ``benchmarks/eval_cnn_crts.py``
(``DIR/{paper7,all}/oof_predictions.parquet``, run ``fine/vgg6``: the ``best`` preset);
run those first. Both use ``models.evaluation.stratified_folds(y, 5, seed=0)`` on objects
sorted by id; this script checks that objects, labels and folds agree.

The stack (:class:`models.stacking.StackedClassifier`) is cross-validated on those
out-of-fold probabilities with the same folds: the meta-model of fold k is fitted on
the other folds' out-of-fold probabilities and predicts fold k. (The base models that
gave fold j's probabilities saw fold k in training, the usual second-order leak of
stacking by CV; no object's own label reaches its own prediction.)

Prints, per class set, accuracy, balanced accuracy, macro-F1, log loss and expected
calibration error (10 bins) of the forest, the CNN and the stack, and writes
``OUT/stack_crts.md`` and ``OUT/stack_{paper7,all}.oof.parquet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CNN_RUN = "fine/vgg6"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forest", default=str(ROOT / "lcpipe-out" / "forest_crts"))
    ap.add_argument("--cnn", default=str(ROOT / "lcpipe-out" / "cnn_crts"))
    ap.add_argument("-o", "--out", default=str(ROOT / "lcpipe-out" / "stack_crts"))
    ap.add_argument("--classes", default="paper7,all")
    args = ap.parse_args(argv)

    from sklearn.metrics import log_loss

    from models.evaluation import cross_validate, metrics_report, reliability
    from models.predictions import prediction_frame, read_predictions, write_predictions
    from models.stacking import StackedClassifier, stack_inputs
    from pipeline.io import atomic_path

    lines = ["# Stacked forest + CNN on CRTS (stratified 5-fold CV, out-of-fold)", "",
             "| classes | model | accuracy | balanced accuracy | macro-F1 | log loss | ECE |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for cs in args.classes.split(","):
        f_path = Path(args.forest) / f"forest_{cs}.oof.parquet"
        c_path = Path(args.cnn) / cs / "oof_predictions.parquet"
        for p in (f_path, c_path):
            if not p.exists():
                print(f"{p}: not found; run benchmarks/eval_forest_crts.py and "
                      "benchmarks/eval_cnn_crts.py first", file=sys.stderr)
                return 2
        forest, _ = read_predictions(f_path)
        cnn, _ = read_predictions(c_path)
        cnn = cnn[cnn["model"] == CNN_RUN]
        forest = forest.sort_values("object_id").reset_index(drop=True)
        cnn = cnn.sort_values("object_id").reset_index(drop=True)
        for col in ("object_id", "true_class", "fold"):
            if not np.array_equal(forest[col].to_numpy(), cnn[col].to_numpy()):
                print(f"{f_path} and {c_path}: different {col} (not the same CV)",
                      file=sys.stderr)
                return 2
        classes = sorted(c[5:] for c in forest.columns if c.startswith("prob_"))
        cols = [f"prob_{c}" for c in classes]
        y = forest["true_class"].to_numpy().astype(str)
        fold = forest["fold"].to_numpy(dtype=np.int64)
        folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
                 for k in range(int(fold.max()) + 1)]
        P = {"random forest": forest[cols].to_numpy(), f"CNN `best` ({CNN_RUN})":
             cnn[cols].to_numpy()}
        oof = cross_validate(StackedClassifier(base_models=["forest", "cnn"]),
                             stack_inputs(list(P.values())), y, folds)
        stack = np.zeros((len(y), len(classes)))
        stack[:, [classes.index(str(c)) for c in oof.classes]] = oof.proba
        P["stack (forest + CNN)"] = stack
        for name, proba in P.items():
            pred = np.asarray(classes)[proba.argmax(axis=1)]
            r = metrics_report(y, pred, classes)
            ece, _ = reliability(y, proba, classes)
            p = np.clip(proba, 1e-15, 1)  # float32 network outputs sum to 1 only to ~1e-7
            ll = log_loss(y, p / p.sum(axis=1, keepdims=True), labels=classes)
            lines.append(f"| {len(classes)} | {name} | {r['accuracy']:.3f} | "
                         f"{r['balanced_accuracy']:.3f} | {r['macro_f1']:.3f} | {ll:.3f} | "
                         f"{ece:.3f} |")
        write_predictions(prediction_frame(forest["object_id"], "stack", classes, stack,
                                           run_id="stack-cv", split="cv", fold=fold,
                                           true_class=y),
                          Path(args.out) / f"stack_{cs}.oof.parquet")
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(args.out) / "stack_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
