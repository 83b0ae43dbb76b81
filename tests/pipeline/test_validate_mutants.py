"""Exact-value tests of pipeline/validate.py that pin what the mutation run found unchecked.

Pinned (issue 17): ``CleaningCounts`` addition (``+=``, including reasons only one side
has), ``balanced`` and ``to_dict``; ``CleaningConfig`` limits and error messages;
``CleanResult`` defaults; ``clean_frame`` on one hand-made table whose clean rows,
counts by reason and quarantine rows are written out below for the three conflict
policies, shuffled and sorted; ``series_to_arrow`` / ``frame_to_arrow`` tables (values and
``LIGHTCURVE_SCHEMA``, categorical and string ids); and ``validate_file`` outputs: the
clean rows, the ``lcpipe.validate`` Parquet metadata, the quarantine file's rows and
``QUARANTINE_SCHEMA``, and every summary.json key and output path, with a column map and
a non-default config.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline._version import __version__
from pipeline.contract import ColumnMap
from pipeline.errors import ConfigError, InputError
from pipeline.series import LightCurves
from pipeline.validate import (
    LIGHTCURVE_SCHEMA,
    QUARANTINE_SCHEMA,
    CleaningConfig,
    CleaningCounts,
    CleanResult,
    clean_frame,
    frame_to_arrow,
    series_to_arrow,
    validate_file,
)

nan, inf = np.nan, np.inf
COLS = ["object_id", "band", "t", "mag", "mag_err"]

# One table with every rule; with min_points=2 the expected outcome is written out below.
ROWS = [
    ["b", "r", 3.0, 15.4, 0.2],    # 0  epoch (b, r, 3): first row in input order
    ["a", "g", 5.0, 14.0, 0.1],    # 1  kept
    [None, "r", 7.0, 15.0, 0.1],   # 2  null_object_id
    ["b", "r", 2.0, 15.2, 0.1],    # 3  kept
    ["a", "g", nan, 15.0, 0.1],    # 4  nonfinite_t
    ["c", None, 1.0, 15.0, 0.1],   # 5  null_band -> object c has no valid rows
    ["b", "r", 3.0, 15.0, 0.1],    # 6  same_epoch_conflict with row 0
    ["a", "g", 6.0, inf, 0.1],     # 7  nonfinite_mag
    ["b", "r", 1.0, 15.0, 0.1],    # 8  kept
    ["a", "g", 7.0, 15.0, nan],    # 9  nonfinite_mag_err
    ["a", "g", 4.0, 14.5, 0.1],    # 10 kept
    ["b", "r", 2.0, 15.2, 0.1],    # 11 exact_duplicate of row 3
    ["a", "g", 8.0, 15.0, 0.0],    # 12 nonpositive_mag_err
    ["a", "g", 9.0, 15.0, -1.0],   # 13 nonpositive_mag_err
    ["d", "r", -inf, 15.0, 0.1],   # 14 nonfinite_t -> object d has no valid rows
    ["a", "g", -10.0, 15.0, 0.1],  # 15 time_outside_window (t < t_min = 0)
    ["b", "r", 3.0, 15.4, 0.2],    # 16 exact_duplicate of row 0
    ["a", "r", 1.0, 16.0, 0.3],    # 17 kept
    ["a", "g", 2e5, 15.0, 0.1],    # 18 time_outside_window (t > t_max = 1e5)
    ["e", "g", 1.0, 17.0, 0.1],    # 19 object e: too_few_points (1 < 2)
]

# inverse-variance mean of rows 0 (15.4 +- 0.2) and 6 (15.0 +- 0.1): weights 25 and 100
MEAN_MAG = (25 * 15.4 + 100 * 15.0) / 125   # 15.08
MEAN_ERR = 1 / np.sqrt(125.0)

KEPT_COMMON = [("a", "g", 4.0, 14.5, 0.1), ("a", "g", 5.0, 14.0, 0.1),
               ("a", "r", 1.0, 16.0, 0.3), ("b", "r", 1.0, 15.0, 0.1),
               ("b", "r", 2.0, 15.2, 0.1)]
KEPT = {
    "mean": KEPT_COMMON + [("b", "r", 3.0, MEAN_MAG, MEAN_ERR)],
    "first": KEPT_COMMON + [("b", "r", 3.0, 15.4, 0.2)],
    "drop": KEPT_COMMON,
}
DROPPED_COMMON = {"null_object_id": 1, "null_band": 1, "nonfinite_t": 2, "nonfinite_mag": 1,
                  "nonfinite_mag_err": 1, "nonpositive_mag_err": 2,
                  "time_outside_window": 2, "exact_duplicate": 2, "too_few_points": 1}


def _counts(policy):
    dropped = dict(DROPPED_COMMON)
    merged = {}
    if policy == "drop":
        dropped["same_epoch_conflict"] = 2
    else:
        merged["same_epoch_conflict"] = 1
    return CleaningCounts(rows_in=20, rows_out=len(KEPT[policy]), rows_dropped=dropped,
                          rows_merged=merged, objects_in=5, objects_out=2,
                          objects_quarantined={"no_valid_rows": 2, "too_few_points": 1})


def _quarantine(policy):
    n_conflict = 2 if policy == "drop" else 1
    return [("a", "g", "nonfinite_mag", 1), ("a", "g", "nonfinite_mag_err", 1),
            ("a", "g", "nonfinite_t", 1), ("a", "g", "nonpositive_mag_err", 2),
            ("a", "g", "time_outside_window", 2), ("b", "r", "exact_duplicate", 2),
            ("b", "r", "same_epoch_conflict", n_conflict), ("c", None, "no_valid_rows", 0),
            ("c", None, "null_band", 1), ("d", None, "no_valid_rows", 0),
            ("d", "r", "nonfinite_t", 1), ("e", "g", "too_few_points", 1),
            (None, "r", "null_object_id", 1)]


def _frame(rows):
    return pd.DataFrame(rows, columns=COLS).astype({"object_id": object, "band": object})


def _none(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _rows(df):
    return [tuple(_none(v) for v in r) for r in df.itertuples(index=False, name=None)]


def _assert_rows(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:-3] == e[:-3]
        assert g[-3:] == pytest.approx(e[-3:], rel=1e-12)


# ---- CleaningCounts ------------------------------------------------------------------

def test_counts_iadd_sums_every_field():
    a = CleaningCounts(rows_in=10, rows_out=6, rows_dropped={"nonfinite_t": 2},
                       rows_merged={"same_epoch_conflict": 1}, objects_in=3, objects_out=2,
                       objects_quarantined={"too_few_points": 1})
    b = CleaningCounts(rows_in=5, rows_out=3, rows_dropped={"nonfinite_t": 1,
                                                            "exact_duplicate": 1},
                       rows_merged={"same_epoch_conflict": 4}, objects_in=7, objects_out=5,
                       objects_quarantined={"no_valid_rows": 2})
    c = a
    c += b
    assert c is a
    assert c == CleaningCounts(rows_in=15, rows_out=9,
                               rows_dropped={"nonfinite_t": 3, "exact_duplicate": 1},
                               rows_merged={"same_epoch_conflict": 5}, objects_in=10,
                               objects_out=7,
                               objects_quarantined={"too_few_points": 1, "no_valid_rows": 2})
    assert b == CleaningCounts(rows_in=5, rows_out=3, rows_dropped={"nonfinite_t": 1,
                                                                    "exact_duplicate": 1},
                               rows_merged={"same_epoch_conflict": 4}, objects_in=7,
                               objects_out=5, objects_quarantined={"no_valid_rows": 2})


def test_counts_iadd_into_empty_and_balanced():
    c = CleaningCounts()
    c += _counts("mean")
    c += _counts("drop")
    assert c.rows_in == 40 and c.rows_out == 11
    assert c.rows_dropped == {**{k: 2 * v for k, v in DROPPED_COMMON.items()},
                              "same_epoch_conflict": 2}
    assert c.rows_merged == {"same_epoch_conflict": 1}
    assert c.objects_quarantined == {"no_valid_rows": 4, "too_few_points": 2}
    assert c.objects_in == 10 and c.objects_out == 4
    assert c.balanced


def test_balanced_needs_rows_and_objects():
    ok = CleaningCounts(rows_in=5, rows_out=2, rows_dropped={"x": 2}, rows_merged={"y": 1},
                        objects_in=3, objects_out=1, objects_quarantined={"z": 2})
    assert ok.balanced
    assert not CleaningCounts(rows_in=6, rows_out=2, rows_dropped={"x": 2},
                              rows_merged={"y": 1}, objects_in=3, objects_out=1,
                              objects_quarantined={"z": 2}).balanced
    assert not CleaningCounts(rows_in=5, rows_out=2, rows_dropped={"x": 2},
                              rows_merged={"y": 1}, objects_in=4, objects_out=1,
                              objects_quarantined={"z": 2}).balanced
    assert not CleaningCounts(rows_in=5, rows_out=2, rows_dropped={"x": 2},
                              objects_in=3, objects_out=1,
                              objects_quarantined={"z": 2}).balanced
    assert CleaningCounts().balanced


def test_counts_to_dict():
    assert _counts("first").to_dict() == {
        "rows_in": 20, "rows_out": 6, "rows_dropped": DROPPED_COMMON,
        "rows_merged": {"same_epoch_conflict": 1}, "objects_in": 5, "objects_out": 2,
        "objects_quarantined": {"no_valid_rows": 2, "too_few_points": 1}}


# ---- CleaningConfig and CleanResult ----------------------------------------------------

def test_config_defaults_and_limits():
    assert asdict(CleaningConfig()) == {"min_points": 10, "t_min": 0.0, "t_max": 100000.0,
                                        "conflict_policy": "mean"}
    CleaningConfig(min_points=0)
    CleaningConfig(t_min=1.0, t_max=1.0 + 1e-9)
    for policy in ("mean", "first", "drop"):
        assert CleaningConfig(conflict_policy=policy).conflict_policy == policy


@pytest.mark.parametrize("kw, match", [
    ({"conflict_policy": "median"},
     r"^conflict policy must be one of \['mean', 'first', 'drop'\], got 'median'$"),
    ({"min_points": -1}, r"^min_points must be >= 0, got -1$"),
    ({"t_min": 10.0, "t_max": 5.0}, r"^time window is empty: t_min=10.0 >= t_max=5.0$"),
    ({"t_min": 5.0, "t_max": 5.0}, r"^time window is empty: t_min=5.0 >= t_max=5.0$"),
])
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        CleaningConfig(**kw)


def test_clean_result_defaults():
    with pytest.raises(ValueError, match="^CleanResult needs a frame or series$"):
        CleanResult()
    f = _frame([["a", "r", 1.0, 15.0, 0.1]])
    r = CleanResult(frame=f)
    assert r.frame is f and r.series is None
    assert list(r.quarantine.columns) == ["object_id", "band", "reason", "n_rows"]
    assert len(r.quarantine) == 0
    assert r.counts == CleaningCounts()
    c = CleaningCounts(rows_in=1, rows_out=1)
    assert CleanResult(frame=f, counts=c).counts is c


# ---- clean_frame on the hand-made table ----------------------------------------------

@pytest.mark.parametrize("policy", ["mean", "first", "drop"])
@pytest.mark.parametrize("order", ["input", "reversed", "shuffled"])
def test_clean_frame_hand_table(policy, order):
    df = _frame(ROWS)
    if order == "reversed":
        # rows 16 and 0 are identical, so the first row of epoch (b, r, 3) is still 15.4
        df = df.iloc[::-1].reset_index(drop=True)
    elif order == "shuffled":
        perm = np.random.default_rng(3).permutation(len(df))
        perm = np.r_[0, perm[perm != 0]]   # keep row 0 first (the 'first' row of its epoch)
        df = df.iloc[perm].reset_index(drop=True)
    res = clean_frame(df, CleaningConfig(min_points=2, conflict_policy=policy))
    assert res.counts == _counts(policy)
    _assert_rows(_rows(res.frame), KEPT[policy])
    assert _rows(res.quarantine) == _quarantine(policy)
    assert res.quarantine["n_rows"].dtype == np.int64
    s = res.series
    assert list(s.object_id) == ["a", "a", "b"] and list(s.band) == ["g", "r", "r"]
    assert list(s.offsets) == [0, 2, 3, len(KEPT[policy])]


def test_mean_policy_leaves_duplicate_only_epochs_bit_for_bit():
    # (15.2, 0.3) pushed through the weighted mean of one row gives 15.200000000000001:
    # only epochs with a conflict may be rewritten
    rows = [("x", "g", 1.0, 15.2, 0.3), ("x", "g", 2.0, 15.0, 0.1), ("x", "g", 1.0, 15.2, 0.3),
            ("x", "g", 2.0, 15.4, 0.2), ("x", "g", 3.0, 14.1, 0.29)]
    res = clean_frame(_frame(rows), CleaningConfig(min_points=1))
    got = _rows(res.frame)
    assert got[0] == ("x", "g", 1.0, 15.2, 0.3)
    assert got[2] == ("x", "g", 3.0, 14.1, 0.29)
    assert got[1][3:] == pytest.approx(((100 * 15.0 + 25 * 15.4) / 125, 1 / np.sqrt(125.0)),
                                       rel=1e-12)
    assert res.counts.rows_dropped == {"exact_duplicate": 1}
    assert res.counts.rows_merged == {"same_epoch_conflict": 1}


def test_unused_categories_are_not_objects():
    df = _frame([("a", "r", 1.0, 15.0, 0.1), ("b", "r", 1.0, 15.0, 0.1),
                 ("b", "r", 2.0, 15.0, 0.1)])
    df["object_id"] = pd.Categorical(df["object_id"], categories=["a", "b", "zz"])
    df["band"] = pd.Categorical(df["band"], categories=["r", "zz"])
    res = clean_frame(df, CleaningConfig(min_points=2))
    assert res.counts == CleaningCounts(rows_in=3, rows_out=2,
                                        rows_dropped={"too_few_points": 1}, objects_in=2,
                                        objects_out=1,
                                        objects_quarantined={"too_few_points": 1})
    assert _rows(res.quarantine) == [("a", "r", "too_few_points", 1)]


def test_many_objects_shuffled_come_out_sorted():
    rng = np.random.default_rng(5)
    n_obj, n = 300, 3
    ids = np.repeat([f"o{k:03d}" for k in range(n_obj)], 2 * n)
    bands = np.tile(np.repeat(["g", "r"], n), n_obj)
    t = np.tile(np.arange(2 * n, dtype=float), n_obj)
    df = pd.DataFrame({"object_id": ids.astype(object), "band": bands.astype(object), "t": t,
                       "mag": rng.normal(16, 1, len(t)), "mag_err": rng.uniform(0.05, 0.2,
                                                                                len(t))})
    expected = df.sort_values(["object_id", "band", "t"], ignore_index=True)
    res = clean_frame(df.sample(frac=1, random_state=1), CleaningConfig(min_points=1))
    assert _rows(res.frame) == _rows(expected)
    assert res.counts == CleaningCounts(rows_in=len(df), rows_out=len(df),
                                        objects_in=n_obj, objects_out=n_obj)


def test_clean_frame_input_not_modified():
    df = _frame(ROWS)
    before = df.copy()
    clean_frame(df, CleaningConfig(min_points=2))
    pd.testing.assert_frame_equal(df, before)


def test_clean_frame_sorted_clean_input_kept_as_is():
    rows = [("a", "g", 1.0, 15.0, 0.1), ("a", "g", 2.0, 15.5, 0.2), ("a", "r", 0.5, 16.0, 0.3),
            ("b", "g", 3.0, 17.0, 0.05), ("b", "g", 4.0, 17.5, 0.05)]
    res = clean_frame(_frame(rows), CleaningConfig(min_points=2))
    assert _rows(res.frame) == rows
    assert res.counts == CleaningCounts(rows_in=5, rows_out=5, objects_in=2, objects_out=2)
    assert len(res.quarantine) == 0
    # the same rows in another order come out sorted
    res = clean_frame(_frame(rows[::-1]), CleaningConfig(min_points=2))
    assert _rows(res.frame) == rows


def test_clean_frame_min_points_boundary_and_default():
    rows = [("a", "r", float(k), 15.0, 0.1) for k in range(10)]
    rows += [("b", "r", float(k), 15.0, 0.1) for k in range(9)]
    res = clean_frame(_frame(rows))   # default min_points = 10
    assert res.counts.objects_quarantined == {"too_few_points": 1}
    assert res.counts.rows_dropped == {"too_few_points": 9}
    assert _rows(res.quarantine) == [("b", "r", "too_few_points", 9)]
    assert _rows(res.frame) == rows[:10]
    # time window edges are inside
    edge = [("a", "r", 0.0, 15.0, 0.1), ("a", "r", 100000.0, 15.0, 0.1)]
    assert len(clean_frame(_frame(edge), CleaningConfig(min_points=1)).frame) == 2


# ---- Arrow tables ----------------------------------------------------------------------

def _expected_table(rows):
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLS)},
                    schema=LIGHTCURVE_SCHEMA)


def test_series_to_arrow_values_and_schema():
    s = LightCurves(object_id=np.array(["x", "x", "w"], dtype=object),
                    band=np.array(["g", "r", "g"], dtype=object),
                    offsets=np.array([0, 2, 2, 3], dtype=np.int64),
                    t=np.array([1.0, 2.0, 3.0]), mag=np.array([15.0, 15.5, 16.0]),
                    mag_err=np.array([0.1, 0.2, 0.3]))
    tab = series_to_arrow(s)
    assert tab.schema.equals(LIGHTCURVE_SCHEMA, check_metadata=True)
    assert tab.equals(_expected_table([("x", "g", 1.0, 15.0, 0.1), ("x", "g", 2.0, 15.5, 0.2),
                                       ("w", "g", 3.0, 16.0, 0.3)]))


@pytest.mark.parametrize("kind", ["categorical", "object"])
def test_frame_to_arrow_values_and_schema(kind):
    rows = [("z", "r", 1.0, 15.0, 0.1), ("a", "g", 2.0, 15.5, 0.2), ("z", "g", 3.0, 16.0, 0.3),
            ("a", "r", 4.0, 16.5, 0.4)]
    df = _frame(rows)
    if kind == "categorical":
        # category order differs from string order and from appearance; an unused one too
        df["object_id"] = pd.Categorical(df["object_id"], categories=["q", "z", "a"])
        df["band"] = pd.Categorical(df["band"], categories=["r", "g"])
    df["t"] = df["t"].astype(np.float32)   # float32 in, float64 out
    tab = frame_to_arrow(df)
    assert tab.schema.equals(LIGHTCURVE_SCHEMA, check_metadata=True)
    assert tab.equals(_expected_table(rows))


def test_frame_to_arrow_missing_float_is_nan_not_null():
    df = _frame([("a", "g", 1.0, 15.0, 0.1), ("a", "g", 2.0, 15.5, 0.2)])
    df["mag"] = np.array([15.0, None], dtype=object)
    col = frame_to_arrow(df).column("mag")
    assert col.null_count == 0
    assert col.to_numpy()[0] == 15.0 and np.isnan(col.to_numpy()[1])


def test_frame_to_arrow_of_clean_result_matches_series_to_arrow():
    res = clean_frame(_frame(ROWS), CleaningConfig(min_points=2))
    expected = _expected_table(KEPT["mean"])
    assert frame_to_arrow(res.frame).equals(series_to_arrow(res.series))
    got = series_to_arrow(res.series)
    assert got.column("object_id").to_pylist() == expected.column("object_id").to_pylist()
    assert got.column("band").to_pylist() == expected.column("band").to_pylist()


# ---- validate_file ---------------------------------------------------------------------

RENAMED = {"object_id": "ID", "band": "FILTER", "t": "MJD", "mag": "MAG", "mag_err": "ERR"}
SPEC = ",".join(f"{k}={v}" for k, v in RENAMED.items())


def test_validate_file_outputs_exact(tmp_path):
    src = tmp_path / "in.parquet"
    _frame(ROWS).rename(columns=RENAMED).to_parquet(src, index=False)
    out = tmp_path / "out"
    cfg = CleaningConfig(min_points=2, conflict_policy="first", t_min=0.0, t_max=1e5)
    cmap = ColumnMap.from_spec(columns=SPEC)
    summary = validate_file(src, out, cmap, cfg)

    lc_path, q_path = out / "lightcurves.parquet", out / "quarantine.parquet"
    expected = {
        "input": str(src), "lcpipe_version": __version__,
        "config": {"min_points": 2, "t_min": 0.0, "t_max": 100000.0,
                   "conflict_policy": "first"},
        **_counts("first").to_dict(),
        "outputs": {"lightcurves": str(lc_path), "quarantine": str(q_path)},
    }
    assert summary == expected
    assert json.loads((out / "summary.json").read_text()) == expected
    assert list(summary) == ["input", "lcpipe_version", "config", "rows_in", "rows_out",
                             "rows_dropped", "rows_merged", "objects_in", "objects_out",
                             "objects_quarantined", "outputs"]

    lc = pq.read_table(lc_path)
    assert lc.schema.equals(LIGHTCURVE_SCHEMA, check_metadata=False)
    _assert_rows([tuple(r.values()) for r in lc.to_pylist()], KEPT["first"])
    meta = lc.schema.metadata[b"lcpipe.validate"]
    assert json.loads(meta) == {"version": __version__, "config": expected["config"]}

    q = pq.read_table(q_path)
    assert q.schema.equals(QUARANTINE_SCHEMA, check_metadata=False)
    assert [tuple(r.values()) for r in q.to_pylist()] == _quarantine("first")
    assert not list(out.glob(".*tmp"))


def test_validate_file_needs_the_column_map(tmp_path):
    src = tmp_path / "in.parquet"
    _frame(ROWS).rename(columns=RENAMED).to_parquet(src, index=False)
    with pytest.raises(InputError):
        validate_file(src, tmp_path / "out", config=CleaningConfig(min_points=2))
    assert not (tmp_path / "out" / "summary.json").exists()


def test_validate_file_default_config_and_empty_quarantine(tmp_path):
    rows = [("s1", "V", 50000.0 + k, 15.0 + 0.01 * k, 0.05) for k in range(10)]
    rows += [("s2", "V", 50000.0 + k, 16.0, 0.1) for k in range(9)]
    src = tmp_path / "in.csv"
    _frame(rows).to_csv(src, index=False)
    out = tmp_path / "o"
    summary = validate_file(str(src), str(out))
    assert summary["input"] == str(src)
    assert summary["config"] == asdict(CleaningConfig())
    assert summary["rows_dropped"] == {"too_few_points": 9}
    assert summary["objects_quarantined"] == {"too_few_points": 1}
    lc = pq.read_table(out / "lightcurves.parquet")
    assert lc.schema.equals(LIGHTCURVE_SCHEMA, check_metadata=False)
    _assert_rows([tuple(r.values()) for r in lc.to_pylist()], rows[:10])
    q = pq.read_table(out / "quarantine.parquet")
    assert q.schema.equals(QUARANTINE_SCHEMA, check_metadata=False)
    assert q.to_pylist() == [{"object_id": "s2", "band": "V", "reason": "too_few_points",
                              "n_rows": 9}]

    # nothing removed: the quarantine file is empty but keeps its schema
    clean = tmp_path / "clean.csv"
    _frame(rows[:10]).to_csv(clean, index=False)
    summary = validate_file(clean, tmp_path / "o2", config=CleaningConfig(min_points=10))
    assert summary["rows_out"] == 10 and summary["rows_dropped"] == {}
    q = pq.read_table(tmp_path / "o2" / "quarantine.parquet")
    assert q.num_rows == 0
    assert q.schema.equals(QUARANTINE_SCHEMA, check_metadata=False)
    meta = json.loads(pq.read_schema(tmp_path / "o2" / "lightcurves.parquet")
                      .metadata[b"lcpipe.validate"])
    assert meta == {"version": __version__, "config": asdict(CleaningConfig())}


def test_validate_file_only_empty_object_quarantine_keeps_string_band(tmp_path):
    rows = [("ok", "V", 50000.0 + k, 15.0, 0.05) for k in range(3)]
    rows += [("bad", "V", nan, 15.0, 0.05)]
    src = tmp_path / "in.parquet"
    _frame(rows).to_parquet(src, index=False)
    validate_file(src, tmp_path / "o", config=CleaningConfig(min_points=3))
    q = pq.read_table(tmp_path / "o" / "quarantine.parquet")
    assert q.schema.equals(QUARANTINE_SCHEMA, check_metadata=False)
    assert [tuple(r.values()) for r in q.to_pylist()] == [
        ("bad", None, "no_valid_rows", 0), ("bad", "V", "nonfinite_t", 1)]
