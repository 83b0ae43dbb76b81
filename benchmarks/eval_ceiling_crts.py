"""How far do lcpipe's models go together? Every stack of them, and the peeked upper bound.

    python benchmarks/eval_ceiling_crts.py [--classes paper7,all] [--methods pool] [-o OUT]

Reads out-of-fold probabilities that other commands wrote on the same folds
(``models.evaluation.stratified_folds(y, 5, seed=0)`` on objects sorted by id):
the forest (``benchmarks/eval_forest_crts.py``), the hybrid's seeds 0 and 1
(``benchmarks/eval_hybrid_crts.py``) and the CNN ``best`` without class weights,
seeds 0, 1, 2 (``benchmarks/eval_cnn_levers_crts.py --variants unweighted --seeds 0,1,2``,
add ``--classes all`` for 16 classes); run those first. The hybrid's and the CNN's seeds
are averaged into one model each (their seed ensembles).

Printed per class set:

* each model, and stacks of two and of all three with the meta-models of
  :class:`models.stacking.StackedClassifier` named by ``--methods`` (``pool``, lcpipe's
  default; ``pool,logistic`` adds the logistic regression, minutes per fit on 16 classes),
  cross-validated on the same folds through :func:`models.evaluation.cross_validate` (no
  object's label reaches its own prediction);
* the pool of the forest with one seed of each network (seeds 0, then 1): what the train
  flow's ``--hybrid --cv-folds`` stacks;
* the **peeked ceiling**: the best accuracy of a weighted mean of the three models'
  probabilities (arithmetic, and geometric, weights on a 0.1 grid summing to 1) with the
  weights chosen by looking at every answer. It is not a model (choosing weights on the
  objects scored is what CV forbids); it bounds what any blend of these probabilities
  could reach on these objects.

Writes ``OUT/ceiling_crts.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "lcpipe-out"


def _read(path: Path, classes: list[str] | None = None):
    """Object ids, true classes, folds and probabilities (columns in ``classes`` order)."""
    from models.predictions import read_predictions

    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run the commands named in "
                                "benchmarks/eval_ceiling_crts.py first")
    frame, _ = read_predictions(path)
    frame = frame.sort_values("object_id", kind="stable").reset_index(drop=True)
    cls = classes or sorted(c[5:] for c in frame.columns if c.startswith("prob_"))
    return (frame["object_id"].to_numpy(str), frame["true_class"].to_numpy(str),
            frame["fold"].to_numpy(np.int64), frame[[f"prob_{c}" for c in cls]].to_numpy(float),
            cls)


def _accuracy(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    return float(np.mean(np.asarray(classes)[proba.argmax(axis=1)] == y))


def peeked_ceiling(y: np.ndarray, probas: list[np.ndarray], classes: list[str],
                   step: float = 0.1) -> tuple[float, tuple[float, ...], str]:
    """Best accuracy of a weighted arithmetic or geometric mean of ``probas`` over weights
    on a ``step`` grid summing to 1, chosen on the scored objects themselves.

    Returns
    -------
    accuracy : float
    weights : tuple of float
    mean : {'arithmetic', 'geometric'}
    """
    n = round(1 / step)
    logs = [np.log(np.clip(p, 1e-6, 1.0)) for p in probas]
    best = (-1.0, (), "")
    for k in itertools.product(range(n + 1), repeat=len(probas) - 1):
        if sum(k) > n:
            continue
        w = (*(i / n for i in k), (n - sum(k)) / n)
        for kind, terms in (("arithmetic", probas), ("geometric", logs)):
            acc = _accuracy(y, sum(wi * t for wi, t in zip(w, terms, strict=True)), classes)
            if acc > best[0] + 1e-12:
                best = (acc, w, kind)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", default="paper7,all")
    ap.add_argument("-o", "--out", default=str(OUT / "ceiling_crts"))
    ap.add_argument("--methods", default="pool",
                    help="meta-models of the stacks, comma-separated: pool (default), logistic "
                         "(slow: minutes per fit on 16 classes)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"pool", "logistic"}:
        ap.error(f"--methods: pool and/or logistic, not {args.methods!r}")

    from sklearn.metrics import log_loss

    from models.evaluation import cross_validate, metrics_report
    from models.stacking import StackedClassifier, stack_inputs
    from pipeline.io import atomic_path

    lines = ["# How far do the models go together? (CRTS, stratified 5-fold CV, seed-0 folds)",
             "", "| classes | model | accuracy | balanced accuracy | macro-F1 | log loss |",
             "|---|---|---:|---:|---:|---:|"]
    ceilings = []
    for cs in args.classes.split(","):
        try:
            ids, y, fold, forest, cls = _read(OUT / "forest_crts" / f"forest_{cs}.oof.parquet")
            runs = [_read(OUT / "hybrid_crts" / f"hybrid_{cs}_seed{s}.oof.parquet", cls)
                    for s in (0, 1)]
            runs += [_read(OUT / "cnn_levers_crts" / cs / "unweighted" / f"seed{s}" /
                           "oof_predictions.parquet", cls) for s in (0, 1, 2)]
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
        for r_ids, r_y, r_fold, _, _ in runs:
            if not (np.array_equal(r_ids, ids) and np.array_equal(r_y, y)
                    and np.array_equal(r_fold, fold)):
                print(f"{cs}: the runs hold other objects, labels or folds than the forest",
                      file=sys.stderr)
                return 2
        models = {"random forest": forest,
                  "hybrid (2 seeds averaged)": np.mean([r[3] for r in runs[:2]], axis=0),
                  "CNN `best` (3 seeds averaged)": np.mean([r[3] for r in runs[2:]], axis=0)}
        folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
                 for k in range(int(fold.max()) + 1)]
        names = list(models)
        rows = dict(models)
        for method, combo in itertools.product(methods, ((0, 1), (0, 2), (0, 1, 2))):
            oof = cross_validate(StackedClassifier(base_models=[names[i] for i in combo],
                                                   method=method),
                                 stack_inputs([models[names[i]] for i in combo]), y, folds)
            proba = np.zeros((len(y), len(cls)))
            proba[:, [cls.index(str(c)) for c in oof.classes]] = oof.proba
            label = " + ".join(names[i].split(" (")[0] for i in combo)
            rows[f"stack ({label}), {method}"] = proba
        for s in (0, 1):  # one network of each, as the train flow's --hybrid --cv-folds
            oof = cross_validate(StackedClassifier(base_models=["forest", "hybrid", "cnn"]),
                                 stack_inputs([forest, runs[s][3], runs[2 + s][3]]), y, folds)
            proba = np.zeros((len(y), len(cls)))
            proba[:, [cls.index(str(c)) for c in oof.classes]] = oof.proba
            rows[f"stack (random forest + hybrid seed {s} + CNN seed {s}), pool"] = proba
        for name, proba in rows.items():
            r = metrics_report(y, np.asarray(cls)[proba.argmax(axis=1)], cls)
            p = np.clip(proba, 1e-15, 1.0)
            ll = log_loss(y, p / p.sum(axis=1, keepdims=True), labels=cls)
            lines.append(f"| {len(cls)} | {name} | {r['accuracy']:.4f} | "
                         f"{r['balanced_accuracy']:.4f} | {r['macro_f1']:.4f} | {ll:.3f} |")
        acc, w, kind = peeked_ceiling(y, list(models.values()), cls)
        ceilings.append(f"- {len(cls)} classes: **{acc:.4f}**, {kind} mean with weights "
                        f"forest {w[0]:.1f}, hybrid {w[1]:.1f}, CNN {w[2]:.1f}")
    text = "\n".join(lines + ["", "Peeked ceiling (weights chosen on the scored objects; "
                              "an upper bound, not a model):", ""] + ceilings) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "ceiling_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
