"""The main job's steps as plain functions over files: images, features, split, fit, evaluate.

Each step reads its inputs from Parquet (or model) files, computes, and writes
its output atomically, returning the path; the Prefect flows
(:mod:`flows.train`, :mod:`flows.classify`) and the command line call these
same functions, and they run without Prefect. Three models are trained on the
same objects and the same split:

``forest``
    :class:`models.forest.LightCurveForest` on the light-curve features;
``cnn``
    :class:`models.cnn.DmDtCNN` on dm-dt images (preset ``best`` or ``faithful``,
    :data:`models.settings.CNN_PRESETS`);
``rpca_nearest``
    the robust-PCA nearest-subspace rule (:class:`pipeline.rpca_dmdt.DmDtRPCA`
    on the authors' 22 x 24 grid, ``paper`` pixels): survey background, class
    backgrounds and each object's own part.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, InputError

from .settings import CNN_PRESETS, TrainSettings

__all__ = [
    "MODELS",
    "OPTIONAL_MODELS",
    "models_for",
    "RPCA_GRID",
    "image_grids",
    "chunk_images",
    "chunk_features",
    "make_split",
    "read_split",
    "fit_model",
    "load_model",
    "load_model_cached",
    "predict_model",
    "evaluate_model",
    "STACK_BASES",
    "STACK_REQUIRED",
    "evaluate_stack",
]

#: Model names, in report order (``hybrid`` joins them with ``TrainSettings.hybrid``).
MODELS: tuple[str, ...] = ("forest", "cnn", "rpca_nearest")
#: Models trained on request.
OPTIONAL_MODELS: tuple[str, ...] = ("hybrid",)
#: Base models of the stacked ensemble ``stack`` (trained when the run cross-validates), in
#: its input order: the forest and the CNN always, the hybrid when the run trains it.
STACK_BASES: tuple[str, ...] = ("forest", "cnn", "hybrid")
#: Base models every stack has.
STACK_REQUIRED: tuple[str, ...] = ("forest", "cnn")
#: dm-dt grid of the robust-PCA decomposition (Mahabal et al. 2017: 22 dm x 24 dt).
RPCA_GRID = "mahabal2017"


def models_for(settings: TrainSettings) -> tuple[str, ...]:
    """The models a train run with ``settings`` evaluates and bundles, in report order."""
    return MODELS + (("hybrid",) if settings.hybrid else ())


def image_grids(cnn_preset: str) -> dict[str, str]:
    """dm-dt grids a run needs: ``{'cnn': grid of the CNN preset, 'rpca': RPCA_GRID}``."""
    from .representations import get_representation

    rep = get_representation(CNN_PRESETS[cnn_preset][0])
    return {"cnn": rep.bins.name, "rpca": RPCA_GRID}


# ----------------------------------------------------------------------------- per chunk


def chunk_images(chunk: str | os.PathLike[str], outdir: str | os.PathLike[str],
                 grids: list[str], bands: list[str]) -> dict[str, str]:
    """dm-dt pair counts of one chunk on each grid (``<outdir>/<grid>.parquet``).

    Parameters
    ----------
    chunk : path-like
        Clean light curves (:func:`pipeline.chunks.ingest`), read once for all grids.
    outdir : path-like
        Output folder.
    grids : list of str
        Bin presets (:data:`pipeline.dmdt.BINS_PRESETS`).
    bands : list of str
        Channel order (the same for every chunk).

    Returns
    -------
    dict
        grid name -> path of the counts file.
    """
    from pipeline.dmdt import METADATA_KEY, compute_dmdt, dmdt_table
    from pipeline.io import write_parquet_atomic
    from pipeline.lightcurves import read_lightcurves

    lcs = read_lightcurves(chunk, clean=False)
    out = {}
    for grid in dict.fromkeys(grids):
        img = compute_dmdt(lcs, grid, "counts", bands)
        p = Path(outdir) / f"{grid}.parquet"
        write_parquet_atomic(dmdt_table(img), p, metadata={METADATA_KEY: img.meta})
        out[grid] = str(p)
    return out


def chunk_features(chunk: str | os.PathLike[str], out: str | os.PathLike[str],
                   bands: list[str], n_jobs: int = 1) -> str:
    """Feature table of one chunk (:func:`features.api.extract_features_file`)."""
    from features.api import extract_features_file

    extract_features_file(chunk, out, n_jobs=n_jobs, bands=bands,
                          chunk_rows=max(20_000, _rows(chunk) // max(1, 2 * n_jobs) + 1))
    return str(out)


def _rows(path: str | os.PathLike[str]) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


# ----------------------------------------------------------------------------- split


def _object_ids(path: str | os.PathLike[str]) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        col = pq.read_table(path, columns=["object_id"]).column("object_id")
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(path, f"cannot read object ids: {exc}") from exc
    return np.asarray(col.to_pylist(), dtype=object).astype(str)


def make_split(features_path: str | os.PathLike[str], images_path: str | os.PathLike[str],
               labels_path: str | os.PathLike[str], out: str | os.PathLike[str],
               settings: TrainSettings) -> tuple[str, dict[str, Any]]:
    """The one split of a run: labelled objects -> training part (with CV folds) and test part.

    Objects need a feature row, dm-dt images and a label among the selected
    classes (:func:`pipeline.labels.join_labels`); they are sorted by id, then
    split by :func:`models.evaluation.train_test_split_stratified`, and the
    training part into :func:`models.evaluation.stratified_folds` when
    ``settings.cv_folds`` is set.

    Returns
    -------
    (str, dict)
        Path of the split table (``object_id, label, split, fold``) and the
        label-join counts.
    """
    import pyarrow as pa

    from pipeline.io import write_parquet_atomic
    from pipeline.labels import join_labels, read_labels

    from .evaluation import stratified_folds, train_test_split_stratified

    both = np.intersect1d(_object_ids(features_path), _object_ids(images_path))
    joined = join_labels(both, read_labels(labels_path), settings.classes, source=labels_path)
    y = joined.y
    tr, te = train_test_split_stratified(y, settings.test_fraction, settings.seed)
    split = np.full(len(y), "train", dtype=object)
    split[te] = "test"
    fold = np.full(len(y), -1, dtype=np.int64)
    if settings.cv_folds:
        for i, (_, f_te) in enumerate(stratified_folds(y[tr], settings.cv_folds, settings.seed)):
            fold[tr[f_te]] = i
    table = pa.table({
        "object_id": pa.array(joined.object_id, pa.string()),
        "label": pa.array(y, pa.string()),
        "split": pa.array(split.astype(str), pa.string()),
        "fold": pa.array(np.where(fold >= 0, fold, None).tolist(), pa.int32()),
    })
    write_parquet_atomic(table, out, metadata={"lcpipe.split": {
        "classes": joined.classes, "counts": joined.counts, "seed": settings.seed,
        "test_fraction": settings.test_fraction, "cv_folds": settings.cv_folds}})
    return str(out), joined.counts


def read_split(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The split table written by :func:`make_split` (``fold`` as nullable Int32)."""
    import pyarrow.parquet as pq

    frame = pq.read_table(path).to_pandas()
    frame["fold"] = frame["fold"].astype("Int32")
    return frame


