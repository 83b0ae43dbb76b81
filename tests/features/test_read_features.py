"""The feature-table contract enforced on read (issue 16): one clear error per problem."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.api import METADATA_KEY, read_features
from pipeline.errors import InputError


def _write(path, frame, meta=None, raw=None):
    table = pa.Table.from_pandas(frame, preserve_index=False)
    md = {METADATA_KEY.encode(): raw if raw is not None else json.dumps(
        meta or {"feature_columns": ["a", "b"]}).encode()}
    pq.write_table(table.replace_schema_metadata(md), path)
    return path


GOOD = pd.DataFrame({"object_id": ["o1", "o2", "o3"], "a": [1.0, np.nan, 3.0],
                     "b": [0.5, 0.6, 0.7]})


@pytest.mark.parametrize("frame,raw,needle", [
    (GOOD.drop(columns="b"), None, "feature columns missing: b"),
    (GOOD.assign(b=[0.5, np.inf, 0.7]), None, "object o2: feature 'b' is infinite"),
    (GOOD.assign(b=["x", "y", "z"]), None, "feature column 'b' is not numeric"),
    (GOOD.drop(columns="object_id"), None, "without an object_id column"),
    (GOOD.iloc[:0], None, "no rows"),
    (GOOD.assign(object_id=["o1", "o2 ", "o2"]), None, "object o2: object listed twice"),
    (GOOD, b"{not json", "damaged lcpipe feature metadata"),
])
def test_bad_feature_tables(tmp_path, frame, raw, needle):
    p = _write(tmp_path / "f.parquet", frame, raw=raw)
    with pytest.raises(InputError, match=needle) as info:
        read_features(p)
    assert str(p) in str(info.value)


def test_good_table_ids_stripped(tmp_path):
    frame, meta = read_features(_write(tmp_path / "f.parquet",
                                       GOOD.assign(object_id=[" o1", "o2", "o3 "])))
    assert list(frame["object_id"]) == ["o1", "o2", "o3"] and meta["feature_columns"] == ["a", "b"]
    assert np.isnan(frame["a"].iloc[1])  # NaN is a feature that could not be computed: kept


def test_labels_with_stray_spaces_are_one_class(tmp_path):
    from pipeline.labels import read_labels

    p = tmp_path / "labels.csv"
    p.write_text("object_id,label\no1,EW\no2 ,EW \no3, RRab\n")
    s = read_labels(p)
    assert s.to_dict() == {"o1": "EW", "o2": "EW", "o3": "RRab"}
    p.write_text("object_id,label\no1,EW\no2,  \n")
    with pytest.raises(InputError, match="object o2: missing label"):
        read_labels(p)
