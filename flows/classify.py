"""The classify flow: a model bundle + new raw light curves -> predictions of every model.

Stages: ingest (validate and chunk; any column preset) -> per chunk (one
cached task each): dm-dt images, features, the forest, the CNN and the
robust-PCA distances -> one prediction file in lcpipe's schema
(:mod:`models.predictions`), beside it the robust-PCA distances and the
quarantine.
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
    write_quarantine,
)
from flows.tasks import classify_chunks, ingest_cached  # noqa: E402
from models.settings import ClassifySettings  # noqa: E402

__all__ = ["classify", "companion_paths"]


def companion_paths(output: Path) -> dict[str, Path]:
    """Files written beside the predictions ``OUT.parquet``: distances, quarantine, work folder."""
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return {"rpca_distances": output.with_name(f"{stem}.rpca_distances.parquet"),
            "quarantine": output.with_name(f"{stem}.quarantine.parquet"),
            "work": output.with_name(f"{stem}.work")}


@flow(name="lcpipe-classify", task_runner=ThreadPoolTaskRunner(max_workers=2),
      validate_parameters=True)
def classify(model: str, data: Path, output: Path,
             settings: ClassifySettings = ClassifySettings(),  # noqa: B008 - immutable
             run_id: str | None = None) -> dict[str, Any]:
    """Classify light curves with every model of a bundle.

    Parameters
    ----------
    model : str
        Bundle folder, a run folder of the train flow (its newest bundle), or
        ``'crts'`` (the bundle shipped with lcpipe).
    data : Path
        Light curves: Parquet or CSV file, or a folder of them.
    output : Path
        Predictions (Parquet). Beside it: ``<stem>.rpca_distances.parquet``,
        ``<stem>.quarantine.parquet`` and the chunk cache ``<stem>.work/``.
    settings : ClassifySettings
        Column preset, chunking, failure threshold, processes.
    run_id : str, optional
        Default ``classify-<UTC time>-<random>``.

    Returns
    -------
    dict
        Output paths, counts per predicted class and model, seconds per stage.
    """
    import pyarrow.parquet as pq

    from models.bundle import load_bundle
    from models.predictions import merge_predictions, new_run_id
    from pipeline.chunks import concat_parquet
    from pipeline.errors import InputError

    log = get_run_logger()
    data, output = Path(data), Path(output)
    extra = companion_paths(output)
    check_paths(extra["work"], [data])
    if output.resolve() == data.resolve() or data.resolve() in output.resolve().parents:
        raise InputError(output, "would overwrite the input: choose another output file")
    bundle = load_bundle(model)
    run_id = run_id or new_run_id("classify")
    watch = Stopwatch()
    cache = extra["work"] / "cache"

    ing = ingest_cached(data, cache, settings)
    common = set(ing["bands"]) & set(bundle.info["bands"])
    if not common:
        raise InputError(data, f"no light curve in the bundle's bands {bundle.info['bands']} "
                         f"(the data has {ing['bands']}; rename bands with --bands, e.g. "
                         f"'{ing['bands'][0]}={bundle.info['bands'][0]}')")
    n_obj = int(ing["counts"]["objects_out"])
    log.info(f"ingest: {n_obj} objects in {len(ing['chunks'])} chunks")
    watch.lap("ingest")

    res, failed = classify_chunks(str(bundle.path), ing["chunks"], ing["chunk_objects"],
                                  cache, settings.n_jobs, run_id)
    watch.lap("classify_chunks")
    write_quarantine(extra["quarantine"], run_id, ing["quarantine"], failed)
    check_failed_fraction(data, ing["n_files"], len(ing["failed_files"]), n_obj, len(failed),
                          settings.max_failed_fraction)
    ok = [c for c in ing["chunks"] if c in res]
    if not ok:
        raise InputError(data, "every chunk failed; see the quarantine table")
    merge_predictions([res[c]["predictions"] for c in ok], output, run_id,
                      metadata={"bundle": str(bundle.path), "input": str(data),
                                "bundle_run_id": bundle.info.get("run_id"),
                                "created_utc": _dt.datetime.now(_dt.UTC).isoformat()})
    if all("rpca_distances" in res[c] for c in ok):
        concat_parquet([res[c]["rpca_distances"] for c in ok], extra["rpca_distances"])
    watch.lap("merge")
    pred = pq.read_table(output, columns=["model", "predicted_class"]).to_pandas()
    counts = {m: g["predicted_class"].value_counts().to_dict()
              for m, g in pred.groupby("model")}
    summary = {"run_id": run_id, "output": str(output), "bundle": str(bundle.path),
            "rpca_distances": str(extra["rpca_distances"]), "quarantine": str(extra["quarantine"]),
            "objects_in": int(ing["counts"]["objects_in"]), "objects_classified":
            int(pred.shape[0] // max(1, len(counts))), "objects_quarantined":
            int(ing["counts"]["objects_in"]) - n_obj + len(failed),
            "predicted_counts": counts, "stage_seconds": watch.seconds}
    from pipeline.io import write_json_atomic

    write_json_atomic(summary, extra["work"] / "last_run.json")
    return summary
