"""Data contract: reading Parquet/CSV, column maps, presets, bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.contract import ColumnMap, iter_object_chunks, read_table
from pipeline.errors import ConfigError, InputError
from tests.helpers import make_frame


def test_parquet_csv_and_directory_agree(tmp_path, rng):
    df = make_frame(rng)
    df.to_parquet(tmp_path / "a.parquet")
    df.to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "dir").mkdir()
    df.iloc[:100].to_parquet(tmp_path / "dir" / "part0.parquet")
    df.iloc[100:].to_parquet(tmp_path / "dir" / "part1.parquet")
    a = read_table(tmp_path / "a.parquet")
    b = read_table(tmp_path / "a.csv")
    c = read_table(tmp_path / "dir")
    for other in (b, c):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), other.reset_index(drop=True))
    assert list(a.columns) == ["object_id", "band", "t", "mag", "mag_err"]


def test_integer_ids_and_missing_band(tmp_path, rng):
    df = make_frame(rng).drop(columns="band")
    df["object_id"] = df["object_id"].str[3:].astype(int)
    df["extra"] = 1.0
    df.to_parquet(tmp_path / "x.parquet")
    out = read_table(tmp_path / "x.parquet")
    assert out["object_id"].iloc[0] == str(df["object_id"].iloc[0])
    assert set(out["band"]) == {"default"}


def test_column_mapping_string_and_crts_preset(tmp_path, rng):
    df = make_frame(rng).rename(columns={"object_id": "ID", "t": "MJD", "mag": "Mag",
                                         "mag_err": "Magerr"})
    df.to_csv(tmp_path / "crts.csv", index=False)
    a = read_table(tmp_path / "crts.csv", ColumnMap.from_spec("crts"))
    b = read_table(tmp_path / "crts.csv",
                   ColumnMap.from_spec(columns="object_id=ID,t=MJD,mag=Mag,mag_err=Magerr"))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(df)


def test_ztf_preset_maps_fid(ztf_dir):
    out = read_table(ztf_dir / "lightcurves.parquet", ColumnMap.from_spec("ztf"))
    assert set(out["band"]) == {"g", "r"}
    raw = pd.read_parquet(ztf_dir / "lightcurves.parquet")
    assert (out["band"] == raw["fid"].map({1: "g", 2: "r"})).all()
    np.testing.assert_array_equal(out["mag"], raw["magpsf"])


@pytest.mark.parametrize("spec", ["t", "x=y", "t=", "bogus=MJD"])
def test_bad_column_spec(spec):
    with pytest.raises(ConfigError):
        ColumnMap.from_spec(columns=spec)


def test_bad_files(tmp_path, rng):
    df = make_frame(rng)
    df.drop(columns="mag_err").to_parquet(tmp_path / "nomagerr.parquet")
    with pytest.raises(InputError, match="missing column for 'mag_err'") as e:
        read_table(tmp_path / "nomagerr.parquet")
    assert "nomagerr.parquet" in str(e.value)
    bad = df.copy()
    bad["t"] = bad["t"].astype(str)
    bad.to_parquet(tmp_path / "strt.parquet")
    with pytest.raises(InputError, match="'t'.*expected numbers"):
        read_table(tmp_path / "strt.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="corrupt.parquet"):
        read_table(tmp_path / "corrupt.parquet")
    df.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="empty"):
        read_table(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "nope.parquet")
    (tmp_path / "text.csv").write_text("object_id,t,mag,mag_err\na,1,x,0.1\n")
    with pytest.raises(InputError, match="'mag'"):
        read_table(tmp_path / "text.csv")


def test_object_chunks_keep_objects_whole(tmp_path, rng):
    df = make_frame(rng, n_obj=30).sort_values("object_id", kind="stable")
    df.to_parquet(tmp_path / "g.parquet", row_group_size=37)
    chunks = list(iter_object_chunks(tmp_path / "g.parquet", chunk_rows=50))
    assert len(chunks) > 3
    seen = [set(c["object_id"]) for c in chunks]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert not seen[i] & seen[j]
    assert sum(len(c) for c in chunks) == len(df)


def test_object_chunks_reject_ungrouped(tmp_path, rng):
    df = make_frame(rng, n_obj=10).sample(frac=1.0, random_state=1)
    df.to_parquet(tmp_path / "shuffled.parquet", row_group_size=20)
    with pytest.raises(InputError, match="not contiguous"):
        list(iter_object_chunks(tmp_path / "shuffled.parquet", chunk_rows=40))


def test_object_longer_than_chunk_is_not_split(tmp_path, rng):
    df = make_frame(rng, n_obj=4, n_min=150, n_max=200).sort_values("object_id", kind="stable")
    df.to_parquet(tmp_path / "long.parquet", row_group_size=20)
    chunks = list(iter_object_chunks(tmp_path / "long.parquet", chunk_rows=30))
    assert sum(len(c) for c in chunks) == len(df)
    ids = [set(c["object_id"]) for c in chunks]
    assert sum(len(i) for i in ids) == 4


def test_band_renames_apply_after_the_preset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.contract import ColumnMap, read_table
    from pipeline.errors import ConfigError

    cmap = ColumnMap.from_spec("ztf", bands="r=CSS_V")
    t = pa.table({"oid": ["a", "a", "b"], "mjd": [1.0, 2.0, 3.0], "fid": [1, 2, 2],
                  "magpsf": [15.0, 15.1, 16.0], "sigmapsf": [0.1, 0.1, 0.1]})
    pq.write_table(t, tmp_path / "z.parquet")
    frame = read_table(tmp_path / "z.parquet", cmap)
    assert list(frame["band"].astype(str)) == ["g", "CSS_V", "CSS_V"]
    # no band column: the default band can be renamed too
    pq.write_table(t.drop(["fid"]), tmp_path / "nb.parquet")
    frame = read_table(tmp_path / "nb.parquet", ColumnMap.from_spec("ztf", bands="default=V"))
    assert set(frame["band"].astype(str)) == {"V"}
    with pytest.raises(ConfigError, match="SOURCE=NAME"):
        ColumnMap.from_spec(bands="r")
