"""The train flow: light curves + labels -> images, features, RPCA, forest, CNN -> reports, bundle.

Stages (each a plain function of :mod:`pipeline` or :mod:`models`, called
through the tasks of :mod:`flows.tasks`):

1. ingest: validate and chunk the input (one task; unreadable files quarantined);
2. per chunk, concurrently: dm-dt pair counts (CNN grid and the authors' grid
   for the robust PCA) and features (one task each per chunk, cached);
3. merge the chunks; one stratified split (training part with optional CV
   folds, test part) of the labelled objects, the same for every model;
4. evaluate each model (forest, CNN, robust-PCA nearest subspace): fit on the
   training part, predict the test part (and the CV folds); with CV folds, the
   stacked ensemble of the forest and the CNN learns from their out-of-fold
   probabilities;
5. reports (predictions, metrics, confusion, figures) appended to the report
   directory, with the per-class explanations (forest importances and feature statistics,
   CNN class maps and activation maximisation); the bundle (models refit on all labelled
   objects by default); with ``robustness_draws``, the robustness tables of the test part
   (redrawn magnitudes, thinned cadence, adversarial flips; models fitted on the training part);
   the ``runs`` row last; a Prefect markdown artifact with the comparison.
"""

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from flows._runtime import prefect_environment

prefect_environment()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows._common import (  # noqa: E402
    Stopwatch,
    check_failed_fraction,
    check_paths,
    collect,
    quarantine_path,
    write_quarantine,
)
from flows.tasks import (  # noqa: E402
    evaluate_task,
    explain_task,
    features_task,
    fit_task,
    images_task,
    ingest_cached,
    merge_features_task,
    merge_images_task,
    reports_task,
    robustness_task,
    split_task,
    stack_task,
)
from models.settings import CNN_PRESETS, TrainSettings  # noqa: E402

__all__ = ["train"]


def _exists(res: Any) -> bool:
    paths = res.values() if isinstance(res, dict) else [res]
    return all(Path(p).exists() for p in paths)


@flow(name="lcpipe-train", task_runner=ThreadPoolTaskRunner(max_workers=2),
      validate_parameters=True)
