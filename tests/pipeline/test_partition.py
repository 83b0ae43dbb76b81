"""Whole objects from ungrouped input in bounded memory (pipeline/partition.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import partition
from pipeline.contract import read_table
from pipeline.partition import is_grouped, iter_whole_objects, partition_rows
from pipeline.validate import CleaningConfig, clean_frame
from tests.helpers import make_frame


def _clean_all(frames):
    res = [clean_frame(f, CleaningConfig(min_points=3)) for f in frames]
    out = pd.concat([r.frame.astype({"object_id": str, "band": str}) for r in res],
                    ignore_index=True)
    return out.sort_values(["object_id", "band", "t"], ignore_index=True), res


@pytest.fixture
def table(rng):
    df = make_frame(rng, n_obj=40, n_min=5, n_max=40, bands=("g", "r"))
    dup = df.sample(30, random_state=1)  # duplicates and same-epoch conflicts
    dup.loc[dup.index[:15], "mag"] += 0.1
    df = pd.concat([df, dup, pd.DataFrame({"object_id": [None], "band": ["r"], "t": [1.0],
                                           "mag": [15.0], "mag_err": [0.1]})],
                   ignore_index=True)
    return df


def test_is_grouped(tmp_path, table, monkeypatch):
    grouped = table.sort_values(["object_id", "t"], kind="stable").dropna(subset=["object_id"])
    pq.write_table(pa.Table.from_pandas(grouped, preserve_index=False), tmp_path / "g.parquet")
    shuffled = table.sample(frac=1.0, random_state=2)
    pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), tmp_path / "s.parquet")
    monkeypatch.setattr(partition, "_BATCH", 7)  # objects cross batch boundaries
    assert is_grouped(tmp_path / "g.parquet")
    assert not is_grouped(tmp_path / "s.parquet")
    # files are read in name order: an object running on from one file into the next is
    # contiguous; one that comes back in a later file is not
    d = tmp_path / "dir"
    d.mkdir()
    half = len(grouped) // 2
    pq.write_table(pa.Table.from_pandas(grouped.iloc[:half], preserve_index=False),
                   d / "a.parquet")
    pq.write_table(pa.Table.from_pandas(grouped.iloc[half:], preserve_index=False),
                   d / "b.parquet")
    assert is_grouped(d)
    pq.write_table(pa.Table.from_pandas(pd.concat([grouped.iloc[half:], grouped.iloc[:3]]),
                                        preserve_index=False), d / "b.parquet")
    assert not is_grouped(d)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "two_files"])
def test_ungrouped_input_gives_the_rows_of_an_in_memory_clean(tmp_path, table, fmt,
                                                             monkeypatch):
    """Shuffled rows (and an object spread over files) come out as whole objects: the
    clean rows and every count equal cleaning the whole table at once."""
    monkeypatch.setattr(partition, "_BATCH", 50)
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    if fmt == "parquet":
        src = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), src)
    elif fmt == "csv":
        src = tmp_path / "in.csv"
        shuffled.to_csv(src, index=False)
    else:
        src = tmp_path / "dir"
        src.mkdir()
        half = len(shuffled) // 2
        for i, part in enumerate((shuffled.iloc[:half], shuffled.iloc[half:])):
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                           src / f"{i}.parquet")
    frames = list(iter_whole_objects(src, chunk_rows=200, workdir=tmp_path / "scratch"))
    assert len(frames) > 1  # really partitioned
    got, res = _clean_all(frames)
    want, ref = _clean_all([read_table(src)])
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_categorical=False)
    total = res[0].counts
    for r in res[1:]:
        total += r.counts
    assert total == ref[0].counts
    assert not list((tmp_path / "scratch").iterdir())  # partitions removed


def test_partitions_hold_whole_objects_and_are_bounded(tmp_path, table):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(table.sample(frac=1.0, random_state=4),
                                        preserve_index=False), src)
    parts = partition_rows(src, tmp_path, chunk_rows=300)
    sizes = table["object_id"].value_counts()
    assert len(parts) > 1
    seen: dict[str, int] = {}
    rows = 0
    last_max = ""
    for i, p in enumerate(parts):
        ids = pq.read_table(p).column("object_id").to_pylist()
        rows += len(ids)
        named = sorted(set(ids) - {None})
        for o in named:
            assert seen.setdefault(o, i) == i, f"{o} in two partitions"
        assert named[0] > last_max  # ranges of ids, in order
        last_max = named[-1]
        # a partition stops at the object that reaches 300 rows
        assert len(ids) - ids.count(None) < 300 + sizes.max()
    assert rows == len(table)


def test_dmdt_of_shuffled_input_equals_grouped(tmp_path, rng):
    from pipeline.dmdt import dmdt_file, read_dmdt

    df = make_frame(rng, n_obj=30, n_min=20, n_max=60)
    g, s = tmp_path / "g.parquet", tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pandas(df.sort_values(["object_id", "t"]),
                                        preserve_index=False), g)
    pq.write_table(pa.Table.from_pandas(df.sample(frac=1.0, random_state=5),
                                        preserve_index=False), s)
    a = dmdt_file(g, tmp_path / "a.parquet")
    b = dmdt_file(s, tmp_path / "out" / "b.parquet", chunk_rows=300)
    assert a["cleaning"] == b["cleaning"] and a["objects"] == b["objects"] == 30
    A, B = read_dmdt(tmp_path / "a.parquet"), read_dmdt(tmp_path / "out" / "b.parquet")
    ia, ib = np.argsort(A.object_id), np.argsort(B.object_id)
    assert np.array_equal(A.object_id[ia], B.object_id[ib])
    assert np.array_equal(A.images[ia], B.images[ib])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.parquet"]



@pytest.mark.parametrize("shuffle", [False, True], ids=["grouped", "shuffled"])
def test_ids_with_stray_spaces_are_one_object_on_every_path(tmp_path, rng, shuffle):
    """' o003  ' on some rows and 'o003' on others is one object, as in labels tables: the
    grouping check, the id-range partitions and the cleaning all strip ids, so the dm-dt
    images equal those of the clean ids (streamed in blocks or partitioned); an id of
    spaces only is a missing id."""
    from pipeline.dmdt import dmdt_file, read_dmdt

    df = make_frame(rng, n_obj=30, n_min=20, n_max=60).sort_values(["object_id", "t"])
    padded = df.copy()
    padded["object_id"] = padded["object_id"].astype(object)
    odd = np.arange(len(padded)) % 2 == 1
    padded.loc[odd, "object_id"] = [f" {o}  " for o in padded.loc[odd, "object_id"]]
    padded = pd.concat([padded, pd.DataFrame({"object_id": ["   "], "band": [df["band"].iloc[0]],
                                              "t": [1.0], "mag": [15.0], "mag_err": [0.1]})],
                       ignore_index=True)
    if shuffle:
        padded = padded.sample(frac=1.0, random_state=3)
    g, p = tmp_path / "g.parquet", tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), g)
    pq.write_table(pa.Table.from_pandas(padded, preserve_index=False), p)
    a = dmdt_file(g, tmp_path / "a.parquet")
    b = dmdt_file(p, tmp_path / "b.parquet", chunk_rows=300)
    assert a["objects"] == b["objects"] == 30
    assert b["cleaning"]["rows_dropped"].get("null_object_id") == 1
    A, B = read_dmdt(tmp_path / "a.parquet"), read_dmdt(tmp_path / "b.parquet")
    ia, ib = np.argsort(A.object_id), np.argsort(B.object_id)
    assert np.array_equal(A.object_id[ia], B.object_id[ib])
    assert np.array_equal(A.images[ia], B.images[ib])

def test_unclean_reader_skips_the_sort_only_for_sorted_input(tmp_path, rng):
    """read_lightcurves(clean=False) on lcpipe's sorted chunk files takes the rows as they
    are; the same clean rows in another order are sorted first: both give the same series."""
    from pipeline.lightcurves import _sorted_by_series, read_lightcurves

    df = clean_frame(make_frame(rng, n_obj=12, bands=("g", "r"))).frame.astype(
        {"object_id": str, "band": str})
    a, b = tmp_path / "sorted.parquet", tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), a)
    pq.write_table(pa.Table.from_pandas(df.sample(frac=1.0, random_state=0),
                                        preserve_index=False), b)
    assert _sorted_by_series(read_table(a)) and not _sorted_by_series(read_table(b))
    x, y = read_lightcurves(a, clean=False), read_lightcurves(b, clean=False)
    assert list(x.object_id) == list(y.object_id) and list(x.band) == list(y.band)
    for f in ("offsets", "t", "mag", "mag_err"):
        assert np.array_equal(getattr(x, f), getattr(y, f))
