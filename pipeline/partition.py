"""Whole objects from any input, in bounded memory: stream grouped input, partition the rest.

Cleaning needs all rows of an object together. Input grouped by object (each object's
rows contiguous, in one file: survey exports, lcpipe's own outputs) is streamed block by
block (:func:`pipeline.contract.iter_object_chunks`). Other input (rows shuffled, an
object spread over files) is split into temporary partition files of about
``chunk_rows`` rows each by ranges of object id (in string order, planned from a first
pass over the id column), every object in exactly one partition; each partition is then
read whole, in order: memory is bounded by a partition, not the input, and the objects
come out sorted. :func:`is_grouped` decides, from the object-id column alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .contract import (
    ColumnMap,
    _open_columns,
    _record_batches,
    iter_object_chunks,
    read_error,
    read_table,
    stripped_names,
)
from .errors import InputError

__all__ = ["is_grouped", "id_counts", "range_bounds", "partition_rows",
           "iter_whole_objects"]

_BATCH = 1 << 18
_FLUSH_ROWS = 1 << 16  # rows buffered per partition before they are written


def _id_codes(batch: pa.RecordBatch | pa.Table, col: str) -> tuple[np.ndarray, list]:
    """Object ids of a batch as (codes, values); null ids get code -1."""
    arr = batch.column(col)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.dictionary.to_pylist()
    if all(isinstance(v, str) for v in values):  # the cleaning strips ids: so must grouping
        codes, values = stripped_names(codes, values)
    return codes, values


def is_grouped(path: str | os.PathLike[str], cmap: ColumnMap | None = None) -> bool:
    """Whether every object's rows are contiguous in ``path`` (files read in name order).

    Reads only the object-id column, batch by batch (as dictionary codes for Parquet).
    """
    cmap = cmap or ColumnMap()
    dset, cols = _open_columns(path, cmap)
    col = cols["object_id"]
    assert col is not None
    seen: set = set()
    last = None
    try:
        for rb in _record_batches(dset, [col], _BATCH):
            if rb.num_rows == 0:
                continue
            codes, values = _id_codes(rb, col)
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            run_ids = [values[c] if c >= 0 else None for c in codes[starts]]
            if run_ids[0] == last:  # the previous batch's last object continues
                run_ids = run_ids[1:]
            if len(set(run_ids)) != len(run_ids) or seen.intersection(run_ids):
                return False
            seen.update(run_ids)
            last = run_ids[-1] if run_ids else last
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from exc
    return True


def id_counts(path: str | os.PathLike[str], cmap: ColumnMap | None = None,
              into: dict[str, int] | None = None) -> dict[str, int]:
    """Rows per object id (as text) of ``path``, added to ``into``; reads only the id column."""
    cmap = cmap or ColumnMap()
    dset, cols = _open_columns(path, cmap)
    col = cols["object_id"]
    assert col is not None
    out = {} if into is None else into
    try:
        for rb in _record_batches(dset, [col], _BATCH):
            codes, values = _id_codes(rb, col)
            n = np.bincount(codes[codes >= 0], minlength=len(values))
            for v, k in zip(values, n.tolist(), strict=True):
                if k and v is not None:
                    key = str(v)
                    out[key] = out.get(key, 0) + k
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from exc
    return out


def range_bounds(counts: dict[str, int], chunk_rows: int) -> np.ndarray:
    """First object id of each partition but the first: ranges of ~``chunk_rows`` rows.

    Objects are never split: a partition ends after the object that reaches the size.
    """
    if not counts:
        return np.array([], dtype=str)
    ids = np.array(sorted(counts), dtype=str)
    rows = np.cumsum(np.array([counts[i] for i in ids], dtype=np.int64))
    starts, next_cut = [], int(chunk_rows)
    for k in range(len(ids) - 1):
        if rows[k] >= next_cut:
            starts.append(k + 1)
            next_cut = int(rows[k]) + int(chunk_rows)
    return ids[starts]


def partition_rows(path: str | os.PathLike[str], workdir: str | os.PathLike[str],
                   cmap: ColumnMap | None = None, chunk_rows: int = 1_000_000,
                   bounds: np.ndarray | None = None) -> list[Path]:
    """Split the rows of ``path`` by object-id range into Parquet partitions under ``workdir``.

    Parameters
    ----------
    bounds : ndarray of str, optional
        :func:`range_bounds` (default: planned from ``path`` alone for ~``chunk_rows``
        rows a partition). Several files split with the same bounds put an object's
        rows in partitions of the same name.

    Returns
    -------
    list of Path
        Partition files ``part-NNNNN.parquet`` (source column names and types) in id
        order, each holding every row of its objects, in input order. Rows with a null
        object id go to the first partition (cleaning drops and counts them).
    """
    cmap = cmap or ColumnMap()
    if bounds is None:
        bounds = range_bounds(id_counts(path, cmap), chunk_rows)
    dset, cols = _open_columns(path, cmap)
    col = cols["object_id"]
    assert col is not None
    wanted = sorted({c for c in cols.values() if c is not None})
    n_parts = len(bounds) + 1
    out = [Path(workdir) / f"part-{i:05d}.parquet" for i in range(n_parts)]
    writers: dict[int, pq.ParquetWriter] = {}
    buffers: dict[int, list[pa.Table]] = {i: [] for i in range(n_parts)}
    buffered = np.zeros(n_parts, dtype=np.int64)
    schema = None

    def flush(i: int) -> None:
        if not buffers[i]:
            return
        table = pa.concat_tables(buffers[i])
        if i not in writers:
            writers[i] = pq.ParquetWriter(out[i], table.schema)
        writers[i].write_table(table)
        buffers[i], buffered[i] = [], 0

    try:
        for rb in _record_batches(dset, wanted, _BATCH):
            if rb.num_rows == 0:
                continue
            table = pa.Table.from_batches([rb])
            if pa.types.is_dictionary(table.schema.field(col).type):
                i = table.schema.get_field_index(col)
                table = table.set_column(i, col, pc.cast(table.column(col),
                                                         table.schema.field(col).type.value_type))
            if schema is None:
                schema = table.schema
            elif table.schema != schema:
                try:
                    table = table.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise InputError(path, f"files with different column types: {exc}") from exc
            codes, values = _id_codes(table, col)
            text = np.array([str(v) for v in values], dtype=str)
            where = np.searchsorted(bounds, text, side="right") if len(text) else np.zeros(
                0, dtype=np.int64)
            part = np.append(where, 0)[codes]  # code -1 (null id) -> part 0
            order = np.argsort(part, kind="stable")
            cuts = np.searchsorted(part[order], np.arange(n_parts + 1))
            for i in range(n_parts):
                a, b = cuts[i], cuts[i + 1]
                if b > a:
                    buffers[i].append(table.take(order[a:b]))
                    buffered[i] += b - a
                    if buffered[i] >= _FLUSH_ROWS:
                        flush(i)
        for i in range(n_parts):
            flush(i)
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from exc
    finally:
        for w in writers.values():
            w.close()
    return [out[i] for i in sorted(writers)]


@contextlib.contextmanager
def _scratch(workdir: str | os.PathLike[str] | None) -> Iterator[Path]:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lcpipe-partitions-", dir=workdir) as tmp:
        yield Path(tmp)


def iter_whole_objects(path: str | os.PathLike[str], cmap: ColumnMap | None = None,
                       chunk_rows: int = 1_000_000,
                       workdir: str | os.PathLike[str] | None = None) -> Iterator[pd.DataFrame]:
    """Canonical frames (see :func:`pipeline.contract.read_table`) of whole objects, any input.

    Parameters
    ----------
    path : path-like
        Parquet file or directory, or CSV file; any row order.
    cmap : ColumnMap, optional
    chunk_rows : int, default 1_000_000
        Rows per frame (about).
    workdir : path-like, optional
        Where ungrouped input is partitioned (a hidden temporary folder, removed after;
        default: the system's temporary folder).
    """
    cmap = cmap or ColumnMap()
    if is_grouped(path, cmap):
        yield from iter_object_chunks(path, cmap, chunk_rows)
        return
    with _scratch(workdir) as tmp:
        for part in partition_rows(path, tmp, cmap, chunk_rows):
            frame = read_table(part, cmap)
            part.unlink()
            yield frame
