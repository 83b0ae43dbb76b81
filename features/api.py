"""Feature tables: many light curves in, one row of named features per object out.

Columns of the table (see ``docs/features.md``):

- ``object_id``;
- ``{band}:n_points`` (information, not a feature);
- ``{band}:{feature}`` for every per-band feature of :func:`default_extractor`;
- for multi-band input, ``multiband:{feature}`` (one period from all bands
  jointly) and ``colour:{a}-{b}`` (median magnitude differences).

The Parquet file carries its feature-set version, the list of feature
columns, units and a NaN summary under the metadata key ``lcpipe_features``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import check_lightcurve
from .colour import ColourFeatures, MultiBandPeriodFeatures
from .extractor import Extractor
from .lightcurve import LightCurveFeatures
from .period import PeriodSearchConfig
from .periodic import PeriodicFeatures

__all__ = [
    "FEATURE_SET_VERSION",
    "METADATA_KEY",
    "default_extractor",
    "feature_set_version",
    "versions_compatible",
    "extract_features",
    "extract_features_file",
    "read_features",
    "merge_feature_files",
]

#: Version of the default feature set; bump when names or definitions change.
FEATURE_SET_VERSION = "1.1"
#: Parquet metadata key of the feature-table description.
METADATA_KEY = "lcpipe_features"

_NON_FEATURE_SUFFIX = ":n_points"


def default_extractor(config: PeriodSearchConfig | None = None) -> Extractor:
    """The default per-band feature set: light-curve statistics + periodic features.

    Parameters
    ----------
    config : PeriodSearchConfig, optional
        Period-search settings.

    Returns
    -------
    Extractor
        64 features per band (38 from light-curve, 26 periodic).
    """
    return Extractor(LightCurveFeatures(), PeriodicFeatures(config))


def feature_set_version(config: PeriodSearchConfig | None = None) -> str:
    """Version string of the default feature set under ``config``.

    ``FEATURE_SET_VERSION`` for the default period search; otherwise it gets a
    ``+`` suffix hashing the settings, so models refuse features computed with
    a different search.
    """
    if config is None or config == PeriodSearchConfig():
        return FEATURE_SET_VERSION
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()
    return f"{FEATURE_SET_VERSION}+{digest[:8]}"


def versions_compatible(table_version: str, model_version: str) -> bool:
    """Whether a feature table of ``table_version`` can feed a model of ``model_version``.

    A minor version only adds features (``1.1`` added the prewhitened period and the period
    ratios; every ``1.0`` feature is computed as before), so a table of the same major
    version and at least the model's minor version holds the model's features unchanged.
    The period-search suffix (``+<hash>``) must be identical.

    Parameters
    ----------
    table_version, model_version : str
        ``MAJOR.MINOR`` with an optional ``+<hash>`` suffix.

    Returns
    -------
    bool
    """
    def parse(v: str) -> tuple[int, int, str] | None:
        head, _, suffix = str(v).partition("+")
        major, dot, minor = head.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            return None
        return int(major), int(minor), suffix

    t, m = parse(table_version), parse(model_version)
    if t is None or m is None:
        return str(table_version) == str(model_version)
    return t[0] == m[0] and t[2] == m[2] and t[1] >= m[1]


_WORKER_CACHE: dict[str, Extractor] = {}


def _extractor_for(config: PeriodSearchConfig | None) -> Extractor:
    key = repr(config)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = default_extractor(config)
    return _WORKER_CACHE[key]


def _chunk_features(lcs: Any, config: PeriodSearchConfig | None) -> dict[str, Any]:
    """Per-series features of one LightCurves batch, plus joint multi-band results."""
    ex = _extractor_for(config)
    series = [check_lightcurve(t, m, s) for _, _, t, m, s in lcs]
    values = ex.many(series, checked=True) if series else np.empty((0, ex.size))
    oid = np.asarray(lcs.object_id, dtype=object).astype(str)
    band = np.asarray(lcs.band, dtype=object).astype(str)
    n_points = np.array([s[0].size for s in series], dtype=np.int64)
    medians = np.array([np.median(s[1]) if s[1].size else np.nan for s in series])
    flat = np.array([s[1].size > 0 and np.ptp(s[1]) == 0 for s in series], dtype=bool)
    # joint period for objects observed in two or more bands
    mb_rows: list[dict[str, float]] = []
    mb_ids: list[str] = []
    if len(oid):
        starts = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
        ends = np.r_[starts[1:], len(oid)]
        for a, b in zip(starts, ends, strict=True):
            if b - a < 2:
                continue
            bands_here = list(band[a:b])
            mbf = MultiBandPeriodFeatures(bands_here, config)
            vals = mbf.compute_checked({band[i]: series[i] for i in range(a, b)})
            mb_rows.append(dict(zip(mbf.names, vals, strict=True)))
            mb_ids.append(oid[a])
    return {
        "object_id": oid, "band": band, "n_points": n_points, "values": values,
        "median": medians, "flat": flat, "mb_ids": mb_ids, "mb_rows": mb_rows,
    }


def _assemble(chunks: Sequence[dict[str, Any]], names: Sequence[str], units: Sequence[str],
              bands: Sequence[str] | None, min_points: dict[str, int],
              config: PeriodSearchConfig | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    oid = np.concatenate([c["object_id"] for c in chunks]) if chunks else np.array([], str)
    band = np.concatenate([c["band"] for c in chunks]) if chunks else np.array([], str)
    n_points = np.concatenate([c["n_points"] for c in chunks]) if chunks else np.array([], int)
    values = (np.vstack([c["values"] for c in chunks]) if chunks
              else np.empty((0, len(names))))
    medians = np.concatenate([c["median"] for c in chunks]) if chunks else np.array([])
    flat = np.concatenate([c["flat"] for c in chunks]) if chunks else np.array([], bool)
    found = sorted(set(band.tolist()))
    if bands is None:
        bands = found
    else:
        bands = list(bands)
    objects = pd.unique(oid)
    row_of = pd.Index(objects)
    out: dict[str, np.ndarray] = {"object_id": np.asarray(objects, dtype=object)}
    feature_cols: list[str] = []
    col_units: dict[str, str] = {}
    n_missing: dict[str, int] = {}
    for b in bands:
        sel = band == b
        rows = row_of.get_indexer(oid[sel])
        npts = np.zeros(len(objects), np.int64)
        npts[rows] = n_points[sel]
        out[f"{b}{_NON_FEATURE_SUFFIX}"] = npts
        n_missing[b] = int(len(objects) - sel.sum())
        block = np.full((len(objects), len(names)), np.nan)
        block[rows] = values[sel]
        for j, nm in enumerate(names):
            col = f"{b}:{nm}"
            out[col] = block[:, j]
            feature_cols.append(col)
            col_units[col] = units[j]
    if len(bands) >= 2:
        mbf = MultiBandPeriodFeatures(bands, config)
        mb = pd.DataFrame([r for c in chunks for r in c["mb_rows"]],
                          index=[i for c in chunks for i in c["mb_ids"]],
                          columns=list(mbf.names), dtype=np.float64)
        mb = mb.reindex(objects)
        # objects seen in one band only: the joint search is that band's search
        single = mb["n_bands"].isna().to_numpy()
        for b in bands:
            take = single & (out[f"{b}{_NON_FEATURE_SUFFIX}"] > 0)
            if not take.any():
                continue
            for src, dst in (("period", "period"), ("period_power", "period_power"),
                             ("period_log10_fap", "period_log10_fap"),
                             ("period_snr", "period_snr"), ("fourier_amp1", f"amp_{b}")):
                mb.loc[take, dst] = out[f"{b}:{src}"][take]
            mb.loc[take, "n_bands"] = (out[f"{b}{_NON_FEATURE_SUFFIX}"][take] >= 3).astype(float)
        for nm, un in zip(mbf.names, mbf.units, strict=True):
            col = f"multiband:{nm}"
            out[col] = mb[nm].to_numpy(dtype=np.float64)
            feature_cols.append(col)
            col_units[col] = un
        colour = ColourFeatures(bands)
        med = {b: np.full(len(objects), np.nan) for b in bands}
        for b in bands:
            sel = band == b
            med[b][row_of.get_indexer(oid[sel])] = medians[sel]
        for j, nm in enumerate(colour.names):
            a, c = colour._pairs[j]
            col = f"colour:{nm}"
            out[col] = med[a] - med[c]
            feature_cols.append(col)
            col_units[col] = "mag"
    frame = pd.DataFrame(out)
    nan_counts = {c: int(np.isnan(frame[c].to_numpy()).sum()) for c in feature_cols}
    summary = {
        "n_objects": int(len(objects)),
        "n_series": int(len(oid)),
        "bands": list(bands),
        "bands_found": found,
        "n_objects_missing_band": n_missing,
        "n_series_below_min_points": {g: int(np.sum(n_points < k)) for g, k in min_points.items()},
        "n_series_flat": int(flat.sum()),
        "n_values_nan": int(sum(nan_counts.values())),
        "nan_counts": {c: n for c, n in nan_counts.items() if n},
    }
    meta = {"feature_columns": feature_cols, "units": col_units, "summary": summary}
    return frame, meta


def extract_features(lcs: Any, bands: Sequence[str] | None = None,
                     config: PeriodSearchConfig | None = None) -> pd.DataFrame:
    """Feature table of a batch of light curves.

    Parameters
    ----------
    lcs : pipeline.lightcurves.LightCurves
        Clean light curves (one series per object and band).
    bands : sequence of str, optional
        Bands (column order); default: the bands present, sorted.
    config : PeriodSearchConfig, optional
        Period-search settings.

    Returns
    -------
    pandas.DataFrame
        One row per object (see the module docstring). ``frame.attrs`` holds
        ``feature_columns``, ``units``, ``summary`` and
        ``feature_set_version``.
    """
    ex = _extractor_for(config)
    chunk = _chunk_features(lcs, config)
    frame, meta = _assemble([chunk], ex.names, ex.units, bands, _min_points(ex), config)
    frame.attrs.update(meta)
    frame.attrs["feature_set_version"] = feature_set_version(config)
    return frame


def _min_points(ex: Extractor) -> dict[str, int]:
    return {type(g).__name__: int(g.min_points) for g in ex.groups}


_POOLS: dict[int, Any] = {}
_POOLS_LOCK = threading.Lock()


def _process_pool(n_jobs: int) -> Any:
    """A process pool of ``n_jobs`` workers, started once per process and shared.

    Feature extraction holds the GIL, so parallel chunks need processes; keeping
    the pool alive saves the worker start-up (a few seconds each) on every call,
    and concurrent callers (e.g. a flow's chunk tasks in threads) share its
    workers instead of oversubscribing the cores. Workers are started with
    ``spawn``: a script that uses ``n_jobs > 1`` needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with _POOLS_LOCK:
        pool = _POOLS.get(n_jobs)
        if pool is None or getattr(pool, "_broken", False):
            pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn"),
                                       initializer=_watch_parent, initargs=(os.getpid(),))
            _POOLS[n_jobs] = pool
        return pool


