"""Robust-PCA features of dm-dt images on the real CRTS set: one command, all numbers.

Usage::

    python benchmarks/eval_rpca_crts.py [--jobs 2] [--trees 500] [--classes paper7,all]

Steps: dm-dt images (``pipeline.dmdt.compute_dmdt`` of
``pipeline.lightcurves.read_lightcurves`` of the raw
``../shared/data/crts/lightcurves.parquet``, Mahabal et al. 2017 bins, 'paper'
pixels), labels joined and classes selected by ``pipeline.labels.join_labels``,
then stratified 5-fold CV (``models.evaluation.stratified_folds``, i.e.
``StratifiedKFold(5, shuffle=True, random_state=0)``, the folds of every lcpipe
classifier) through ``models.evaluation.cross_validate`` for the 7 classes of
the paper and for all 16. Scored are these unfitted estimators:

- the nearest-subspace classifier alone
  (:class:`pipeline.rpca_dmdt.NearestSubspaceClassifier`);
- the random forest (:class:`models.forest.LightCurveForest`) on the RPCA
  features alone (:func:`pipeline.rpca_dmdt.rpca_feature_pipeline` on the
  flattened images);
- if the light-curve features are available (``features`` package; table
  cached under ``--cache`` as ``benchmarks/eval_forest_crts.py`` does): the
  forest on light-curve features, and on light-curve + RPCA features
  (``rpca_feature_pipeline`` on flattened images + light-curve features).

In each fold the survey background ``b`` and the class parts ``c_i``
(:class:`pipeline.rpca_dmdt.DmDtRPCA`, ``rank_background=1``, ``rank_class=5``)
are fitted on the training images only; the forests' training rows get
cross-fitted RPCA features (``cv=5`` inside the fold). Each model fits its
own RPCA in each fold (the same fit, repeated: three RPCA-using models cost
about three times the RPCA time of one shared fit per fold).

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
    """Light-curve feature table (object_id -> features), its path and feature-set version."""
    from _crts import cached_features

    from models.forest_files import load_training_set

    path = cached_features(data, cache, jobs)
    ts = load_training_set(path, data / "labels.csv", "all")
    frame = ts.X.copy()
    frame.index = ts.object_id
    return frame, str(path), ts.feature_set_version


def evaluate(images, object_id, labels, lc=None, *, classes="paper7", trees=500, jobs=2,
             rpca_params=None, n_splits=5, seed=0):
    """Stratified k-fold CV of the RPCA classifiers (see the module docstring).

    Every model is an unfitted scikit-learn estimator scored by
    :func:`models.evaluation.cross_validate` on the same folds
    (:func:`models.evaluation.stratified_folds`, ``seed``), so the RPCA is
    fitted inside each training fold only, once per model and fold:

    - ``nearest_subspace``: :class:`pipeline.rpca_dmdt.NearestSubspaceClassifier`
      on the images;
    - ``forest_rpca``: :func:`pipeline.rpca_dmdt.rpca_feature_pipeline` (RPCA
      features, cross-fitted on the training rows, then the forest) on the
      flattened images;
    - ``forest_lc``: the forest on the light-curve features;
    - ``forest_lc+rpca``: the RPCA pipeline on ``[flattened images, light-curve
      features]`` (the forest sees the RPCA columns first, then the light-curve ones).

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
    classes : str or list of str
        Class selection (:func:`pipeline.labels.select_classes`: 'paper7',
        'all', comma list or list).
    trees, jobs : int
        Forest size and threads.
    rpca_params : dict, optional
        :class:`pipeline.rpca_dmdt.DmDtRPCA` parameters (those that
        :class:`~pipeline.rpca_dmdt.NearestSubspaceClassifier` takes are passed
        to it too).
    n_splits, seed : int
        Folds and their seed.

    Returns
    -------
    dict
        Per model: ``models.evaluation.metrics_report`` of the out-of-fold
        predictions plus per-fold accuracies, fit times and wall time; and
        counts, settings, RPCA fits that did not converge.
    """
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    from models.evaluation import cross_validate, metrics_report, stratified_folds
    from models.forest import LightCurveForest
    from pipeline.labels import join_labels
    from pipeline.rpca_dmdt import NearestSubspaceClassifier, rpca_feature_pipeline

    joined = join_labels(object_id, labels, classes, source="labels")
    X = np.asarray(images)[joined.index]
    y = joined.y
    pixels = X.reshape(len(X), -1)
    n_pixels = pixels.shape[1]
    L = None if lc is None else lc.reindex(joined.object_id).to_numpy(dtype=np.float64)
    params = dict(rank_background=1, rank_class=5, cv=5, random_state=0)
    params.update(rpca_params or {})
    ns_keys = NearestSubspaceClassifier().get_params().keys()
    ns_params = {k: v for k, v in params.items() if k in ns_keys}
    folds = stratified_folds(y, n_splits=n_splits, seed=seed)

    def forest():
        return LightCurveForest(n_estimators=trees, n_jobs=jobs, random_state=seed)

    models = {
        "nearest_subspace": (NearestSubspaceClassifier(**ns_params), X),
        "forest_rpca": (rpca_feature_pipeline(n_pixels, forest(), **params), pixels),
    }
    if L is not None:
        models["forest_lc"] = (forest(), L)
        models["forest_lc+rpca"] = (rpca_feature_pipeline(n_pixels, forest(), **params),
                                    np.hstack([pixels, L]))

    def rpca_record(i, est, X_te, y_te):
        """Feature count and non-converged fits of the fold's fitted RPCA (None: no RPCA)."""
        if isinstance(est, NearestSubspaceClassifier):
            rpca = est.decomposition_
        elif hasattr(est, "named_steps"):
            rpca = est.named_steps["features"].named_transformers_["rpca"]
        else:
            return None
        return {"n_features": len(rpca.get_feature_names_out()),
                "not_converged": [f"fold{i}:{f['part']}" for f in rpca.fits_
                                  if not f["converged"]]}

    out = {
        "classes": classes if isinstance(classes, str) else list(classes),
        "selected_classes": joined.classes,
        "n_objects": int(len(y)),
        "class_counts": joined.counts["class_counts"],
        "label_counts": joined.counts,
        "rpca_params": params,
        "n_rpca_features": None,
        "n_lc_features": None if L is None else int(L.shape[1]),
        "forest": {"n_estimators": trees, "n_jobs": jobs, "random_state": seed},
        "folds": f"StratifiedKFold({n_splits}, shuffle=True, random_state={seed})",
        "rpca_fits_not_converged": [],
        "models": {},
    }
    for name, (estimator, inputs) in models.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # non-convergence is counted from the fitted models' fits_ (rpca_record)
            warnings.simplefilter("ignore", ConvergenceWarning)
            oof = cross_validate(estimator, inputs, y, folds, fold_callback=rpca_record,
                                 log=lambda line, name=name: print(
                                     f"  {out['classes']} {name}: {line}", flush=True))
        seconds = time.perf_counter() - t0
        rep = metrics_report(y, oof.y_pred.astype(str))
        rep["fold_accuracy"] = [float(np.mean(oof.y_pred[oof.fold == i] == y[oof.fold == i]))
                                for i in range(len(folds))]
        rep["fit_seconds"] = [round(s, 1) for s in oof.fit_seconds]
        rep["seconds"] = round(seconds, 1)
        for extra in oof.fold_extras:
            if extra is not None:
                out["n_rpca_features"] = extra["n_features"]
                out["rpca_fits_not_converged"] += [f"{name}:{p}" for p in extra["not_converged"]]
        out["models"][name] = rep
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
        lc, lc_source, _ = _lc_features(data, Path(args.cache), args.jobs)
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
             "| classes | n | model | accuracy | balanced accuracy | macro-F1 | fold accuracies "
             "| CV seconds |",
             "|---|---:|---|---:|---:|---:|---|---:|"]
    for cls, r in results["runs"].items():
        for k, rep in r["models"].items():
            lines.append(f"| {cls} | {r['n_objects']} | {k} | {rep['accuracy']:.3f} | "
                         f"{rep['balanced_accuracy']:.3f} | {rep['macro_f1']:.3f} | "
                         + " ".join(f"{a:.3f}" for a in rep["fold_accuracy"])
                         + f" | {rep['seconds']:.0f} |")
    lines += ["", "RPCA (fitted per model and fold): " + ", ".join(
        f"{cls}: {r['n_rpca_features']} features, "
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
