"""Class selection, the label join and the data hash: the one shared rule for each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError, InputError
from pipeline.hashing import data_hash, file_hash, text_hash
from pipeline.labels import PAPER_CLASSES, join_labels, select_classes


def test_select_classes_rules():
    avail = ["RRab", "EW", "EA", "RRc", "RRd", "RS_CVn", "LPV", "Hump"]
    assert select_classes("paper7", avail) == sorted(PAPER_CLASSES)
    assert select_classes("all", ["c", "b", "c"]) == ["b", "c"]
    assert select_classes(" EW , EA ", avail) == ["EA", "EW"]
    assert select_classes(["RRc", "EW"], avail) == ["EW", "RRc"]
    with pytest.raises(ConfigError, match="not in the labels: X .*available: EA"):
        select_classes("EA,X", avail)
    with pytest.raises(ConfigError, match="at least two"):
        select_classes("EW", avail)


def test_join_labels_counts_every_object():
    labels = pd.Series(["a", "b", "a", "z", "b"], index=["o1", "o2", "o3", "o4", "ghost"],
                       name="label")
    oid = np.array(["o4", "o1", "o9", "o2", "o3"])
    j = join_labels(oid, labels, "a,b")
    np.testing.assert_array_equal(j.index, [1, 3, 4])
    np.testing.assert_array_equal(j.object_id, ["o1", "o2", "o3"])
    np.testing.assert_array_equal(j.y, ["a", "b", "a"])
    assert j.counts == {"n_objects": 5, "n_unlabelled": 1, "n_labels_without_object": 1,
                        "n_other_classes": 1, "n_used": 3, "class_counts": {"a": 2, "b": 1}}
    # independent check: the same join by a merge
    m = pd.DataFrame({"object_id": oid}).merge(labels.rename("label").reset_index()
                                               .rename(columns={"index": "object_id"}),
                                               how="left", on="object_id")
    assert list(m.dropna().query("label in ['a', 'b']").object_id) == list(j.object_id)
    with pytest.raises(InputError, match="no object has a label"):
        join_labels(np.array(["x", "y"]), labels, "all", source="L.csv")


def test_data_hash_depends_on_values_only():
    X = np.array([[1.0, np.nan], [2.0, 3.0]])
    h = data_hash(X, ["a", "b"], names=["f1", "f2"])
    assert h.startswith("sha256:") and len(h) == 7 + 64
    assert h == data_hash(X.copy(), ["a", "b"], names=["f1", "f2"])
    odd_nan = X.copy()
    odd_nan[0, 1] = -np.nan  # other NaN payload, same meaning
    assert data_hash(odd_nan, ["a", "b"], names=["f1", "f2"]) == h
    assert data_hash(X.astype(np.float32), ["a", "b"], names=["f1", "f2"]) == h  # exact widening
    X2 = X.copy()
    X2[1, 1] = 3.0000001
    assert data_hash(X2, ["a", "b"], names=["f1", "f2"]) != h
    assert data_hash(X, ["a", "a"], names=["f1", "f2"]) != h
    assert data_hash(X, ["a", "b"], names=["f1", "f2"], object_ids=["p", "q"]) != h


def test_file_hash(tmp_path):
    import hashlib

    (tmp_path / "a.bin").write_bytes(b"x" * 3_000_000)
    assert file_hash(tmp_path / "a.bin") == "sha256:" + hashlib.sha256(b"x" * 3_000_000
                                                                       ).hexdigest()
    d = tmp_path / "d"
    d.mkdir()
    (d / "p").write_bytes(b"1")
    h1 = file_hash(d)
    (d / "p").write_bytes(b"2")
    assert file_hash(d) != h1
    assert text_hash("a", 1) == text_hash("a", 1) != text_hash("a", 2)
