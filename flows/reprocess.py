"""The reprocess flow: keep the predictions of a growing survey folder up to date, incrementally.

Each run compares the survey folder with the manifest of the last successful run
(:mod:`pipeline.survey`): only the objects of new or modified files are read again, and
of those only the ones whose clean light curve changed (or that are new) are classified
again. A changed model bundle, or a file removed from the survey, means a full
re-classification. Outputs, in the output folder:

``predictions.parquet``
    The latest prediction per object and model (lcpipe's prediction schema, split
    ``classify``), with the ``run_id`` that produced it.
``manifest.parquet``
    Per object: content hash, status, run_id; in its metadata the files seen and the
    bundle hash (the model version of every prediction).
``work/``
    Chunk caches (safe to delete).

Idempotent (nothing new: nothing written) and resumable: the predictions are written
before the manifest, both atomically, and chunk results are cached, so a run killed at
any point and run again ends with the table an uninterrupted run gives.
"""

import datetime as _dt
from pathlib import Path
from typing import Any

from flows._runtime import prefect_environment

prefect_environment()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows._common import (  # noqa: E402
    Stopwatch,
    check_failed_fraction,
    check_paths,
)
from flows.tasks import classify_chunks, ingest_cached  # noqa: E402
from models.settings import ClassifySettings  # noqa: E402

__all__ = ["reprocess"]


@flow(name="lcpipe-reprocess", task_runner=ThreadPoolTaskRunner(max_workers=2),
      validate_parameters=True)
