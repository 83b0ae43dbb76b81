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

__all__ = [
    "CleaningConfig",
    "CleaningCounts",
    "CleanResult",
    "ROW_REASONS",
    "OBJECT_REASONS",
    "CONFLICT_POLICIES",
    "clean_frame",
    "validate_file",
    "frame_to_arrow",
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


@dataclass
class CleanResult:
    """Output of :func:`clean_frame`.

    Attributes
    ----------
    frame : pandas.DataFrame
        Clean rows, columns ``object_id, band, t, mag, mag_err``, sorted by
        object_id, band, t; (object_id, band, t) unique.
    quarantine : pandas.DataFrame
        One row per (object_id, band, reason): ``object_id, band, reason, n_rows``.
    counts : CleaningCounts
        Row and object accounting.
    """

    frame: pd.DataFrame
    quarantine: pd.DataFrame
    counts: CleaningCounts


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
    cfg = config or CleaningConfig()
    n = len(df)
    # work on integer codes: compact and fast; strings only for the output
    ocat = pd.Categorical(df["object_id"])
    bcat = pd.Categorical(df["band"])
    oc = np.asarray(ocat.codes, dtype=np.int64)
    bc = np.asarray(bcat.codes, dtype=np.int64)
    ocats = np.asarray(ocat.categories, dtype=object).astype(str)
    bcats = np.asarray(bcat.categories, dtype=object).astype(str)
    t = df["t"].to_numpy(dtype=np.float64)
    mag = df["mag"].to_numpy(dtype=np.float64).copy()
    err = df["mag_err"].to_numpy(dtype=np.float64).copy()
    code = np.full(n, _KEEP, dtype=np.int16)

    def mark(mask: np.ndarray, reason: str) -> None:
        code[(code == _KEEP) & mask] = _CODE[reason]

    mark(oc < 0, "null_object_id")
    mark(bc < 0, "null_band")
    mark(~np.isfinite(t), "nonfinite_t")
    mark(~np.isfinite(mag), "nonfinite_mag")
    mark(~np.isfinite(err), "nonfinite_mag_err")
    with np.errstate(invalid="ignore"):
        mark(err <= 0, "nonpositive_mag_err")
        mark((t < cfg.t_min) | (t > cfg.t_max), "time_outside_window")

    keep = np.flatnonzero(code == _KEEP)
    if len(keep):
        sub = pd.DataFrame({"o": oc[keep], "b": bc[keep], "t": t[keep],
                            "m": mag[keep], "e": err[keep]})
        dup = sub.duplicated(keep="first").to_numpy()
        code[keep[dup]] = _CODE["exact_duplicate"]
        keep = keep[~dup]
        sub = sub.loc[~dup]
        gid = sub.groupby(["o", "b", "t"], sort=False).ngroup().to_numpy()
        size = np.bincount(gid)
        in_conf = size[gid] > 1
        if in_conf.any():
            first = ~pd.Series(gid).duplicated(keep="first").to_numpy()
            if cfg.conflict_policy == "drop":
                code[keep[in_conf]] = _CODE["same_epoch_conflict"]
            else:
                code[keep[in_conf & ~first]] = _CODE["same_epoch_conflict"]
                if cfg.conflict_policy == "mean":
                    w = 1.0 / sub["e"].to_numpy() ** 2
                    sw = np.bincount(gid, weights=w)
                    swm = np.bincount(gid, weights=w * sub["m"].to_numpy())
                    rows = keep[in_conf & first]
                    g = gid[in_conf & first]
                    mag[rows] = swm[g] / sw[g]
                    err[rows] = 1.0 / np.sqrt(sw[g])

    # object-level rules (per object code present in this frame)
    n_cat = len(ocats)
    valid = oc >= 0
    present = np.bincount(oc[valid], minlength=n_cat) > 0
    kept = code == _KEEP
    per_obj = np.bincount(oc[kept], minlength=n_cat)
    empty = present & (per_obj == 0)
    small = present & (per_obj > 0) & (per_obj < cfg.min_points)
    if small.any():
        code[kept & small[np.maximum(oc, 0)] & valid] = _CODE["too_few_points"]
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

    # sort kept rows by object_id, band (string order), t
    orank = np.empty(n_cat, dtype=np.int64)
    orank[np.argsort(ocats, kind="stable")] = np.arange(n_cat)
    brank = np.empty(len(bcats), dtype=np.int64)
    brank[np.argsort(bcats, kind="stable")] = np.arange(len(bcats))
    rows = np.flatnonzero(out_mask)
    order = rows[np.lexsort((t[rows], brank[bc[rows]], orank[oc[rows]]))]
    used_o = np.unique(oc[order])
    used_b = np.unique(bc[order])
    o_sorted = used_o[np.argsort(orank[used_o], kind="stable")]
    b_sorted = used_b[np.argsort(brank[used_b], kind="stable")]
    o_new = np.full(n_cat, -1, dtype=np.int64)
    o_new[o_sorted] = np.arange(len(o_sorted))
    b_new = np.full(len(bcats), -1, dtype=np.int64)
    b_new[b_sorted] = np.arange(len(b_sorted))
    clean = pd.DataFrame({
        "object_id": pd.Categorical.from_codes(o_new[oc[order]],
                                               categories=pd.Index(ocats[o_sorted], dtype=object)),
        "band": pd.Categorical.from_codes(b_new[bc[order]],
                                          categories=pd.Index(bcats[b_sorted], dtype=object)),
        "t": t[order], "mag": mag[order], "mag_err": err[order]}, columns=list(COLUMNS))

    rej = np.flatnonzero(~out_mask)
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
    return CleanResult(frame=clean, quarantine=quarantine, counts=counts)


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
    frame = read_table(path, cmap)
    res = clean_frame(frame, cfg)
    write_parquet_atomic(
        frame_to_arrow(res.frame),
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