def _classes_of(split: pd.DataFrame) -> list[str]:
    return sorted(map(str, split["label"].unique()))


# ----------------------------------------------------------------------------- inputs


def _rows_of(ids: np.ndarray, wanted: np.ndarray, source: object) -> np.ndarray:
    pos = pd.Index(ids).get_indexer(pd.Index(wanted))
    if (pos < 0).any():
        raise InputError(source, "object missing", object_id=wanted[int(np.argmax(pos < 0))])
    return pos


def forest_inputs(features_path: str | os.PathLike[str], object_ids: np.ndarray | None,
                  feature_names: list[str] | None = None,
                  feature_set_version: str | None = None
                  ) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Feature rows of ``object_ids`` (all rows if None) in the forest's column order.

    Returns
    -------
    (ids, X, info)
        Object ids, features (DataFrame), and ``feature_names`` /
        ``feature_set_version``.
    """
    from features.api import read_features

    from .forest_files import DEFAULT_EXCLUDE, check_feature_table, select_feature_columns

    frame, fmeta = read_features(features_path)
    if feature_names is None:
        feature_names = select_feature_columns(fmeta, DEFAULT_EXCLUDE)
        feature_set_version = str(fmeta["feature_set_version"])
    mmeta = {"feature_names": feature_names, "feature_set_version": feature_set_version}
    X = check_feature_table(fmeta, frame, mmeta, features_path, "the model")
    ids = frame["object_id"].to_numpy().astype(str)
    if object_ids is not None:
        rows = _rows_of(ids, object_ids, features_path)
        ids, X = ids[rows], X.iloc[rows].reset_index(drop=True)
    return ids, X, mmeta


def image_inputs(images_path: str | os.PathLike[str], object_ids: np.ndarray | None,
                 representation: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Network input of ``object_ids`` (all if None) from a dm-dt counts file.

    ``representation`` is a CNN preset (``'fine'``, ``'paper'``) or ``'rpca'``
    (the authors' ``paper`` pixels, as float64, for the robust PCA).

    Returns
    -------
    (ids, X, meta)
    """
    from pipeline.dmdt import read_dmdt

    from .representations import images_to_inputs

    images = read_dmdt(images_path)
    X, meta = images_to_inputs(images, "paper" if representation == "rpca" else representation,
                               source=images_path)
    ids = images.object_id.astype(str)
    if object_ids is not None:
        rows = _rows_of(ids, object_ids, images_path)
        ids, X = ids[rows], X[rows]
    if representation == "rpca":
        X = X.astype(np.float64)
    return ids, X, meta


