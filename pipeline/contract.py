"""The lcpipe data contract: long light-curve tables and how to read them.

A light-curve table has one row per measurement with the columns

==========  ======================  =========================================
column      type                    meaning
==========  ======================  =========================================
object_id   string or integer       identifier of the light curve (kept as string)
t           float                   time of the measurement, MJD [days]
mag         float                   magnitude [mag]
mag_err     float                   1-sigma magnitude uncertainty [mag], > 0
band        string or int, optional passband; absent means a single band
==========  ======================  =========================================

Extra columns are ignored. Real exports use other names: a
:class:`ColumnMap` (from a preset such as ``crts`` or ``ztf`` or from a
``t=MJD,mag_err=magerr`` string) maps them onto the contract. See
``docs/data-contract.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import ConfigError, InputError

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "DEFAULT_BAND",
    "PRESETS",
    "ColumnMap",
    "open_dataset",
    "read_table",
    "iter_object_chunks",
]

#: Canonical column names, in output order.
COLUMNS: tuple[str, ...] = ("object_id", "band", "t", "mag", "mag_err")
#: Columns every input must provide (after mapping).
REQUIRED: tuple[str, ...] = ("object_id", "t", "mag", "mag_err")
#: Band name given to every row when the input has no band column.
DEFAULT_BAND = "default"

_NUMERIC = ("t", "mag", "mag_err")


@dataclass(frozen=True)
class ColumnMap:
    """How the columns of an input table map onto the data contract.

    Parameters
    ----------
    names : mapping of str to sequence of str
        For each contract column, the candidate source column names, tried in
        order (exact match first, then case-insensitive). Columns not named map
        to themselves.
    band_values : mapping, optional
        Renames band values, e.g. ZTF's ``{1: 'g', 2: 'r', 3: 'i'}``.
    """

    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    band_values: Mapping[object, str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, preset: str | None = None, columns: str | None = None,
                  bands: str | None = None) -> ColumnMap:
        """Build a map from a preset name and/or a ``key=source,...`` string.

        Parameters
        ----------
        preset : {'lcpipe', 'crts', 'ztf'}, optional
            Named mapping for a survey export; default ``lcpipe`` (identity).
        columns : str, optional
            Overrides, e.g. ``"t=MJD,mag_err=magerr"``; keys must be contract columns.
        bands : str, optional
            Band renames ``"SOURCE=NAME,..."``, e.g. ``"r=CSS_V"``; an input without a
            band column has the single band :data:`DEFAULT_BAND` (``"default=CSS_V"``).
        """
        base = PRESETS[preset or "lcpipe"] if (preset or "lcpipe") in PRESETS else None
        if base is None:
            raise ConfigError(
                f"unknown column preset {preset!r}; choose one of {sorted(PRESETS)}"
            )
        names = dict(base.names)
        if columns:
            for item in columns.split(","):
                item = item.strip()
                if not item:
                    continue
                key, sep, src = item.partition("=")
                key, src = key.strip(), src.strip()
                if not sep or not src:
                    raise ConfigError(f"bad --columns item {item!r}: expected NAME=SOURCE")
                if key not in COLUMNS:
                    raise ConfigError(
                        f"bad --columns item {item!r}: {key!r} is not one of {list(COLUMNS)}"
                    )
                names[key] = (src,)
        band_values = dict(base.band_values)
        for item in (bands or "").split(","):
            if not item.strip():
                continue
            src, sep, dst = (x.strip() for x in item.partition("="))
            if not sep or not src or not dst:
                raise ConfigError(f"bad band rename {item!r}: expected SOURCE=NAME")
            # a rename applies after the preset's own (ztf: fid 2 -> 'r', then 'r' -> dst)
            for raw, name in list(band_values.items()):
                if name == src:
                    band_values[raw] = dst
            band_values[src] = dst
        return cls(names=names, band_values=band_values)

    def resolve(self, available: Sequence[str], source: object) -> dict[str, str | None]:
        """Return contract column -> source column (``None`` for an absent band).

        Raises
        ------
        InputError
            If a required column is missing.
        """
        lower = {c.lower(): c for c in available}
        out: dict[str, str | None] = {}
        for col in COLUMNS:
            cands = self.names.get(col, (col,))
            found = next((c for c in cands if c in available), None)
            if found is None:
                found = next((lower[c.lower()] for c in cands if c.lower() in lower), None)
            if found is None and col in REQUIRED:
                tried = ", ".join(repr(c) for c in cands)
                raise InputError(
                    source,
                    f"missing column for '{col}' (looked for {tried}; "
                    f"columns present: {', '.join(available)}). "
                    "Map it with --columns or choose a --preset.",
                )
            out[col] = found
        return out


#: Named column maps for survey exports.
PRESETS: dict[str, ColumnMap] = {
    "lcpipe": ColumnMap(),
    "crts": ColumnMap(
        names={
            "object_id": ("ID", "object_id", "MasterID"),
            "t": ("MJD", "t"),
            "mag": ("Mag", "mag"),
            "mag_err": ("Magerr", "mag_err"),
            "band": ("band",),
        }
    ),
    "ztf": ColumnMap(
        names={
            "object_id": ("objectId", "oid"),
            "t": ("mjd", "jd_mjd"),
            "mag": ("magpsf",),
            "mag_err": ("sigmapsf",),
            "band": ("fid", "band"),
        },
        band_values={1: "g", 2: "r", 3: "i", "1": "g", "2": "r", "3": "i"},
    ),
}


def open_dataset(path: str | os.PathLike[str], dictionary: Sequence[str] = ()) -> ds.Dataset:
    """Open a Parquet file, a directory of Parquet files (hive partitions too) or a CSV file.

    Parameters
    ----------
    path : path-like
    dictionary : sequence of str, optional
        Parquet string columns to read as dictionary arrays (e.g. object ids: ~4x
        faster to read and filter than decoded strings). Ignored for CSV.

    Raises
    ------
    InputError
        If the path does not exist or is not readable as Parquet/CSV.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or directory")
    suffixes = {s.lower() for s in p.suffixes}
    is_csv = p.is_file() and bool(suffixes & {".csv", ".txt"}) or (
        p.is_dir() and any(p.glob("*.csv")) and not any(p.rglob("*.parquet"))
    )
    try:
        if is_csv:
            return ds.dataset(p, format="csv")
        if dictionary:
            fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
                dictionary_columns=list(dictionary)))
            return ds.dataset(p, format=fmt, partitioning="hive")
        return ds.dataset(p, format="parquet", partitioning="hive")
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "CSV" if is_csv else "Parquet"
        raise InputError(p, f"cannot read as {kind}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_ARROW_SOURCE = re.compile(r"(?:Could not open Parquet input source|Error creating "
                           r"dataset\. Could not read schema from) '([^']+)'[.:]?\s*")


def read_error(path: object, exc: BaseException) -> InputError:
    """One-line InputError for a failed read of ``path``, naming the file of a folder that
    failed when pyarrow says which one."""
    text = _short(exc)
    m = _ARROW_SOURCE.search(text)
    if m is None:
        return InputError(path, f"cannot read: {text}")
    rest = _ARROW_SOURCE.sub("", text).strip() or type(exc).__name__
    return InputError(m.group(1), f"cannot read: {rest}")


def _categorical(arr: pa.ChunkedArray | pa.Array,
                 rename: Mapping[object, str] | None = None) -> pd.Categorical:
    """Arrow column -> pandas Categorical of strings (nulls become NaN), no per-row objects.

    A dictionary column (Parquet read with ``read_dictionary``) keeps its codes: only
    the dictionaries of its chunks are unified, no value is hashed again.
    """
    if isinstance(arr, pa.ChunkedArray):
        if pa.types.is_dictionary(arr.type) and arr.num_chunks > 1:
            arr = arr.unify_dictionaries()
            dictionary = arr.chunk(0).dictionary
            arr = pa.DictionaryArray.from_arrays(
                pa.concat_arrays([c.indices for c in arr.chunks]), dictionary)
        else:
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if pa.types.is_dictionary(arr.type):
        dictionary, indices = arr.dictionary, arr.indices
        if not (rename or pa.types.is_string(dictionary.type)):
            dictionary = pc.cast(dictionary, pa.string())
    else:
        raw = bool(rename) and not (pa.types.is_string(arr.type)
                                    or pa.types.is_large_string(arr.type))
        enc = pc.dictionary_encode(arr if raw else pc.cast(arr, pa.string()))
        dictionary, indices = enc.dictionary, enc.indices
    codes = indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if dictionary.null_count:  # a null stored in the dictionary itself
        codes[np.isin(codes, np.flatnonzero(dictionary.is_null().to_numpy(
            zero_copy_only=False)))] = -1
    cats = dictionary.to_pylist()
    if rename:
        cats = [rename.get(c, rename.get(str(c), c)) for c in cats]
    cats = [str(c) for c in cats]
    codes, cats = stripped_names(codes, cats, refactor=bool(rename or dictionary.null_count))
    return pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object))


