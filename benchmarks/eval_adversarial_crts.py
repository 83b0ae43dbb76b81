"""Adversarial check of the CNN on CRTS, and training with error-bar noise copies (issue 14).

    nice -n 10 python benchmarks/eval_adversarial_crts.py [-o OUT] [--seeds 0 1]
        [--folds 5] [--copies 2] [--noise-scale 1 0.5] [--per-fold 200] [--quick]

The default CNN (representation ``fine``, architecture ``vgg6``, the
:class:`models.cnn_workflows.CNNTrainConfig` defaults) on the 7 classes of Mahabal et al.
(2017) (``paper7``), cross-validated on the folds every lcpipe classifier uses
(:func:`models.evaluation.stratified_folds` on objects sorted by id, fold seed 0), in two
configurations per network seed:

``fine/vgg6``
    trained as usual;
``fine/vgg6+noiseK``
    trained with K extra copies of every training object whose magnitudes are redrawn
    from N(mag, mag_err) (``DmDtCNN.fit(augmentation=SampleCopies(...))``, the mechanism
    of the cadence augmentation; :func:`models.evaluation.cross_validate` keeps the copies
    of each fold's training objects only, and the network's validation split holds
    original images only).

Per configuration and seed: accuracy (out-of-fold, and its mean over folds), and the flip
sizes (:func:`models.adversarial.flip_search`, default grid and search) of a random subset
of ``--per-fold`` held-out objects of each fold (the same objects for every configuration
and seed): their median [sigma] (never-flipped objects counted as +inf), the fraction
flipping within 1 sigma, the fraction never flipped. Each (configuration, seed) is written
to ``OUT/runs/<name>_seed<s>.json`` (and its per-object flips to ``.parquet``) as soon as
it is done and is not run again unless ``--force``; ``OUT/results.json`` and
``OUT/results.md`` hold the summary, which is printed.

``--noise-scale s`` draws the copies from N(mag, (s mag_err)^2) instead (config
``fine/vgg6+noiseKxs``): a measured magnitude already carries its error once, so s = 1
doubles the noise variance of the copies.

``--quick``: 2 folds, 1 seed, 1 copy, 3 epochs, 30 held-out objects per fold, written
under ``OUT/quick`` (a smoke test of the command, not a result).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation import SampleCopies
from pipeline.lightcurves import LightCurves

ROOT = Path(__file__).resolve().parents[1]
CRTS = ROOT.parent / "shared" / "data" / "crts"


def plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, infinite or NaN floats to None."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def subset(lcs: LightCurves, objects: np.ndarray) -> LightCurves:
    """Light curves of the objects with these indices (order of first appearance), in order."""
    oid = lcs.object_id
    new = np.ones(len(oid), dtype=bool)
    new[1:] = oid[1:] != oid[:-1]
    first = np.append(np.flatnonzero(new), len(oid))
    series = np.concatenate([np.arange(first[o], first[o + 1]) for o in objects])
    rows = np.concatenate([np.arange(lcs.offsets[s], lcs.offsets[s + 1]) for s in series])
    return LightCurves(object_id=oid[series], band=lcs.band[series],
                       offsets=np.r_[0, np.cumsum(lcs.n_points[series])].astype(np.int64),
                       t=lcs.t[rows], mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])


def noise_copies(lcs: LightCurves, n_copies: int, seed: int, scale: float = 1.0
                 ) -> tuple[LightCurves, np.ndarray]:
    """``n_copies`` copies of every object, each magnitude redrawn from
    N(mag, (scale * mag_err)^2) [mag].

    Returns the copies (object-major: the copies of object 0, then of object 1, ...; ids
    ``'<id>#noise<k>'``) and the index of each copy's source object.
    """
    oid = lcs.object_id
    new = np.ones(len(oid), dtype=bool)
    new[1:] = oid[1:] != oid[:-1]
    obj_of_series = np.cumsum(new) - 1
    n_obj = int(new.sum())
    copy = np.arange(n_copies)
    # series order: object, copy, series of the object
    key_obj = np.repeat(obj_of_series, n_copies)
    key_copy = np.tile(copy, len(oid))
    series = np.repeat(np.arange(len(oid)), n_copies)
    order = np.lexsort((series, key_copy, key_obj))
    series, key_copy = series[order], key_copy[order]
    rows = np.concatenate([np.arange(lcs.offsets[s], lcs.offsets[s + 1]) for s in series])
    rng = np.random.default_rng(seed)
    mag = lcs.mag[rows] + rng.standard_normal(len(rows)) * (scale * lcs.mag_err[rows])
    ids = np.asarray([f"{oid[s]}#noise{k}" for s, k in zip(series, key_copy, strict=True)],
                     dtype=object)
    copies = LightCurves(object_id=ids, band=lcs.band[series],
                         offsets=np.r_[0, np.cumsum(lcs.n_points[series])].astype(np.int64),
                         t=lcs.t[rows], mag=mag, mag_err=lcs.mag_err[rows])
    return copies, np.repeat(np.arange(n_obj, dtype=np.int64), n_copies)


def load(classes: str) -> tuple[LightCurves, np.ndarray, np.ndarray]:
    """Clean CRTS light curves of the labelled objects of ``classes``, sorted by id."""
    from pipeline.labels import join_labels, read_labels
    from pipeline.lightcurves import read_lightcurves

    lcs = read_lightcurves(CRTS / "lightcurves.parquet")
    ids = pd.unique(lcs.object_id.astype(str))
    joined = join_labels(np.sort(ids), read_labels(CRTS / "labels.csv"), classes,
                         source=CRTS / "labels.csv")
    pos = pd.Index(ids).get_indexer(joined.object_id)
    return subset(lcs, pos), joined.object_id, joined.y


def _class_weight() -> str:
    """The class weights of the default CNN settings, by name ('balanced' or 'none')."""
    from models.cnn_workflows import CNNTrainConfig

    return CNNTrainConfig().class_weight or "none"


def run_one(name: str, seed: int, copies: int, scale: float, lcs: LightCurves,
            X: np.ndarray, meta: dict[str, Any], y: np.ndarray, folds: list,
            checked: list[np.ndarray], epochs: int | None
            ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Cross-validate one configuration and search flips on each fold's checked objects."""
    from models.adversarial import flip_search, flip_summary, median_flip_size
    from models.cnn_workflows import CNNTrainConfig
    from models.evaluation import cross_validate
    from models.representations import lightcurves_to_inputs

    config = CNNTrainConfig(seed=seed) if epochs is None else CNNTrainConfig(seed=seed,
                                                                           epochs=epochs)
    fit_params: dict[str, Any] = {"input_meta": meta}
    t0 = time.perf_counter()
    if copies:
        noisy, origin = noise_copies(lcs, copies, seed=1000 + seed, scale=scale)
        _, X_aug, _ = lightcurves_to_inputs(noisy, "fine", meta["bands"])
        fit_params["augmentation"] = SampleCopies(X_aug, origin)
    prep = time.perf_counter() - t0
    flips: list[pd.DataFrame] = []
    search_seconds: list[float] = []

    def check(i: int, est: Any, X_te: Any, y_te: Any) -> dict[str, Any]:
        t1 = time.perf_counter()
        res = flip_search(est, subset(lcs, checked[i]), seed=0)
        search_seconds.append(time.perf_counter() - t1)
        tab = res.table.assign(fold=i, true_class=y[checked[i]])
        flips.append(tab)
        return {"epochs": int(len(est.history_)), "best_epoch": int(est.best_epoch_),
                "median_flip_sigma": median_flip_size(tab["flip_sigma"])}

    oof = cross_validate(config.estimator("vgg6"), X, y, folds, fit_params=fit_params,
                         fold_callback=check,
                         log=lambda line: print(f"{name} seed {seed}: {line}",
                                                file=sys.stderr, flush=True))
    acc = [float(np.mean(oof.y_pred[te] == y[te])) for _, te in folds]
    table = pd.concat(flips, ignore_index=True).assign(config=name, seed=seed)
    summary = flip_summary(table)
    record = {
        "config": name, "seed": seed, "noise_copies": copies, "noise_scale": scale,
        "accuracy_folds": acc, "accuracy_mean": float(np.mean(acc)),
        "accuracy_oof": float(np.mean(oof.y_pred == y)),
        "checked_objects": int(len(table)),
        "median_flip_sigma": median_flip_size(table["flip_sigma"]),
        "within_1_sigma": float(table["within_1_sigma"].mean()),
        "never_flipped": float(table["flip_sigma"].isna().mean()),
        "median_flip_sigma_correct": median_flip_size(
            table["flip_sigma"][table["predicted_class"] == table["true_class"]]),
        "per_class": summary.to_dict(orient="records"),
        "folds": oof.fold_extras, "fit_seconds": [round(s, 1) for s in oof.fit_seconds],
        "search_seconds": [round(s, 1) for s in search_seconds],
        "prep_seconds": round(prep, 1), "config_train": {"epochs": config.epochs},
    }
    return record, table