# ----------------------------------------------------------------------------- models


def _estimator(kind: str, settings: TrainSettings) -> Any:
    """A fresh, unfitted estimator of model ``kind`` under ``settings``."""
    if kind == "forest":
        from .forest import LightCurveForest

        return LightCurveForest(n_estimators=settings.forest_n_estimators,
                                min_samples_leaf=settings.forest_min_samples_leaf,
                                n_jobs=settings.n_jobs, random_state=settings.seed)
    if kind == "cnn":
        from .cnn import DmDtCNN, class_weight_from_name

        return DmDtCNN(arch=CNN_PRESETS[settings.cnn_preset][1], epochs=settings.cnn_epochs,
                       learning_rate=settings.cnn_learning_rate,
                       max_class_weight=settings.cnn_max_class_weight,
                       class_weight=class_weight_from_name(settings.cnn_class_weight),
                       label_smoothing=settings.cnn_label_smoothing,
                       random_state=settings.seed)
    if kind == "hybrid":
        from .cnn import class_weight_from_name
        from .hybrid import HybridCNN

        return HybridCNN(arch=CNN_PRESETS[settings.cnn_preset][1], epochs=settings.cnn_epochs,
                         learning_rate=settings.cnn_learning_rate,
                         max_class_weight=settings.cnn_max_class_weight,
                         class_weight=class_weight_from_name(settings.cnn_class_weight),
                         label_smoothing=settings.cnn_label_smoothing,
                         random_state=settings.seed)
    if kind == "rpca_nearest":
        from pipeline.rpca_dmdt import DmDtRPCA

        return DmDtRPCA(settings.rpca_rank_background, settings.rpca_rank_class, cv=None,
                        random_state=settings.seed)
    raise ValueError(f"unknown model {kind!r}")


#: The input file each model reads (a key of the ``paths`` given to fit/predict).
MODEL_INPUT: dict[str, str] = {"forest": "features", "cnn": "cnn_images",
                               "rpca_nearest": "rpca_images", "hybrid": "features"}
#: Models saved as a folder (Keras networks).
_FOLDER_MODELS = ("cnn", "hybrid")


def _inputs(kind: str, paths: dict[str, str], ids: np.ndarray | None, settings: TrainSettings,
            model_info: dict[str, Any] | None = None) -> tuple[np.ndarray, Any, dict[str, Any]]:
    if kind == "hybrid":
        from .hybrid import hybrid_inputs

        info = (model_info or {}).get("input_meta", {})
        f_ids, F, f_meta = forest_inputs(paths["features"], ids, info.get("feature_names"),
                                         info.get("feature_set_version"))
        i_ids, X, i_meta = image_inputs(paths["cnn_images"], f_ids,
                                        CNN_PRESETS[settings.cnn_preset][0])
        return f_ids, hybrid_inputs(X, F.to_numpy(np.float64)), {**i_meta, **f_meta}
    if MODEL_INPUT[kind] == "features":
        info = model_info or {}
        return forest_inputs(paths["features"], ids, info.get("feature_names"),
                             info.get("feature_set_version"))
    if kind == "cnn":
        return image_inputs(paths["cnn_images"], ids, CNN_PRESETS[settings.cnn_preset][0])
    return image_inputs(paths["rpca_images"], ids, "rpca")