def stripped_names(codes: np.ndarray, names: list[str], refactor: bool = False
                   ) -> tuple[np.ndarray, list[str]]:
    """Dictionary-coded names with surrounding spaces stripped.

    Ids and band names with stray spaces (``' X '`` beside ``'X'``) name the same thing,
    as in labels tables: their codes are merged. A name of spaces only is no name (code
    -1, like a null). ``refactor`` merges equal names even when none was stripped (after
    a rename).
    """
    stripped = [c.strip() for c in names]
    padded = stripped != names
    if padded:
        names = stripped
        blank = np.flatnonzero(np.asarray([not c for c in names], dtype=bool))
        if len(blank):
            codes = np.where(np.isin(codes, blank), -1, codes)
    if refactor or padded:
        uniq, remap = np.unique(np.asarray(names, dtype=object), return_inverse=True)
        if len(uniq) != len(names):
            codes = np.where(codes >= 0, remap.reshape(-1)[np.maximum(codes, 0)], -1)
            names = list(uniq)
    return codes, names


def _canonical(batch: pa.Table, cols: dict[str, str | None], cmap: ColumnMap,
               source: object) -> pd.DataFrame:
    """Convert a raw Arrow table to the canonical pandas frame (no cleaning).

    ``object_id`` and ``band`` are pandas Categoricals of strings (compact, fast to
    group); the numeric columns are float64.
    """
    n = batch.num_rows
    data: dict[str, object] = {}
    oid = batch.column(cols["object_id"])
    if not (pa.types.is_string(oid.type) or pa.types.is_large_string(oid.type)
            or pa.types.is_integer(oid.type) or pa.types.is_dictionary(oid.type)):
        raise InputError(
            source, f"column {cols['object_id']!r} (object_id) has type {oid.type}, "
            "expected string or integer")
    data["object_id"] = _categorical(oid)
    if cols["band"] is None:
        name = str(cmap.band_values.get(DEFAULT_BAND, DEFAULT_BAND))
        data["band"] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int64),
                                                 categories=pd.Index([name], dtype=object))
    else:
        band = batch.column(cols["band"])
        if pa.types.is_floating(band.type):
            raise InputError(source, f"column {cols['band']!r} (band) has type {band.type}, "
                             "expected string or integer")
        data["band"] = _categorical(band, cmap.band_values or None)
    for col in _NUMERIC:
        arr = batch.column(cols[col])
        if pa.types.is_null(arr.type) and len(arr):
            raise InputError(source, f"column {cols[col]!r} ({col}) holds no value at all "
                             "(type null): not a usable light-curve table")
        if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)
                or pa.types.is_null(arr.type)):
            raise InputError(
                source, f"column {cols[col]!r} ({col}) has type {arr.type}, expected numbers "
                "(a non-numeric value in a CSV column makes the whole column text)")
        data[col] = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.DataFrame(data, columns=list(COLUMNS), copy=False)  # no block consolidation


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate canonical frames keeping object_id and band categorical."""
    from pandas.api.types import union_categoricals

    if len(frames) == 1:
        return frames[0]
    out = {}
    for col in COLUMNS:
        if col in ("object_id", "band"):
            u = union_categoricals([pd.Categorical(f[col]) for f in frames])
            out[col] = pd.Categorical.from_codes(
                u.codes, categories=pd.Index(np.asarray(u.categories, dtype=object), dtype=object))
        else:
            out[col] = np.concatenate([f[col].to_numpy() for f in frames])
    return pd.DataFrame(out, columns=list(COLUMNS), copy=False)


def read_table(path: str | os.PathLike[str], cmap: ColumnMap | None = None) -> pd.DataFrame:
    """Read a whole light-curve table into the canonical frame (not cleaned).

    Parameters
    ----------
    path : path-like
        Parquet file or directory, or CSV file.
    cmap : ColumnMap, optional
        Column mapping; default is the identity (``lcpipe`` preset).

    Returns
    -------
    pandas.DataFrame
        Columns ``object_id, band, t, mag, mag_err`` in input order; ``object_id``
        and ``band`` are pandas Categoricals of str, t in MJD [days], mag and
        mag_err in [mag] (float64).

    Raises
    ------
    InputError
        Unreadable file, missing column, wrong column type or empty table.
    """
    cmap = cmap or ColumnMap()
    dset, cols = _open_columns(path, cmap)
    wanted = sorted({c for c in cols.values() if c is not None})
    try:
        table = dset.to_table(columns=wanted)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise read_error(path, exc) from exc
    if table.num_rows == 0:
        raise InputError(path, "empty table: no rows")
    return _canonical(table, cols, cmap, path)


def _open_columns(path: str | os.PathLike[str], cmap: ColumnMap
                  ) -> tuple[ds.Dataset, dict[str, str | None]]:
    """The dataset with its object_id and band columns read as dictionaries when they hold
    strings (Parquet: the codes come from the file, no string is hashed), and the
    resolved column names."""
    dset = open_dataset(path)
    cols = cmap.resolve(dset.schema.names, path)
    names = [c for c in (cols["object_id"], cols["band"]) if c is not None
             and (pa.types.is_string(dset.schema.field(c).type)
                  or pa.types.is_large_string(dset.schema.field(c).type))]
    if names and isinstance(dset.format, ds.ParquetFileFormat):
        dset = open_dataset(path, dictionary=names)
    return dset, cols


class NotGroupedError(InputError):
    """Rows of one object are not contiguous in an input read as a stream."""


def iter_object_chunks(
    path: str | os.PathLike[str],
    cmap: ColumnMap | None = None,
    chunk_rows: int = 1_000_000,
) -> Iterator[pd.DataFrame]:
    """Stream a table as canonical frames that each hold whole objects.

    Memory stays bounded by ``chunk_rows`` plus the largest object. The input
    must be grouped by ``object_id`` (all rows of an object contiguous; order
    inside an object does not matter) — as the output of ``lcpipe validate``
    and most survey exports are.

    Parameters
    ----------
    path : path-like
        Parquet file or directory, or CSV file.
    cmap : ColumnMap, optional
        Column mapping.
    chunk_rows : int, default 1_000_000
        Approximate number of rows per yielded frame.

    Yields
    ------
    pandas.DataFrame
        Canonical frames (see :func:`read_table`), objects never split.

    Raises
    ------
    InputError
        Unreadable file, missing column, wrong type, empty table, or rows of
        one object found in two separate blocks.
    """
    cmap = cmap or ColumnMap()
    dset, cols = _open_columns(path, cmap)
    wanted = sorted({c for c in cols.values() if c is not None})
    seen: set[str] = set()
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    total = 0
    try:
        for rb in _record_batches(dset, wanted, min(chunk_rows, 1 << 18)):
            if rb.num_rows == 0:
                continue
            total += rb.num_rows
            frame = _canonical(pa.Table.from_batches([rb]), cols, cmap, path)
            pending.append(frame)
            pending_rows += len(frame)
            if pending_rows >= chunk_rows:
                block = concat_frames(pending)
                last = block["object_id"].iat[-1]
                tail_mask = (block["object_id"] == last).to_numpy()
                # keep the last object back: it may continue in the next batch
                first_tail = int(np.argmax(tail_mask)) if tail_mask.any() else len(block)
                if first_tail == 0 and tail_mask.all():
                    # one object longer than chunk_rows: keep reading until it ends
                    pending, pending_rows = [block], len(block)
                    continue
                if tail_mask[first_tail:].all() and first_tail > 0:
                    head, tail = block.iloc[:first_tail], block.iloc[first_tail:]
                else:
                    head, tail = block, block.iloc[:0]
                _check_grouped(head, seen, path)
                # the tail's categories shrink to its own values: carried over unpruned,
                # the union of categories would grow with every block (quadratic time)
                pending = [_pruned(tail.reset_index(drop=True))] if len(tail) else []
                pending_rows = len(tail)
                yield head.reset_index(drop=True)
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from exc
    if pending:
        block = concat_frames(pending)
        _check_grouped(block, seen, path)
        yield block
    if total == 0:
        raise InputError(path, "empty table: no rows")


def _pruned(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the unused categories of object_id and band removed."""
    return frame.assign(object_id=frame["object_id"].cat.remove_unused_categories(),
                        band=frame["band"].cat.remove_unused_categories())


