"""Cleaning rules: accounting identity, each rule, policies, real CRTS problems."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.validate import CleaningConfig, clean_frame, validate_file
from tests.helpers import make_frame


def _frame(rows):
    return pd.DataFrame(rows, columns=["object_id", "band", "t", "mag", "mag_err"]).astype(
        {"object_id": object, "band": object})


def _check_invariants(res, n_in):
    c = res.counts
    assert c.balanced
    assert c.rows_in == n_in
    out = res.frame
    assert len(out) == c.rows_out
    keys = out[["object_id", "band", "t"]]
    assert not keys.duplicated().any()
    assert out.equals(out.sort_values(["object_id", "band", "t"], kind="stable",
                                      ignore_index=True))
    assert np.isfinite(out[["t", "mag", "mag_err"]].to_numpy()).all()
    assert (out["mag_err"] > 0).all()
    assert res.quarantine["n_rows"].sum() == n_in - c.rows_out


values = st.one_of(st.floats(-5, 5, allow_nan=False), st.just(np.nan), st.just(np.inf),
                   st.just(-np.inf), st.just(0.0))


@st.composite
def tables(draw):
    n = draw(st.integers(1, 60))
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    bands = draw(st.lists(st.sampled_from(["g", "r"]), min_size=n, max_size=n))
    ts = draw(st.lists(st.one_of(st.sampled_from([1.0, 2.0, 3.0, 4.0]), values,
                                 st.just(-2409998.5)), min_size=n, max_size=n))
    ms = draw(st.lists(st.one_of(st.sampled_from([15.0, 15.5]), values), min_size=n,
                       max_size=n))
    es = draw(st.lists(st.one_of(st.sampled_from([0.1, 0.2]), values), min_size=n, max_size=n))
    df = _frame(list(zip(ids, bands, ts, ms, es, strict=True)))
    dup = draw(st.lists(st.integers(0, n - 1), max_size=10))
    return pd.concat([df, df.iloc[dup]], ignore_index=True)


@settings(max_examples=150, deadline=None)
@given(tables(), st.sampled_from(["mean", "first", "drop"]), st.integers(0, 4),
       st.randoms(use_true_random=False))
def test_accounting_identity_property(df, policy, min_points, rnd):
    df = df.iloc[rnd.sample(range(len(df)), len(df))].reset_index(drop=True)
    res = clean_frame(df, CleaningConfig(min_points=min_points, conflict_policy=policy))
    _check_invariants(res, len(df))


def test_each_rule_counted():
    rows = [
        ["a", "r", 1.0, 15.0, 0.1],
        ["a", "r", 1.0, 15.0, 0.1],          # exact duplicate
        ["a", "r", 2.0, 15.0, 0.1],
        ["a", "r", 2.0, 16.0, 0.1],          # conflict with previous
        ["a", "r", np.nan, 15.0, 0.1],       # nonfinite t
        ["a", "r", 3.0, np.inf, 0.1],        # nonfinite mag
        ["a", "r", 4.0, 15.0, np.nan],       # nonfinite err
        ["a", "r", 5.0, 15.0, 0.0],          # err <= 0
        ["a", "r", -2409998.5, 15.0, 0.1],   # placeholder date
        ["a", None, 6.0, 15.0, 0.1],         # null band
        [None, "r", 7.0, 15.0, 0.1],         # null id
        ["b", "r", 1.0, 15.0, 0.1],          # object b: too few points
    ]
    res = clean_frame(_frame(rows), CleaningConfig(min_points=2))
    c = res.counts
    assert c.rows_dropped == {"null_object_id": 1, "null_band": 1, "nonfinite_t": 1,
                              "nonfinite_mag": 1, "nonfinite_mag_err": 1,
                              "nonpositive_mag_err": 1, "time_outside_window": 1,
                              "exact_duplicate": 1, "too_few_points": 1}
    assert c.rows_merged == {"same_epoch_conflict": 1}
    assert c.objects_in == 2 and c.objects_out == 1
    assert c.objects_quarantined == {"too_few_points": 1}
    assert len(res.frame) == 2
    merged = res.frame.loc[res.frame["t"] == 2.0].iloc[0]
    assert merged["mag"] == pytest.approx(15.5)
    assert merged["mag_err"] == pytest.approx(0.1 / np.sqrt(2))
    q = res.quarantine.set_index(["object_id", "reason"])["n_rows"]
    assert q[("b", "too_few_points")] == 1


def test_weighted_mean_matches_independent_computation(rng):
    m = rng.normal(15, 0.3, 5)
    e = rng.uniform(0.05, 0.3, 5)
    rows = [["x", "g", 10.0, mi, ei] for mi, ei in zip(m, e, strict=True)]
    rows += [["x", "g", float(11 + k), 15.0, 0.1] for k in range(3)]
    res = clean_frame(_frame(rows), CleaningConfig(min_points=1))
    w = 1 / e**2
    row = res.frame.iloc[0]
    assert row["mag"] == pytest.approx(np.sum(w * m) / np.sum(w), rel=1e-12)
    assert row["mag_err"] == pytest.approx(1 / np.sqrt(np.sum(w)), rel=1e-12)
    first = clean_frame(_frame(rows), CleaningConfig(min_points=1, conflict_policy="first"))
    assert first.frame.iloc[0]["mag"] == m[0]
    drop = clean_frame(_frame(rows), CleaningConfig(min_points=1, conflict_policy="drop"))
    assert drop.counts.rows_dropped == {"same_epoch_conflict": 5}
    assert len(drop.frame) == 3


def test_object_with_no_valid_rows_is_quarantined():
    rows = [["a", "r", np.nan, 15.0, 0.1], ["b", "r", 1.0, 15.0, 0.1]]
    res = clean_frame(_frame(rows), CleaningConfig(min_points=0))
    assert res.counts.objects_quarantined == {"no_valid_rows": 1}
    assert res.counts.objects_out == 1
    assert res.counts.balanced


@pytest.mark.parametrize("kw", [{"conflict_policy": "median"}, {"min_points": -1},
                                {"t_min": 10.0, "t_max": 5.0}])
def test_bad_config(kw):
    with pytest.raises(ConfigError):
        CleaningConfig(**kw)


def test_validate_file_outputs(tmp_path, rng):
    df = make_frame(rng, n_obj=6)
    df = pd.concat([df, df.iloc[:5]], ignore_index=True)
    df.to_parquet(tmp_path / "in.parquet")
    s = validate_file(tmp_path / "in.parquet", tmp_path / "out")
    assert s["rows_dropped"] == {"exact_duplicate": 5}
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["rows_in"] == len(df)
    clean = pd.read_parquet(tmp_path / "out" / "lightcurves.parquet")
    assert len(clean) == s["rows_out"]
    q = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert list(q.columns) == ["object_id", "band", "reason", "n_rows"]
    assert q["n_rows"].sum() == 5
    assert not list((tmp_path / "out").glob(".*tmp"))


@pytest.mark.slow
def test_real_crts_known_problems(crts_dir, tmp_path):
    s = validate_file(crts_dir / "lightcurves.parquet", tmp_path)
    assert s["rows_in"] == 1_654_339
    assert s["rows_dropped"] == {"time_outside_window": 4, "exact_duplicate": 413}
    assert s["rows_merged"] == {"same_epoch_conflict": 2135}
    assert s["objects_in"] == s["objects_out"] == 5757
    assert s["rows_out"] == 1_654_339 - 4 - 413 - 2135


def test_atomic_write_leaves_no_partial_file_and_usual_mode(tmp_path):
    import os

    from pipeline.io import atomic_path

    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)


def _same_result(a, b):
    """Two CleanResults hold the same rows (bit for bit), quarantine and counts."""
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    for col in ("t", "mag", "mag_err"):  # bit for bit, -0.0 included
        assert np.array_equal(a.frame[col].to_numpy().view(np.int64),
                              b.frame[col].to_numpy().view(np.int64))
    pd.testing.assert_frame_equal(a.quarantine, b.quarantine, check_exact=True)
    assert a.counts == b.counts


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from(["mean", "first", "drop"]), st.integers(0, 4),
       st.randoms(use_true_random=False), st.booleans())
def test_matches_reference_implementation(df, policy, min_points, rnd, presort):
    """The fast cleaning (order detection, runs of equal epochs) gives exactly the rows of
    the first, pandas-based implementation (tests/pipeline/reference_clean.py), on
    shuffled and on (object, band, t)-sorted input."""
    from tests.pipeline.reference_clean import reference_clean_frame

    df = df.iloc[rnd.sample(range(len(df)), len(df))].reset_index(drop=True)
    if presort:
        df = df.sort_values(["object_id", "band", "t"], kind="stable", ignore_index=True)
    cfg = CleaningConfig(min_points=min_points, conflict_policy=policy)
    _same_result(clean_frame(df, cfg), reference_clean_frame(df, cfg))


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mean", "first", "drop"])
@pytest.mark.parametrize("layout", ["as_is", "shuffled", "sorted"])
def test_crts_matches_reference_implementation(crts_dir, policy, layout):
    """All of the shared CRTS set (duplicates, conflicts, placeholder dates), each policy,
    as given, shuffled and sorted: the same rows, bit for bit, as the reference."""
    from pipeline.contract import read_table
    from tests.pipeline.reference_clean import reference_clean_frame

    df = read_table(crts_dir / "lightcurves.parquet")
    if layout == "shuffled":
        df = df.iloc[np.random.default_rng(3).permutation(len(df))].reset_index(drop=True)
    elif layout == "sorted":
        df = df.sort_values(["object_id", "band", "t"], kind="stable", ignore_index=True)
    cfg = CleaningConfig(conflict_policy=policy)
    _same_result(clean_frame(df, cfg), reference_clean_frame(df, cfg))
