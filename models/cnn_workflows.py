"""File-level CNN tasks: train, predict, cross-validate, saliency (one function each).

These are what ``lcpipe cnn ...`` runs. They read dm-dt Parquet files
(:func:`pipeline.dmdt.read_dmdt`) or light-curve tables, turn them into
network input with a named representation (:mod:`models.representations`),
and write models, tables and figures atomically. Keras is imported only
when a network is built or loaded (:mod:`models.cnn`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import ConfigError, InputError
from pipeline.io import atomic_path, write_json_atomic, write_parquet_atomic

from .representations import (
    REPRESENTATIONS,
    augmented_inputs,
    get_representation,
    images_to_inputs,
    lightcurves_to_inputs,
)

__all__ = [
    "CVRun",
    "CNNTrainConfig",
    "train_cnn",
    "predict_cnn",
    "cross_validate_cnn",
    "saliency_report",
    "plot_training_curves",
    "plot_saliency",
    "mean_saliency",
]


@dataclass(frozen=True)
class CNNTrainConfig:
    """Training settings shared by ``train`` and ``cv`` (estimator parameters + augmentation).

    Parameters
    ----------
    epochs : int, default=30
        Maximum epochs (early stopping on the validation loss).
    batch_size : int, default=64
    learning_rate : float, optional
        Default: the architecture's (``models.cnn.DEFAULT_LEARNING_RATE``).
    validation_fraction : float, default=0.15
    patience : int, default=4
    max_class_weight : float, default=10.0
        Cap of the balanced class weights.
    class_weight : {'balanced', None}, default=None
        Class weights of the loss (``None``: every object counts the same).
    label_smoothing : float, default=0.0
        Label smoothing of the loss (``models.cnn.DmDtCNN``).
    seed : int, default=0
        Seed of the network, the validation split and the augmentation.
    augment_fraction : (float, float), default=(0.4, 0.9)
        Range of the fraction of points kept in an augmented copy.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float | None = None
    validation_fraction: float = 0.15
    patience: int = 4
    max_class_weight: float = 10.0
    class_weight: str | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    augment_fraction: tuple[float, float] = (0.4, 0.9)

    def estimator(self, arch: str):
        """A fresh, unfitted :class:`models.cnn.DmDtCNN` with these settings."""
        from .cnn import DmDtCNN

        return DmDtCNN(arch=arch, epochs=self.epochs, batch_size=self.batch_size,
                       learning_rate=self.learning_rate,
                       validation_fraction=self.validation_fraction, patience=self.patience,
                       max_class_weight=self.max_class_weight,
                       class_weight=self.class_weight,
                       label_smoothing=self.label_smoothing, random_state=self.seed)


@dataclass(frozen=True)
class CVRun:
    """One cross-validated configuration: representation x architecture x augmentation."""

    representation: str
    arch: str
    augment: int = 0

    @property
    def name(self) -> str:
        """``'<representation>/<arch>'`` plus ``'+aug<k>'`` when augmented."""
        return f"{self.representation}/{self.arch}" + (f"+aug{self.augment}"
                                                        if self.augment else "")


# --------------------------------------------------------------------------- figures


