"""Per-class explanations of a training run, as report tables (issue 14).

* the forest: permutation importances on the test part (balanced-accuracy drop when one
  feature's values are shuffled among the test objects) and per-class statistics of every
  feature over the labelled objects (``importances`` and ``class_features`` tables);
* the CNN: per-class mean class activation maps (HiResCAM of the last convolution,
  :meth:`models.cnn.DmDtCNN.grad_cam`) and saliency maps of the test part, each for the
  object's true class; and per class the input that maximises the class score
  (:func:`models.explain.activation_maximisation`), checked against the real training
  images' scores and the robust PCA's class templates (``class_maps`` and
  ``activation_check`` tables).

Everything is computed from the run's files (features, images, split, saved models), so a
run's explanations can be recomputed from its work folder. Tables follow the report schema
(``docs/reports.md``, version 1.2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["forest_explanations", "class_feature_table", "class_map_rows",
           "cnn_explanations", "write_explanation_reports"]


def class_feature_table(X: pd.DataFrame, y: np.ndarray, classes: Sequence[str]
                        ) -> pd.DataFrame:
    """Per class and feature: objects with a value, missing values, mean, std, median.

    Parameters
    ----------
    X : pandas.DataFrame
        Features (columns) of the labelled objects (rows); NaN = missing.
    y : ndarray of str
        Class of each row.
    classes : sequence of str
        Output order of the classes.

    Returns
    -------
    pandas.DataFrame
        ``class``, ``feature``, ``objects``, ``missing``, ``mean``, ``std`` (ddof 0),
        ``median`` (NaN when a class has no value of the feature).
    """
    y = np.asarray(y).astype(str)
    rows = []
    for c in classes:
        sub = X.to_numpy(np.float64)[y == c]
        have = np.isfinite(sub)
        n = have.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(have, sub, np.nan)
            mean = np.where(n > 0, np.nansum(vals, axis=0) / np.maximum(n, 1), np.nan)
            var = np.where(n > 0, np.nansum((vals - mean) ** 2, axis=0) / np.maximum(n, 1),
                           np.nan)
        med = np.array([np.median(sub[have[:, j], j]) if n[j] else np.nan
                        for j in range(sub.shape[1])])
        rows.append(pd.DataFrame({"class": c, "feature": list(X.columns), "objects": n,
                                  "missing": len(sub) - n, "mean": mean,
                                  "std": np.sqrt(var), "median": med}))
    return pd.concat(rows, ignore_index=True)


def forest_explanations(features_path: str | os.PathLike[str],
                        split_path: str | os.PathLike[str],
                        forest_path: str | os.PathLike[str], *, n_repeats: int = 3,
                        seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forest's permutation importances (test part) and the per-class feature table.

    Parameters
    ----------
    features_path : path-like
        The run's merged feature table.
    split_path : path-like
        :func:`models.training.make_split` output.
    forest_path : path-like
        The forest fitted on the training part (:func:`models.training.fit_model`).
    n_repeats : int
        Shuffles per feature.
    seed : int
        Seed of the shuffles.

    The permutations run in this process; the forest predicts with its own threads for
    test parts of 1,000 objects or more, with one thread below (faster for small batches).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        ``importances`` rows (``model``, ``split``, ``feature``, ``importance``,
        ``importance_std``, ``rank`` (1 = largest drop), ``repeats``, ``scoring``; empty
        without a test part) and :func:`class_feature_table` of all labelled objects.
    """
    from .forest import load_forest, permutation_importances
    from .training import forest_inputs, read_split

    split = read_split(split_path)
    model, meta = load_forest(forest_path)
    names = list(meta["feature_names"])
    ids, X, _ = forest_inputs(features_path, split["object_id"].to_numpy().astype(str),
                              names, meta.get("feature_set_version"))
    y = split["label"].to_numpy().astype(str)
    classes = sorted(set(y))
    feats = class_feature_table(X, y, classes)
    test = (split["split"] == "test").to_numpy()
    cols = ["model", "split", "feature", "importance", "importance_std", "rank", "repeats",
            "scoring"]
    if not test.any():
        return pd.DataFrame(columns=cols), feats
    if test.sum() < 1000:  # small batches: the trees' thread pool costs more than it gains
        model.n_jobs = model.model_.n_jobs = 1
    mean, std = permutation_importances(model, X[test].reset_index(drop=True), y[test],
                                        n_repeats=n_repeats, random_state=seed, n_jobs=None)
    order = np.argsort(-mean, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    imp = pd.DataFrame({"model": "forest", "split": "test", "feature": names,
                        "importance": mean, "importance_std": std, "rank": rank,
                        "repeats": n_repeats, "scoring": "balanced_accuracy"})
    return imp.sort_values("rank", kind="stable").reset_index(drop=True)[cols], feats


def class_map_rows(maps: np.ndarray, kind: str, classes: Sequence[str], meta: dict[str, Any],
                   objects: Sequence[int] | None = None, model: str = "cnn") -> pd.DataFrame:
    """Rows of the ``class_maps`` table for per-class maps on a dm-dt grid.

    Parameters
    ----------
    maps : ndarray of shape (n_classes, n_dm, n_dt, n_channels)
    kind : {'gradcam', 'saliency', 'activation_max'}
    classes : sequence of str
    meta : dict
        ``dm_edges`` [mag], ``dt_edges`` [days] and ``channels`` (names, one per channel).
    objects : sequence of int, optional
        Images averaged per class (None for activation maximisation).
    model : str
        Model name.
    """
    from .cnn_workflows import _long_maps

    t = _long_maps(np.asarray(maps, dtype=np.float64), "class", np.asarray(classes, dtype=str),
                   meta, None, "value").to_pandas()
    t = t.rename(columns={"dm_bin": "dm_index", "dt_bin": "dt_index"})
    n = np.asarray(objects, dtype=np.int64) if objects is not None else None
    per = len(t) // max(len(classes), 1)
    t["objects"] = (pd.array(np.repeat(n, per), dtype="Int64") if n is not None
                    else pd.array([None] * len(t), dtype="Int64"))
    t.insert(0, "kind", kind)
    t.insert(0, "model", model)
    return t


def activation_check(est: Any, images: np.ndarray, scores: np.ndarray, X_real: np.ndarray,
                     y_real: np.ndarray, meta: dict[str, Any],
                     rpca: tuple[Any, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Per class: the maximising image's score beside the best real image's, and its
    correlation with the robust PCA's class templates.

    Parameters
    ----------
    est : models.cnn.DmDtCNN
    images, scores : ndarray
        :func:`models.explain.activation_maximisation` output (classes in ``est.classes_``
        order).
    X_real, y_real : ndarray
        Real training inputs and their classes.
    meta : dict
        The network's input description.
    rpca : (DmDtRPCA, dict), optional
        Robust-PCA model and its image meta.

    Returns
    -------
    pandas.DataFrame
        ``class``, ``score``, ``best_real_score`` (NaN for a class without real images),
        ``correlation_own``, ``best_other_class``, ``correlation_best_other``, ``rank_own``
        (null without ``rpca``).
    """
    from .explain import class_scores, template_correlation

    classes = [str(c) for c in est.classes_]
    real = class_scores(est, X_real) if len(X_real) else np.zeros((0, len(classes)))
    y_real = np.asarray(y_real).astype(str)
    best = [float(real[y_real == c, k].max()) if (y_real == c).any() else np.nan
            for k, c in enumerate(classes)]
    out = pd.DataFrame({"class": classes, "score": np.asarray(scores, dtype=np.float64),
                        "best_real_score": best})
    if rpca is None:
        return out.assign(correlation_own=np.nan, best_other_class=None,
                          correlation_best_other=np.nan,
                          rank_own=pd.array([None] * len(out), dtype="Int64"))
    corr = template_correlation(images, meta, rpca[0], rpca[1], classes=classes)
    return out.merge(corr, on="class", how="left")


def cnn_explanations(images_path: str | os.PathLike[str], split_path: str | os.PathLike[str],
                     cnn_path: str | os.PathLike[str], representation: str,
                     rpca_path: str | os.PathLike[str] | None = None, *, seed: int = 0
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Per-class class activation maps, saliency maps and activation maximisation.

    Parameters
    ----------
    images_path : path-like
        The run's dm-dt counts on the CNN's grid.
    split_path : path-like
        :func:`models.training.make_split` output.
    cnn_path : path-like
        The CNN fitted on the training part.
    representation : str
        Its input representation (``'fine'`` or ``'paper'``).
    rpca_path : path-like, optional
        The robust-PCA model of the run: its class templates are compared with the
        maximising images.
    seed : int
        Seed of the activation maximisation.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame, dict)
        ``class_maps`` rows (kinds ``gradcam`` and ``saliency``: test part, each map for the
        object's true class, scaled to max 1, then averaged per class; ``activation_max``),
        ``activation_check`` rows, and the per-kind map arrays with the grid meta (for
        figures).
    """
    from .cnn import load_cnn
    from .cnn_workflows import mean_saliency
    from .explain import activation_maximisation
    from .training import image_inputs, read_split

    split = read_split(split_path)
    est = load_cnn(cnn_path)
    classes = [str(c) for c in est.classes_]
    ids, X, meta = image_inputs(images_path, split["object_id"].to_numpy().astype(str),
                                representation)
    est.check_input_meta(meta, source=images_path)
    y = split["label"].to_numpy().astype(str)
    test = (split["split"] == "test").to_numpy() & np.isin(y, classes)
    train = (split["split"] == "train").to_numpy() & np.isin(y, classes)
    frames, arrays = [], {}
    if test.any():
        cam = est.grad_cam(X[test], y[test])[..., None]
        cam_maps, counts = mean_saliency(cam, y[test], classes)
        frames.append(class_map_rows(cam_maps, "gradcam", classes,
                                     {**meta, "channels": ["all"]}, counts))
        sal_maps, counts = mean_saliency(est.saliency(X[test], y[test]), y[test], classes)
        frames.append(class_map_rows(sal_maps, "saliency", classes, meta, counts))
        arrays.update(gradcam=cam_maps, saliency=sal_maps)
    am, scores = activation_maximisation(est, X[train], seed=seed)
    frames.append(class_map_rows(am, "activation_max", classes, meta))
    arrays["activation_max"] = am
    rpca = None
    if rpca_path is not None:
        from pipeline.rpca_dmdt import load_rpca

        model, rmeta = load_rpca(rpca_path)
        rpca = (model, rmeta["image_meta"])
    check = activation_check(est, am, scores, X[train], y[train], meta, rpca)
    check.insert(0, "model", "cnn")
    return pd.concat(frames, ignore_index=True), check, {**arrays, "meta": meta}


def write_explanation_reports(report_dir: str | os.PathLike[str], run_id: str,
                              paths: dict[str, str], split_path: str | os.PathLike[str],
                              models: dict[str, str], representation: str,
                              seed: int = 0) -> dict[str, Any]:
    """Write a run's ``importances``, ``class_features``, ``class_maps`` and
    ``activation_check`` tables, and PNGs of the CNN's per-class maps.

    Parameters
    ----------
    report_dir : path-like
        Report directory.
    run_id : str
    paths : dict
        ``features`` and ``cnn_images`` of the run.
    split_path : path-like
    models : dict
        Model name -> the model evaluated on the test part (``forest``, ``cnn``, and
        ``rpca_nearest`` for the template check); missing models are skipped.
    representation : str
        The CNN's input representation.
    seed : int

    Returns
    -------
    dict
        Table paths and figures.
    """
    from pipeline.reports import figure_path, write_report_table

    from .cnn_workflows import plot_saliency

    out: dict[str, Any] = {"figures": []}

    def put(table: str, frame: pd.DataFrame) -> None:
        out[table] = str(write_report_table(report_dir, table, run_id,
                                            frame.assign(run_id=run_id)))

    if "forest" in models:
        imp, feats = forest_explanations(paths["features"], split_path, models["forest"],
                                         seed=seed)
        put("importances", imp)
        put("class_features", feats)
    if "cnn" in models:
        maps, check, arrays = cnn_explanations(paths["cnn_images"], split_path,
                                               models["cnn"], representation,
                                               models.get("rpca_nearest"), seed=seed)
        put("class_maps", maps)
        put("activation_check", check)
        meta = arrays["meta"]
        classes = list(check["class"])
        for kind in ("gradcam", "saliency", "activation_max"):
            if kind not in arrays:
                continue
            channels = ["all"] if kind == "gradcam" else meta["channels"]
            out["figures"].append(str(plot_saliency(
                arrays[kind], classes, meta["dm_edges"], meta["dt_edges"], channels,
                figure_path(report_dir, run_id, f"cnn_{kind}_by_class.png"))))
    return out


# --------------------------------------------------------------------------- per object


def forest_contributions(forest: Any, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Decompose the forest's probabilities into per-feature contributions (Saabas 2014).

    Along each tree's decision path, the change of the node's class proportions at a split
    is credited to the split's feature; the root's proportions are the bias. Averaged over
    the trees, ``bias + contributions.sum(axis=1)`` equals ``forest.predict_proba(X)``
    exactly (the forest's probability is the mean of its trees' leaf proportions).

    Parameters
    ----------
    forest : models.forest.LightCurveForest
        A fitted forest.
    X : array-like of shape (n_objects, n_features)
        Features (NaN as the forest handles them).

    Returns
    -------
    bias : ndarray of shape (n_objects, n_classes)
    contributions : ndarray of shape (n_objects, n_features, n_classes)
    """
    X = forest._impute(forest._check_X(X, reset=False)).astype(np.float32)
    n, n_feat = X.shape
    n_cls = len(forest.classes_)
    bias = np.zeros((n, n_cls))
    contrib = np.zeros((n, n_feat, n_cls))
    trees = forest.model_.estimators_
    for est in trees:
        tree = est.tree_
        value = tree.value[:, 0, :]
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        if value.shape[1] != n_cls:  # every tree sees every class (bootstrap weights)
            raise ValueError("a tree of the forest lacks classes")
        path = est.decision_path(X)
        for i in range(n):
            # node ids grow from parent to child: sorted ids are the path, root first
            nodes = np.sort(path.indices[path.indptr[i]:path.indptr[i + 1]])
            v = value[nodes]
            bias[i] += v[0]
            np.add.at(contrib[i], tree.feature[nodes[:-1]], v[1:] - v[:-1])
    return bias / len(trees), contrib / len(trees)


def explain_objects(bundle_spec: str | os.PathLike[str], lcs: Any,
                    object_ids: Sequence[str], outdir: str | os.PathLike[str],
                    workdir: str | os.PathLike[str], n_jobs: int = 1) -> dict[str, Any]:
    """Explain a bundle's answers for chosen objects (``lcpipe explain``).

    Writes into ``outdir``:

    * ``explain_predictions.parquet``: every model's prediction rows of the objects
      (lcpipe's prediction schema, as ``lcpipe classify`` writes them);
    * ``explain_maps.parquet`` and ``explain_gradcam.png``, ``explain_saliency.png``: the
      CNN's class activation map and saliency map of each object for its predicted class,
      on the dm-dt grid (columns as the ``class_maps`` report table, ``object_id`` in place
      of ``class``);
    * ``explain_features.parquet``: per object and forest feature, the value, its
      contribution to the probability of the forest's predicted class
      (:func:`forest_contributions`; with ``bias`` they sum to that probability) and its rank
      by absolute contribution.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle.
    lcs : pipeline.lightcurves.LightCurves
        Clean light curves holding the objects.
    object_ids : sequence of str
        Objects to explain.
    outdir, workdir : path-like
        Output folder; scratch folder.
    n_jobs : int
        Processes for the features.

    Returns
    -------
    dict
        Paths written, and the predictions frame.

    Raises
    ------
    InputError
        An object not among the light curves.
    """
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.errors import InputError
    from pipeline.io import write_parquet_atomic
    from pipeline.validate import series_to_arrow

    from .bundle import classify_chunk, load_bundle
    from .cnn_workflows import _subset_objects, plot_saliency
    from .predictions import read_predictions, write_predictions
    from .training import (
        CNN_PRESETS,
        forest_inputs,
        image_inputs,
        load_model_cached,
    )

    b = load_bundle(bundle_spec)
    wanted = [str(o).strip() for o in object_ids]
    have = set(np.unique(lcs.object_id).astype(str))
    missing = [o for o in wanted if o not in have]
    if missing:
        raise InputError("--objects", f"not among the light curves (after cleaning): "
                         f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""),
                         object_id=missing[0])
    wanted = list(dict.fromkeys(wanted))
    sub = _subset_objects(lcs, np.asarray(wanted), "--objects")
    out, wd = Path(outdir), Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    chunk = wd / "objects.parquet"
    pq.write_table(series_to_arrow(sub), chunk)
    res = classify_chunk(b.path, chunk, wd / "classify", run_id="explain", n_jobs=n_jobs)
    pred = read_predictions(res["predictions"])[0]
    written = {"predictions": str(write_predictions(pred, out / "explain_predictions.parquet",
                                                    metadata={"bundle": str(b.path)}))}
    ids = np.asarray(wanted)
    if "cnn" in b.models:
        est, _ = load_model_cached("cnn", b.model_path("cnn"))
        rep = CNN_PRESETS[b.settings.cnn_preset][0]
        grid = b.info["grids"]["cnn"]
        images = wd / "classify" / "images" / f"{grid}.parquet"
        _, X, meta = image_inputs(images, ids, rep)
        est.check_input_meta(meta, source=images)
        target = est.predict(X).astype(str)
        cam = est.grad_cam(X, target)[..., None]
        sal = est.saliency(X, target)
        sal = sal / np.maximum(sal.max(axis=(1, 2, 3), keepdims=True), 1e-300)
        frames = []
        for kind, maps, m in (("gradcam", cam, {**meta, "channels": ["all"]}),
                              ("saliency", sal, meta)):
            rows = class_map_rows(maps, kind, ids, m).rename(columns={"class": "object_id"})
            rows.insert(3, "predicted_class", np.repeat(target, len(rows) // len(ids)))
            frames.append(rows.drop(columns=["objects"]))
            titles = [f"{o} ({c})" for o, c in zip(ids, target, strict=True)]
            written[f"{kind}_png"] = str(plot_saliency(maps, titles, m["dm_edges"],
                                                       m["dt_edges"], m["channels"],
                                                       out / f"explain_{kind}.png"))
        written["maps"] = str(write_parquet_atomic(
            pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False),
            out / "explain_maps.parquet",
            metadata={"lcpipe.explain": {"bundle": str(b.path), "target": "predicted class",
                                         "scaling": "each map / its max"}}))
    if "forest" in b.models:
        forest, fmeta = load_model_cached("forest", b.model_path("forest"))
        names = list(fmeta["feature_names"])
        _, F, _ = forest_inputs(wd / "classify" / "features.parquet", ids, names,
                                fmeta.get("feature_set_version"))
        bias, contrib = forest_contributions(forest, F)
        k = np.argmax(bias + contrib.sum(axis=1), axis=1)
        rows = []
        for i, o in enumerate(ids):
            c = contrib[i, :, k[i]]
            order = np.argsort(-np.abs(c), kind="stable")
            rank = np.empty(len(c), dtype=np.int64)
            rank[order] = np.arange(1, len(c) + 1)
            rows.append(pd.DataFrame({
                "object_id": o, "predicted_class": str(forest.classes_[k[i]]),
                "feature": names, "value": F.iloc[i].to_numpy(np.float64),
                "contribution": c, "rank": rank, "bias": bias[i, k[i]]}))
        table = pd.concat(rows, ignore_index=True).sort_values(["object_id", "rank"],
                                                               kind="stable")
        written["features"] = str(write_parquet_atomic(
            pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False),
            out / "explain_features.parquet",
            metadata={"lcpipe.explain": {"bundle": str(b.path),
                                         "method": "tree path contributions (Saabas)"}}))
    return {**written, "frame": pred}
