"""Real-data result: temperature scaling of the forest and the hybrid network under 5-fold CV.

    python benchmarks/eval_calibration_crts.py [--oof DIR] [-o OUT]

Reads the out-of-fold probabilities written by ``benchmarks/eval_hybrid_crts.py``
(``DIR/forest_{paper7,all}_seed0.oof.parquet`` and
``DIR/hybrid_{paper7,all}_seed{0,1}.oof.parquet``: stratified 5-fold CV on the shared CRTS
set, the folds of every lcpipe classifier); run it first.

Each model's probabilities are calibrated as the train flow does it
(:func:`models.evaluation.calibrate_out_of_fold`): fold k scaled by the temperature fitted on
the other folds' out-of-fold predictions, so no object's calibration saw its label. Then the
stack (:class:`models.stacking.StackedClassifier`, forest + hybrid) is cross-validated on the
same folds from the raw and from the calibrated probabilities. Prints, per class set and model:
the temperatures of the folds, accuracy, balanced accuracy, log loss and expected calibration
error (10 bins) before and after; writes ``OUT/calibration_crts.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _scores(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> tuple[float, ...]:
    from sklearn.metrics import balanced_accuracy_score, log_loss

    from models.evaluation import reliability

    pred = np.asarray(classes)[proba.argmax(axis=1)]
    p = np.clip(proba, 1e-15, 1)  # float32 network outputs sum to 1 only to ~1e-7
    ece, _ = reliability(y, proba, classes)
    return (float(np.mean(pred == y)), float(balanced_accuracy_score(y, pred)),
            float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=classes)), ece)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oof", default=str(ROOT / "lcpipe-out" / "hybrid_crts"))
    ap.add_argument("-o", "--out", default=str(ROOT / "lcpipe-out" / "calibration_crts"))
    ap.add_argument("--classes", default="paper7,all")
    args = ap.parse_args(argv)

    from models.evaluation import calibrate_out_of_fold, cross_validate, fit_temperature
    from models.predictions import read_predictions
    from models.stacking import StackedClassifier, stack_inputs
    from pipeline.io import atomic_path

    lines = ["# Temperature scaling on CRTS (stratified 5-fold CV, out-of-fold)", "",
             "| classes | model | T (folds) | accuracy | balanced accuracy | log loss raw -> "
             "calibrated | ECE raw -> calibrated |", "|---|---|---|---:|---:|---:|---:|"]
    for cs in args.classes.split(","):
        files = {"forest": Path(args.oof) / f"forest_{cs}_seed0.oof.parquet",
                 **{f"hybrid seed {s}": Path(args.oof) / f"hybrid_{cs}_seed{s}.oof.parquet"
                    for s in (0, 1)}}
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            print(f"{missing[0]}: not found; run benchmarks/eval_hybrid_crts.py first",
                  file=sys.stderr)
            return 2
        frames = {m: read_predictions(p)[0].sort_values("object_id").reset_index(drop=True)
                  for m, p in files.items()}
        ref = frames["forest"]
        for m, f in frames.items():
            for col in ("object_id", "true_class", "fold"):
                if not np.array_equal(ref[col].to_numpy(), f[col].to_numpy()):
                    print(f"{files[m]}: different {col} from the forest's (not the same CV)",
                          file=sys.stderr)
                    return 2
        classes = sorted(c[5:] for c in ref.columns if c.startswith("prob_"))
        cols = [f"prob_{c}" for c in classes]
        y = ref["true_class"].to_numpy().astype(str)
        fold = ref["fold"].to_numpy(dtype=np.int64)
        folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
                 for k in range(int(fold.max()) + 1)]
        raw = {m: f[cols].to_numpy(np.float64) for m, f in frames.items()}
        cal = {}
        for m, P in raw.items():
            _, cal[m] = calibrate_out_of_fold(y, P, fold, classes)
            temps = [fit_temperature(y[fold != k], P[fold != k], classes)
                     for k in range(len(folds))]
            a, b, ll0, e0 = _scores(y, P, classes)
            _, _, ll1, e1 = _scores(y, cal[m], classes)
            lines.append(f"| {len(classes)} | {m} | {min(temps):.2f}-{max(temps):.2f} | "
                         f"{a:.3f} | {b:.3f} | {ll0:.3f} -> {ll1:.3f} | {e0:.3f} -> {e1:.3f} |")
        for s in (0, 1):
            out = {}
            for name, P in (("raw", raw), ("calibrated", cal)):
                oof = cross_validate(StackedClassifier(base_models=["forest", "hybrid"]),
                                     stack_inputs([P["forest"], P[f"hybrid seed {s}"]]), y,
                                     folds)
                st = np.zeros((len(y), len(classes)))
                st[:, [classes.index(str(c)) for c in oof.classes]] = oof.proba
                out[name] = _scores(y, st, classes)
            (a0, b0, ll0, e0), (a1, b1, ll1, e1) = out["raw"], out["calibrated"]
            lines.append(f"| {len(classes)} | stack (forest + hybrid seed {s}) on raw -> "
                         f"calibrated inputs | - | {a0:.3f} -> {a1:.3f} | {b0:.3f} -> {b1:.3f} "
                         f"| {ll0:.3f} -> {ll1:.3f} | {e0:.3f} -> {e1:.3f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(args.out) / "calibration_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
