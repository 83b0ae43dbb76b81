"""Real-data check: does the distance to the robust-PCA class subspaces flag unseen classes?

    python benchmarks/eval_ood_rpca_crts.py [--run DIR]

For each of the 7 classes of Mahabal et al. (2017) on the shared CRTS set: the robust-PCA
nearest-subspace model (:class:`pipeline.rpca_dmdt.NearestSubspaceClassifier`, ranks 1 and
5, the train flow's defaults) is fitted on 80 % of the other 6 classes (seeded split) and
scores the other 20 % (known classes) and every object of the left-out class (never seen).
Three out-of-distribution scores of an image, larger = farther from every class:

* ``min error``: the smallest reconstruction error over the class subspaces;
* ``standardised``: min over classes of (error - class median) / (class 90 % - 10 % range),
  the median and range of each class's own training images in its own subspace;
* ``relative``: the smallest error divided by the image's norm.

Prints, per left-out class, each score's AUROC (known test objects vs the left-out class;
0.5 = no better than chance) and, for ``standardised`` at the 95 % quantile of the training
images, the fraction of known and of left-out objects flagged. Reads the images and split of
a train run on the shared CRTS set (default: the newest under ``lcpipe-out/crts``, written by
``benchmarks/build_crts_bundle.py``); writes ``OUT/ood_rpca_crts.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAPER7 = ("EA", "EW", "LPV", "RRab", "RRc", "RRd", "RS_CVn")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="work/runs/<run_id> folder of a train run on the CRTS set "
                    "(images_rpca.parquet, split.parquet)")
    ap.add_argument("-o", "--out", default=str(ROOT / "lcpipe-out" / "ood_rpca_crts"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from models.training import image_inputs
    from pipeline.io import atomic_path
    from pipeline.rpca_dmdt import NearestSubspaceClassifier

    if args.run is None:
        base = ROOT / "lcpipe-out" / "crts" / "work" / "runs"
        runs = sorted(base.glob("*/images_rpca.parquet"))
        if not runs:
            print("no train run under lcpipe-out/crts: run benchmarks/build_crts_bundle.py "
                  "first or give --run", file=sys.stderr)
            return 2
        run = runs[-1].parent
    else:
        run = Path(args.run)
    split = pd.read_parquet(run / "split.parquet")
    split = split[split["label"].isin(PAPER7)]
    ids, X, _ = image_inputs(run / "images_rpca.parquet",
                             split["object_id"].to_numpy().astype(str), "rpca")
    y = split.set_index("object_id").loc[ids, "label"].to_numpy().astype(str)
    norm = np.linalg.norm(X.reshape(len(X), -1), axis=1)
    lines = [f"# Robust-PCA distance as an out-of-distribution score (CRTS, {run.name})", "",
             "| class left out | its objects | AUROC min error | AUROC standardised | "
             "AUROC relative | known flagged (standardised, 95 %) | left-out flagged |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for out in PAPER7:
        known, unseen = np.flatnonzero(y != out), np.flatnonzero(y == out)
        perm = np.random.default_rng(args.seed).permutation(known)
        tr, te = perm[: int(0.8 * len(perm))], perm[int(0.8 * len(perm)):]
        m = NearestSubspaceClassifier(1, 5).fit(X[tr], y[tr])
        classes = [str(c) for c in m.classes_]
        err = {k: -m.decision_function(X[idx]) for k, idx in
               (("train", tr), ("test", te), ("unseen", unseen))}
        own = [err["train"][y[tr] == c, j] for j, c in enumerate(classes)]
        med = np.array([np.median(e) for e in own])
        rng_ = np.array([np.subtract(*np.quantile(e, [0.9, 0.1])) for e in own])
        scores = {
            "min": {k: e.min(axis=1) for k, e in err.items()},
            "std": {k: ((e - med) / rng_).min(axis=1) for k, e in err.items()},
            "rel": {k: e.min(axis=1) / norm[idx] for (k, e), idx in
                    zip(err.items(), (tr, te, unseen), strict=True)},
        }
        truth = np.r_[np.zeros(len(te)), np.ones(len(unseen))]
        auc = {s: roc_auc_score(truth, np.r_[v["test"], v["unseen"]]) for s, v in scores.items()}
        tau = np.quantile(scores["std"]["train"], 0.95)
        lines.append(f"| {out} | {len(unseen)} | {auc['min']:.3f} | {auc['std']:.3f} | "
                     f"{auc['rel']:.3f} | {np.mean(scores['std']['test'] > tau):.3f} | "
                     f"{np.mean(scores['std']['unseen'] > tau):.3f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(args.out) / "ood_rpca_crts.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
