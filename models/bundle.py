"""The model bundle: the forest, the CNN and the robust-PCA model of one training run.

A bundle is a folder::

    bundle.json        format, classes, bands, grids, feature set, settings, scores, hashes
    forest.skops       models.forest.save_forest (skops, allow-listed types only)
    cnn/model.keras    models.cnn.DmDtCNN.save (Keras safe mode)
    cnn/model.json
    hybrid/model.keras hybrid/model.json   the hybrid network (runs with ``hybrid`` on)
    rpca_nearest.npz   pipeline.rpca_dmdt.save_rpca (arrays only, no pickle)
    stack.npz          models.stacking.save_stack (arrays only; runs trained with CV folds)

Every file loads without running code from it. :func:`write_bundle` builds the
folder under a temporary name and renames it into place, so a killed run
never leaves a half bundle. :func:`classify_chunk` is the classify flow's
per-chunk step.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError

from .settings import TrainSettings

__all__ = ["BUNDLE_FORMAT", "Bundle", "write_bundle", "load_bundle", "resolve_bundle",
           "classify_chunk", "SHIPPED_BUNDLES"]

BUNDLE_FORMAT = "lcpipe-bundle/1"
_FILES = {"forest": "forest.skops", "cnn": "cnn", "rpca_nearest": "rpca_nearest.npz",
          "stack": "stack.npz", "hybrid": "hybrid"}
#: Bundles shipped in the package: name -> folder under ``models/data``.
SHIPPED_BUNDLES = {"crts": "crts_bundle"}


@dataclass
class Bundle:
    """A loaded bundle: its folder, its description and the settings it was trained with."""

    path: Path
    info: dict[str, Any]
    settings: TrainSettings

    def model_path(self, kind: str) -> Path:
        """File (or folder) of model ``kind``."""
        return self.path / _FILES[kind]

    @property
    def models(self) -> list[str]:
        """Model names in the bundle."""
        return list(self.info["models"])


def write_bundle(out: str | os.PathLike[str], model_paths: dict[str, str],
                 info: dict[str, Any]) -> Path:
    """Assemble a bundle folder from saved models, atomically.

    Parameters
    ----------
    out : path-like
        Bundle folder to create (replaced if it exists).
    model_paths : dict
        Model name -> saved model (:func:`models.training.fit_model` outputs).
    info : dict
        JSON-serialisable description (classes, bands, grids, settings, ...).

    Returns
    -------
    Path
    """
    from pipeline.io import atomic_dir, write_json_atomic

    final = Path(out)
    with atomic_dir(final, replaceable=_not_a_bundle) as tmp:
        for kind, src in model_paths.items():
            dst = tmp / _FILES[kind]
            if Path(src).is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("training_curves.*"))
            else:
                shutil.copy2(src, dst)
        write_json_atomic({"format": BUNDLE_FORMAT, "models": list(model_paths), **info},
                          tmp / "bundle.json")
    return final


def _not_a_bundle(d: Path) -> str | None:
    """Why folder ``d`` may not be replaced by a bundle (None: it is one, or empty)."""
    if (d / "bundle.json").is_file() or not any(d.iterdir()):
        return None
    return "is a folder but not a model bundle: choose a new or empty folder"


def resolve_bundle(spec: str | os.PathLike[str]) -> Path:
    """Folder of a bundle given as a path, a run folder of ``lcpipe train``, or a shipped name.

    ``'crts'`` is the bundle trained on the full shared CRTS set that ships with
    lcpipe; a run folder (with ``bundles/``) gives its newest bundle.

    Raises
    ------
    InputError
        Nothing that looks like a bundle there.
    """
    s = str(spec)
    if s in SHIPPED_BUNDLES and not Path(s).exists():
        return Path(str(resources.files("models") / "data" / SHIPPED_BUNDLES[s]))
    p = Path(s)
    if (p / "bundle.json").is_file():
        return p
    runs = p / "bundles"
    if runs.is_dir():
        found = [d for d in runs.iterdir() if (d / "bundle.json").is_file()]
        if found:
            return max(found, key=lambda d: ((d / "bundle.json").stat().st_mtime_ns, d.name))
    raise InputError(p, "not a model bundle (no bundle.json), a run folder of `lcpipe train` "
                     f"or a shipped bundle name ({', '.join(SHIPPED_BUNDLES)})")


def load_bundle(spec: str | os.PathLike[str]) -> Bundle:
    """Read a bundle's description and check that its model files are there.

    Raises
    ------
    InputError
        Not a bundle, unknown format, or a missing model file.
    """
    path = resolve_bundle(spec)
    try:
        info = json.loads((path / "bundle.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path / "bundle.json", f"cannot read bundle description: {exc}") from exc
    if info.get("format") != BUNDLE_FORMAT:
        raise InputError(path / "bundle.json", f"unknown bundle format {info.get('format')!r} "
                         f"(expected {BUNDLE_FORMAT!r})")
    for kind in info.get("models", []):
        if kind not in _FILES or not (path / _FILES[kind]).exists():
            raise InputError(path, f"bundle lacks its {kind} model ({_FILES.get(kind, '?')})")
    try:
        settings = TrainSettings(**info["settings"])
    except Exception as exc:  # pydantic.ValidationError or a missing key
        raise InputError(path / "bundle.json", f"bad settings in bundle: {exc}") from exc
    return Bundle(path=path, info=info, settings=settings)


def classify_chunk(bundle_spec: str | os.PathLike[str], chunk: str | os.PathLike[str],
                   workdir: str | os.PathLike[str], run_id: str, n_jobs: int = 1
                   ) -> dict[str, str]:
    """Classify one chunk of clean light curves with every model of a bundle.

    Writes ``<workdir>/predictions.parquet`` (lcpipe's prediction schema,
    split 'classify', one row per object and model, ``models_agree`` set) and
    ``<workdir>/rpca_distances.parquet`` (``object_id``, ``rpca_nearest``,
    ``err_<class>`` reconstruction errors and ``l1_<class>`` sparse energies,
    in square-root ``paper``-pixel units).

    Returns
    -------
    dict
        ``predictions`` and ``rpca_distances`` paths.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .evaluation import apply_temperature
    from .predictions import (
        apply_unknown,
        prediction_frame,
        with_agreement,
        write_predictions,
    )
    from .training import (
        MODEL_INPUT,
        chunk_features,
        chunk_images,
        load_model_cached,
        predict_model,
    )

    b = load_bundle(bundle_spec)
    wd = Path(workdir)
    grids = b.info["grids"]
    temperatures = _temperatures(b)
    classes = [str(c) for c in b.info["classes"]]
    by_kind: dict[str, pd.DataFrame] = {}
    out: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=1) as background:
        # with worker processes, the features are computed there while this thread
        # makes the images, loads the models and runs the image models
        feats = (background.submit(chunk_features, chunk, wd / "features.parquet",
                                   b.info["bands"], n_jobs) if n_jobs > 1 else None)
        imgs = chunk_images(chunk, wd / "images", list(grids.values()), b.info["bands"])
        paths = {"cnn_images": imgs[grids["cnn"]], "rpca_images": imgs[grids["rpca"]]}
        if feats is None:
            paths["features"] = chunk_features(chunk, wd / "features.parquet",
                                               b.info["bands"], n_jobs)
        singles = [k for k in b.models if k in MODEL_INPUT]
        for kind in sorted(singles, key=lambda k: MODEL_INPUT[k] == "features"):
            model, meta = load_model_cached(kind, b.model_path(kind))
            if kind == "forest":  # the caller's parallelism, not the training machine's
                model.n_jobs = model.model_.n_jobs = int(n_jobs)
            if MODEL_INPUT[kind] not in paths:
                assert feats is not None
                paths["features"] = feats.result()
            ids, m_classes, proba, pred, extra = predict_model(kind, model, meta, paths, None,
                                                               b.settings)
            if proba is not None and kind in temperatures:  # as the train flow calibrated
                proba = apply_temperature(proba, temperatures[kind])
            if proba is not None and [str(c) for c in m_classes] != classes:
                raise InputError(b.model_path(kind), "its classes differ from bundle.json")
            by_kind[kind] = prediction_frame(ids, kind, classes, proba, pred, run_id=run_id,
                                            split="classify")
            if kind == "rpca_nearest":
                out["rpca_distances"] = _write_rpca_distances(
                    ids, m_classes, pred, extra, wd / "rpca_distances.parquet", run_id)
    if "stack" in b.models:
        from .stacking import stack_predictions

        model, _ = load_model_cached("stack", b.model_path("stack"))
        by_kind["stack"] = stack_predictions(model, by_kind, classes, run_id=run_id,
                                             split="classify")
    frames = [by_kind[k] for k in b.models]  # the bundle's order, whatever ran first
    table = apply_unknown(with_agreement(pd.concat(frames, ignore_index=True)),
                          b.info.get("unknown_thresholds") or {})
    out["predictions"] = str(write_predictions(table,
                                               wd / "predictions.parquet",
                                               metadata={"bundle": str(b.path)}))
    return out


