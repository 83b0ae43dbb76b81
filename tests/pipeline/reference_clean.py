"""The cleaning rules as lcpipe implemented them first (pandas duplicated/groupby, one lexsort).

Kept as the reference for the fast implementation in :mod:`pipeline.validate`: both must give
the same rows, bit for bit, and the same counts and quarantine table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract import COLUMNS
from pipeline.validate import (
    _CODE,
    _KEEP,
    OBJECT_REASONS,
    ROW_REASONS,
    CleaningConfig,
    CleaningCounts,
    CleanResult,
)


def reference_clean_frame(df: pd.DataFrame, config: CleaningConfig | None = None) -> CleanResult:
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


