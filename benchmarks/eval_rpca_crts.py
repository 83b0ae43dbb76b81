"""Robust-PCA features of dm-dt images on the real CRTS set: one command, all numbers.

Usage::

    python benchmarks/eval_rpca_crts.py [--jobs 2] [--trees 500] [--classes paper7,all]

Steps: dm-dt images (``pipeline.dmdt.compute_dmdt`` of
``pipeline.lightcurves.read_lightcurves`` of the raw
``../shared/data/crts/lightcurves.parquet``, Mahabal et al. 2017 bins, 'paper'
pixels), then stratified 5-fold CV (``StratifiedKFold(5, shuffle=True,
random_state=0)``, the folds of every lcpipe classifier) for the 7 classes of
the paper and for all 16. In each fold the survey background ``b`` and the
class parts ``c_i`` are fitted on the training images only
(:class:`pipeline.rpca_dmdt.DmDtRPCA`; the training rows get cross-fitted
features, ``cv=5`` inside the fold), and scored are:

- the nearest-subspace classifier alone
  (:class:`pipeline.rpca_dmdt.NearestSubspaceClassifier`);
- the random forest (:class:`models.forest.LightCurveForest`) on the RPCA
  features alone;
- if the light-curve features are available (``features`` package; table
  cached under ``--cache`` as ``benchmarks/eval_forest_crts.py`` does): the
  forest on light-curve features, and on light-curve + RPCA features.

Writes ``OUT/rpca_crts.json`` and ``OUT/rpca_crts.md``; prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _lc_features(data: Path, cache: Path, jobs: int):
    """Light-curve feature table (object_id -> features), or None if unavailable."""
    try:
        from features import FEATURE_SET_VERSION, extract_features_file
        from models.forest_files import load_training_set
    except ImportError as exc:  # pragma: no cover - depends on the checkout
        print(f"light-curve features unavailable ({exc}): forest comparison skipped")
        return None
    from pipeline.contract import ColumnMap

    path = cache / f"crts_features_v{FEATURE_SET_VERSION}.parquet"
    if not path.exists():
        print(f"computing light-curve features -> {path} ...", flush=True)
        extract_features_file(data / "lightcurves.parquet", path, ColumnMap.from_spec("crts"),
                              n_jobs=jobs)
    ts = load_training_set(path, data / "labels.csv", "all")
    frame = ts.X.copy()
    frame.index = ts.object_id
    return frame, str(path), ts.feature_set_version


def evaluate(images, object_id, labels, lc=None, *, classes="paper7", trees=500, jobs=2,
             rpca_params=None, n_splits=5, seed=0):
    """Stratified k-fold CV of the RPCA classifiers (see the module docstring).

    Parameters
    ----------
    images : ndarray (N, n_dm, n_dt, n_bands)
        dm-dt images.
    object_id : ndarray of str (N,)
    labels : pandas.Series
        Labels indexed by object_id.
    lc : pandas.DataFrame or None
        Light-curve features indexed by object_id (NaN allowed), for the
        forest with and without RPCA features; ``None`` skips those rows.
    classes : {'paper7', 'all'} or list of str
    trees, jobs : int
        Forest size and threads.
    rpca_params : dict, optional
        :class:`pipeline.rpca_dmdt.DmDtRPCA` parameters.

    Returns
    -------
    dict
        Per model: ``models.evaluation.metrics_report`` of the out-of-fold
        predictions plus per-fold accuracies; and counts, settings, timings.
    """
    import numpy as np

    from models.evaluation import metrics_report, stratified_folds
    from models.forest import LightCurveForest
    from pipeline.labels import PAPER_CLASSES
    from pipeline.rpca_dmdt import DmDtRPCA

    lab = labels.reindex(object_id).to_numpy(dtype=object)
    wanted = set(PAPER_CLASSES) if classes == "paper7" else (
        set(map(str, labels.unique())) if classes == "all" else set(classes))
    keep = np.array([v is not None and v == v and str(v) in wanted for v in lab])
    X = images[keep]
    y = lab[keep].astype(str)
    oid = np.asarray(object_id)[keep]
    L = None if lc is None else lc.reindex(oid).to_numpy(dtype=np.float64)
    params = dict(rank_background=1, rank_class=5, cv=5, random_state=0)
    params.update(rpca_params or {})
    folds = stratified_folds(y, n_splits=n_splits, seed=seed)
    names = ["nearest_subspace", "forest_rpca"]
    if L is not None:
        names += ["forest_lc", "forest_lc+rpca"]
    pred = {k: np.empty(len(y), dtype=object) for k in names}
    fold_acc = {k: [] for k in names}
    not_converged = []
    t_rpca = t_forest = 0.0

    def forest():
        return LightCurveForest(n_estimators=trees, n_jobs=jobs, random_state=seed)

    for i, (tr, te) in enumerate(folds):
        t0 = time.perf_counter()
        model = DmDtRPCA(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is counted from fits_ below
            F_tr = model.fit_transform(X[tr], y[tr])
        not_converged += [f"fold{i}:{f['part']}" for f in model.fits_ if not f["converged"]]
        dec = model.decompose(X[te])
        F_te = model._features(dec)
        # == NearestSubspaceClassifier(**same params).fit(X[tr], y[tr]).predict(X[te])
        pred["nearest_subspace"][te] = model.classes_[np.argmin(dec["err"], axis=1)]
        dt_rpca = time.perf_counter() - t0
        t_rpca += dt_rpca
        t0 = time.perf_counter()
        pred["forest_rpca"][te] = forest().fit(F_tr, y[tr]).predict(F_te)
        if L is not None:
            pred["forest_lc"][te] = forest().fit(L[tr], y[tr]).predict(L[te])
            pred["forest_lc+rpca"][te] = forest().fit(
                np.hstack([L[tr], F_tr]), y[tr]).predict(np.hstack([L[te], F_te]))
        dt_forest = time.perf_counter() - t0
        t_forest += dt_forest
        for k in names:
            fold_acc[k].append(float(np.mean(pred[k][te] == y[te])))
        print(f"  {classes} fold {i}: " + ", ".join(f"{k} {fold_acc[k][-1]:.3f}" for k in names)
              + f" (rpca {dt_rpca:.0f} s, forests {dt_forest:.0f} s)", flush=True)
    out = {
        "classes": classes if isinstance(classes, str) else list(classes),
        "n_objects": int(len(y)),
        "class_counts": {c: int(n) for c, n in zip(*np.unique(y, return_counts=True),
                                                    strict=True)},
        "rpca_params": params,
        "n_rpca_features": int(F_tr.shape[1]),
        "n_lc_features": None if L is None else int(L.shape[1]),
        "forest": {"n_estimators": trees, "n_jobs": jobs, "random_state": seed},
        "folds": f"StratifiedKFold({n_splits}, shuffle=True, random_state={seed})",
        "seconds_rpca": round(t_rpca, 1),
        "seconds_forest": round(t_forest, 1),
        "rpca_fits_not_converged": not_converged,
        "models": {},
    }
    for k in names:
        rep = metrics_report(y, pred[k].astype(str))
        rep["fold_accuracy"] = fold_acc[k]
        out["models"][k] = rep
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--cache", default="/tmp/lcpipe-cache", help="feature-table cache directory")
    ap.add_argument("--out", default=str(ROOT / "lcpipe-out" / "rpca_crts"),
                    help="report directory")
    ap.add_argument("--classes", default="paper7,all", help="comma-separated: paper7, all")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--rank-background", type=int, default=1)
    ap.add_argument("--rank-class", type=int, default=5)
    ap.add_argument("--no-lc-features", action="store_true",
                    help="skip the forests that use light-curve features")
    args = ap.parse_args(argv)

    import numpy as np

    from pipeline.contract import ColumnMap
    from pipeline.dmdt import compute_dmdt
    from pipeline.io import atomic_path, write_json_atomic
    from pipeline.labels import read_labels
    from pipeline.lightcurves import read_lightcurves

    data = Path(args.data)
    t0 = time.perf_counter()
    lcs = read_lightcurves(data / "lightcurves.parquet", ColumnMap.from_spec("crts"))
    img = compute_dmdt(lcs, bins="mahabal2017", norm="paper")
    labels = read_labels(data / "labels.csv")
    t_dmdt = time.perf_counter() - t0
    print(f"dm-dt: {len(img)} objects, images {img.images.shape[1:]} in {t_dmdt:.1f} s",
          flush=True)
    lc = None
    lc_source = None
    if not args.no_lc_features:
        got = _lc_features(data, Path(args.cache), args.jobs)
        if got is not None:
            lc, lc_source, _ = got
    results = {"dmdt": {"bins": "mahabal2017", "norm": "paper", "objects": len(img),
                        "seconds": round(t_dmdt, 1)},
               "lc_features": lc_source, "cpu_count": os.cpu_count(), "runs": {}}
    rp = {"rank_background": args.rank_background, "rank_class": args.rank_class}
    for cls in args.classes.split(","):
        t0 = time.perf_counter()
        r = evaluate(img.images, np.asarray(img.object_id, dtype=str), labels, lc,
                     classes=cls, trees=args.trees, jobs=args.jobs, rpca_params=rp)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results["runs"][cls] = r
    lines = ["# Robust-PCA features of dm-dt images on CRTS (stratified 5-fold CV)", "",
             "| classes | n | model | accuracy | balanced accuracy | macro-F1 | fold accuracies |",
             "|---|---:|---|---:|---:|---:|---|"]
    for cls, r in results["runs"].items():
        for k, rep in r["models"].items():
            lines.append(f"| {cls} | {r['n_objects']} | {k} | {rep['accuracy']:.3f} | "
                         f"{rep['balanced_accuracy']:.3f} | {rep['macro_f1']:.3f} | "
                         + " ".join(f"{a:.3f}" for a in rep["fold_accuracy"]) + " |")
    lines += ["", "RPCA: " + ", ".join(
        f"{cls}: {r['n_rpca_features']} features, fits {r['seconds_rpca']:.0f} s, "
        f"not converged {len(r['rpca_fits_not_converged'])}"
        for cls, r in results["runs"].items())]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    write_json_atomic(results, out / "rpca_crts.json")
    with atomic_path(out / "rpca_crts.md") as tmp:
        tmp.write_text(text)
    print(f"wrote {out / 'rpca_crts.json'} and {out / 'rpca_crts.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