def train(data: Path, labels: Path, output: Path,
          settings: TrainSettings = TrainSettings(),  # noqa: B008 - pydantic default, immutable
          run_id: str | None = None) -> dict[str, Any]:
    """Train and compare the forest, the CNN and the robust-PCA classifier; write a bundle.

    Parameters
    ----------
    data : Path
        Light curves: a Parquet or CSV file, or a folder of them (any column preset).
    labels : Path
        ``object_id,label`` table (CSV or Parquet).
    output : Path
        Run folder: ``reports/`` (every run, appended), ``bundles/<run_id>/``
        and ``work/`` (chunk caches and intermediate files).
    settings : TrainSettings
        Every other parameter, with its default (:class:`models.settings.TrainSettings`).
    run_id : str, optional
        Default: ``train-<UTC time>-<random>``.

    Returns
    -------
    dict
        ``run_id``, ``report_dir``, ``bundle``, ``comparison`` (Markdown), counts and
        seconds per stage.
    """
    from models.bundle import load_bundle, write_bundle
    from models.predictions import new_run_id
    from models.reporting import package_versions, write_run_row
    from models.training import STACK_BASES, image_grids, models_for
    from pipeline._version import __version__
    from pipeline.hashing import data_hash, file_hash
    from pipeline.reports import comparison_markdown

    log = get_run_logger()
    data, labels, output = Path(data), Path(labels), Path(output)
    check_paths(output, [data, labels])
    run_id = run_id or new_run_id("train")
    started = _dt.datetime.now(_dt.UTC)
    watch = Stopwatch()
    report_dir = output / "reports"
    cache = output / "work" / "cache"
    work = output / "work" / "runs" / run_id
    params = {"data": str(data), "labels": str(labels), "output": str(output),
              "settings": settings.model_dump()}

    ing = ingest_cached(data, cache, settings)
    n_obj = int(ing["counts"]["objects_out"])
    log.info(f"ingest: {ing['counts']['rows_in']} rows, {n_obj} objects in "
             f"{len(ing['chunks'])} chunks; {len(ing['failed_files'])} unreadable files")
    watch.lap("ingest")

    grids = image_grids(settings.cnn_preset)
    grid_list = list(dict.fromkeys(grids.values()))
    bands = ing["bands"]
    # images and features of every chunk submitted together: they run concurrently
    fut_i = {c: images_task.submit(c, cache, grid_list, bands) for c in ing["chunks"]}
    fut_f = {c: features_task.submit(c, cache, bands, settings.n_jobs) for c in ing["chunks"]}
    imgs, failed_i = collect(
        fut_i, ing["chunk_objects"], check=_exists,
        retry=lambda c: images_task.with_options(refresh_cache=True)(c, cache, grid_list, bands))
    feats, failed_f = collect(
        fut_f, ing["chunk_objects"], check=_exists,
        retry=lambda c: features_task.with_options(refresh_cache=True)(c, cache, bands,
                                                                       settings.n_jobs))
    failed = {r["object_id"]: r for r in failed_i + failed_f}
    ok_chunks = [c for c in ing["chunks"] if c in imgs and c in feats]
    watch.lap("images_and_features")
    try:
        quarantine = write_quarantine(quarantine_path(report_dir, run_id), run_id,
                                      ing["quarantine"], list(failed.values()))
        check_failed_fraction(data, ing["n_files"], len(ing["failed_files"]), n_obj,
                              len(failed), settings.max_failed_fraction)
        if not ok_chunks:
            raise RuntimeError("every chunk failed")
    except Exception:
        write_run_row(report_dir, run_id, flow="train", status="failed", started=started,
                      parameters=params, input_data_hash=file_hash(data),
                      stage_seconds=watch.seconds, objects_in=int(ing["counts"]["objects_in"]),
                      objects_quarantined=int(ing["counts"]["objects_in"]) - n_obj
                      + len(failed), objects_classified=0)
        raise
    log.info(f"images and features of {len(ok_chunks)}/{len(ing['chunks'])} chunks "
             f"({len(failed)} objects quarantined by failed chunks)")

    paths = {
        "cnn_images": merge_images_task(
            [imgs[c][grids["cnn"]] for c in ok_chunks], work / "images_cnn.parquet"),
        "rpca_images": merge_images_task(
            [imgs[c][grids["rpca"]] for c in ok_chunks], work / "images_rpca.parquet"),
        "features": merge_features_task([feats[c] for c in ok_chunks],
                                        work / "features.parquet"),
    }
    split, counts = split_task(paths["features"], paths["cnn_images"], labels,
                               work / "split.parquet", settings)
    classes = sorted(counts["class_counts"])
    log.info(f"split: {counts['n_used']} labelled objects of {len(classes)} classes "
             f"({counts['n_unlabelled']} unlabelled)")
    watch.lap("merge_and_split")

    evaluated = {}
    kinds = models_for(settings)
    for kind in kinds:
        evaluated[kind] = evaluate_task(kind, paths, split, settings, work / "models", run_id)
        log.info(f"evaluated {kind} (fit {evaluated[kind]['fit_seconds']} s)")
        watch.lap(f"evaluate_{kind}")
    if settings.cv_folds:  # the stack learns from the base models' out-of-fold answers
        evaluated["stack"] = stack_task({b: evaluated[b]["predictions"] for b in STACK_BASES
                                         if b in evaluated}, split, work / "models", run_id)
        log.info("stack: pool exponents " + ", ".join(
            f"{b} {w:.2f}" for b, w in evaluated["stack"]["exponents"].items()))
        watch.lap("evaluate_stack")
    rep = reports_task(report_dir, run_id, [e["predictions"] for e in evaluated.values()],
                       classes, evaluated["rpca_nearest"]["model"], settings.unknown_accuracy)
    watch.lap("reports")
    if settings.explain:
        explain_task(report_dir, run_id, paths, split,
                     {k: evaluated[k]["model"] for k in kinds},
                     CNN_PRESETS[settings.cnn_preset][0], settings.seed)
        watch.lap("explain")

    if settings.refit:
        models = {k: fit_task(k, paths, split, settings,
                              work / "refit" / Path(evaluated[k]["model"]).name)
                  for k in kinds}
        watch.lap("refit")
    else:
        models = {k: evaluated[k]["model"] for k in kinds}
    if "stack" in evaluated:  # fitted on out-of-fold probabilities: the same after a refit
        models["stack"] = evaluated["stack"]["model"]
    import pyarrow.parquet as pq

    sp = pq.read_table(split).to_pandas()
    rep_name, arch = CNN_PRESETS[settings.cnn_preset]
    info = {
        "run_id": run_id,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "lcpipe_version": __version__,
        "package_versions": package_versions(),
        "classes": classes,
        "bands": bands,
        "grids": grids,
        "cnn": {"preset": settings.cnn_preset, "representation": rep_name, "arch": arch},
        "trained_on": "all labelled objects" if settings.refit else "training part",
        "n_objects": int(len(sp) if settings.refit else (sp["split"] == "train").sum()),
        "class_counts": counts["class_counts"],
        "labels_hash": data_hash(np.zeros((len(sp), 0)), sp["label"].to_numpy(),
                                 object_ids=sp["object_id"].to_numpy()),
        "input_data_hash": file_hash(data),
        "settings": settings.model_dump(),
        # 'unknown' below these top probabilities (chosen on the CV predictions)
        "unknown_thresholds": rep["unknown_thresholds"],
        # probabilities scaled as softmax(log p / T) (fitted on the CV predictions)
        "temperatures": {k: evaluated[k]["temperature"] for k in kinds
                         if evaluated[k].get("temperature") is not None},
        "test_scores": [{k: m[k] for k in ("model", "split", "accuracy", "balanced_accuracy",
                                           "f1", "log_loss", "support")}
                        for m in rep["overall"]],
    }
    bundle = write_bundle(output / "bundles" / run_id, models, info)
    watch.lap("bundle")
    written = load_bundle(bundle)
    if settings.robustness_draws:  # on the test part, with models that never saw it
        tested = bundle
        if settings.refit:
            evaluated_models = {k: evaluated[k]["model"] for k in models}
            tested = write_bundle(work / "evaluated_bundle", evaluated_models,
                                  {**info, "trained_on": "training part",
                                   "n_objects": int((sp["split"] == "train").sum())})
        robustness_task(report_dir, run_id, str(tested),
                        [c for c in ing["chunks"] if c in ok_chunks], split,
                        work / "robustness", settings.robustness_draws, settings.seed,
                        settings.n_jobs)
        watch.lap("robustness")
    write_run_row(report_dir, run_id, flow="train", status="completed", started=started,
                  parameters=params, input_data_hash=file_hash(data),
                  stage_seconds=watch.seconds, objects_in=int(ing["counts"]["objects_in"]),
                  objects_quarantined=int(ing["counts"]["objects_in"]) - n_obj + len(failed),
                  objects_classified=int(counts["n_used"]), bundle=str(bundle),
                  model_hashes={k: file_hash(written.model_path(k)) for k in models})
    table = comparison_markdown(report_dir, run_id)
    _artifact(run_id, table, report_dir, bundle)
    return {"run_id": run_id, "report_dir": str(report_dir), "bundle": str(bundle),
            "quarantine": quarantine, "comparison": table, "counts": counts,
            "ingest": ing["counts"], "failed_files": ing["failed_files"],
            "failed_chunk_objects": len(failed), "stage_seconds": watch.seconds,
            "parameters": json.loads(json.dumps(params, default=str))}


def _artifact(run_id: str, table: str, report_dir: Path, bundle: Path) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key="lcpipe-model-comparison",
        markdown=f"# lcpipe train run `{run_id}`\n\n{table}\n\nReports: `{report_dir}`; "
                 f"bundle: `{bundle}`\n",
        description="forest vs CNN vs robust-PCA nearest subspace on the same split")
