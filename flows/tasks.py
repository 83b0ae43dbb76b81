"""Prefect tasks of the lcpipe flows: thin wrappers over plain library functions.

Every task takes and returns file paths. The per-chunk tasks (dm-dt images,
features, classification) and the ingest are cached across runs: their keys
are content hashes of their input files plus :func:`flows._runtime.code_version`
and their settings, and their outputs live in content-addressed folders under
the run's ``work/cache``; a second identical run reuses every chunk.
"""

import functools
from pathlib import Path
from typing import Any

from flows._runtime import code_version, prefect_environment

prefect_environment()

from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from models.settings import IngestSettings, TrainSettings  # noqa: E402
from pipeline.hashing import file_hash, text_hash  # noqa: E402

__all__ = [
    "chunk_key",
    "ingest_task",
    "images_task",
    "features_task",
    "classify_chunk_task",
    "merge_images_task",
    "merge_features_task",
    "split_task",
    "evaluate_task",
    "fit_task",
    "reports_task",
    "explain_task",
    "robustness_task",
    "ingest_cached",
    "classify_chunks",
]

_IO_RETRIES = {"retries": 2, "retry_delay_seconds": 1}


def chunk_key(kind: str, path: Any, *parts: Any) -> str:
    """Cache key and folder name: step, content hash of ``path``, code version, settings."""
    return f"{kind}-{text_hash(kind, file_hash(path), code_version(), *parts)}"


def _ingest_settings(s: IngestSettings) -> tuple:
    return (s.preset, s.columns, s.bands, s.min_points, s.chunk_size)


def _ingest_key(ctx: Any, p: dict[str, Any]) -> str:
    return chunk_key("ingest", p["data"], *_ingest_settings(p["settings"]), p["cache"],
                     p.get("allow_empty", False))


@task(name="ingest", cache_key_fn=_ingest_key, persist_result=True, **_IO_RETRIES)
def ingest_task(data: Path, cache: Path, settings: IngestSettings,
                allow_empty: bool = False) -> dict[str, Any]:
    """Read, validate and chunk the input (:func:`pipeline.chunks.ingest`)."""
    from pipeline.chunks import ingest
    from pipeline.contract import ColumnMap
    from pipeline.validate import CleaningConfig

    key = chunk_key("ingest", data, *_ingest_settings(settings), cache, allow_empty)
    cmap = ColumnMap.from_spec(settings.preset, settings.columns, settings.bands)
    res = ingest(data, Path(cache) / key, cmap, CleaningConfig(min_points=settings.min_points),
                 settings.chunk_size, allow_empty=allow_empty)
    return res.to_dict()


def _images_key(ctx: Any, p: dict[str, Any]) -> str:
    return chunk_key("images", p["chunk"], p["grids"], p["bands"], p["cache"])


@task(name="dmdt-images", cache_key_fn=_images_key, persist_result=True)
def images_task(chunk: str, cache: Path, grids: list[str], bands: list[str]) -> dict[str, str]:
    """dm-dt pair counts of one chunk on each grid (:func:`models.training.chunk_images`)."""
    from models.training import chunk_images

    key = chunk_key("images", chunk, grids, bands, cache)
    return chunk_images(chunk, Path(cache) / key, grids, bands)


def _features_key(ctx: Any, p: dict[str, Any]) -> str:
    return chunk_key("features", p["chunk"], p["bands"], p["cache"])


@task(name="features", cache_key_fn=_features_key, persist_result=True)
def features_task(chunk: str, cache: Path, bands: list[str], n_jobs: int) -> str:
    """Feature table of one chunk (:func:`models.training.chunk_features`)."""
    from models.training import chunk_features

    key = chunk_key("features", chunk, bands, cache)
    return chunk_features(chunk, Path(cache) / key / "features.parquet", bands, n_jobs)


@functools.lru_cache(maxsize=8)
def _bundle_hash_of(path: str, signature: tuple) -> str:
    return file_hash(path)


def bundle_hash(bundle: str) -> str:
    """Content hash of a bundle folder, computed once per process while its files are unchanged
    (the classify tasks need it for every chunk's cache key; the bundle is ~20 MB)."""
    from models.bundle import resolve_bundle

    path = resolve_bundle(bundle)
    files = sorted(f for f in path.rglob("*") if f.is_file())
    signature = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _bundle_hash_of(str(path), signature)


def _classify_key(ctx: Any, p: dict[str, Any]) -> str:
    return chunk_key("classify", p["chunk"], bundle_hash(p["bundle"]), p["cache"])


@task(name="classify-chunk", cache_key_fn=_classify_key, persist_result=True)
def classify_chunk_task(bundle: str, chunk: str, cache: Path, n_jobs: int,
                        run_id: str) -> dict[str, str]:
    """Every model of a bundle on one chunk (:func:`models.bundle.classify_chunk`)."""
    from models.bundle import classify_chunk

    key = chunk_key("classify", chunk, bundle_hash(bundle), cache)
    return classify_chunk(bundle, chunk, Path(cache) / key, run_id, n_jobs)


