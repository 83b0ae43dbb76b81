"""How stable is each prediction under the measurement errors? (issue 14, robustness)

Every magnitude is redrawn from N(mag, mag_err) ``k`` times (seeded); each redrawn set
of light curves is classified by the bundle exactly as ``lcpipe classify`` does
(:func:`models.bundle.classify_chunk`: dm-dt images, features, every model), and each
object's answers are compared with its answer on the light curves as measured.

Per object and model: the fraction of draws that keep the predicted class
(``stable_fraction``: 1 = the error bars never change the answer) and the standard
deviation over draws of the probability of that class. Per model and predicted class:
their means. A model that ignores the magnitudes is fully stable by construction
(tested).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError

__all__ = ["error_robustness", "perturbed"]


def perturbed(lcs: Any, rng: np.random.Generator) -> Any:
    """A copy of ``lcs`` with every magnitude redrawn from N(mag, mag_err) [mag]."""
    from pipeline.lightcurves import LightCurves

    mag = lcs.mag + rng.standard_normal(len(lcs.mag)) * lcs.mag_err
    return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets, t=lcs.t,
                       mag=mag, mag_err=lcs.mag_err)


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
        Scratch folder for the redrawn chunks and their predictions (kept small: one
        draw at a time).
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
    import pyarrow.parquet as pq

    from pipeline.validate import series_to_arrow

    from .bundle import classify_chunk
    from .predictions import read_predictions

    if k < 1:
        raise ConfigError(f"k must be >= 1 redraws, got {k}")
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def classify(draw: Any, name: str) -> pd.DataFrame:
        chunk = wd / f"{name}.parquet"
        pq.write_table(series_to_arrow(draw), chunk)
        out = classify_chunk(bundle_spec, chunk, wd / name, run_id="robustness",
                             n_jobs=n_jobs)
        frame = read_predictions(out["predictions"])[0]
        return frame[["object_id", "model", "predicted_class", "probability"]
                     + [c for c in frame.columns if c.startswith("prob_")]]

    base = classify(lcs, "measured")
    key = ["object_id", "model"]
    base = base.set_index(key).sort_index()
    same = np.zeros(len(base))
    probs = np.empty((k, len(base)))
    col = ["prob_" + str(c) for c in base["predicted_class"]]
    for r in range(k):
        draw = classify(perturbed(lcs, rng), f"draw-{r:03d}").set_index(key).reindex(base.index)
        same += (draw["predicted_class"].to_numpy() == base["predicted_class"].to_numpy())
        cols = draw.columns.get_indexer(col)
        probs[r] = np.where(cols >= 0,
                            draw.to_numpy()[np.arange(len(draw)), np.maximum(cols, 0)],
                            np.nan).astype(np.float64)
    std = probs.std(axis=0)
    per_object = base.reset_index()[key + ["predicted_class", "probability"]].copy()
    per_object["stable_fraction"] = same / k
    per_object["probability_std"] = std
    per_object["draws"] = k
    per_class = (per_object.assign(all_stable=per_object["stable_fraction"] == 1.0)
                 .groupby(["model", "predicted_class"], sort=True)
                 .agg(objects=("object_id", "size"), stable_fraction=("stable_fraction", "mean"),
                      all_stable=("all_stable", "mean"))
                 .reset_index())
    return per_object, per_class, {"seconds": round(time.perf_counter() - t0, 1),
                                   "objects": int(len(np.unique(lcs.object_id))), "k": k}
