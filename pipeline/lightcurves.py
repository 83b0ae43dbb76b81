"""Reading light-curve tables as :class:`LightCurves` (CSR layout, :mod:`pipeline.series`).

Raw input is cleaned on the way (:mod:`pipeline.validate`); the cleaning hands over its
rows as series with offsets, so no stage groups them again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .contract import ColumnMap, iter_object_chunks, read_table
from .series import LightCurves
from .validate import CleaningConfig, CleaningCounts, clean_frame

__all__ = ["LightCurves", "iter_lightcurves", "read_lightcurves"]


def iter_lightcurves(
    path: str | os.PathLike[str],
    cmap: ColumnMap | None = None,
    chunk_rows: int = 1_000_000,
    clean: bool = True,
    config: CleaningConfig | None = None,
    counts: CleaningCounts | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> Iterator[LightCurves]:
    """Stream a light-curve table as :class:`LightCurves` batches of whole objects.

    Parameters
    ----------
    path : path-like
        Input table. With ``clean=True`` any row order (input not grouped by object is
        partitioned first, :mod:`pipeline.partition`); with ``clean=False`` it must be
        clean and grouped by object_id.
    cmap : ColumnMap, optional
        Column mapping.
    chunk_rows : int, default 1_000_000
        Approximate rows per batch.
    clean : bool, default True
        Apply the cleaning rules of :mod:`pipeline.validate` to each batch. With
        ``False`` the input must already be clean and sorted.
    config : CleaningConfig, optional
        Cleaning settings (``clean=True`` only).
    counts : CleaningCounts, optional
        If given, the counts of every batch are added to it (``clean=True`` only).
    workdir : path-like, optional
        Scratch folder for input that is not grouped by object
        (:func:`pipeline.partition.iter_whole_objects`).

    Yields
    ------
    LightCurves
    """
    from .partition import iter_whole_objects

    frames = (iter_whole_objects(path, cmap, chunk_rows, workdir) if clean
              else iter_object_chunks(path, cmap, chunk_rows))
    for frame in frames:
        if clean:
            res = clean_frame(frame, config)
            if counts is not None:
                counts += res.counts
            yield res.series
        else:
            yield LightCurves.from_frame(frame, source=path)


def read_lightcurves(
    path: str | os.PathLike[str],
    cmap: ColumnMap | None = None,
    clean: bool = True,
    config: CleaningConfig | None = None,
) -> LightCurves:
    """Read a whole light-curve table (any row order) as one :class:`LightCurves`.

    Parameters
    ----------
    path : path-like
        Input table.
    cmap : ColumnMap, optional
        Column mapping.
    clean : bool, default True
        Apply the cleaning rules (default settings unless ``config``).
    config : CleaningConfig, optional
        Cleaning settings.
    """
    frame = read_table(path, cmap)
    if clean:
        return clean_frame(frame, config).series
    if not _sorted_by_series(frame):  # lcpipe's own chunk files are: no sort needed
        frame = frame.assign(**{c: frame[c].cat.reorder_categories(
            sorted(frame[c].cat.categories, key=str)) for c in ("object_id", "band")})
        frame = frame.sort_values(["object_id", "band", "t"], kind="stable", ignore_index=True)
    return LightCurves.from_frame(frame, source=path)


def _sorted_by_series(frame: pd.DataFrame) -> bool:
    """Whether rows are in (object_id, band) string order, t non-decreasing within each."""
    keys = []
    for col in ("object_id", "band"):
        cat = pd.Categorical(frame[col])
        rank = np.empty(len(cat.categories) + 1, dtype=np.int64)
        rank[:-1] = np.argsort(np.argsort(np.asarray(cat.categories, dtype=str),
                                          kind="stable"), kind="stable")
        rank[-1] = -1  # null
        keys.append(rank[np.asarray(cat.codes)])
    o, b = keys
    t = frame["t"].to_numpy(dtype=np.float64)
    if len(t) < 2:
        return True
    do, db, dt = np.diff(o), np.diff(b), np.diff(t)
    return bool(((do > 0) | ((do == 0) & ((db > 0) | ((db == 0) & (dt >= 0))))).all())
