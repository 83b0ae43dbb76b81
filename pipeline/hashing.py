"""Content hashes: of training data (stored in every model) and of files (cache keys).

One definition each, so that a forest, a CNN and a bundle trained on the same
objects carry the same training-data hash, and a flow recognises a file it has
seen before by its bytes, not its name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["data_hash", "file_hash", "text_hash"]

_SEP = "\x1f"


def data_hash(X: Any, y: Sequence[Any] | None = None, *, names: Sequence[str] | None = None,
              object_ids: Sequence[Any] | None = None) -> str:
    """SHA-256 of a data set: array values (as float64), labels, column names, object ids.

    NaN payloads are canonicalised and float32 input is widened exactly, so the
    hash depends only on the values, not on their dtype.

    Parameters
    ----------
    X : array-like of numbers, any shape
        Features or images.
    y : sequence, optional
        Labels.
    names : sequence of str, optional
        Column (feature) names.
    object_ids : sequence, optional
        Object ids, in row order.

    Returns
    -------
    str
        ``"sha256:<64 hex digits>"``.
    """
    h = hashlib.sha256()
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    arr = np.where(np.isnan(arr), np.nan, arr)
    h.update(b"X" + str(arr.shape).encode())
    h.update(arr.tobytes())
    for tag, seq in ((b"y", y), (b"n", names), (b"o", object_ids)):
        if seq is not None:
            h.update(tag + _SEP.join(map(str, seq)).encode())
    return "sha256:" + h.hexdigest()


def file_hash(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (relative names and bytes).

    Returns
    -------
    str
        ``"sha256:<64 hex digits>"``.
    """
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk_bytes):
                h.update(block)
    return "sha256:" + h.hexdigest()


def text_hash(*parts: Any) -> str:
    """Short SHA-256 (16 hex digits) of the ``str`` of each part, for cache keys."""
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode() + b"\0")
    return h.hexdigest()[:16]
