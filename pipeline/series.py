"""Many light curves in one compact, sorted container (CSR layout).

:class:`LightCurves` holds the measurements of many (object, band) series
concatenated in three float64 arrays, with ``offsets`` marking where each
series starts; the cleaning (:func:`pipeline.validate.clean_codes`) produces it
and the dm-dt, feature and model code consume it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["LightCurves"]


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
