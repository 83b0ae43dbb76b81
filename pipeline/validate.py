"""Validation and cleaning of light-curve tables; every removed row is counted.

Rules, applied in this order (a row gets the first reason that applies):

=====================  ==========================================================
reason                 rule
=====================  ==========================================================
null_object_id         object_id missing
null_band              band missing (when a band column exists)
nonfinite_t            t is NaN or +-inf
nonfinite_mag          mag is NaN or +-inf
nonfinite_mag_err      mag_err is NaN or +-inf
nonpositive_mag_err    mag_err <= 0
time_outside_window    t outside [t_min, t_max] (placeholder dates, e.g. CRTS JD = 0)
exact_duplicate        same object_id, band, t, mag and mag_err as an earlier row
same_epoch_conflict    same object_id, band and t as another row, different mag or
                       mag_err; resolved by the policy: ``mean`` (inverse-variance
                       weighted mean with propagated error), ``first`` (first row in
                       input order) or ``drop`` (all rows of the epoch removed)
no_valid_rows          object with no row left (object-level)
too_few_points         object with fewer than ``min_points`` rows left (object-level)
=====================  ==========================================================

With the ``mean`` and ``first`` policies the removed rows of a conflicting
epoch are *merged* (their information survives in the kept row); all other
reasons *drop* rows. The accounting identity
``rows_in == rows_out + sum(rows_dropped) + sum(rows_merged)`` always holds.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._version import __version__
from .contract import COLUMNS, ColumnMap, read_table
from .errors import ConfigError
from .io import write_json_atomic, write_parquet_atomic
from .series import LightCurves

__all__ = [
    "CleaningConfig",
    "CleaningCounts",
    "CleanResult",
    "ROW_REASONS",
    "OBJECT_REASONS",
    "CONFLICT_POLICIES",
    "clean_frame",
    "clean_codes",
    "validate_file",
    "frame_to_arrow",
    "series_to_arrow",
]

ROW_REASONS: tuple[str, ...] = (
    "null_object_id",
    "null_band",
    "nonfinite_t",
    "nonfinite_mag",
    "nonfinite_mag_err",
    "nonpositive_mag_err",
    "time_outside_window",
    "exact_duplicate",
    "same_epoch_conflict",
)
OBJECT_REASONS: tuple[str, ...] = ("no_valid_rows", "too_few_points")
CONFLICT_POLICIES: tuple[str, ...] = ("mean", "first", "drop")

_KEEP = -1
_CODE = {r: i for i, r in enumerate(ROW_REASONS + OBJECT_REASONS)}


@dataclass(frozen=True)
class CleaningConfig:
    """Settings of the cleaning rules.

    Parameters
    ----------
    min_points : int, default 10
        Objects with fewer rows than this after row cleaning are quarantined.
    t_min, t_max : float, default 0.0 and 100000.0
        Plausible time window, MJD [days] (MJD 0 = 1858-11-17, 100000 = 2132-09-01).
        The CRTS placeholder JD = 0 is MJD -2409998.5 and falls outside.
    conflict_policy : {'mean', 'first', 'drop'}, default 'mean'
        How rows sharing (object_id, band, t) with different magnitudes are resolved.
    """

    min_points: int = 10
    t_min: float = 0.0
    t_max: float = 100_000.0
    conflict_policy: str = "mean"

    def __post_init__(self) -> None:
        if self.conflict_policy not in CONFLICT_POLICIES:
            raise ConfigError(
                f"conflict policy must be one of {list(CONFLICT_POLICIES)}, "
                f"got {self.conflict_policy!r}")
        if self.min_points < 0:
            raise ConfigError(f"min_points must be >= 0, got {self.min_points}")
        if not self.t_min < self.t_max:
            raise ConfigError(f"time window is empty: t_min={self.t_min} >= t_max={self.t_max}")


@dataclass
class CleaningCounts:
    """Row and object counts of a cleaning run; additive over disjoint chunks."""

    rows_in: int = 0
    rows_out: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_merged: dict[str, int] = field(default_factory=dict)
    objects_in: int = 0
    objects_out: int = 0
    objects_quarantined: dict[str, int] = field(default_factory=dict)

    def __iadd__(self, other: CleaningCounts) -> CleaningCounts:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.objects_in += other.objects_in
        self.objects_out += other.objects_out
        for mine, theirs in ((self.rows_dropped, other.rows_dropped),
                             (self.rows_merged, other.rows_merged),
                             (self.objects_quarantined, other.objects_quarantined)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        return self

    @property
    def balanced(self) -> bool:
        """True when rows_in == rows_out + dropped + merged and objects add up."""
        rows = self.rows_out + sum(self.rows_dropped.values()) + sum(self.rows_merged.values())
        objs = self.objects_out + sum(self.objects_quarantined.values())
        return rows == self.rows_in and objs == self.objects_in

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


class CleanResult:
    """Output of :func:`clean_frame` / :func:`clean_codes`.

    Attributes
    ----------
    frame : pandas.DataFrame
        Clean rows, columns ``object_id, band, t, mag, mag_err``, sorted by
        object_id, band, t; (object_id, band, t) unique. Built on first access
        when the result came from :func:`clean_codes`.
    series : LightCurves or None
        The same rows as series with offsets (from :func:`clean_codes`).
    quarantine : pandas.DataFrame
        One row per (object_id, band, reason): ``object_id, band, reason, n_rows``.
    counts : CleaningCounts
        Row and object accounting.
    """

    def __init__(self, frame: pd.DataFrame | None = None,
                 quarantine: pd.DataFrame | None = None,
                 counts: CleaningCounts | None = None,
                 series: LightCurves | None = None) -> None:
        if frame is None and series is None:
            raise ValueError("CleanResult needs a frame or series")
        self._frame = frame
        self.series = series
        self.quarantine = quarantine if quarantine is not None else pd.DataFrame(
            columns=["object_id", "band", "reason", "n_rows"])
        self.counts = counts or CleaningCounts()

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = _series_frame(self.series)
        return self._frame


def _series_frame(s: LightCurves) -> pd.DataFrame:
    """LightCurves -> canonical frame (categorical object_id and band)."""
    sizes = np.diff(s.offsets)
    ocats, oinv = np.unique(s.object_id, return_inverse=True)
    bcats, binv = np.unique(s.band, return_inverse=True)
    return pd.DataFrame({
        "object_id": pd.Categorical.from_codes(np.repeat(oinv.reshape(-1), sizes),
                                               categories=pd.Index(ocats, dtype=object)),
        "band": pd.Categorical.from_codes(np.repeat(binv.reshape(-1), sizes),
                                          categories=pd.Index(bcats, dtype=object)),
        "t": s.t, "mag": s.mag, "mag_err": s.mag_err}, columns=list(COLUMNS), copy=False)


def series_to_arrow(s: LightCurves) -> pa.Table:
    """LightCurves -> Arrow table of LIGHTCURVE_SCHEMA (rows in series order)."""
    sizes = np.diff(s.offsets)
    idx = pa.array(np.repeat(np.arange(len(sizes), dtype=np.int32), sizes), pa.int32())
    cols = {name: pa.DictionaryArray.from_arrays(idx, pa.array(np.asarray(v, dtype=object),
                                                               pa.string())).cast(pa.string())
            for name, v in (("object_id", s.object_id), ("band", s.band))}
    for name, v in (("t", s.t), ("mag", s.mag), ("mag_err", s.mag_err)):
        cols[name] = pa.array(v, pa.float64())
    return pa.table(cols, schema=LIGHTCURVE_SCHEMA)


def clean_frame(df: pd.DataFrame, config: CleaningConfig | None = None) -> CleanResult:
    """Apply the cleaning rules to a canonical light-curve frame.

    Parameters
    ----------
    df : pandas.DataFrame
        Canonical frame (see :func:`pipeline.contract.read_table`); must hold
        every row of each object it contains.
    config : CleaningConfig, optional
        Rule settings; defaults as documented on :class:`CleaningConfig`.

    Returns
    -------
    CleanResult
        Clean sorted rows, quarantine table and counts; the accounting
        identity holds by construction (and is asserted).
    """
    ocat = pd.Categorical(df["object_id"])
    bcat = pd.Categorical(df["band"])
    return clean_codes(np.asarray(ocat.codes), np.asarray(ocat.categories, dtype=object),
                       np.asarray(bcat.codes), np.asarray(bcat.categories, dtype=object),
                       df["t"].to_numpy(dtype=np.float64), df["mag"].to_numpy(dtype=np.float64),
                       df["mag_err"].to_numpy(dtype=np.float64), config)


def _ranks(cats: np.ndarray) -> np.ndarray:
    """Rank of each category in string order (ties impossible: categories are unique)."""
    rank = np.empty(len(cats), dtype=np.int64)
    rank[np.argsort(cats, kind="stable")] = np.arange(len(cats))
    return rank


def clean_codes(oc: np.ndarray, ocats: np.ndarray, bc: np.ndarray, bcats: np.ndarray,
                t: np.ndarray, mag: np.ndarray, err: np.ndarray,
                config: CleaningConfig | None = None) -> CleanResult:
    """:func:`clean_frame` on columns: object and band as integer codes into their categories.

    Work is proportional to the rows, in compiled passes (:mod:`pipeline._clean_impl`):
    the row rules and an order check in one pass; rows already in (object, band, t) order
    (as most survey exports and every lcpipe output are) are not sorted again, shuffled
    rows are grouped by a counting sort on the object and sorted by band and time within
    each object; duplicates and same-epoch conflicts are runs of equal (object, band, t),
    and only the rows of such runs (rare) go through the conflict policy.

    Parameters
    ----------
    oc, bc : ndarray of int, shape (n,)
        Codes into ``ocats`` / ``bcats``; -1 for a missing value.
    ocats, bcats : ndarray of str
        Unique object ids and band names.
    t, mag, err : ndarray of float64, shape (n,)
        Times MJD [days], magnitudes and 1-sigma errors [mag], in input order.
    config : CleaningConfig, optional

    Returns
    -------
    CleanResult
        With ``series`` (the clean rows as series with offsets) and a ``frame`` built
        from them on first access.
    """
    from . import _clean_impl as impl

    cfg = config or CleaningConfig()
    n = len(t)
    oc = np.ascontiguousarray(oc, dtype=np.int64)
    bc = np.ascontiguousarray(bc, dtype=np.int64)
    ocats = np.asarray(ocats, dtype=object).astype(str)
    bcats = np.asarray(bcats, dtype=object).astype(str)
    t = np.ascontiguousarray(t, dtype=np.float64)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    err = np.ascontiguousarray(err, dtype=np.float64)
    code = np.empty(n, dtype=np.int16)
    orank, brank = _ranks(ocats), _ranks(bcats)
    reasons = np.array([_CODE[r] for r in ROW_REASONS[:7]], dtype=np.int16)
    n_kept, in_order = impl.scan_rows(oc, bc, t, mag, err, orank, brank, float(cfg.t_min),
                                      float(cfg.t_max), reasons, code)
    rows = (impl.kept_rows(code, n_kept) if in_order
            else impl.sort_rows(code, n_kept, oc, bc, t, orank, brank))
    same, conflicts = impl.same_epoch(rows, oc, bc, t)
    if conflicts:
        mag, err = mag.copy(), err.copy()  # merged epochs are written in place
        _resolve_epochs(rows, same, oc, bc, t, mag, err, code, cfg.conflict_policy)

    # object-level rules (per object code present in this frame)
    n_cat = len(ocats)
    present = np.bincount(oc[oc >= 0], minlength=n_cat) > 0
    kept = code == _KEEP
    per_obj = np.bincount(oc[kept], minlength=n_cat)
    empty = present & (per_obj == 0)
    small = present & (per_obj > 0) & (per_obj < cfg.min_points)
    if small.any():
        code[kept & small[np.maximum(oc, 0)]] = _CODE["too_few_points"]
    obj_reason = {"no_valid_rows": int(empty.sum()), "too_few_points": int(small.sum())}

    counts = CleaningCounts(rows_in=n, objects_in=int(present.sum()))
    out_mask = code == _KEEP
    counts.rows_out = int(out_mask.sum())
    reason_names = ROW_REASONS + OBJECT_REASONS
    hist = np.bincount(code[~out_mask].astype(np.int64), minlength=len(reason_names))
    merged_reasons = {"same_epoch_conflict"} if cfg.conflict_policy != "drop" else set()
    for i, r in enumerate(reason_names):
        if hist[i]:
            (counts.rows_merged if r in merged_reasons else counts.rows_dropped)[r] = int(hist[i])
    counts.objects_quarantined = {k: v for k, v in obj_reason.items() if v}
    counts.objects_out = counts.objects_in - obj_reason["no_valid_rows"] - obj_reason[
        "too_few_points"]
    assert counts.balanced, counts

    # the kept rows, in (object, band, t) order, as series
    if counts.rows_out < len(rows):
        rows = rows[out_mask[rows]]
    identity = in_order and len(rows) == n  # nothing removed, nothing moved: no copy
    starts = impl.series_starts(oc, bc, rows)
    first = rows[starts[:-1]]
    series = LightCurves(
        object_id=ocats[oc[first]].astype(object), band=bcats[bc[first]].astype(object),
        offsets=starts,
        t=t if identity else t[rows], mag=mag if identity else mag[rows],
        mag_err=err if identity else err[rows])
    return CleanResult(series=series, counts=counts,
                       quarantine=_quarantine(oc, bc, code, ocats, bcats, empty))


def _resolve_epochs(keep: np.ndarray, same: np.ndarray, oc: np.ndarray, bc: np.ndarray,
                    t: np.ndarray, mag: np.ndarray, err: np.ndarray, code: np.ndarray,
                    policy: str) -> None:
    """Exact duplicates and same-epoch conflicts among rows ``keep`` (in epoch order).

    ``same[i]`` tells that ``keep[i + 1]`` has the epoch of ``keep[i]``. Only the rows of
    epochs with two or more rows are looked at, in input order: an exact duplicate
    repeats an earlier row; the first remaining row of a conflicting epoch is kept (with
    the inverse-variance weighted mean and its error under ``mean``), the others are
    merged away (``mean``, ``first``) or every row is dropped (``drop``). ``mag``, ``err``
    and ``code`` are updated in place.
    """
    starts = np.flatnonzero(np.r_[True, ~same])
    sizes = np.diff(np.r_[starts, len(keep)])
    multi = sizes > 1
    epoch = np.repeat(np.arange(len(starts)), sizes)
    rows = keep[multi[epoch]]
    gid_all = epoch[multi[epoch]]
    by_input = np.argsort(rows, kind="stable")
    rows, gid_all = rows[by_input], gid_all[by_input]
    # exact duplicates: same epoch, same mag and mag_err as an earlier row
    sub = pd.DataFrame({"g": gid_all, "m": mag[rows], "e": err[rows]})
    dup = sub.duplicated(keep="first").to_numpy()
    code[rows[dup]] = _CODE["exact_duplicate"]
    rows, gid = rows[~dup], gid_all[~dup]
    _, gid = np.unique(gid, return_inverse=True)
    gid = gid.reshape(-1)
    size = np.bincount(gid)
    in_conf = size[gid] > 1
    if not in_conf.any():
        return
    first = np.zeros(len(gid), dtype=bool)
    first[np.unique(gid, return_index=True)[1]] = True
    if policy == "drop":
        code[rows[in_conf]] = _CODE["same_epoch_conflict"]
        return
    code[rows[in_conf & ~first]] = _CODE["same_epoch_conflict"]
    if policy == "mean":
        w = 1.0 / err[rows] ** 2
        sw = np.bincount(gid, weights=w)
        swm = np.bincount(gid, weights=w * mag[rows])
        sel = in_conf & first
        g = gid[sel]
        mag[rows[sel]] = swm[g] / sw[g]
        err[rows[sel]] = 1.0 / np.sqrt(sw[g])


def _quarantine(oc: np.ndarray, bc: np.ndarray, code: np.ndarray, ocats: np.ndarray,
                bcats: np.ndarray, empty: np.ndarray) -> pd.DataFrame:
    """One row per (object_id, band, reason) of the removed rows, plus empty objects."""
    reason_names = ROW_REASONS + OBJECT_REASONS
    rej = np.flatnonzero(code != _KEEP)
    q = pd.DataFrame({"o": oc[rej], "b": bc[rej], "r": code[rej]})
    q = q.groupby(["o", "b", "r"], sort=False).size().rename("n_rows").reset_index()
    ocats_na = np.append(ocats, None).astype(object)  # code -1 -> None
    bcats_na = np.append(bcats, None).astype(object)
    quarantine = pd.DataFrame({
        "object_id": ocats_na[q["o"].to_numpy()],
        "band": bcats_na[q["b"].to_numpy()],
        "reason": np.asarray(reason_names, dtype=object)[q["r"].to_numpy()],
        "n_rows": q["n_rows"].to_numpy(dtype=np.int64)})
    if empty.any():
        extra = pd.DataFrame({"object_id": ocats[empty], "band": None,
                              "reason": "no_valid_rows", "n_rows": 0})
        quarantine = pd.concat([quarantine, extra], ignore_index=True)
    quarantine = quarantine.sort_values(["object_id", "reason"], kind="stable",
                                        ignore_index=True)
    quarantine["n_rows"] = quarantine["n_rows"].astype(np.int64)
    return quarantine


LIGHTCURVE_SCHEMA = pa.schema([
    ("object_id", pa.string()),
    ("band", pa.string()),
    ("t", pa.float64()),
    ("mag", pa.float64()),
    ("mag_err", pa.float64()),
])
QUARANTINE_SCHEMA = pa.schema([
    ("object_id", pa.string()),
    ("band", pa.string()),
    ("reason", pa.string()),
    ("n_rows", pa.int64()),
])


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Canonical frame (categorical or string ids) -> Arrow table of LIGHTCURVE_SCHEMA."""
    cols = {}
    for name in ("object_id", "band"):
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = pa.array(np.asarray(col.cat.categories, dtype=object), pa.string())
            codes = pa.array(col.cat.codes.to_numpy(), pa.int32())
            cols[name] = pa.DictionaryArray.from_arrays(codes, cats).cast(pa.string())
        else:
            cols[name] = pa.array(col.to_numpy(dtype=object), pa.string())
    for name in ("t", "mag", "mag_err"):
        cols[name] = pa.array(frame[name].to_numpy(dtype=np.float64), pa.float64())
    return pa.table(cols, schema=LIGHTCURVE_SCHEMA)


