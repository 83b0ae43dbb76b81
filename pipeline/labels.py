"""Class labels of light curves (``object_id,label`` tables)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError

__all__ = ["read_labels", "PAPER_CLASSES", "select_classes", "LabelJoin", "join_labels"]

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
    # stray spaces ('EW ' beside 'EW') would make extra classes and unlabelled objects
    ids = frame[id_col].astype(str).str.strip()
    labels = frame[lab_col].astype("string").str.strip().replace("", pd.NA)
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


def select_classes(classes: str | Sequence[str], available: Iterable[Any]) -> list[str]:
    """Expand a class selection: the one rule every lcpipe command and flow uses.

    Parameters
    ----------
    classes : {'all', 'paper7'}, comma-separated str, or sequence of str
        ``'paper7'`` is the 7 classes of Mahabal et al. (2017)
        (:data:`PAPER_CLASSES`); ``'all'`` every class in ``available``.
    available : iterable
        Classes present in the labels.

    Returns
    -------
    list of str
        The selected classes, sorted (the column order of every probability table).

    Raises
    ------
    ConfigError
        A requested class is not among the labels, or fewer than two classes.
    """
    avail = sorted({str(c) for c in available})
    if isinstance(classes, str):
        if classes == "all":
            wanted = avail
        elif classes == "paper7":
            wanted = list(PAPER_CLASSES)
        else:
            wanted = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        wanted = [str(c) for c in classes]
    missing = [c for c in wanted if c not in avail]
    if missing:
        raise ConfigError(f"classes not in the labels: {', '.join(missing)} "
                          f"(available: {', '.join(avail) or 'none'})")
    wanted = sorted(set(wanted))
    if len(wanted) < 2:
        raise ConfigError(f"need at least two classes, got {wanted}")
    return wanted


@dataclass
class LabelJoin:
    """Objects of a table matched with their labels (:func:`join_labels`).

    Attributes
    ----------
    index : ndarray of int64, shape (n_used,)
        Positions, in the table's object order, of the objects used.
    object_id : ndarray of str, shape (n_used,)
        Their ids.
    y : ndarray of str, shape (n_used,)
        Their labels.
    classes : list of str
        Selected classes, sorted.
    counts : dict
        ``n_objects``, ``n_unlabelled``, ``n_labels_without_object``,
        ``n_other_classes``, ``n_used`` and ``class_counts``.
    """

    index: np.ndarray
    object_id: np.ndarray
    y: np.ndarray
    classes: list[str]
    counts: dict[str, Any] = field(default_factory=dict)


def join_labels(object_id: Sequence[Any], labels: pd.Series,
                classes: str | Sequence[str] = "all", source: object = "<labels>") -> LabelJoin:
    """Match objects with their labels and keep the selected classes.

    Parameters
    ----------
    object_id : sequence of str, shape (n_objects,)
        Objects of a table (features, images, light curves), in its order.
    labels : pandas.Series
        Labels indexed by object_id (:func:`read_labels`).
    classes : str or sequence of str, default='all'
        See :func:`select_classes`; 'all' means all classes of the labelled objects.
    source : str or path-like
        Named in the error when no object has a label.

    Returns
    -------
    LabelJoin

    Raises
    ------
    InputError
        No object of the table has a label among the selected classes.
    ConfigError
        Bad class selection.
    """
    oid = np.asarray(object_id).astype(str)
    lab = labels.reindex(pd.Index(oid))
    has = lab.notna().to_numpy()
    if not has.any():
        raise InputError(source, f"no object has a label (the labels name {len(labels)} "
                         f"objects, none of the {len(oid)} in the data)")
    values = lab.to_numpy(dtype=object)
    chosen = select_classes(classes, values[has])
    keep = has & np.isin(values.astype(str), chosen)
    if not keep.any():
        raise InputError(source, "no object has a label among the selected classes")
    y = values[keep].astype(str)
    index = np.flatnonzero(keep).astype(np.int64)
    counts = {
        "n_objects": int(len(oid)),
        "n_unlabelled": int((~has).sum()),
        "n_labels_without_object": int((~labels.index.isin(oid)).sum()),
        "n_other_classes": int((has & ~keep).sum()),
        "n_used": int(keep.sum()),
        "class_counts": {c: int(np.sum(y == c)) for c in chosen},
    }
    return LabelJoin(index=index, object_id=oid[keep], y=y, classes=chosen, counts=counts)
