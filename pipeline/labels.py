"""Class labels of light curves (``object_id,label`` tables)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import InputError

__all__ = ["read_labels", "PAPER_CLASSES"]

#: The 7 classes of Mahabal et al. (2017), in their order.
PAPER_CLASSES: tuple[str, ...] = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")

_ID_COLUMNS = ("object_id", "oid", "objectId", "ID")
_LABEL_COLUMNS = ("label", "class", "classALeRCE", "target")


def read_labels(path: str | os.PathLike[str]) -> pd.Series:
    """Read a labels table (CSV or Parquet).

    Parameters
    ----------
    path : path-like
        Table with an identifier column (``object_id``, ``oid``, ``objectId`` or
        ``ID``) and a label column (``label``, ``class``, ``classALeRCE`` or ``target``).

    Returns
    -------
    pandas.Series
        Labels (str) indexed by object_id (str), named ``label``.

    Raises
    ------
    InputError
        Unreadable file, missing columns, or an object labelled twice differently.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in {".parquet", ".pq"} or p.is_dir():
            frame = pd.read_parquet(p)
        else:
            frame = pd.read_csv(p, dtype=str)
    except FileNotFoundError as exc:
        raise InputError(p, "no such file") from exc
    except Exception as exc:  # pandas/pyarrow raise many types for corrupt files
        raise InputError(p, f"cannot read labels: {exc}") from exc
    id_col = next((c for c in _ID_COLUMNS if c in frame.columns), None)
    lab_col = next((c for c in _LABEL_COLUMNS if c in frame.columns), None)
    if id_col is None or lab_col is None:
        raise InputError(
            p, f"labels need an id column ({', '.join(_ID_COLUMNS)}) and a label column "
            f"({', '.join(_LABEL_COLUMNS)}); found {', '.join(map(str, frame.columns))}")
    ids = frame[id_col].astype(str)
    labels = frame[lab_col]
    if labels.isna().any():
        bad = ids[labels.isna()].iloc[0]
        raise InputError(p, "missing label", object_id=bad)
    series = pd.Series(labels.astype(str).to_numpy(), index=ids.to_numpy(), name="label")
    series.index.name = "object_id"
    dup = series.index.duplicated(keep=False)
    if dup.any():
        conflicting = series[dup].groupby(level=0).nunique()
        if (conflicting > 1).any():
            raise InputError(p, "labelled twice with different classes",
                             object_id=conflicting[conflicting > 1].index[0])
        series = series[~series.index.duplicated()]
    return series