def _forget_pools_after_fork() -> None:
    """In a forked child the parent's pools are unusable (their threads are not copied):
    start afresh instead of waiting forever on them."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit when the parent process is gone (even after a SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="lcpipe-parent-watch", daemon=True).start()


def shutdown_pools() -> None:
    """Stop the shared worker processes now (interrupted run): queued work is dropped."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        # shutdown() drops the pool's references to its processes and manager thread: keep
        # them. Processes can start on demand until the shutdown, so list them after it.
        processes = getattr(pool, "_processes", None) or {}
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        procs = list(processes.values())
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
        # let the manager thread finish closing its wakeup pipe now: CPython 3.11's exit
        # hook (concurrent.futures.process._python_exit) checks the pipe is open, then
        # writes to it, and a close in between printed "Bad file descriptor" after Ctrl-C
        if manager is not None:
            manager.join(timeout=5)


def _iter_chunk_results(chunks: Iterable[Any], config: PeriodSearchConfig | None,
                        n_jobs: int) -> Iterable[dict[str, Any]]:
    if n_jobs == 1:
        for lcs in chunks:
            yield _chunk_features(lcs, config)
        return
    pool = _process_pool(n_jobs)
    pending = []
    for lcs in chunks:
        pending.append(pool.submit(_chunk_features, lcs, config))
        if len(pending) >= 2 * n_jobs:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def extract_features_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    cmap: Any = None,
    n_jobs: int = 1,
    chunk_rows: int = 100_000,
    bands: Sequence[str] | None = None,
    config: PeriodSearchConfig | None = None,
    clean: bool = True,
    cleaning: Any = None,
) -> dict[str, Any]:
    """Compute the feature table of a light-curve file and write it as Parquet.

    Parameters
    ----------
    in_path : path-like
        Light-curve table (long format; any layout :mod:`pipeline.contract` reads).
    out_path : path-like
        Output Parquet file, written atomically.
    cmap : pipeline.contract.ColumnMap, optional
        Column mapping of the input.
    n_jobs : int, default=1
        Worker processes over chunks; ``-1`` means all CPUs.
    chunk_rows : int, default=100_000
        Approximate input rows per chunk.
    bands : sequence of str, optional
        Bands to tabulate, in order; default all bands found, sorted.
    config : PeriodSearchConfig, optional
        Period-search settings.
    clean : bool, default=True
        Apply lcpipe's cleaning rules to each chunk (see ``pipeline.validate``).
    cleaning : pipeline.validate.CleaningConfig, optional
        Cleaning settings (default rules if None).

    Returns
    -------
    dict
        Summary: counts of objects, series, undefined (NaN) values per column,
        short series, flat series, missing bands, cleaning counts, timing.
    """
    import light_curve
    import pyarrow as pa

    from pipeline._version import __version__
    from pipeline.errors import ConfigError
    from pipeline.io import write_parquet_atomic
    from pipeline.lightcurves import iter_lightcurves
    from pipeline.validate import CleaningCounts

    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if n_jobs < 1:
        raise ConfigError(f"n_jobs must be >= 1 or -1, got {n_jobs}")
    t0 = time.perf_counter()
    ex = _extractor_for(config)
    counts = CleaningCounts() if clean else None
    chunks = iter_lightcurves(in_path, cmap, chunk_rows=chunk_rows, clean=clean,
                              config=cleaning if clean else None, counts=counts,
                              workdir=Path(out_path).parent)
    results = list(_iter_chunk_results(chunks, config, n_jobs))
    frame, meta = _assemble(results, ex.names, ex.units, bands, _min_points(ex), config)
    if not len(frame):
        from pipeline.errors import InputError

        raise InputError(in_path, "no light curve left after cleaning" + (
            f" (quarantined objects: {counts.objects_quarantined})" if counts else ""))
    seconds = time.perf_counter() - t0
    summary = meta["summary"]
    summary["seconds"] = round(seconds, 3)
    summary["lc_per_second"] = round(summary["n_series"] / seconds, 1) if seconds > 0 else None
    if counts is not None:
        summary["cleaning"] = _counts_dict(counts)
    metadata = {
        METADATA_KEY: {
            "feature_set_version": feature_set_version(config),
            "feature_columns": meta["feature_columns"],
            "units": meta["units"],
            "bands": summary["bands"],
            "period_search": asdict(config or PeriodSearchConfig()),
            "summary": summary,
            "source": str(in_path),
            "lcpipe_version": __version__,
            "light_curve_version": light_curve.__version__,
        }
    }
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_parquet_atomic(table, out_path, metadata=metadata)
    summary["output"] = str(Path(out_path))
    return summary