def fit_model(kind: str, paths: dict[str, str], split_path: str | os.PathLike[str],
              settings: TrainSettings, out: str | os.PathLike[str],
              part: str = "train") -> str:
    """Fit model ``kind`` on the ``part`` ('train' or 'all' labelled objects) and save it.

    Parameters
    ----------
    kind : {'forest', 'cnn', 'rpca_nearest'}
    paths : dict
        ``features``, ``cnn_images`` and ``rpca_images`` file paths.
    split_path : path-like
        :func:`make_split` output.
    settings : TrainSettings
    out : path-like
        Model file (``.skops`` forest, ``.npz`` robust PCA) or folder (CNN).
    part : {'train', 'all'}, default='train'

    Returns
    -------
    str
        ``out``.
    """
    from pipeline.hashing import data_hash

    split = read_split(split_path)
    sel = split if part == "all" else split[split["split"] == "train"]
    ids = sel["object_id"].to_numpy().astype(str)
    y = sel["label"].to_numpy().astype(str)
    ids, X, meta = _inputs(kind, paths, ids, settings)
    est = _estimator(kind, settings)
    if kind == "forest":
        from .forest import save_forest

        est.fit(X, y)
        save_forest(est, out, feature_names=meta["feature_names"],
                    feature_set_version=meta["feature_set_version"],
                    training_hash=data_hash(X.to_numpy(), y, names=meta["feature_names"],
                                            object_ids=ids),
                    extra={"part": part, "n_objects": int(len(y))})
    elif kind in _FOLDER_MODELS:
        est.fit(X, y, input_meta=meta)
        est.save(out)
    else:
        from pipeline.rpca_dmdt import save_rpca

        est.fit(X, y)
        save_rpca(est, out, extra={"image_meta": meta, "part": part,
                                   "training_data_hash": data_hash(X, y, object_ids=ids)})
    return str(out)


_LOADED: dict[tuple[str, str, int], tuple[Any, dict[str, Any]]] = {}
_LOADED_LOCK = threading.Lock()