def validate_file(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    cmap: ColumnMap | None = None,
    config: CleaningConfig | None = None,
) -> dict[str, Any]:
    """Validate and clean a light-curve table; write the clean table, quarantine and summary.

    Parameters
    ----------
    path : path-like
        Input table (Parquet file/directory or CSV), any row order.
    outdir : path-like
        Directory receiving ``lightcurves.parquet``, ``quarantine.parquet`` and
        ``summary.json`` (each written atomically).
    cmap : ColumnMap, optional
        Column mapping of the input.
    config : CleaningConfig, optional
        Rule settings.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    cfg = config or CleaningConfig()
    out = Path(outdir)
    res = clean_frame(read_table(path, cmap), cfg)
    write_parquet_atomic(
        series_to_arrow(res.series) if res.series is not None else frame_to_arrow(res.frame),
        out / "lightcurves.parquet",
        metadata={"lcpipe.validate": {"version": __version__, "config": asdict(cfg)}},
    )
    write_parquet_atomic(
        pa.Table.from_pandas(res.quarantine, schema=QUARANTINE_SCHEMA, preserve_index=False),
        out / "quarantine.parquet",
    )
    summary = {
        "input": str(path),
        "lcpipe_version": __version__,
        "config": asdict(cfg),
        **res.counts.to_dict(),
        "outputs": {
            "lightcurves": str(out / "lightcurves.parquet"),
            "quarantine": str(out / "quarantine.parquet"),
        },
    }
    write_json_atomic(summary, out / "summary.json")
    return summary