def _temperatures(b: Bundle) -> dict[str, float]:
    """The bundle's temperatures (``bundle.json``), each a finite number > 0."""
    raw = b.info.get("temperatures") or {}
    out = {}
    for k, v in (raw.items() if isinstance(raw, dict) else [("temperatures", raw)]):
        try:
            t = float(v)
        except (TypeError, ValueError):
            t = float("nan")
        if not np.isfinite(t) or t <= 0:
            raise InputError(b.path / "bundle.json", f"temperature of {k!r} must be a finite "
                             f"number > 0, got {v!r}")
        out[str(k)] = t
    return out


def _write_rpca_distances(ids: np.ndarray, classes: list[str], pred: np.ndarray,
                          extra: dict[str, np.ndarray], path: Path, run_id: str) -> str:
    """The RPCA model's per-class distances of a chunk (see :func:`classify_chunk`)."""
    import pyarrow as pa

    from pipeline.io import write_parquet_atomic

    cols = {"object_id": pa.array(ids, pa.string()),
            "rpca_nearest": pa.array(np.asarray(pred).astype(str), pa.string())}
    for j, c in enumerate(classes):
        cols[f"err_{c}"] = pa.array(extra["err"][:, j], pa.float64())
    for j, c in enumerate(classes):
        cols[f"l1_{c}"] = pa.array(extra["l1"][:, j], pa.float64())
    return str(write_parquet_atomic(
        pa.table(cols), path, metadata={"lcpipe.rpca_distances": {
            "units": "sqrt of paper pixels", "run_id": run_id}}))