def fmt(x: float) -> str:
    return "> max eps" if np.isinf(x) else f"{x:.2f}"


def tables(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per (config, seed), then the mean over seeds per config."""
    lines = ["| config | seed | accuracy (mean over folds) | median flip size [sigma] | "
             "flips within 1 sigma | never flipped | fit time [s] |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['config']} | {r['seed']} | {r['accuracy_mean']:.4f} | "
                     f"{fmt(r['median_flip_sigma'])} | {r['within_1_sigma']:.3f} | "
                     f"{r['never_flipped']:.3f} | {sum(r['fit_seconds']):.0f} |")
    lines += ["", "| config | seeds | accuracy: mean (min-max over seeds) | median flip size: "
              "mean (min-max) | within 1 sigma: mean |", "|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["config"] for r in records):
        rs = [r for r in records if r["config"] == name]
        a = np.array([r["accuracy_mean"] for r in rs])
        f = np.array([r["median_flip_sigma"] for r in rs])
        w = np.array([r["within_1_sigma"] for r in rs])
        lines.append(f"| {name} | {len(rs)} | {a.mean():.4f} ({a.min():.4f}-{a.max():.4f}) | "
                     f"{fmt(f.mean())} ({fmt(f.min())}-{fmt(f.max())}) | {w.mean():.3f} |")
    return "\n".join(lines)


def verdict(records: list[dict[str, Any]], base: str, noisy: str) -> str:
    """Does noise training raise the median flip size without costing accuracy?

    'Costing accuracy' means a mean accuracy lower than the baseline's by more than the
    larger spread (max - min over seeds) of the two configurations (with one seed: any
    drop).
    """
    b = [r for r in records if r["config"] == base]
    n = [r for r in records if r["config"] == noisy]
    if not b or not n:
        return "incomplete: both configurations are needed"
    acc_b = np.array([r["accuracy_mean"] for r in b])
    acc_n = np.array([r["accuracy_mean"] for r in n])
    spread = max(np.ptp(acc_b), np.ptp(acc_n))
    flip_b = np.mean([r["median_flip_sigma"] for r in b])
    flip_n = np.mean([r["median_flip_sigma"] for r in n])
    raises = flip_n > flip_b
    keeps = acc_n.mean() >= acc_b.mean() - spread
    word = "wins" if raises and keeps else "does not win"
    return (f"{noisy} {word}: median flip size {fmt(flip_n)} vs {fmt(flip_b)} sigma "
            f"({'raised' if raises else 'not raised'}); accuracy {acc_n.mean():.4f} vs "
            f"{acc_b.mean():.4f} (seed spread {spread:.4f}: "
            f"{'kept' if keeps else 'lost'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "lcpipe-out" / "adversarial_crts"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--copies", type=int, default=2, help="noise copies per object (K)")
    ap.add_argument("--noise-scale", type=float, nargs="+", default=[1.0],
                    help="noise of the copies in units of mag_err (1: N(mag, mag_err)); "
                    "one noise configuration per value")
    ap.add_argument("--per-fold", type=int, default=200,
                    help="held-out objects searched per fold (random subset)")
    ap.add_argument("--configs", nargs="+", default=["base", "noise"],
                    choices=["base", "noise"])
    ap.add_argument("--force", action="store_true", help="rerun finished runs")
    ap.add_argument("--quick", action="store_true", help="smoke test (see above)")
    args = ap.parse_args()
    if not (CRTS / "lightcurves.parquet").exists():
        print(f"CRTS data not found under {CRTS}", file=sys.stderr)
        return 2
    epochs = None
    if args.quick:
        args.folds, args.seeds, args.copies, args.per_fold, epochs = 2, args.seeds[:1], 1, 30, 3

    from models.evaluation import stratified_folds
    from models.representations import lightcurves_to_inputs
    from pipeline.io import write_json_atomic

    out = Path(args.output) / ("quick" if args.quick else "")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lcs, ids, y = load("paper7")
    oid, X, meta = lightcurves_to_inputs(lcs, "fine")
    if not np.array_equal(oid.astype(str), ids):  # pragma: no cover - invariant
        raise RuntimeError("images in another object order")
    folds = stratified_folds(y, n_splits=args.folds, seed=0)
    checked = [np.sort(np.random.default_rng([2026, i]).choice(
        te, size=min(args.per_fold, len(te)), replace=False)) for i, (_, te) in
        enumerate(folds)]
    print(f"{len(y)} objects, {len(set(y))} classes, {args.folds} folds, "
          f"{sum(map(len, checked))} held-out objects searched; prep "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    base = "fine/vgg6"
    plan = [(base, 0, 0.0)] if "base" in args.configs else []
    if "noise" in args.configs:
        plan += [(f"{base}+noise{args.copies}" + ("" if s == 1.0 else f"x{s:g}"), args.copies,
                  s) for s in args.noise_scale]
    records = []
    for seed in args.seeds:
        for name, k, scale in plan:
            stem = f"{name.replace('/', '_')}_seed{seed}"  # may hold a '.' (x0.5)
            js, pq = out / "runs" / f"{stem}.json", out / "runs" / f"{stem}.parquet"
            if js.exists() and not args.force:
                old = json.loads(js.read_text())
                # a run of other settings (folds, objects, the CNN's class weights, whose
                # default changed on 2026-11-30) is run again
                if ((old.get("n_splits"), old.get("per_fold"), old.get("class_weight", "balanced"))
                        == (args.folds, args.per_fold, _class_weight())):
                    records.append(old)
                    continue
            rec, table = run_one(name, seed, k, scale, lcs, X, meta, y, folds, checked,
                                 epochs)
            rec.update(n_splits=args.folds, per_fold=args.per_fold, quick=args.quick,
                       class_weight=_class_weight())
            write_json_atomic(plain(rec), js)
            table.to_parquet(pq, index=False)
            records.append(rec)
    for r in records:  # JSON stores an infinite median as null
        for key in ("median_flip_sigma", "median_flip_sigma_correct"):
            r[key] = np.inf if r[key] is None else r[key]
    md = tables(records)
    verdicts = [verdict(records, base, name) for name, k, _ in plan if k]
    text = (f"# CNN flip sizes and noise training: paper7, {args.folds}-fold CV\n\n{md}\n\n"
            + "".join(f"- {v}\n" for v in verdicts))
    summary = {"n_objects": int(len(y)), "n_splits": args.folds, "seeds": args.seeds,
               "noise_copies": args.copies, "noise_scales": args.noise_scale,
               "per_fold": args.per_fold, "quick": args.quick, "verdicts": verdicts,
               "runs": plain(records)}
    write_json_atomic(summary, out / "results.json")
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
