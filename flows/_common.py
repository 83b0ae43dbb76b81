"""What the train and classify flows share: chunk fan-out with failure accounting, run checks."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import ConfigError, InputError

__all__ = ["Stopwatch", "fan_out", "collect", "check_failed_fraction", "write_quarantine",
           "quarantine_path", "check_paths", "ingest_outputs_exist"]


def ingest_outputs_exist(ing: dict[str, Any]) -> bool:
    """Whether the files of a (possibly cached) ingest result are all on disk."""
    return all(Path(p).exists() for p in [*ing["chunks"], ing["quarantine"]])


class Stopwatch:
    """Wall time per stage, in seconds (for the ``runs`` table)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def lap(self, stage: str) -> float:
        """Record the time since the previous lap under ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._t0, 3)
        self._t0 = now
        return self.seconds[stage]


def fan_out(submit: Callable[[str], Any], chunks: list[str], chunk_objects: list[list[str]],
            retry: Callable[[str], Any] | None = None,
            check: Callable[[Any], bool] | None = None
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit one task per chunk, then :func:`collect` the results.

    Parameters
    ----------
    submit : callable
        ``submit(chunk) -> PrefectFuture``.
    chunks, chunk_objects, retry, check
        See :func:`collect`.
    """
    return collect({c: submit(c) for c in chunks}, chunk_objects, retry, check)


def collect(futures: dict[str, Any], chunk_objects: list[list[str]],
            retry: Callable[[str], Any] | None = None,
            check: Callable[[Any], bool] | None = None
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait for one future per chunk; quarantine the objects of the chunks that failed.

    Parameters
    ----------
    futures : dict
        Chunk file -> PrefectFuture, in chunk order.
    chunk_objects : list of list of str
        Object ids of each chunk.
    retry : callable, optional
        ``retry(chunk) -> result`` run when ``check(result)`` is False (e.g. a cached
        result whose files were deleted: rerun without the cache).
    check : callable, optional
        Validates a result.

    Returns
    -------
    (dict, list of dict)
        Results by chunk for the chunks that succeeded, and quarantine rows
        (``object_id, band, reason, n_rows``) for the objects of the others.
    """
    results: dict[str, Any] = {}
    failed: list[dict[str, Any]] = []
    for (c, fut), objects in zip(futures.items(), chunk_objects, strict=True):
        fut.wait()
        res = fut.result(raise_on_failure=False)
        if not isinstance(res, BaseException) and check is not None and retry is not None \
                and not check(res):
            try:
                res = retry(c)
            except Exception as exc:  # the rerun failed: quarantine the chunk like a failure
                res = exc
        if isinstance(res, BaseException):
            msg = str(res).partition("\n")[0][:200]
            reason = f"chunk_failed: {type(res).__name__}" + (f": {msg}" if msg else "")
            failed += [{"object_id": o, "band": "*", "reason": reason, "n_rows": 0}
                       for o in objects]
            continue
        results[c] = res
    return results, failed


def check_failed_fraction(source: object, n_files: int, failed_files: int, n_objects: int,
                          failed_objects: int, limit: float) -> None:
    """Raise when more input files or objects than ``limit`` were lost to failures.

    Raises
    ------
    InputError
        Naming both fractions and the limit (``max_failed_fraction``).
    """
    f_files = failed_files / max(n_files, 1)
    f_obj = failed_objects / max(n_objects, 1)
    if f_files > limit or f_obj > limit:
        raise InputError(source, f"too much failed: {failed_files}/{n_files} input files "
                         f"unreadable, {failed_objects}/{n_objects} objects in failed chunks "
                         f"(max_failed_fraction {limit}); see the quarantine table")


def quarantine_path(report_dir: Path, run_id: str) -> Path:
    """The run's quarantine table in a report folder (docs/reports.md)."""
    return Path(report_dir) / "quarantine" / f"run_id={run_id}" / "part-0.parquet"


def write_quarantine(path: Path, run_id: str, validation_quarantine: str | None,
                     failed: list[dict[str, Any]]) -> str:
    """A run's quarantine: the cleaning quarantine plus the objects of failed chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.io import write_parquet_atomic
    from pipeline.validate import QUARANTINE_SCHEMA

    frames = [pq.read_table(validation_quarantine).to_pandas()] if validation_quarantine else []
    if failed:
        frames.append(pd.DataFrame(failed))
    q = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {n: [] for n in QUARANTINE_SCHEMA.names})
    write_parquet_atomic(pa.Table.from_pandas(q, schema=QUARANTINE_SCHEMA, preserve_index=False),
                         path, metadata={"lcpipe.report": {"schema_version": "1.0",
                                                           "table": "quarantine",
                                                           "run_id": run_id}})
    return str(path)


def check_paths(output: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is, or would write into, an input.

    Raises
    ------
    ConfigError
    """
    out = Path(output).resolve()
    for p in inputs:
        q = Path(p).resolve()
        owned = [out / sub for sub in ("reports", "bundles", "work")]
        if q == out or any(d == q or d in q.parents for d in owned):
            raise ConfigError(f"output {output} would overwrite the input {p}: "
                              "choose another output folder")
        if q.is_file() and out.exists() and not out.is_dir():
            raise ConfigError(f"output {output} exists and is not a folder")
