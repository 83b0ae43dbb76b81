"""How stable is each prediction under the measurement errors and a sparser cadence? (issue 14)

Error bars (:func:`error_robustness`): every magnitude is redrawn from N(mag, mag_err)
``k`` times (seeded); each redrawn set of light curves is classified by the bundle exactly
as ``lcpipe classify`` does (:func:`models.bundle.classify_chunk`: dm-dt images, features,
every model), and each object's answers are compared with its answer on the light curves
as measured. Per object and model: the fraction of draws that keep the predicted class
(``stable_fraction``: 1 = the error bars never change the answer) and the standard
deviation over draws of the probability of that class. Per model and predicted class:
their means. A model that ignores the magnitudes is fully stable by construction (tested).

Cadence (:func:`cadence_robustness`): each light curve keeps a random fraction of its
points (each point independently, :func:`models.representations.subsample_lightcurves`);
per model and fraction kept: the accuracy (with labels) and the fraction of objects whose
answer is the one on the full light curve.

The variants (draws, thinned copies) of all objects are classified together, many per
call of :func:`models.bundle.classify_chunk` (object ids suffixed ``#v<k>``), so the models
are loaded and the feature processes started once per batch, not once per draw.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, InputError

__all__ = ["error_robustness", "cadence_robustness", "perturbed", "classify_variants",
           "stability_summary", "robustness_tables", "split_robustness", "SPLIT_CADENCE"]

#: Objects per classification call (variants x objects): bounds the memory of one call
#: (images of the CNN grid: ~9 kB per object and band).
MAX_OBJECTS_PER_CALL = 20_000


def perturbed(lcs: Any, rng: np.random.Generator) -> Any:
    """A copy of ``lcs`` with every magnitude redrawn from N(mag, mag_err) [mag]."""
    from pipeline.lightcurves import LightCurves

    mag = lcs.mag + rng.standard_normal(len(lcs.mag)) * lcs.mag_err
    return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets, t=lcs.t,
                       mag=mag, mag_err=lcs.mag_err)


def _concat(variants: Sequence[Any], first: int) -> Any:
    """Variants of the same objects as one LightCurves, ids ``'<id>#v<first + k>'``."""
    from pipeline.lightcurves import LightCurves

    ids = np.concatenate([np.asarray([f"{o}#v{first + k}" for o in v.object_id], dtype=object)
                          for k, v in enumerate(variants)])
    sizes = np.concatenate([np.diff(v.offsets) for v in variants])
    return LightCurves(object_id=ids, band=np.concatenate([v.band for v in variants]),
                       offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64),
                       t=np.concatenate([v.t for v in variants]),
                       mag=np.concatenate([v.mag for v in variants]),
                       mag_err=np.concatenate([v.mag_err for v in variants]))


def classify_variants(bundle_spec: str | os.PathLike[str], variants: Sequence[Any],
                      workdir: str | os.PathLike[str], n_jobs: int = 1,
                      max_objects: int = MAX_OBJECTS_PER_CALL) -> list[pd.DataFrame]:
    """Classify several variants of the same light curves as ``lcpipe classify`` does.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle (:func:`models.bundle.resolve_bundle`).
    variants : sequence of pipeline.lightcurves.LightCurves
        Light curves of the same objects (redrawn magnitudes, fewer points...).
    workdir : path-like
        Scratch folder (one batch's chunk and predictions at a time).
    n_jobs : int
        Processes for the features.
    max_objects : int
        Most objects (variants x objects) per classification call.

    Returns
    -------
    list of pandas.DataFrame
        Per variant: the prediction rows (``object_id`` as in the variant, ``model``,
        ``predicted_class``, ``probability``, ``prob_<class>``).
    """
    import pyarrow.parquet as pq

    from pipeline.validate import series_to_arrow

    from .bundle import classify_chunk
    from .predictions import read_predictions

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    n_obj = max((len(np.unique(v.object_id)) for v in variants), default=1)
    per_call = max(1, int(max_objects) // max(n_obj, 1))
    out: list[pd.DataFrame] = []
    for a in range(0, len(variants), per_call):
        batch = list(variants[a:a + per_call])
        chunk = wd / f"batch-{a:05d}.parquet"
        pq.write_table(series_to_arrow(_concat(batch, a)), chunk)
        res = classify_chunk(bundle_spec, chunk, wd / f"batch-{a:05d}", run_id="robustness",
                             n_jobs=n_jobs)
        frame = read_predictions(res["predictions"])[0]
        frame = frame[["object_id", "model", "predicted_class", "probability"]
                      + [c for c in frame.columns if c.startswith("prob_")]]
        base, _, tag = frame["object_id"].str.rpartition("#v").T.to_numpy()
        tag = tag.astype(np.int64)
        for k in range(a, a + len(batch)):
            sel = tag == k
            out.append(frame[sel].assign(object_id=base[sel]).reset_index(drop=True))
        chunk.unlink(missing_ok=True)
    return out


def error_robustness(bundle_spec: str | os.PathLike[str], lcs: Any,
                     workdir: str | os.PathLike[str], k: int = 20, seed: int = 0,
                     n_jobs: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Stability of a bundle's predictions under ``k`` redraws of the magnitudes.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle (folder, run folder or shipped name; :func:`models.bundle.resolve_bundle`).
    lcs : pipeline.lightcurves.LightCurves
        Clean light curves.
    workdir : path-like
        Scratch folder for the redrawn chunks and their predictions.
    k : int
        Redraws.
    seed : int
        Seed of the redraws.
    n_jobs : int
        Processes for the features.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame, dict)
        Per object and model: ``object_id``, ``model``, ``predicted_class``,
        ``probability`` (as measured), ``stable_fraction``, ``probability_std``
        (null for models without probabilities), ``draws``. Per model and
        predicted class: ``model``, ``predicted_class``, ``objects``,
        ``stable_fraction`` (mean), ``all_stable`` (fraction of objects with
        ``stable_fraction == 1``). And timings (seconds).
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1 redraws, got {k}")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    frames = classify_variants(bundle_spec, [lcs] + [perturbed(lcs, rng) for _ in range(k)],
                               workdir, n_jobs=n_jobs)
    key = ["object_id", "model"]
    base = frames[0].set_index(key).sort_index()
    same = np.zeros(len(base))
    probs = np.empty((k, len(base)))
    col = ["prob_" + str(c) for c in base["predicted_class"]]
    for r, frame in enumerate(frames[1:]):
        draw = frame.set_index(key).reindex(base.index)
        same += (draw["predicted_class"].to_numpy() == base["predicted_class"].to_numpy())
        cols = draw.columns.get_indexer(col)
        probs[r] = np.where(cols >= 0,
                            draw.to_numpy()[np.arange(len(draw)), np.maximum(cols, 0)],
                            np.nan).astype(np.float64)
    per_object = base.reset_index()[key + ["predicted_class", "probability"]].copy()
    per_object["stable_fraction"] = same / k
    per_object["probability_std"] = probs.std(axis=0)
    per_object["draws"] = k
    per_class = stability_summary(per_object)
    return per_object, per_class, {"seconds": round(time.perf_counter() - t0, 1),
                                   "objects": int(len(np.unique(lcs.object_id))), "k": k}


def stability_summary(per_object: pd.DataFrame) -> pd.DataFrame:
    """Per model and predicted class, then ``'__overall__'``: how stable the answers are.

    Parameters
    ----------
    per_object : pandas.DataFrame
        :func:`error_robustness`'s per-object table.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``predicted_class`` (classes sorted, then
        :data:`pipeline.reports.OVERALL` over all the model's objects), ``objects``,
        ``stable_fraction`` (mean over the objects), ``all_stable`` (fraction of objects
        whose class never changed) and ``probability_std`` (mean spread of the top
        probability; NaN for a model without probabilities).
    """
    from pipeline.reports import OVERALL

    rows = []
    for model, g in per_object.groupby("model", sort=True):
        groups = [(str(c), h) for c, h in g.groupby("predicted_class", sort=True)]
        for name, h in [*groups, (OVERALL, g)]:
            std = h["probability_std"].to_numpy(dtype=np.float64)
            rows.append({"model": model, "predicted_class": name, "objects": int(len(h)),
                         "stable_fraction": float(h["stable_fraction"].mean()),
                         "all_stable": float((h["stable_fraction"] == 1.0).mean()),
                         "probability_std": float(std.mean()) if np.isfinite(std).all()
                         else np.nan})
    return pd.DataFrame(rows, columns=["model", "predicted_class", "objects",
                                       "stable_fraction", "all_stable", "probability_std"])


def cadence_robustness(bundle_spec: str | os.PathLike[str], lcs: Any,
                       workdir: str | os.PathLike[str],
                       fractions: Sequence[float] = (0.9, 0.8, 0.7, 0.6, 0.5),
                       labels: pd.Series | None = None, seed: int = 0, min_points: int = 10,
                       n_jobs: int = 1, measured: pd.DataFrame | None = None
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Accuracy of a bundle's models against the fraction of each light curve's points kept.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle.
    lcs : pipeline.lightcurves.LightCurves
        Clean light curves.
    workdir : path-like
        Scratch folder.
    fractions : sequence of float
        Fractions of points kept, each in (0, 1]: every point is kept independently with
        this probability, and at least ``min_points`` per series (all of a shorter one).
    labels : pandas.Series, optional
        True class per object id (index); objects without a label count only in
        ``agreement``.
    seed : int
        Seed of the thinning.
    min_points : int
        Points kept at least per series.
    n_jobs : int
        Processes for the features.
    measured : pandas.DataFrame, optional
        The bundle's answers on ``lcs`` as given (``object_id``, ``model``,
        ``predicted_class``; e.g. :func:`error_robustness`'s per-object table): saves
        classifying them again.

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per model and fraction (1.0 = the light curves as given): ``model``,
        ``fraction_kept`` (asked), ``points_kept`` (fraction actually kept, after the
        ``min_points`` floor), ``objects``, ``labelled``, ``accuracy`` and
        ``balanced_accuracy`` (over labelled objects; null without labels), and
        ``agreement`` (fraction of objects answered as on the full light curves). And
        timings.
    """
    from sklearn.metrics import balanced_accuracy_score

    from .representations import subsample_lightcurves

    fr = [float(f) for f in fractions]
    if not fr or any(not 0.0 < f <= 1.0 for f in fr):
        raise ConfigError(f"fractions of points kept must be in (0, 1], got {fractions}")
    t0 = time.perf_counter()
    variants, kept = [], []
    for i, f in enumerate(fr):
        thin, _ = subsample_lightcurves(lcs, 1, (f, f), min_points=min_points, seed=seed + i)
        # subsample_lightcurves names its copies '<id>#aug0': back to the object ids
        thin = replace(thin, object_id=np.asarray([o[: -len("#aug0")] for o in thin.object_id],
                                                  dtype=object))
        variants.append(thin)
        kept.append(len(thin.t) / max(len(lcs.t), 1))
    if measured is None:
        variants, kept = [lcs, *variants], [1.0, *kept]
    frames = classify_variants(bundle_spec, variants, workdir, n_jobs=n_jobs)
    if measured is not None:
        frames = [measured[["object_id", "model", "predicted_class"]], *frames]
        kept = [1.0, *kept]
    full = frames[0].set_index(["object_id", "model"])["predicted_class"]
    rows = []
    for f, k_frac, frame in zip([1.0] + fr, kept, frames, strict=True):
        for model, g in frame.groupby("model", sort=True):
            ref = full.xs(model, level="model").reindex(g["object_id"]).to_numpy()
            row: dict[str, Any] = {"model": model, "fraction_kept": f, "points_kept": k_frac,
                                   "objects": len(g), "labelled": 0, "accuracy": np.nan,
                                   "balanced_accuracy": np.nan,
                                   "agreement": float(np.mean(g["predicted_class"].to_numpy()
                                                              == ref))}
            if labels is not None:
                truth = labels.reindex(g["object_id"]).to_numpy()
                has = pd.notna(truth)
                if has.any():
                    t, p = truth[has].astype(str), g["predicted_class"].to_numpy()[has]
                    with warnings.catch_warnings():  # answers of classes absent here
                        warnings.simplefilter("ignore", UserWarning)
                        bal = float(balanced_accuracy_score(t, p))
                    row.update(labelled=int(has.sum()), accuracy=float(np.mean(t == p)),
                               balanced_accuracy=bal)
            rows.append(row)
    if labels is not None and not any(r["labelled"] for r in rows):
        raise InputError("labels", "no object of the light curves has a label")
    table = pd.DataFrame(rows).sort_values(["model", "fraction_kept"], ascending=[True, False])
    return table.reset_index(drop=True), {"seconds": round(time.perf_counter() - t0, 1),
                                         "objects": int(len(np.unique(lcs.object_id)))}


def robustness_tables(bundle_spec: str | os.PathLike[str], lcs: Any,
                      workdir: str | os.PathLike[str], k: int = 20, seed: int = 0,
                      fractions: Sequence[float] | None = None,
                      labels: pd.Series | None = None,
                      adversarial: Sequence[str] = (), n_jobs: int = 1
                      ) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every robustness test of a bundle on some light curves, as report tables.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle (:func:`models.bundle.resolve_bundle`).
    lcs : pipeline.lightcurves.LightCurves
        Clean light curves.
    workdir : path-like
        Scratch folder.
    k : int
        Redraws of the magnitudes (:func:`error_robustness`).
    seed : int
        Seed of the redraws, the thinning and the adversarial search.
    fractions : sequence of float, optional
        Fractions of points kept (:func:`cadence_robustness`); None: no cadence test.
    labels : pandas.Series, optional
        True class per object id: accuracy in the cadence table.
    adversarial : sequence of str
        Networks of the bundle to search adversarially (``'cnn'``, ``'hybrid'``;
        :func:`models.adversarial.adversarial_check`).
    n_jobs : int
        Processes for the features.

    Returns
    -------
    (dict, dict)
        Tables by report-table name (``robustness_objects``, ``robustness_classes``, and
        ``cadence``, ``adversarial_objects``, ``adversarial_classes`` when asked), each
        with the columns of :func:`pipeline.reports.table_schema` but ``run_id``; and
        seconds per test.
    """
    from pathlib import Path

    wd = Path(workdir)
    objects, classes, info = error_robustness(bundle_spec, lcs, wd / "errors", k=k, seed=seed,
                                              n_jobs=n_jobs)
    tables = {"robustness_objects": objects, "robustness_classes": classes}
    seconds = {"errors": float(info["seconds"])}
    if fractions:
        from .bundle import load_bundle

        tables["cadence"], cinfo = cadence_robustness(
            bundle_spec, lcs, wd / "cadence", fractions, labels=labels, seed=seed,
            min_points=load_bundle(bundle_spec).settings.min_points, n_jobs=n_jobs,
            measured=objects)
        seconds["cadence"] = float(cinfo["seconds"])
    if adversarial:
        from .adversarial import adversarial_check, flip_summary

        t0 = time.perf_counter()
        flips, summaries = [], []
        for model in adversarial:
            f = adversarial_check(bundle_spec, lcs, model=model, seed=seed, n_jobs=n_jobs)
            flips.append(f.assign(model=model))
            summaries.append(flip_summary(f).assign(model=model))
        tables["adversarial_objects"] = pd.concat(flips, ignore_index=True)
        tables["adversarial_classes"] = pd.concat(summaries, ignore_index=True)
        seconds["adversarial"] = round(time.perf_counter() - t0, 1)
    return tables, seconds


#: Fractions of points kept by the train flow's cadence test.
SPLIT_CADENCE: tuple[float, ...] = (0.9, 0.7, 0.5)


def split_robustness(bundle_spec: str | os.PathLike[str],
                     chunks: Sequence[str | os.PathLike[str]],
                     split_path: str | os.PathLike[str], workdir: str | os.PathLike[str],
                     k: int = 20, seed: int = 0, part: str = "test",
                     fractions: Sequence[float] = SPLIT_CADENCE, n_jobs: int = 1
                     ) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """:func:`robustness_tables` on one part of a train run's split, with its labels.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle whose models did not see ``part`` (the train flow's evaluated models).
    chunks : sequence of path-like
        The run's clean chunk files (lcpipe's own, sorted by object, band, t).
    split_path : path-like
        The run's split table (``object_id``, ``label``, ``split``).
    workdir : path-like
        Scratch folder.
    k, seed, fractions, n_jobs
        See :func:`robustness_tables`; every network of the bundle (CNN, hybrid) is also
        searched adversarially.
    part : str
        Split part: ``'test'`` or ``'train'``.

    Returns
    -------
    (dict, dict)
        As :func:`robustness_tables`.
    """
    import pyarrow.parquet as pq

    from pipeline.lightcurves import LightCurves

    from .bundle import load_bundle

    split = pq.read_table(split_path, columns=["object_id", "label", "split"]).to_pandas()
    split = split[split["split"] == part]
    if split.empty:
        raise InputError(split_path, f"no object in the {part!r} part of the split")
    ids = split["object_id"].astype(str).tolist()
    frames = [pq.read_table(c, filters=[("object_id", "in", ids)]).to_pandas() for c in chunks]
    cols = ["object_id", "band", "t", "mag", "mag_err"]
    frame = pd.concat([f[cols].astype({"object_id": str, "band": str}) for f in frames],
                      ignore_index=True)
    lcs = LightCurves.from_frame(frame, source=f"{part} part of {split_path}")
    labels = pd.Series(split["label"].astype(str).to_numpy(), index=ids)
    networks = [m for m in ("cnn", "hybrid") if m in load_bundle(bundle_spec).models]
    return robustness_tables(bundle_spec, lcs, workdir, k=k, seed=seed, fractions=fractions,
                             labels=labels, adversarial=networks, n_jobs=n_jobs)