@task(name="merge-images", cache_policy=NO_CACHE, **_IO_RETRIES)
def merge_images_task(paths: list[str], out: Path) -> str:
    """One dm-dt file from the chunks' files (:func:`pipeline.chunks.concat_parquet`)."""
    from pipeline.chunks import concat_parquet
    from pipeline.dmdt import METADATA_KEY

    return str(concat_parquet(paths, out, metadata_key=METADATA_KEY))


@task(name="merge-features", cache_policy=NO_CACHE, **_IO_RETRIES)
def merge_features_task(paths: list[str], out: Path) -> str:
    """One feature table from the chunks' tables (:func:`features.api.merge_feature_files`)."""
    from features.api import merge_feature_files

    return str(merge_feature_files(paths, out))


@task(name="split", cache_policy=NO_CACHE)
def split_task(features: str, images: str, labels: Path, out: Path,
               settings: TrainSettings) -> tuple[str, dict[str, Any]]:
    """The run's one stratified split (:func:`models.training.make_split`)."""
    from models.training import make_split

    return make_split(features, images, labels, out, settings)


@task(name="evaluate", cache_policy=NO_CACHE, task_run_name="evaluate-{kind}")
def evaluate_task(kind: str, paths: dict[str, str], split: str, settings: TrainSettings,
                  workdir: Path, run_id: str) -> dict[str, Any]:
    """Fit on the training part, predict the test part and CV folds (:func:`evaluate_model`)."""
    from models.training import evaluate_model

    return evaluate_model(kind, paths, split, settings, workdir, run_id)


@task(name="evaluate-stack", cache_policy=NO_CACHE)
def stack_task(predictions: dict[str, str], split: str, workdir: Path,
               run_id: str) -> dict[str, Any]:
    """Fit the stacked ensemble on the base models' CV predictions
    (:func:`models.training.evaluate_stack`)."""
    from models.training import evaluate_stack

    return evaluate_stack(predictions, split, workdir, run_id)


@task(name="refit", cache_policy=NO_CACHE, task_run_name="refit-{kind}")
def fit_task(kind: str, paths: dict[str, str], split: str, settings: TrainSettings,
             out: Path) -> str:
    """Fit model ``kind`` on all labelled objects (:func:`models.training.fit_model`)."""
    from models.training import fit_model

    return fit_model(kind, paths, split, settings, out, part="all")


@task(name="reports", cache_policy=NO_CACHE, **_IO_RETRIES)
def reports_task(report_dir: Path, run_id: str, predictions: list[str], classes: list[str],
                 rpca_model: str | None = None,
                 unknown_accuracy: float | None = None) -> dict[str, Any]:
    """Predictions, metrics, confusion, calibration and coverage tables and figures
    (:func:`models.reporting.write_evaluation_reports`)."""
    from models.reporting import write_evaluation_reports

    return write_evaluation_reports(report_dir, run_id, predictions, classes, rpca_model,
                                    unknown_accuracy)


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(report_dir: Path, run_id: str, paths: dict[str, str], split: str,
                 models: dict[str, str], representation: str, seed: int) -> dict[str, Any]:
    """Per-class explanation tables and figures
    (:func:`models.interpret.write_explanation_reports`)."""
    from models.interpret import write_explanation_reports

    return write_explanation_reports(report_dir, run_id, paths, split, models, representation,
                                     seed=seed)


@task(name="robustness", cache_policy=NO_CACHE)
def robustness_task(report_dir: Path, run_id: str, bundle: str, chunks: list[str], split: str,
                    workdir: Path, draws: int, seed: int, n_jobs: int) -> dict[str, float]:
    """Robustness tables of the test part (:func:`models.robustness.split_robustness`)."""
    from models.reporting import write_robustness_reports
    from models.robustness import split_robustness

    tables, seconds = split_robustness(bundle, chunks, split, workdir, k=draws, seed=seed,
                                       n_jobs=n_jobs)
    write_robustness_reports(report_dir, run_id, tables)
    return seconds


def ingest_cached(data: Path, cache: Path, settings: IngestSettings,
                  allow_empty: bool = False) -> dict[str, Any]:
    """:func:`ingest_task`, run again without the cache if a cached result's files are gone."""
    from flows._common import ingest_outputs_exist

    ing = ingest_task(data, cache, settings, allow_empty)
    if not ingest_outputs_exist(ing):
        ing = ingest_task.with_options(refresh_cache=True)(data, cache, settings, allow_empty)
    return ing


def classify_chunks(bundle: str, chunks: list[str], chunk_objects: list[list[str]], cache: Path,
                    n_jobs: int, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One :func:`classify_chunk_task` per chunk, collected by :func:`flows._common.fan_out`.

    Returns
    -------
    (dict, list of dict)
        Output paths by chunk, and quarantine rows for the objects of failed chunks.
    """
    from flows._common import fan_out

    return fan_out(
        lambda c: classify_chunk_task.submit(bundle, c, cache, n_jobs, run_id),
        chunks, chunk_objects,
        retry=lambda c: classify_chunk_task.with_options(refresh_cache=True)(
            bundle, c, cache, n_jobs, run_id),
        check=lambda r: all(Path(p).exists() for p in r.values()))