def plot_training_curves(history: pd.DataFrame, path: str | os.PathLike[str],
                         title: str = "") -> Path:
    """PNG of loss and accuracy (training and validation) per epoch, with the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = history["epoch"]
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(ep, history[key], "o-", ms=3, label=f"training {key}")
        if history[f"val_{key}"].notna().any():
            ax.plot(ep, history[f"val_{key}"], "s-", ms=3, label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"class-weighted {key}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if history["learning_rate"].notna().any():
        ax2 = axes[0].twinx()
        ax2.plot(ep, history["learning_rate"], "k:", lw=1)
        ax2.set_yscale("log")
        ax2.set_ylabel("learning rate (dotted)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _edge_ticks(edges: np.ndarray, n_ticks: int) -> tuple[np.ndarray, list[str]]:
    """Tick positions (bin-index units, at edges) and labels in physical units."""
    pos = np.unique(np.linspace(0, len(edges) - 1, n_ticks).round().astype(int))
    return pos - 0.5, [f"{edges[p]:.3g}" for p in pos]


def plot_saliency(maps: np.ndarray, titles: Sequence[str], dm_edges: Sequence[float],
                  dt_edges: Sequence[float], channels: Sequence[str],
                  path: str | os.PathLike[str]) -> Path:
    """PNG grid of saliency images: one row per map (e.g. class), one column per channel.

    Pixels are drawn on the bin grid (one cell per dm-dt bin, as the network
    sees them); axis ticks are labelled with the bin edges in days (dt) and
    mag (dm).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = np.asarray(maps)
    n_rows, n_dm, n_dt, n_ch = maps.shape
    dm_edges, dt_edges = np.asarray(dm_edges), np.asarray(dt_edges)
    fig, axes = plt.subplots(n_rows, n_ch, figsize=(4.6 * n_ch, 3.0 * n_rows), squeeze=False)
    xt, xl = _edge_ticks(dt_edges, 7)
    yt, yl = _edge_ticks(dm_edges, 7)
    for r in range(n_rows):
        for c in range(n_ch):
            ax = axes[r, c]
            im = ax.imshow(maps[r, :, :, c], origin="lower", aspect="auto", cmap="magma",
                           interpolation="nearest")
            ax.set_xticks(xt, xl, fontsize=7)
            ax.set_yticks(yt, yl, fontsize=7)
            ax.set_xlabel("dt [days]", fontsize=8)
            ax.set_ylabel("dm [mag]", fontsize=8)
            ax.set_title(f"{titles[r]} - {channels[c]}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- train / predict


def _read_images(dmdt_path: str | os.PathLike[str], representation: str | None):
    """Read a dm-dt file and pick/validate the representation."""
    from pipeline.dmdt import read_dmdt

    images = read_dmdt(dmdt_path)
    if len(images) == 0:
        raise InputError(dmdt_path, "no images: the dm-dt table has 0 rows")
    if representation is None:
        bins = images.meta.get("bins")
        matches = [r.name for r in REPRESENTATIONS.values()
                   if r.bins.name == bins and images.meta.get("norm") in (r.file_norm, "counts")]
        if len(matches) != 1:
            raise ConfigError(f"cannot tell the representation of {dmdt_path} (bins {bins!r}, "
                              f"norm {images.meta.get('norm')!r}): pass one of "
                              f"{', '.join(REPRESENTATIONS)}")
        representation = matches[0]
    X, meta = images_to_inputs(images, representation, source=dmdt_path)
    return images, X, meta, get_representation(representation)


def train_cnn(
    dmdt_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    arch: str = "vgg6",
    representation: str | None = None,
    classes: str | Sequence[str] = "all",
    config: CNNTrainConfig | None = None,
    augment: int = 0,
    lightcurves_path: str | os.PathLike[str] | None = None,
    tensorboard_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train a CNN on a dm-dt file and save it with its training curves.

    Parameters
    ----------
    dmdt_path : path-like
        dm-dt Parquet from ``lcpipe dmdt`` (``--norm counts``, or the
        representation's own normalisation).
    labels_path : path-like
        ``object_id,label`` table; unlabelled objects are not used (counted).
    outdir : path-like
        Model folder: ``model.keras``, ``model.json``,
        ``training_curves.parquet`` and ``training_curves.png``.
    arch : {'mahabal2017', 'vgg6', 'dmdtnet'}, default='vgg6'
    representation : {'paper', 'fine'}, optional
        Default: inferred from the file's bins and normalisation.
    classes : {'all', 'paper7'} or list of str, default='all'
    config : CNNTrainConfig, optional
    augment : int, default=0
        Sparser-cadence copies per object (needs ``lightcurves_path``).
    lightcurves_path : path-like, optional
        Light curves of the same objects, for augmentation.
    tensorboard_dir : path-like, optional
        Write TensorBoard logs there (``DmDtCNN.fit(tensorboard=...)``: loss and
        accuracy curves, weight histograms). Off by default. Must lie outside
        ``outdir``, which holds the model only.

    Returns
    -------
    dict
        Summary (objects used, classes, epochs, seconds, output paths).

    Raises
    ------
    ConfigError
        ``tensorboard_dir`` inside ``outdir``, or the tensorboard package missing.
    """
    from pipeline.labels import join_labels, read_labels

    config = config or CNNTrainConfig()
    if tensorboard_dir is not None:
        from .cnn import _check_tensorboard

        _check_tensorboard()
        model_dir = Path(outdir).resolve()
        if Path(tensorboard_dir).resolve().is_relative_to(model_dir):
            raise ConfigError(f"--tensorboard {tensorboard_dir}: the logs must go outside "
                              f"the model folder {outdir} (it holds the model only)")
    images, X, meta, rep = _read_images(dmdt_path, representation)
    joined = join_labels(images.object_id, read_labels(labels_path), classes, source=labels_path)
    keep, y = joined.index, joined.y
    X = X[keep]
    augmentation = None
    if augment:
        if lightcurves_path is None:
            raise ConfigError("augmentation needs the light curves (--lightcurves)")
        from pipeline.lightcurves import read_lightcurves

        lcs = read_lightcurves(lightcurves_path)
        lcs = _subset_objects(lcs, images.object_id[keep], lightcurves_path)
        augmentation = augmented_inputs(lcs, rep, augment, config.augment_fraction,
                                        seed=config.seed, bands=meta["bands"])
    est = config.estimator(arch)
    t0 = time.perf_counter()
    est.fit(X, y, augmentation=augmentation, input_meta=meta, tensorboard=tensorboard_dir)
    seconds = time.perf_counter() - t0
    out = Path(outdir)
    est.save(out)
    write_parquet_atomic(pa.Table.from_pandas(est.history_, preserve_index=False),
                         out / "training_curves.parquet",
                         metadata={"lcpipe.cnn": {"arch": arch, "representation": rep.name}})
    plot_training_curves(est.history_, out / "training_curves.png",
                         title=f"{arch} on {rep.name} ({len(y)} objects)")
    return {
        "model": str(out),
        "arch": arch,
        "representation": rep.name,
        "objects": int(len(y)),
        "unlabelled_or_other_class": int(len(images) - len(y)),
        "augmented_images": int(est.n_augmented_),
        "classes": [str(c) for c in est.classes_],
        "epochs": int(len(est.history_)),
        "best_epoch": int(est.best_epoch_),
        "train_seconds": round(seconds, 2),
        "tensorboard": None if tensorboard_dir is None else str(tensorboard_dir),
    }


def _subset_objects(lcs, object_ids: np.ndarray, source: object):
    """LightCurves of ``object_ids`` in that order (every id must be present)."""
    from pipeline.lightcurves import LightCurves

    pos = pd.Index(lcs.object_id.astype(str))
    want = pd.Index(np.asarray(object_ids).astype(str))
    series_of = {}
    for i, o in enumerate(pos):
        series_of.setdefault(o, []).append(i)
    missing = [o for o in want if o not in series_of]
    if missing:
        raise InputError(source, f"{len(missing)} objects have no light curve "
                         f"(first: {missing[0]})")
    sel = np.asarray([i for o in want for i in series_of[o]], dtype=np.int64)
    lens = lcs.n_points[sel]
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1]) for i in sel])
    return LightCurves(object_id=lcs.object_id[sel], band=lcs.band[sel],
                       offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                       t=lcs.t[rows], mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])


def predict_cnn(
    dmdt_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Classify the objects of a dm-dt file with a saved model.

    The file must be on the model's grid, bands and representation
    (otherwise :class:`InputError` says which ``lcpipe dmdt`` options to use).
    Writes lcpipe's prediction schema (:mod:`models.predictions`; model
    ``'cnn'``, split ``'classify'``).
    """
    from .cnn import load_cnn
    from .predictions import new_run_id, prediction_frame, write_predictions

    est = load_cnn(model_dir)
    rep_name = est.input_meta_.get("preset")
    if rep_name is None:
        raise InputError(model_dir, "model metadata has no input representation")
    images, X, meta, _ = _read_images(dmdt_path, rep_name)
    est.check_input_meta(meta, source=dmdt_path)
    t0 = time.perf_counter()
    proba = est.predict_proba(X)
    seconds = time.perf_counter() - t0
    pred = prediction_frame(images.object_id, "cnn", est.classes_, proba,
                            run_id=new_run_id("cnn"), split="classify")
    write_predictions(pred, out, metadata={"model": str(model_dir), "input": str(dmdt_path),
                                           "training_data_hash": est.training_hash_})
    return {"output": str(out), "objects": int(len(images)),
            "images_per_second": round(len(images) / max(seconds, 1e-9), 1)}


# --------------------------------------------------------------------------- cross-validation


@dataclass
class _CVData:
    object_id: np.ndarray
    y: np.ndarray
    X: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    aug: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def cross_validate_cnn(
    lightcurves_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    runs: Sequence[CVRun],
    classes: str | Sequence[str] = "paper7",
    config: CNNTrainConfig | None = None,
    n_splits: int = 5,
    fold_seed: int = 0,
    log: Any = None,
) -> dict[str, Any]:
    """Stratified k-fold cross-validation of CNN configurations on light curves.

    Objects are sorted by ``object_id`` and split with
    :func:`models.evaluation.stratified_folds` (``n_splits``, ``fold_seed``),
    the folds every lcpipe classifier uses. Images are computed once per
    representation; augmented copies (if any run asks for them) once per
    representation, from all objects, and each fold trains on the copies of its
    training objects only. Every run is scored with
    :func:`models.evaluation.metrics_report` on its out-of-fold predictions.

    Writes ``cv_results.json`` (all reports, per-fold times and epochs),
    ``cv_results.md`` (summary table, then each run's report) and
    ``oof_predictions.parquet`` (lcpipe's prediction schema, split ``'cv'``, one
    row per object and run, ``model`` = the run's name) into ``outdir``.

    Parameters
    ----------
    lightcurves_path, labels_path : path-like
        Light-curve table (raw input is cleaned) and ``object_id,label`` table.
    outdir : path-like
        Output folder.
    runs : sequence of CVRun
        Configurations to evaluate.
    classes : {'paper7', 'all'} or list of str, default='paper7'
    config : CNNTrainConfig, optional
    n_splits : int, default=5
    fold_seed : int, default=0
    log : callable, optional
        Called with one progress line per fold.

    Returns
    -------
    dict
        The content of ``cv_results.json``.
    """
    from pipeline.labels import join_labels, read_labels
    from pipeline.lightcurves import read_lightcurves

    from .evaluation import cross_validate, format_report, metrics_report, stratified_folds
    from .predictions import class_columns, new_run_id, prediction_frame, write_predictions

    config = config or CNNTrainConfig()
    if not runs:
        raise ConfigError("no CV run given")
    for r in runs:
        get_representation(r.representation)
    labels = read_labels(labels_path)
    lcs = read_lightcurves(lightcurves_path)
    all_ids = np.sort(pd.unique(lcs.object_id.astype(str)))
    joined = join_labels(all_ids, labels, classes, source=labels_path)
    ids, y, cls = joined.object_id, joined.y, joined.classes
    lcs = _subset_objects(lcs, ids, lightcurves_path)
    data = _CVData(object_id=ids, y=y)
    t_prep = time.perf_counter()
    for r in runs:
        if r.representation not in data.X:
            oid, X, meta = lightcurves_to_inputs(lcs, r.representation)
            if not np.array_equal(oid.astype(str), ids):  # pragma: no cover - invariant
                raise RuntimeError("dm-dt images came back in another object order")
            data.X[r.representation], data.meta[r.representation] = X, meta
        if r.augment and (r.representation, r.augment) not in data.aug:
            data.aug[(r.representation, r.augment)] = augmented_inputs(
                lcs, r.representation, r.augment, config.augment_fraction, seed=config.seed,
                bands=data.meta[r.representation]["bands"])
    prep_seconds = time.perf_counter() - t_prep
    folds = stratified_folds(y, n_splits=n_splits, seed=fold_seed)

    results: list[dict[str, Any]] = []
    preds: dict[str, pd.DataFrame] = {}
    run_id = new_run_id("cnn-cv")
    for r in runs:
        fit_params: dict[str, Any] = {"input_meta": data.meta[r.representation]}
        if r.augment:
            fit_params["augmentation"] = data.aug[(r.representation, r.augment)]

        def _epochs(i: int, est: Any, X_te: Any, y_te: Any) -> tuple[int, int]:
            return int(len(est.history_)), int(est.best_epoch_)

        def _log(line: str, name: str = r.name) -> None:
            if log is not None:
                log(f"{name}: {line}")

        oof = cross_validate(config.estimator(r.arch), data.X[r.representation], y, folds,
                             fit_params=fit_params, fold_callback=_epochs, log=_log)
        report = metrics_report(y, oof.y_pred.astype(str), cls)
        results.append({"run": r.name, **asdict(r), "report": report,
                        "fit_seconds": [round(x, 2) for x in oof.fit_seconds],
                        "epochs": [e for e, _ in oof.fold_extras],
                        "best_epoch": [b for _, b in oof.fold_extras]})
        preds[r.name] = prediction_frame(
            ids, r.name, cls, class_columns(oof.proba, oof.classes, cls), run_id=run_id,
            split="cv", fold=oof.fold, true_class=y)

    out = Path(outdir)
    summary = {
        "lightcurves": str(lightcurves_path),
        "labels": str(labels_path),
        "classes": cls,
        "n_objects": int(len(y)),
        "n_splits": n_splits,
        "fold_seed": fold_seed,
        "config": asdict(config),
        "prep_seconds": round(prep_seconds, 2),
        "runs": results,
    }
    write_json_atomic(summary, out / "cv_results.json")
    write_predictions(pd.concat(list(preds.values()), ignore_index=True),
                      out / "oof_predictions.parquet",
                      metadata={"lcpipe.cnn_cv": {"classes": cls, "n_splits": n_splits,
                                                  "fold_seed": fold_seed}})
    md = [f"# CNN {n_splits}-fold CV: {len(cls)} classes, {len(y)} objects", "",
          cv_summary_table(summary), ""]
    md += [format_report(res["report"], title=res["run"]) for res in results]
    with atomic_path(out / "cv_results.md") as tmp:
        tmp.write_text("\n".join(md))
    return summary


def cv_summary_table(summary: dict[str, Any]) -> str:
    """Markdown table: one row per run with accuracy, balanced accuracy, macro-F1, recalls."""
    cls = summary["classes"]
    head = ("| run | accuracy | bal. acc. | macro-F1 | " + " | ".join(cls)
            + " | fit s/fold | epochs |")
    lines = [head, "|---|" + "---:|" * (len(cls) + 5)]
    for res in summary["runs"]:
        rep = res["report"]
        rec = " | ".join(f"{rep['per_class_recall'][c]:.2f}" for c in cls)
        lines.append(f"| {res['run']} | {rep['accuracy']:.3f} | {rep['balanced_accuracy']:.3f} "
                     f"| {rep['macro_f1']:.3f} | {rec} | {np.mean(res['fit_seconds']):.0f} "
                     f"| {np.mean(res['epochs']):.0f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- saliency


def mean_saliency(saliency: np.ndarray, groups: np.ndarray, classes: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean of saliency maps, each map first scaled to max 1.

    Parameters
    ----------
    saliency : ndarray of shape (N, n_dm, n_dt, n_channels)
    groups : ndarray of shape (N,)
        Class of each map.
    classes : sequence of str
        Output order.

    Returns
    -------
    maps : ndarray of shape (n_classes, n_dm, n_dt, n_channels)
        Mean scaled saliency (0 for a class without objects).
    counts : ndarray of int64, shape (n_classes,)
    """
    mx = saliency.max(axis=(1, 2, 3), keepdims=True)
    scaled = saliency / np.where(mx > 0, mx, 1.0)
    maps = np.zeros((len(classes), *saliency.shape[1:]), dtype=np.float64)
    counts = np.zeros(len(classes), dtype=np.int64)
    for k, c in enumerate(classes):
        sel = groups == c
        counts[k] = int(sel.sum())
        if counts[k]:
            maps[k] = scaled[sel].mean(axis=0)
    return maps, counts


def _long_maps(maps: np.ndarray, key: str, keys: np.ndarray, meta: dict[str, Any],
               extra: dict[str, np.ndarray] | None = None, value: str = "saliency"
               ) -> pa.Table:
    """Long table: one row per (map, dm bin, dt bin, channel) with physical bin edges."""
    n, n_dm, n_dt, n_ch = maps.shape
    dm, dt = np.asarray(meta["dm_edges"]), np.asarray(meta["dt_edges"])
    i_dm, i_dt, i_ch = (a.ravel() for a in np.meshgrid(np.arange(n_dm), np.arange(n_dt),
                                                         np.arange(n_ch), indexing="ij"))
    per = n_dm * n_dt * n_ch
    cols: dict[str, Any] = {key: np.repeat(keys.astype(str), per)}
    for k, v in (extra or {}).items():
        cols[k] = np.repeat(v, per)
    cols.update({
        "channel": np.tile(np.asarray(meta["channels"], dtype=object)[i_ch], n),
        "dm_bin": np.tile(i_dm, n), "dt_bin": np.tile(i_dt, n),
        "dm_lo": np.tile(dm[i_dm], n), "dm_hi": np.tile(dm[i_dm + 1], n),
        "dt_lo": np.tile(dt[i_dt], n), "dt_hi": np.tile(dt[i_dt + 1], n),
        value: maps.reshape(n, -1).ravel(),
    })
    return pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)


def saliency_report(
    dmdt_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    object_ids: Sequence[str] | None = None,
    method: str = "saliency",
) -> dict[str, Any]:
    """Saliency maps (or class activation maps) of a saved model on a dm-dt file.

    For each object, the saliency map is ``|d score_c / d image|`` for its
    class ``c`` (the true class when ``labels_path`` gives one among the
    model's classes, else the predicted class). Per-class means of the maps
    (each scaled to max 1) go to ``mean_saliency.parquet`` and
    ``mean_saliency.png``; the maps of ``object_ids`` (if given) to
    ``object_saliency.parquet`` and ``object_saliency.png``. Tables are long:
    one row per (class or object, channel, dm bin, dt bin) with the bin
    edges ``dm_lo``, ``dm_hi`` [mag] and ``dt_lo``, ``dt_hi`` [days].

    ``method='gradcam'`` writes class activation maps of the last convolution instead
    (:meth:`models.cnn.DmDtCNN.grad_cam`, one map for all bands, channel ``'all'``) to
    ``mean_gradcam.*`` and ``object_gradcam.*``, value column ``gradcam``.
    """
    if method not in ("saliency", "gradcam"):
        raise ConfigError(f"unknown map method {method!r}: use 'saliency' or 'gradcam'")
    from pipeline.labels import read_labels

    from .cnn import load_cnn

    est = load_cnn(model_dir)
    images, X, meta, _ = _read_images(dmdt_path, est.input_meta_.get("preset"))
    est.check_input_meta(meta, source=dmdt_path)
    classes = [str(c) for c in est.classes_]
    pred = est.predict(X).astype(str)
    target = pred.copy()
    basis = "predicted"
    if labels_path is not None:
        lab = read_labels(labels_path).reindex(pd.Index(images.object_id.astype(str)))
        truth = lab.to_numpy(dtype=object)
        ok = lab.notna().to_numpy() & np.isin(truth.astype(str), classes)
        target[ok] = truth[ok].astype(str)
        basis = "true where labelled, else predicted"
    if method == "gradcam":
        sal = est.grad_cam(X, target)[..., None]
        meta = {**meta, "channels": ["all"]}
    else:
        sal = est.saliency(X, target)
    maps, counts = mean_saliency(sal, target, classes)
    out = Path(outdir)
    write_parquet_atomic(_long_maps(maps, "class", np.asarray(classes), meta,
                                    {"n_objects": counts[np.arange(len(classes))]}, method),
                         out / f"mean_{method}.parquet",
                         metadata={"lcpipe.saliency": {"model": str(model_dir), "basis": basis,
                                                       "method": method,
                                                       "scaling": "each map / its max"}})
    plot_saliency(maps, [f"{c} (n={n})" for c, n in zip(classes, counts, strict=True)],
                  meta["dm_edges"], meta["dt_edges"], meta["channels"],
                  out / f"mean_{method}.png")
    summary: dict[str, Any] = {"objects": int(len(X)), "basis": basis,
                               f"mean_{method}": str(out / f"mean_{method}.parquet")}
    if object_ids:
        idx = pd.Index(images.object_id.astype(str)).get_indexer(list(object_ids))
        if (idx < 0).any():
            raise InputError(dmdt_path, "object not in the dm-dt file",
                             object_id=list(object_ids)[int(np.flatnonzero(idx < 0)[0])])
        write_parquet_atomic(
            _long_maps(sal[idx], "object_id", images.object_id[idx], meta,
                       {"target": target[idx], "prediction": pred[idx]}, method),
            out / f"object_{method}.parquet")
        plot_saliency(sal[idx], [f"{o}: {t}" for o, t in zip(images.object_id[idx], target[idx],
                                                             strict=True)],
                      meta["dm_edges"], meta["dt_edges"], meta["channels"],
                      out / f"object_{method}.png")
        summary[f"object_{method}"] = str(out / f"object_{method}.parquet")
    return summary
