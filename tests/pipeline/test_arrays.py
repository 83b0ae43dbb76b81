"""pipeline.arrays.isin against pandas' isin and Python's `in`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.arrays import isin

ids = st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ids, ids, st.sampled_from(["series", "object", "list", "arrow"]),
       st.sampled_from(["set", "list", "series", "arrow"]))
def test_isin_matches_python(values, within, vkind, wkind):
    vs = {"series": pd.Series(values, dtype="str"), "object": pd.Series(values, dtype=object),
          "list": values, "arrow": pa.array(values, pa.string())}[vkind]
    ref = {w for w in within if w is not None}
    ws = {"set": set(within) - {None}, "list": within, "series": pd.Series(within, dtype="str"),
          "arrow": pa.array(within, pa.string())}[wkind]
    expected = np.array([v is not None and v in ref for v in values], dtype=bool)
    got = isin(vs, ws)
    assert got.dtype == bool and got.shape == (len(values),)
    assert np.array_equal(got, expected)


def test_isin_numbers_compare_as_strings():
    assert isin(np.array([1, 2, 3]), {"2", "3"}).tolist() == [False, True, True]
    assert isin([], []).tolist() == []
