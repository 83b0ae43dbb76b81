"""Many light curves in one compact, sorted container (CSR layout).

:class:`LightCurves` holds the measurements of many (object, band) series
concatenated in three float64 arrays, with ``offsets`` marking where each
series starts; it is what the dm-dt, feature and model code consume.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import ColumnMap, iter_object_chunks, read_table
from .errors import InputError
from .validate import CleaningConfig, CleaningCounts, CleanSeries, clean_frame

__all__ = ["LightCurves", "iter_lightcurves", "read_lightcurves"]


@dataclass(frozen=True)
class LightCurves:
    """A batch of light curves, one series per (object, band), sorted by object, band, t.

    Attributes
    ----------
    object_id : ndarray of str, shape (n_series,)
        Object of each series.
    band : ndarray of str, shape (n_series,)
        Band of each series.
    offsets : ndarray of int64, shape (n_series + 1,)
        Series ``i`` is rows ``offsets[i]:offsets[i+1]``.
    t : ndarray of float64, shape (n_rows,)
        Times, MJD [days], strictly increasing within a series.
    mag, mag_err : ndarray of float64, shape (n_rows,)
        Magnitudes and their 1-sigma errors [mag].
    """

    object_id: np.ndarray
    band: np.ndarray
    offsets: np.ndarray
    t: np.ndarray
    mag: np.ndarray
    mag_err: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: object = "<frame>") -> LightCurves:
        """Build from a clean canonical frame sorted by object_id, band, t.

        Raises
        ------
        InputError
            If the frame is not sorted by (object_id, band, t) with unique t per series.
        """
        ocat = pd.Categorical(frame["object_id"])
        bcat = pd.Categorical(frame["band"])
        oc, bc = np.asarray(ocat.codes), np.asarray(bcat.codes)
        t = np.ascontiguousarray(frame["t"].to_numpy(dtype=np.float64))
        n = len(t)
        if n == 0:
            empty = np.array([], dtype=object)
            return cls(empty, empty, np.zeros(1, np.int64), t,
                       np.array([], np.float64), np.array([], np.float64))
        if (oc < 0).any() or (bc < 0).any():
            raise InputError(source, "null object_id or band (input not clean)")
        new = np.empty(n, dtype=bool)
        new[0] = True
        new[1:] = (oc[1:] != oc[:-1]) | (bc[1:] != bc[:-1])
        starts = np.flatnonzero(new)
        bad = np.flatnonzero(~new[1:] & (np.diff(t) <= 0))
        if len(bad):
            raise InputError(source, "times not strictly increasing within a series "
                             "(input not clean: use clean=True or `lcpipe validate`)",
                             object_id=ocat[bad[0] + 1])
        pairs = oc[starts] * (len(bcat.categories) + 1) + bc[starts]
        if len(np.unique(pairs)) != len(starts):
            raise InputError(source, "rows of a series are not contiguous (input not sorted)")
        offsets = np.append(starts, n).astype(np.int64)
        return cls(
            object_id=np.asarray(ocat.categories, dtype=object)[oc[starts]].astype(str).astype(
                object),
            band=np.asarray(bcat.categories, dtype=object)[bc[starts]].astype(str).astype(object),
            offsets=offsets,
            t=t,
            mag=np.ascontiguousarray(frame["mag"].to_numpy(dtype=np.float64)),
            mag_err=np.ascontiguousarray(frame["mag_err"].to_numpy(dtype=np.float64)),
        )

    @classmethod
    def from_series(cls, series: CleanSeries) -> LightCurves:
        """The clean series of :func:`pipeline.validate.clean_codes`, without re-grouping."""
        return cls(object_id=np.asarray(series.object_id, dtype=object),
                   band=np.asarray(series.band, dtype=object),
                   offsets=np.asarray(series.offsets, dtype=np.int64), t=series.t,
                   mag=series.mag, mag_err=series.mag_err)

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def n_points(self) -> np.ndarray:
        """Number of points of each series, shape (n_series,)."""
        return np.diff(self.offsets)

    def series(self, i: int) -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(object_id, band, t, mag, mag_err)`` of series ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.object_id[i], self.band[i], self.t[a:b], self.mag[a:b], self.mag_err[a:b]

    def __iter__(self) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.series(i)


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
            yield LightCurves.from_series(res.series)
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
        return LightCurves.from_series(clean_frame(frame, config).series)
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
