"""The CNN's training levers on CRTS, measured on all 5 folds and several network seeds.

    nice -n 10 python benchmarks/eval_cnn_levers_crts.py [--variants base,unweighted]
        [--seeds 0,1,2] [-o lcpipe-out/cnn_levers_crts] [--classes paper7]

Each variant is the best CNN (``fine/vgg6``) with one thing changed; each runs
through :func:`models.cnn_workflows.cross_validate_cnn` (lcpipe's CV path, the
folds of ``stratified_folds(y, 5, seed=0)`` on objects sorted by object_id, as
every other CRTS number) once per network seed. A (variant, seed) whose
``cv_results.json`` exists is read back, not rerun, so the sweep can be extended
or resumed. Printed per variant: accuracy and balanced accuracy per seed, the mean
accuracy and its standard deviation over the seeds, the mean balanced accuracy and
macro-F1, and the accuracy, balanced accuracy and macro-F1 of the seed ensemble
(the mean of the seeds' out-of-fold probabilities; every seed's network saw the
same training objects for a given fold, so no object's label reaches its own
prediction). Written: ``OUT/<classes>/<variant>/seed<k>/`` (the CV files) and
``OUT/<classes>/levers.md`` (the table).

Variants (``VARIANTS``): ``base`` (capped balanced class weights, lcpipe's default until
2026-11-30), ``unweighted`` (no class weights, the default since), ``aug2`` (2
sparser-cadence copies of each training light curve, 2-3x the training time), ``patient``
(early-stopping patience 8, up to 60 epochs), ``mahabal2017`` (the authors' network on the
same input), ``dmdtnet`` (lcpipe's batch-normalised network), and ``unweighted_patient``,
``unweighted_dmdtnet`` (those two changes on top of ``unweighted``),
``unweighted_dmdtnet_long`` (both), ``unweighted_aug2`` (``aug2`` on top of ``unweighted``),
``unweighted_smooth`` (label smoothing 0.1 on top of ``unweighted``).
``--pooled`` adds the ensemble of every run in the table (across variants). About 3-5 min
per (variant, seed) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CRTS = ROOT.parent / "shared" / "data" / "crts"

_WEIGHTED = {"class_weight": "balanced", "label_smoothing": 0.0}
_UNWEIGHTED = {"class_weight": None, "label_smoothing": 0.0}
_LONG = {"patience": 8, "epochs": 60}

#: name -> (representation, architecture, augmented copies, CNNTrainConfig changes); the
#: class weights and the label smoothing are named in every variant, so a row keeps its
#: meaning if defaults change
VARIANTS: dict[str, tuple[str, str, int, dict]] = {
    "base": ("fine", "vgg6", 0, _WEIGHTED),
    "unweighted": ("fine", "vgg6", 0, _UNWEIGHTED),
    "aug2": ("fine", "vgg6", 2, _WEIGHTED),
    "patient": ("fine", "vgg6", 0, {**_WEIGHTED, **_LONG}),
    "mahabal2017": ("fine", "mahabal2017", 0, _WEIGHTED),
    "dmdtnet": ("fine", "dmdtnet", 0, _WEIGHTED),
    "unweighted_patient": ("fine", "vgg6", 0, {**_UNWEIGHTED, **_LONG}),
    "unweighted_dmdtnet": ("fine", "dmdtnet", 0, _UNWEIGHTED),
    "unweighted_dmdtnet_long": ("fine", "dmdtnet", 0, {**_UNWEIGHTED, **_LONG}),
    "unweighted_aug2": ("fine", "vgg6", 2, _UNWEIGHTED),
    "unweighted_smooth": ("fine", "vgg6", 0, {**_UNWEIGHTED, "label_smoothing": 0.1}),
}


def run_variant(name: str, seed: int, classes: str, out: Path, log) -> Path:
    """Cross-validate one (variant, seed) unless its results exist; return its folder."""
    from models.cnn_workflows import CNNTrainConfig, CVRun, cross_validate_cnn

    folder = out / name / f"seed{seed}"
    if (folder / "cv_results.json").exists():
        return folder
    rep, arch, augment, changes = VARIANTS[name]
    config = replace(CNNTrainConfig(seed=seed), **changes)
    cross_validate_cnn(CRTS / "lightcurves.parquet", CRTS / "labels.csv", folder,
                       [CVRun(rep, arch, augment)], classes=classes, config=config,
                       log=lambda line: log(f"{name} seed {seed}: {line}"))
    return folder


def _oof(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], float]:
    """Object ids, true classes, probabilities, classes and mean fit seconds of a run."""
    from models.predictions import read_predictions

    frame, _ = read_predictions(folder / "oof_predictions.parquet")
    frame = frame.sort_values("object_id", kind="stable")
    cls = [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]
    res = json.loads((folder / "cv_results.json").read_text())
    fit_s = float(np.mean(res["runs"][0]["fit_seconds"]))
    return (frame["object_id"].to_numpy(str), frame["true_class"].to_numpy(str),
            frame[[f"prob_{c}" for c in cls]].to_numpy(float), cls, fit_s)


def summarise(out: Path, names: list[str], seeds: list[int], pooled: bool = False) -> str:
    """Markdown table of the variants over the seeds found under ``out``.

    With ``pooled``, a last row ``pooled`` scores the mean of the probabilities of every
    (variant, seed) run found: an ensemble across variants.
    """
    from models.evaluation import metrics_report

    head = ("| variant | " + " | ".join(f"seed {s}" for s in seeds)
            + " | mean accuracy | sd | mean balanced | mean macro-F1 | seed ensemble "
            "| fit s/fold |")
    lines = [head, "|---|" + "---:|" * (len(seeds) + 6)]
    every: list[np.ndarray] = []
    ids0 = y = cls = None  # every run of the table: the same objects and classes
    for name in names:
        cells, acc, bal, f1, probs, fits = [], [], [], [], [], []
        for s in seeds:
            folder = out / name / f"seed{s}"
            if not (folder / "cv_results.json").exists():
                cells.append("-")
                continue
            ids, yt, p, c, fit_s = _oof(folder)
            if ids0 is None:
                ids0, y, cls = ids, yt, c
            elif not (np.array_equal(ids, ids0) and c == cls):
                raise RuntimeError(f"{folder}: other objects or classes than the first run "
                                   "of the table")
            r = metrics_report(y, np.asarray(cls)[p.argmax(1)], cls)
            acc.append(r["accuracy"])
            bal.append(r["balanced_accuracy"])
            f1.append(r["macro_f1"])
            probs.append(p)
            fits.append(fit_s)
            cells.append(f"{r['accuracy']:.4f} / {r['balanced_accuracy']:.4f}")
        every += probs
        if not acc:
            continue
        ens = "-"
        if len(probs) > 1:
            e = metrics_report(y, np.asarray(cls)[np.mean(probs, 0).argmax(1)], cls)
            ens = f"{e['accuracy']:.4f} / {e['balanced_accuracy']:.4f} / {e['macro_f1']:.4f}"
        sd = f"{np.std(acc, ddof=1):.4f}" if len(acc) > 1 else "-"
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {np.mean(acc):.4f} | {sd} | {np.mean(bal):.4f} | {np.mean(f1):.4f} "
                     f"| {ens} | "
                     f"{np.mean(fits):.0f} |")
    if pooled and len(every) > 1:
        e = metrics_report(y, np.asarray(cls)[np.mean(every, 0).argmax(1)], cls)
        lines.append(f"| pooled ({len(every)} runs above) | " + " | ".join("" for _ in seeds)
                     + " | | | | | " + f"{e['accuracy']:.4f} / {e['balanced_accuracy']:.4f} / "
                     f"{e['macro_f1']:.4f} | |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "lcpipe-out" / "cnn_levers_crts"))
    ap.add_argument("--variants", default="base,unweighted",
                    help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", default="0,1,2", help="network seeds, comma-separated")
    ap.add_argument("--classes", default="paper7", choices=["paper7", "all"])
    ap.add_argument("--summary-only", action="store_true", help="tabulate what exists")
    ap.add_argument("--pooled", action="store_true",
                    help="add a row: the mean probabilities of every run in the table")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        print(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if not (CRTS / "lightcurves.parquet").exists():
        print(f"CRTS data not found under {CRTS}", file=sys.stderr)
        return 2
    out = Path(args.output) / args.classes
    if not args.summary_only:
        from models.cnn import tensorflow_environment

        tensorflow_environment()
        for seed in seeds:  # seed-major: every variant gets seed 0 before any gets seed 1
            for name in names:
                run_variant(name, seed, args.classes, out,
                            lambda line: print(line, file=sys.stderr, flush=True))
    table = summarise(out, names, seeds, pooled=args.pooled)
    text = (f"# CNN levers, CRTS {args.classes}, 5-fold CV (fold seed 0), network seeds "
            f"{', '.join(map(str, seeds))}\n\nper seed: accuracy / balanced accuracy; seed "
            f"ensemble: accuracy / balanced accuracy / macro-F1\n\n{table}\n")
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.io import atomic_path

    with atomic_path(out / "levers.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