def load_model_cached(kind: str, path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """:func:`load_model`, kept in memory per process (keyed on path and modification time).

    The classify flow's chunk tasks share one loaded copy of each model instead of
    reading it again per chunk (the forest alone takes ~1 s to load). Only the models of
    the last bundle used are kept.
    """
    p = Path(path).resolve()
    marker = p / "model.json" if p.is_dir() else p
    key = (kind, str(p), marker.stat().st_mtime_ns)
    with _LOADED_LOCK:
        if key not in _LOADED:
            for k in [k for k in _LOADED if k[0] == kind]:
                del _LOADED[k]
            _LOADED[key] = load_model(kind, p)
        return _LOADED[key]


def load_model(kind: str, path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Load a model saved by :func:`fit_model` (safely: no code runs from the file)."""
    if kind == "forest":
        from .forest import load_forest

        return load_forest(path)
    if kind in _FOLDER_MODELS:
        from .cnn import load_cnn

        est = load_cnn(path)
        return est, {"input_meta": est.input_meta_, "training_data_hash": est.training_hash_}
    if kind == "stack":
        from .stacking import load_stack

        return load_stack(path)
    from pipeline.rpca_dmdt import load_rpca

    return load_rpca(path)


def predict_model(kind: str, model: Any, meta: dict[str, Any], paths: dict[str, str],
                  ids: np.ndarray | None, settings: TrainSettings
                  ) -> tuple[np.ndarray, list[str], np.ndarray | None, np.ndarray,
                             dict[str, np.ndarray]]:
    """Predictions of a loaded model on objects ``ids`` (all objects of the inputs if None).

    Returns
    -------
    (ids, classes, proba, predicted, extra)
        ``proba`` is None for ``rpca_nearest``, whose ``extra`` holds the
        per-class reconstruction errors ``err`` and sparse energies ``l1``
        (shape (n, n_classes), sqrt-pixel units).
    """
    ids, X, in_meta = _inputs(kind, paths, ids, settings, meta)
    classes = [str(c) for c in model.classes_]
    if kind == "rpca_nearest":
        dec = model.decompose(X)
        pred = np.asarray(classes)[np.argmin(dec["err"], axis=1)] if len(ids) else np.zeros(0)
        return ids, classes, None, pred, {"err": dec["err"], "l1": dec["l1"]}
    if kind in _FOLDER_MODELS:
        model.check_input_meta(in_meta, source=paths["cnn_images"])
    if kind == "hybrid" and list(model.input_meta_.get("feature_names", [])) != list(
            in_meta.get("feature_names", [])):
        raise InputError(paths["features"], "its feature columns differ from those the hybrid "
                         "network was trained on")
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    return ids, classes, proba, np.asarray(classes)[np.argmax(proba, axis=1)], {}


def evaluate_model(kind: str, paths: dict[str, str], split_path: str | os.PathLike[str],
                   settings: TrainSettings, workdir: str | os.PathLike[str], run_id: str
                   ) -> dict[str, Any]:
    """Fit on the training part, predict the test part (and CV folds when asked).

    Writes ``<workdir>/<kind>.model`` (the fitted model) and
    ``<workdir>/<kind>.predictions.parquet`` (lcpipe's prediction schema,
    splits 'test' and 'cv'). With CV folds and ``settings.calibrate``, a model with
    probabilities is temperature-scaled (:func:`models.evaluation.fit_temperature` on its
    out-of-fold probabilities): the test probabilities with the temperature of all folds,
    the CV ones of fold k with that of the other folds.

    Returns
    -------
    dict
        ``model`` and ``predictions`` paths, ``fit_seconds``, ``temperature`` (None when
        not calibrated).
    """
    from .evaluation import apply_temperature, calibrate_out_of_fold, cross_validate
    from .predictions import class_columns, prediction_frame, write_predictions

    wd = Path(workdir)
    temperature = None
    split = read_split(split_path)
    classes = _classes_of(split)
    model_path = wd / (f"{kind}.skops" if kind == "forest" else
                       f"{kind}.npz" if kind == "rpca_nearest" else kind)  # networks: folders
    t0 = time.perf_counter()
    fit_model(kind, paths, split_path, settings, model_path, part="train")
    fit_seconds = time.perf_counter() - t0
    model, meta = load_model(kind, model_path)
    test = split[split["split"] == "test"]
    ids, m_classes, proba, pred, _ = predict_model(kind, model, meta, paths,
                                                   test["object_id"].to_numpy().astype(str),
                                                   settings)
    test_proba = class_columns(proba, m_classes, classes)
    frames = []
    train = split[split["split"] == "train"].reset_index(drop=True)
    if settings.cv_folds and len(train):
        tr_ids, X, in_meta = _inputs(kind, paths, train["object_id"].to_numpy().astype(str),
                                     settings)
        y = train["label"].to_numpy().astype(str)
        fold = train["fold"].to_numpy(dtype=np.int64)
        folds = [(np.flatnonzero(fold != i), np.flatnonzero(fold == i))
                 for i in range(settings.cv_folds)]
        est = _estimator(kind, settings)
        if kind == "rpca_nearest":
            from pipeline.rpca_dmdt import NearestSubspaceClassifier

            est = NearestSubspaceClassifier(settings.rpca_rank_background,
                                            settings.rpca_rank_class)
        oof = cross_validate(est, X, y, folds,
                             fit_params={"input_meta": in_meta} if kind in _FOLDER_MODELS
                             else None)
        cv_proba = None if oof.proba is None else class_columns(oof.proba, oof.classes,
                                                                 classes)
        if cv_proba is not None and settings.calibrate:
            temperature, cv_proba = calibrate_out_of_fold(y, cv_proba, oof.fold, classes)
            test_proba = apply_temperature(test_proba, temperature)
        frames.append(prediction_frame(tr_ids, kind, classes, cv_proba, oof.y_pred,
                                       run_id=run_id, split="cv", fold=oof.fold, true_class=y))
    frames.insert(0, prediction_frame(ids, kind, classes, test_proba, pred, run_id=run_id,
                                      split="test", true_class=test["label"].to_numpy()))
    pred_path = wd / f"{kind}.predictions.parquet"
    write_predictions(pd.concat(frames, ignore_index=True), pred_path,
                      metadata={"model": kind, "trained_on": "training part",
                                "temperature": temperature})
    return {"model": str(model_path), "predictions": str(pred_path),
            "fit_seconds": round(fit_seconds, 2), "temperature": temperature}


def evaluate_stack(predictions: dict[str, str], split_path: str | os.PathLike[str],
                   workdir: str | os.PathLike[str], run_id: str) -> dict[str, Any]:
    """Fit the stacked ensemble on the base models' out-of-fold probabilities.

    The meta-model (:class:`models.stacking.StackedClassifier`) is fitted on the CV
    predictions (split 'cv') of the base models over the training part (those of
    :data:`STACK_BASES` in ``predictions``, in that order), and predicts the test part from
    their test predictions. Its own CV predictions come from a meta-model per fold fitted on
    the other folds (the same folds).

    Parameters
    ----------
    predictions : dict
        Base model -> its :func:`evaluate_model` prediction file (with split 'cv'); at
        least :data:`STACK_REQUIRED`.

    Returns
    -------
    dict
        ``model`` (``<workdir>/stack.npz``), ``predictions``
        (``<workdir>/stack.predictions.parquet``), ``fit_seconds``, ``exponents`` (base
        model -> its exponent in the pool).
    """
    from .evaluation import cross_validate
    from .predictions import class_columns, prediction_frame, read_predictions, write_predictions
    from .stacking import (
        StackedClassifier,
        base_probabilities,
        save_stack,
        stack_predictions,
    )

    wd = Path(workdir)
    split = read_split(split_path)
    classes = _classes_of(split)
    missing = [b for b in STACK_REQUIRED if b not in predictions]
    if missing:
        raise ConfigError(f"the stack needs the predictions of {', '.join(missing)}")
    bases = [b for b in STACK_BASES if b in predictions]
    frames = {b: read_predictions(predictions[b])[0] for b in bases}
    train = split[split["split"] == "train"].sort_values("object_id")
    if train["fold"].isna().any():
        raise InputError(split_path, "the stack needs CV folds of the training part "
                         "(set cv_folds)")
    t0 = time.perf_counter()
    cv = {b: f[f["split"] == "cv"] for b, f in frames.items()}
    ids, X = base_probabilities(cv, bases, classes,
                                train["object_id"].to_numpy().astype(str))
    y = train["label"].to_numpy().astype(str)
    est = StackedClassifier(base_models=bases, classes=classes).fit(X, y)
    model_path = save_stack(est, wd / "stack.npz", extra={
        "classes": classes, "trained_on": "out-of-fold probabilities of the training part"})
    fit_seconds = time.perf_counter() - t0
    test = split[split["split"] == "test"]
    te = {b: f[f["split"] == "test"] for b, f in frames.items()}
    out = [stack_predictions(est, te, classes, run_id=run_id, split="test",
                             object_ids=test["object_id"].to_numpy().astype(str),
                             true_class=test["label"].to_numpy())]
    fold = train["fold"].to_numpy(dtype=np.int64)
    folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
             for k in range(int(fold.max()) + 1)]
    oof = cross_validate(StackedClassifier(base_models=bases, classes=classes), X, y, folds)
    out.append(prediction_frame(ids, "stack", classes,
                                class_columns(oof.proba, oof.classes, classes), run_id=run_id,
                                split="cv", fold=oof.fold, true_class=y))
    pred_path = wd / "stack.predictions.parquet"
    write_predictions(pd.concat(out, ignore_index=True), pred_path,
                      metadata={"model": "stack", "trained_on": "training part"})
    return {"model": str(model_path), "predictions": str(pred_path),
            "fit_seconds": round(fit_seconds, 2),
            "exponents": {b: round(float(w), 4) for b, w in zip(bases, est.weights_,
                                                                 strict=True)}}
