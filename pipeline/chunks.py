"""Ingest for the flows: raw input files -> validated light curves in chunks of whole objects.

The flows process light curves in chunks of thousands of objects (one Prefect
task per chunk, never one per light curve). :func:`ingest` reads every input
file on its own, so that an unreadable file is quarantined (with its reason)
instead of failing the run, cleans the rows with the rules of
:mod:`pipeline.validate`, and writes them as chunk files of ``chunk_size``
objects, each sorted by object, band and time. Input grouped by object (each
object's rows contiguous, in one file) is streamed: memory is bounded by a
block of rows and a chunk, whatever the input size. Otherwise (rows of an
object scattered, or an object in several files) the rows are first split by
object into temporary partitions (:mod:`pipeline.partition`), each cleaned
whole: memory is bounded by a partition.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .contract import ColumnMap, NotGroupedError, read_table
from .errors import ConfigError, InputError
from .io import write_json_atomic, write_parquet_atomic
from .series import LightCurves
from .validate import QUARANTINE_SCHEMA, CleaningConfig, clean_frame, series_to_arrow

__all__ = ["IngestResult", "input_files", "ingest", "read_chunk_objects", "concat_parquet"]

_SUFFIXES = (".parquet", ".pq", ".csv")
#: rows per streamed block of an input file (memory is bounded by a block and a chunk)
_STREAM_ROWS = 500_000


@dataclass
class IngestResult:
    """What :func:`ingest` wrote.

    Attributes
    ----------
    chunks : list of str
        Chunk files (clean light curves, whole objects, sorted).
    chunk_objects : list of list of str
        Object ids of each chunk.
    quarantine : str
        Quarantine table: one row per (object_id, band, reason) with ``n_rows``;
        unreadable input files appear with object_id ``'*'`` and reason
        ``unreadable_file: <problem>`` and band = the file name.
    failed_files : list of dict
        ``{"file", "problem"}`` for each input file that could not be read.
    counts : dict
        Cleaning counts (rows in/out/dropped/merged by reason, objects in/out).
    n_files : int
        Input files found.
    bands : list of str
        Bands of the clean rows, ordered by wavelength (:func:`pipeline.dmdt.order_bands`);
        every chunk's dm-dt images and features use this list, so chunks align.
    """

    chunks: list[str]
    chunk_objects: list[list[str]]
    quarantine: str
    failed_files: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    n_files: int = 0
    bands: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def input_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of an input: the file itself, or every Parquet/CSV file under a directory.

    Raises
    ------
    InputError
        No such path, or a directory without Parquet or CSV files.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or directory")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _SUFFIXES
                   and not f.name.startswith((".", "_")))
    if not files:
        raise InputError(p, "directory holds no Parquet or CSV file")
    return files


def ingest(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    cmap: ColumnMap | None = None,
    config: CleaningConfig | None = None,
    chunk_size: int = 2000,
    allow_empty: bool = False,
) -> IngestResult:
    """Read, validate and chunk a light-curve input.

    Parameters
    ----------
    path : path-like
        A Parquet or CSV file, or a directory of them (any row order; an object
        may span files).
    outdir : path-like
        Receives ``chunks/chunk-NNNNN.parquet``, ``quarantine.parquet`` and
        ``ingest.json`` (all written atomically). Must not be inside the input.
    cmap : ColumnMap, optional
        Column mapping of the input.
    config : CleaningConfig, optional
        Cleaning rules.
    chunk_size : int, default=2000
        Objects per chunk (>= 1).
    allow_empty : bool, default=False
        Return a result without chunks when no object survives cleaning (all
        quarantined) instead of raising.

    Returns
    -------
    IngestResult

    Raises
    ------
    InputError
        No input file could be read, or no object survived cleaning.
    """
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    out = Path(outdir)
    files = input_files(path)
    writer = _ChunkWriter(out / "chunks", int(chunk_size))
    try:
        counts, quarantine, failed = _ingest_streaming(files, cmap, config, writer)
    except NotGroupedError:
        # rows of an object not contiguous, or an object in several files: read it all
        import shutil

        shutil.rmtree(out / "chunks", ignore_errors=True)
        writer = _ChunkWriter(out / "chunks", int(chunk_size))
        counts, quarantine, failed = _ingest_partitioned(files, cmap, config, writer, out)
    writer.flush(final=True)
    if failed and len(failed) == len(files):
        raise InputError(path, f"no input file could be read (first: {failed[0]['file']}: "
                         f"{failed[0]['problem']})")
    if not writer.chunks and not allow_empty:
        raise InputError(path, "no light curve survived cleaning (see the quarantine counts: "
                         f"{counts.to_dict()})")
    if failed:
        quarantine.append(pd.DataFrame({
            "object_id": ["*"] * len(failed),
            "band": [Path(x["file"]).name for x in failed],
            "reason": [f"unreadable_file: {x['problem']}" for x in failed],
            "n_rows": [0] * len(failed)}))
    q = pd.concat(quarantine, ignore_index=True) if quarantine else pd.DataFrame(
        {k: pd.Series([], dtype=object if k != "n_rows" else np.int64)
         for k in QUARANTINE_SCHEMA.names})
    qpath = out / "quarantine.parquet"
    write_parquet_atomic(pa.Table.from_pandas(q.astype({"object_id": str, "band": str}),
                                              schema=QUARANTINE_SCHEMA, preserve_index=False),
                         qpath)
    from .dmdt import order_bands

    result = IngestResult(chunks=writer.chunks, chunk_objects=writer.chunk_objects,
                          quarantine=str(qpath), failed_files=failed, counts=counts.to_dict(),
                          n_files=len(files), bands=order_bands(writer.bands))
    write_json_atomic(result.to_dict(), out / "ingest.json")
    return result


class _ChunkWriter:
    """Collects clean light curves and writes them as chunk files of ``size`` objects.

    Works on the cleaning's series (:class:`pipeline.series.LightCurves`, Arrow tables
    underneath): the rows are already grouped by object, so a chunk is a slice cut at an
    object boundary, sorted by object only when its objects arrived out of order.
    """

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, size
        self.pending: list[tuple[pa.Table, np.ndarray, np.ndarray]] = []
        self.n_pending = 0
        self.chunks: list[str] = []
        self.chunk_objects: list[list[str]] = []
        self.bands: set[str] = set()

    def add(self, lcs: LightCurves) -> None:
        """Queue clean series (grouped by object); write every full chunk."""
        if not len(lcs):
            return
        oid = np.asarray(lcs.object_id, dtype=object)
        first = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])  # first series of each object
        self.pending.append((series_to_arrow(lcs), oid[first].astype(str),
                             np.asarray(lcs.offsets)[first]))
        self.n_pending += len(first)
        self.bands.update(map(str, lcs.band))
        self.flush()

    def flush(self, final: bool = False) -> None:
        while self.n_pending >= self.size or (final and self.n_pending):
            block = pa.concat_tables([t for t, _, _ in self.pending])
            ids = np.concatenate([i for _, i, _ in self.pending])
            shift = np.cumsum([0] + [t.num_rows for t, _, _ in self.pending[:-1]])
            starts = np.concatenate([st + sh for (_, _, st), sh
                                     in zip(self.pending, shift, strict=True)])
            k = min(self.size, len(ids))
            cut = int(starts[k]) if k < len(ids) else block.num_rows
            part, part_ids = block.slice(0, cut), ids[:k]
            if (part_ids[1:] < part_ids[:-1]).any():  # objects out of order: sort (stable)
                part = part.take(pc.sort_indices(part, [("object_id", "ascending")]))
                part_ids = np.sort(part_ids, kind="stable")
            p = self.folder / f"chunk-{len(self.chunks):05d}.parquet"
            write_parquet_atomic(part, p)
            self.chunks.append(str(p))
            self.chunk_objects.append([str(x) for x in part_ids])
            rest = block.slice(cut)
            self.pending = ([(rest, ids[k:], starts[k:] - cut)] if rest.num_rows else [])
            self.n_pending = len(ids) - k


def _ingest_streaming(files: list[Path], cmap: ColumnMap | None, config: CleaningConfig | None,
                      writer: _ChunkWriter) -> tuple[Any, list[pd.DataFrame], list[dict]]:
    """Each file as a stream of whole objects (memory bounded by a block, not the input)."""
    from .contract import iter_object_chunks
    from .validate import CleaningCounts

    counts, quarantine, failed = CleaningCounts(), [], []
    seen: set[str] = set()
    for f in files:
        try:
            for frame in iter_object_chunks(f, cmap, _STREAM_ROWS):
                cat = frame["object_id"].array
                codes = np.asarray(cat.codes)
                ids = set(np.asarray(cat.categories, dtype=object)[
                    np.unique(codes[codes >= 0])].astype(str))
                if ids & seen:
                    raise NotGroupedError(f, "an object continues in another file",
                                          object_id=sorted(ids & seen)[0])
                seen |= ids
                res = clean_frame(frame, config)
                counts += res.counts
                quarantine.append(res.quarantine)
                writer.add(res.series)
        except NotGroupedError:
            raise
        except InputError as exc:
            failed.append({"file": str(f), "problem": exc.problem})
    return counts, quarantine, failed


def _ingest_partitioned(files: list[Path], cmap: ColumnMap | None,
                        config: CleaningConfig | None, writer: _ChunkWriter, out: Path
                        ) -> tuple[Any, list[pd.DataFrame], list[dict]]:
    """Input not grouped (rows of an object scattered, or an object in several files).

    Each readable file's rows are split by the same object-id ranges
    (:func:`pipeline.partition.partition_rows`, one piece per file and partition, in a
    hidden temporary folder of ``out``); then each partition, all rows of its objects,
    is cleaned whole, in id order. Memory is bounded by a partition (~``_STREAM_ROWS`` rows); a file
    that cannot be read is quarantined without any of its rows.
    """
    import shutil
    import tempfile

    from .contract import concat_frames
    from .partition import id_counts, partition_rows, range_bounds
    from .validate import CleaningCounts

    counts, quarantine, failed = CleaningCounts(), [], []
    rows: dict[str, int] = {}
    readable = []
    for f in files:
        try:
            id_counts(f, cmap, into=rows)
            readable.append(f)
        except InputError as exc:
            failed.append({"file": str(f), "problem": exc.problem})
    bounds = range_bounds(rows, _STREAM_ROWS)
    pieces: dict[str, list[Path]] = {}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lcpipe-partitions-", dir=out) as tmp:
        for j, f in enumerate(readable):
            fdir = Path(tmp) / f"file-{j:05d}"
            fdir.mkdir()
            try:
                parts = partition_rows(f, fdir, cmap, bounds=bounds)
            except InputError as exc:
                shutil.rmtree(fdir)
                failed.append({"file": str(f), "problem": exc.problem})
                continue
            for p in parts:
                pieces.setdefault(p.name, []).append(p)
        for name in sorted(pieces):
            try:
                frame = concat_frames([read_table(p, cmap) for p in pieces[name]])
            except InputError as exc:  # a file readable in batches but not as a table
                raise InputError(pieces[name][0], f"partition unreadable: {exc}") from exc
            res = clean_frame(frame, config)
            counts += res.counts
            quarantine.append(res.quarantine)
            writer.add(res.series)
            for p in pieces[name]:
                p.unlink()
    return counts, quarantine, failed


def read_chunk_objects(chunk: str | os.PathLike[str]) -> list[str]:
    """Object ids of a chunk file (reads only that column)."""
    import pyarrow.parquet as pq

    try:
        col = pq.read_table(chunk, columns=["object_id"]).column("object_id")
    except (OSError, pa.ArrowException) as exc:
        raise InputError(chunk, f"cannot read chunk: {exc}") from exc
    return list(pd.unique(np.asarray(col.to_pylist(), dtype=object)))


def concat_parquet(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                   metadata_key: str | None = None) -> Path:
    """Concatenate Parquet files of one schema into one file, atomically.

    The file metadata of the first file is kept (``metadata_key`` entries of
    all files must agree, e.g. the dm-dt grid); columns missing from some files
    (e.g. features of a band a chunk lacks) are filled with nulls.

    Raises
    ------
    InputError
        No file given, or files whose ``metadata_key`` entries differ.
    """
    import pyarrow.parquet as pq

    if not paths:
        raise InputError(out, "nothing to concatenate")
    tables = [pq.read_table(p) for p in paths]
    meta = tables[0].schema.metadata or {}
    if metadata_key is not None:
        key = metadata_key.encode()
        first = meta.get(key)
        for p, t in zip(paths, tables, strict=True):
            if (t.schema.metadata or {}).get(key) != first:
                raise InputError(p, f"its '{metadata_key}' metadata differs from {paths[0]}")
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables],
                             promote_options="permissive")
    table = table.replace_schema_metadata(meta)
    return write_parquet_atomic(table, out)