def reprocess(survey: Path, model: str, output: Path,
              settings: ClassifySettings = ClassifySettings(),  # noqa: B008 - immutable
              run_id: str | None = None) -> dict[str, Any]:
    """Classify what is new or changed in a survey folder since the last run.

    Parameters
    ----------
    survey : Path
        Folder of Parquet/CSV light-curve files (or one file) that grows: new files
        appear, objects gain points in them.
    model : str
        Bundle folder, a run folder of the train flow, or ``'crts'``.
    output : Path
        Folder of ``predictions.parquet``, ``manifest.parquet`` and ``work/``.
    settings : ClassifySettings
        Column preset, chunking, failure threshold, processes.
    run_id : str, optional
        Default ``reprocess-<UTC time>-<random>``.

    Returns
    -------
    dict
        Object counts: ``new`` and ``changed`` (classified by this run), ``unchanged``
        (classified before, kept), ``quarantined`` (by this run: cleaning or a failed
        chunk); ``full`` (whether everything was reclassified) and ``reason``; paths;
        seconds per stage.
    """
    import numpy as np
    import pandas as pd

    from models.bundle import load_bundle
    from models.predictions import new_run_id, upsert_predictions
    from pipeline.arrays import isin
    from pipeline.contract import ColumnMap
    from pipeline.errors import InputError
    from pipeline.hashing import file_hash, text_hash
    from pipeline.survey import (
        FILES_SEP,
        Manifest,
        changed_files,
        extract_objects,
        files_of,
        object_hashes,
        objects_by_file,
        read_manifest,
        scan_survey,
        write_manifest,
    )

    log = get_run_logger()
    survey, output = Path(survey), Path(output)
    check_paths(output, [survey])
    if output.resolve() in survey.resolve().parents or output.resolve() == survey.resolve():
        raise InputError(output, "the output folder is inside the survey: choose another")
    bundle = load_bundle(model)
    bundle_hash = file_hash(bundle.path)
    run_id = run_id or new_run_id("reprocess")
    watch = Stopwatch()
    pred_path, man_path = output / "predictions.parquet", output / "manifest.parquet"
    cache = output / "work" / "cache"
    base = survey if survey.is_dir() else survey.parent
    cmap = ColumnMap.from_spec(settings.preset, settings.columns, settings.bands)

    before = read_manifest(man_path)
    files = scan_survey(survey)
    if before is None:
        full, why = True, "first run"
    elif before.bundle_hash != bundle_hash:
        full, why = True, "model bundle changed"
    else:
        changed, removed = changed_files(files, before.files)
        full, why = (True, f"{len(removed)} file(s) removed") if removed else (False, "")
    empty = pd.DataFrame({"object_id": [], "content_hash": [], "status": [], "run_id": [],
                          "files": []})
    known = before.objects if before is not None and not full else empty
    sep = FILES_SEP
    if full:
        per_file = objects_by_file(base, files, cmap)
        affected = None
        vanished: set[str] = set()
        data: Path | None = survey
    else:
        changed_paths = {f.path for f in changed}
        per_file = objects_by_file(base, changed, cmap)
        was_in = files_of(known, changed_paths, set().union(*per_file.values()))
        affected = set().union(*per_file.values()) | {
            o for o, fs in was_in.items() if fs & changed_paths}
        if not affected:
            log.info("nothing new: predictions unchanged")
            return _summary(run_id, 0, 0, int((known["status"] == "classified").sum()), 0,
                            False, "", pred_path, man_path, watch.seconds)
        vanished = {o for o in affected
                    if not (was_in.get(o, set()) - changed_paths)
                    and not any(o in ids for ids in per_file.values())}
        to_read = affected - vanished
        key = text_hash(sorted(to_read), [vars(f) for f in files])
        data = extract_objects(base, files, to_read,
                               output / "work" / "extract" / f"{key}.parquet", cmap
                               ) if to_read else None
    membership: dict[str, set[str]] = {}
    for path, ids in per_file.items():
        for o in ids:
            membership.setdefault(o, set()).add(path)
    if not full:  # files not re-read still hold their objects
        for o in affected:
            membership.setdefault(o, set()).update(was_in.get(o, set()) - changed_paths)
    watch.lap("scan")
    log.info(f"{'full run (' + why + ')' if full else f'{len(affected)} objects to re-read'}")

    if data is not None:
        ing = ingest_cached(data, cache, settings, allow_empty=True)
    else:  # every object to re-read left the survey
        ing = {"chunks": [], "chunk_objects": [], "quarantine": None, "failed_files": [],
               "counts": {"objects_out": 0}}
    n_obj = int(ing["counts"]["objects_out"])
    watch.lap("ingest")
    hashes = object_hashes(ing["chunks"])
    prev = known.set_index("object_id")["content_hash"] if len(known) else pd.Series(dtype=object)
    old_hash = hashes["object_id"].map(prev)
    is_new = old_hash.isna() & ~isin(hashes["object_id"], known["object_id"])
    is_changed = ~is_new & (old_hash != hashes["content_hash"])
    todo = set(hashes.loc[is_new | is_changed, "object_id"])
    # objects re-read but quarantined by cleaning (as a whole): their old predictions go
    import pyarrow.parquet as pq

    present = set(hashes["object_id"])
    quarantined: set[str] = set()
    if ing["quarantine"] is not None:
        qtab = pq.read_table(ing["quarantine"], columns=["object_id"]).column("object_id")
        quarantined = set(qtab.to_pylist()) - present - {"*"}
    chunks = [(c, objs) for c, objs in zip(ing["chunks"], ing["chunk_objects"], strict=True)
              if todo & set(objs)]
    res, failed = classify_chunks(str(bundle.path), [c for c, _ in chunks],
                                  [objs for _, objs in chunks], cache, settings.n_jobs, run_id)
    watch.lap("classify_chunks")
    check_failed_fraction(survey, len(files), len(ing["failed_files"]), max(n_obj, 1),
                          len(failed), settings.max_failed_fraction)
    failed_ids = {r["object_id"] for r in failed}
    new_paths = [res[c]["predictions"] for c, _ in chunks if c in res]
    if full and not new_paths and pred_path.exists():
        pred_path.unlink()  # a full run that classified nothing: no stale predictions
    elif new_paths or pred_path.exists():
        upsert_predictions(None if full else pred_path, new_paths, pred_path, run_id,
                           drop=quarantined | failed_ids | vanished, only=todo,
                           metadata={"bundle": str(bundle.path), "bundle_hash": bundle_hash,
                                     "survey": str(survey), "run_id": run_id})
    # the manifest last: it never claims work that is not on disk
    last_run = (known.set_index("object_id")["run_id"].astype(object) if len(known)
                else pd.Series(dtype=object))
    done = hashes[~isin(hashes["object_id"], failed_ids)].assign(status="classified")
    redo = isin(done["object_id"], todo)
    done["run_id"] = np.where(redo, run_id,
                              done["object_id"].map(last_run).fillna(run_id).astype(object))
    q = pd.DataFrame({"object_id": sorted(quarantined), "content_hash": None,
                      "status": "quarantined", "run_id": run_id})
    keep = known[~isin(known["object_id"], present | quarantined | failed_ids | vanished)]
    objects = pd.concat([x for x in (keep, done, q) if len(x)] or [empty], ignore_index=True)
    redone = ~isin(objects["object_id"], keep["object_id"])
    objects.loc[redone, "files"] = [sep.join(sorted(membership.get(o, ())))
                                    for o in objects.loc[redone, "object_id"]]
    objects = objects.sort_values("object_id", ignore_index=True)
    # objects of failed chunks are not recorded, and no file counts as seen: the next run
    # reads the survey again and retries them
    write_manifest(man_path, Manifest(bundle_hash=bundle_hash,
                                      files=[] if failed_ids else files,
                                      objects=objects, run_id=run_id,
                                      extra={"predictions": str(pred_path),
                                             "written_utc": _dt.datetime.now(_dt.UTC)
                                             .isoformat(timespec="seconds")}))
    watch.lap("merge")
    n_new = len(todo & set(hashes.loc[is_new, "object_id"]) - failed_ids)
    n_changed = len(todo & set(hashes.loc[is_changed, "object_id"]) - failed_ids)
    n_classified = int((objects["status"] == "classified").sum())
    n_quarantined = len(quarantined | failed_ids)  # by this run
    log.info(f"new {n_new}, changed {n_changed}, unchanged {n_classified - n_new - n_changed}, "
             f"quarantined {n_quarantined}")
    return _summary(run_id, n_new, n_changed, n_classified - n_new - n_changed, n_quarantined,
                    full, why, pred_path, man_path, watch.seconds)


def _summary(run_id: str, new: int, changed: int, unchanged: int, quarantined: int,
             full: bool, why: str, pred: Path, manifest: Path,
             seconds: dict[str, float]) -> dict[str, Any]:
    """The run's summary, also left in ``work/last_run.json`` (stage times for benchmarks)."""
    from pipeline.io import write_json_atomic

    out = {"run_id": run_id, "new": new, "changed": changed, "unchanged": unchanged,
           "quarantined": quarantined, "full": full, "reason": why,
           "predictions": str(pred), "manifest": str(manifest), "stage_seconds": seconds}
    write_json_atomic(out, Path(manifest).parent / "work" / "last_run.json")
    return out