def _record_batches(dset: ds.Dataset, columns: list[str], batch_size: int
                    ) -> Iterator[pa.RecordBatch]:
    """Record batches file by file, row group by row group: memory bounded by one batch.

    (The dataset scanner reads ahead and pre-buffers whole files, which made memory grow
    with the input.)
    """
    import pyarrow.csv as pacsv

    fmt = dset.format
    for f in sorted(dset.files):
        try:  # a failure names the file of the folder that failed
            if isinstance(fmt, ds.CsvFileFormat):
                reader = pacsv.open_csv(
                    f, convert_options=pacsv.ConvertOptions(include_columns=columns))
                yield from reader
            else:
                pf = pq.ParquetFile(f, pre_buffer=False,
                                    read_dictionary=fmt.read_options.dictionary_columns or None)
                yield from pf.iter_batches(batch_size=batch_size, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise read_error(f, exc) from exc


def _check_grouped(frame: pd.DataFrame, seen: set[str], source: object) -> None:
    col = pd.Categorical(frame["object_id"])
    codes = col.codes
    if len(codes) == 0:
        return
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    run_codes = codes[starts]
    run_ids = np.asarray(col.categories, dtype=object)[run_codes[run_codes >= 0]]
    uniq = pd.unique(run_ids)
    bad = None
    if len(uniq) != len(run_ids):
        bad = pd.Series(run_ids)[pd.Series(run_ids).duplicated()].iat[0]
    else:
        again = [i for i in uniq if i in seen]
        if again:
            bad = again[0]
    if bad is not None:
        raise NotGroupedError(
            source, f"rows of object {bad} are not contiguous: streaming needs input grouped "
            "by object_id (run `lcpipe validate` first, its output is sorted)", object_id=bad)
    seen.update(uniq)