def _counts_dict(counts: Any) -> dict[str, Any]:
    return counts.to_dict() if hasattr(counts, "to_dict") else asdict(counts)


def read_features(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a feature table written by :func:`extract_features_file`.

    Parameters
    ----------
    path : path-like
        Parquet file.

    Returns
    -------
    (pandas.DataFrame, dict)
        The table and its ``lcpipe_features`` metadata.

    Raises
    ------
    pipeline.errors.InputError
        Missing file, or a Parquet file without lcpipe feature metadata.
    """
    import pyarrow.parquet as pq

    from pipeline.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for non-Parquet input
        raise InputError(p, f"cannot read Parquet: {exc}") from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise InputError(p, "not an lcpipe feature table (no 'lcpipe_features' metadata); "
                            "make one with `lcpipe features`")
    try:
        meta = json.loads(raw)
        feature_cols = [str(c) for c in meta["feature_columns"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(p, f"damaged lcpipe feature metadata: {exc}") from exc
    return _checked_features(table.to_pandas(), feature_cols, p), meta


def _checked_features(frame: pd.DataFrame, feature_cols: list[str], p: Path) -> pd.DataFrame:
    """The contract of a feature table: ids present, unique and stripped; every feature
    column present and numeric; no infinity (NaN marks a feature that could not be
    computed); at least one row."""
    from pipeline.errors import InputError

    if "object_id" not in frame.columns:
        raise InputError(p, "feature table without an object_id column")
    if not len(frame):
        raise InputError(p, "feature table with no rows")
    ids = frame["object_id"].astype(str).str.strip()
    if ids.duplicated().any():
        raise InputError(p, "object listed twice in the feature table",
                         object_id=ids[ids.duplicated()].iloc[0])
    frame["object_id"] = ids
    missing = [c for c in feature_cols if c not in frame.columns]
    if missing:
        raise InputError(p, f"feature columns missing: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")
    for c in feature_cols:
        col = frame[c]
        if not (pd.api.types.is_numeric_dtype(col) or col.isna().all()):
            raise InputError(p, f"feature column {c!r} is not numeric ({col.dtype})")
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(values)
        if bad.any():
            raise InputError(p, f"feature {c!r} is infinite", object_id=ids[bad].iloc[0])
    return frame


def merge_feature_files(paths: Sequence[str | os.PathLike[str]],
                        out_path: str | os.PathLike[str]) -> Path:
    """Concatenate feature tables of disjoint objects (e.g. the flows' chunks) into one.

    The tables must share the feature-set version and the feature columns
    (compute them with the same ``bands``); the merged metadata keeps those and
    sums the per-table counts of the summary.

    Raises
    ------
    pipeline.errors.InputError
        No table, or tables of different feature sets or columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.errors import InputError
    from pipeline.io import write_parquet_atomic

    if not paths:
        raise InputError(out_path, "no feature table to merge")
    tables, metas = [], []
    for p in paths:
        t = pq.read_table(p)
        raw = (t.schema.metadata or {}).get(METADATA_KEY.encode())
        if raw is None:
            raise InputError(p, "not an lcpipe feature table")
        tables.append(t.replace_schema_metadata(None))
        metas.append(json.loads(raw))
    first = metas[0]
    for p, m in zip(paths, metas, strict=True):
        if (m["feature_set_version"], m["feature_columns"]) != (
                first["feature_set_version"], first["feature_columns"]):
            raise InputError(p, f"feature set or columns differ from {paths[0]} "
                             "(compute every part with the same bands and settings)")
    summary = {k: sum(m["summary"].get(k, 0) for m in metas)
               for k, v in first["summary"].items() if isinstance(v, int | float)
               and not isinstance(v, bool) and k not in ("seconds", "lc_per_second")}
    meta = {**first, "summary": summary, "source": [m.get("source") for m in metas]}
    table = pa.concat_tables(tables)
    return write_parquet_atomic(table, out_path, metadata={METADATA_KEY: meta})
