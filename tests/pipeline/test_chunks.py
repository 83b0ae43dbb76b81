"""Ingest into chunks of whole objects: identical to ``validate_file`` whatever the input layout.

The reference of every ingest is :func:`pipeline.validate.validate_file` on the same rows
(one ``clean_frame`` of the whole table); ingest streams grouped input block by block and
falls back to reading everything when the rows of an object are scattered or span files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

import pipeline
import pipeline.chunks as chunks_mod
from features.api import extract_features_file, merge_feature_files, read_features
from pipeline.chunks import IngestResult, concat_parquet, ingest, input_files, read_chunk_objects
from pipeline.contract import NotGroupedError, iter_object_chunks
from pipeline.errors import ConfigError, InputError
from pipeline.validate import CleaningConfig, validate_file
from tests.helpers import make_frame

SAMPLE = Path(pipeline.__file__).parent / "data" / "crts_sample" / "lightcurves.parquet"
#: quarantines the shorter third of the sample's objects (83..538 rows each)
CONFIG = CleaningConfig(min_points=250)
COUNT_KEYS = ("rows_in", "rows_out", "rows_dropped", "rows_merged", "objects_in",
              "objects_out", "objects_quarantined")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """validate_file of the bundled sample under CONFIG: clean rows, quarantine, summary."""
    out = tmp_path_factory.mktemp("ref")
    return _validate(SAMPLE, out, CONFIG)


def _validate(path: Path, out: Path, config: CleaningConfig | None = None) -> dict:
    summary = validate_file(path, out, config=config)
    return {"rows": pd.read_parquet(out / "lightcurves.parquet"),
            "quarantine": pd.read_parquet(out / "quarantine.parquet"),
            "summary": summary}


def _by_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by object (stable: the order inside an object is kept as written)."""
    return frame.sort_values("object_id", kind="stable").reset_index(drop=True)


def _chunk_rows(res: IngestResult) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(c) for c in res.chunks], ignore_index=True)


def _check_against(res: IngestResult, ref: dict, chunk_size: int) -> None:
    """Everything ingest promises, checked against the validate_file reference."""
    frames = [pd.read_parquet(c) for c in res.chunks]
    assert len(frames) == len(res.chunk_objects) >= 1
    sizes = [len(o) for o in res.chunk_objects]
    assert all(s == chunk_size for s in sizes[:-1]) and 1 <= sizes[-1] <= chunk_size
    for path, frame, objects in zip(res.chunks, frames, res.chunk_objects, strict=True):
        assert Path(path).parent.name == "chunks"
        # chunk_objects: the objects of the file, in file order
        assert list(pd.unique(frame["object_id"])) == objects == read_chunk_objects(path)
        # objects whole and contiguous, each sorted by band and time (whether the chunk is
        # also sorted by object is checked where it holds, see test_chunk_sorted_by_object)
        rank = frame["object_id"].map({o: i for i, o in enumerate(objects)})
        order = np.lexsort((frame["t"].to_numpy(), frame["band"].to_numpy(), rank.to_numpy()))
        assert frame.equals(frame.iloc[order].reset_index(drop=True))
    every = [o for objs in res.chunk_objects for o in objs]
    assert len(every) == len(set(every)), "an object in two chunks"
    ref_rows = ref["rows"]
    assert set(every) == set(ref_rows["object_id"])
    got = pd.concat(frames, ignore_index=True)
    assert list(got.columns) == ["object_id", "band", "t", "mag", "mag_err"]
    assert _by_object(got).equals(_by_object(ref_rows))
    assert {k: res.counts[k] for k in COUNT_KEYS} == {k: ref["summary"][k] for k in COUNT_KEYS}
    assert res.counts["objects_out"] == len(every)
    # quarantine: validate's rows (unreadable files aside), and ingest.json = the result
    q = pd.read_parquet(res.quarantine)
    q = q[~q["reason"].str.startswith("unreadable_file")]
    key = ["object_id", "band", "reason"]
    assert_frame_equal(q.sort_values(key, ignore_index=True),
                       ref["quarantine"].sort_values(key, ignore_index=True))
    saved = json.loads((Path(res.quarantine).parent / "ingest.json").read_text())
    assert saved == json.loads(json.dumps(res.to_dict()))


@pytest.mark.parametrize("chunk_size,stream_rows", [(100, None), (64, 5000)])
def test_grouped_sample_equals_validate(tmp_path, monkeypatch, reference, chunk_size,
                                        stream_rows):
    if stream_rows is not None:  # many blocks: objects held back across block boundaries
        monkeypatch.setattr(chunks_mod, "_STREAM_ROWS", stream_rows)
    res = ingest(SAMPLE, tmp_path, config=CONFIG, chunk_size=chunk_size)
    _check_against(res, reference, chunk_size)
    assert res.counts["objects_quarantined"]["too_few_points"] > 50  # CONFIG bites
    assert res.counts["rows_dropped"]["exact_duplicate"] > 0
    assert res.counts["rows_merged"]["same_epoch_conflict"] > 0
    assert res.n_files == 1 and res.failed_files == [] and res.bands == ["CSS_V"]
    # the sample is sorted by object: the chunks hold it in that order, no reordering
    assert _chunk_rows(res).equals(reference["rows"])


def test_grouped_unsorted_multiband_streams_blocks(tmp_path, monkeypatch, rng):
    # objects grouped but in descending id order, rows unsorted inside an object
    df = make_frame(rng, n_obj=23, n_min=8, n_max=30, bands=("r", "g"))
    df = pd.concat([g for _, g in df.groupby("object_id", sort=True)][::-1], ignore_index=True)
    df.to_parquet(tmp_path / "in.parquet")
    monkeypatch.setattr(chunks_mod, "_STREAM_ROWS", 100)
    ref = _validate(tmp_path / "in.parquet", tmp_path / "ref")
    res = ingest(tmp_path / "in.parquet", tmp_path / "out", chunk_size=5)
    _check_against(res, ref, 5)
    assert len(res.chunks) == 5 and res.bands == ["g", "r"]


def test_chunk_sorted_by_object_when_input_objects_are_not(tmp_path, monkeypatch, rng):
    df = make_frame(rng, n_obj=12, n_min=8, n_max=30)
    df = pd.concat([g for _, g in df.groupby("object_id", sort=True)][::-1], ignore_index=True)
    df.to_parquet(tmp_path / "in.parquet")
    monkeypatch.setattr(chunks_mod, "_STREAM_ROWS", 100)  # several blocks per chunk
    res = ingest(tmp_path / "in.parquet", tmp_path / "out", chunk_size=5)
    for path in res.chunks:
        frame = pd.read_parquet(path)
        srt = frame.sort_values(["object_id", "band", "t"], kind="stable", ignore_index=True)
        assert frame.equals(srt)


def test_shuffled_rows_fall_back_to_whole_input(tmp_path, sample, reference):
    shuffled = sample.iloc[np.random.default_rng(7).permutation(len(sample))]
    shuffled.to_parquet(tmp_path / "shuffled.parquet", index=False)
    with pytest.raises(NotGroupedError):  # streaming refuses it: the fallback is taken
        list(iter_object_chunks(tmp_path / "shuffled.parquet"))
    res = ingest(tmp_path / "shuffled.parquet", tmp_path / "out", config=CONFIG, chunk_size=100)
    _check_against(res, reference, 100)
    grouped = ingest(SAMPLE, tmp_path / "grouped", config=CONFIG, chunk_size=100)
    assert res.chunk_objects == grouped.chunk_objects
    for a, b in zip(res.chunks, grouped.chunks, strict=True):
        assert pd.read_parquet(a).equals(pd.read_parquet(b))
    assert res.counts == grouped.counts
    assert not list((tmp_path / "out").rglob(".*")), "temporary files left behind"


def _objects_split(sample: pd.DataFrame, folder: Path, n_parts: int = 3) -> None:
    """Files of whole objects (contiguous groups of objects)."""
    folder.mkdir()
    ids = pd.unique(sample["object_id"])
    for i, part in enumerate(np.array_split(ids, n_parts)):
        sample[sample["object_id"].isin(part)].to_parquet(folder / f"part-{i}.parquet")


def _rows_split(sample: pd.DataFrame, folder: Path) -> None:
    """Two files cut in the middle of an object."""
    folder.mkdir()
    k = len(sample) // 2 + 1
    assert sample["object_id"].iat[k - 1] == sample["object_id"].iat[k]
    sample.iloc[:k].to_parquet(folder / "a.parquet")
    sample.iloc[k:].to_parquet(folder / "b.parquet")


@pytest.mark.parametrize("layout", [_objects_split, _rows_split])
@pytest.mark.parametrize("with_bad_file", [False, True])
def test_folder_of_files(tmp_path, sample, reference, layout, with_bad_file):
    folder = tmp_path / "in"
    layout(sample, folder)
    n_good = len(input_files(folder))
    if with_bad_file:
        (folder / "bad.parquet").write_bytes(b"this is not a parquet file\n" * 10)
    res = ingest(folder, tmp_path / "out", config=CONFIG, chunk_size=100)
    _check_against(res, reference, 100)  # the good files' objects are all chunked
    assert res.n_files == n_good + with_bad_file
    q = pd.read_parquet(res.quarantine)
    bad_rows = q[q["reason"].str.startswith("unreadable_file")]
    if not with_bad_file:
        assert res.failed_files == [] and bad_rows.empty
        return
    assert [f["file"] for f in res.failed_files] == [str(folder / "bad.parquet")]
    problem = res.failed_files[0]["problem"]
    assert problem
    assert len(bad_rows) == 1
    row = bad_rows.iloc[0]
    assert row["object_id"] == "*" and row["band"] == "bad.parquet" and row["n_rows"] == 0
    assert row["reason"] == f"unreadable_file: {problem}"


def test_all_files_unreadable(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.parquet", "b.parquet"):
        (folder / name).write_bytes(b"garbage" * 20)
    with pytest.raises(InputError, match="no input file could be read"):
        ingest(folder, tmp_path / "out")


def test_csv_input(tmp_path, rng):
    df = make_frame(rng, n_obj=9, n_min=5, n_max=25)
    df.loc[3, "mag_err"] = -1.0
    df = pd.concat([df, df.iloc[[0, 1]]], ignore_index=True)  # two exact duplicates
    df = df.sort_values("object_id", kind="stable")
    df.to_csv(tmp_path / "lc.csv", index=False)
    ref = _validate(tmp_path / "lc.csv", tmp_path / "ref")
    res = ingest(tmp_path / "lc.csv", tmp_path / "out", chunk_size=4)
    _check_against(res, ref, 4)
    assert res.counts["rows_dropped"]["exact_duplicate"] == 2
    assert res.counts["rows_dropped"]["nonpositive_mag_err"] == 1
    assert res.bands == ["r"]


def test_bands_ordered_by_wavelength(tmp_path, rng):
    df = make_frame(rng, n_obj=4, bands=("r", "i", "g"))
    df.to_parquet(tmp_path / "in.parquet")
    res = ingest(tmp_path / "in.parquet", tmp_path / "out", chunk_size=3)
    assert res.bands == ["g", "r", "i"]  # not the alphabetical g, i, r
    df[df["band"] != "i"].to_parquet(tmp_path / "gr.parquet")
    assert ingest(tmp_path / "gr.parquet", tmp_path / "gr", chunk_size=3).bands == ["g", "r"]


@pytest.mark.parametrize("size", [0, -3])
def test_bad_chunk_size(tmp_path, size):
    with pytest.raises(ConfigError, match="chunk_size"):
        ingest(SAMPLE, tmp_path, chunk_size=size)


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        ingest(tmp_path / "nope.parquet", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet or CSV"):
        ingest(tmp_path / "empty", tmp_path / "out")


def test_concat_parquet_metadata_must_agree(tmp_path):
    def write(name: str, grid: str, cols: dict) -> Path:
        t = pa.table(cols).replace_schema_metadata({"lcpipe.grid": grid, "other": name})
        pq.write_table(t, tmp_path / name)
        return tmp_path / name

    a = write("a.parquet", "G1", {"x": [1, 2], "y": [0.5, 1.5]})
    b = write("b.parquet", "G1", {"x": [3]})  # column y missing: filled with null
    c = write("c.parquet", "G2", {"x": [4], "y": [2.5]})
    out = concat_parquet([a, b], tmp_path / "ab.parquet", metadata_key="lcpipe.grid")
    t = pq.read_table(out)
    assert t.column("x").to_pylist() == [1, 2, 3]
    assert t.column("y").to_pylist() == [0.5, 1.5, None]
    assert t.schema.metadata[b"lcpipe.grid"] == b"G1"
    assert t.schema.metadata[b"other"] == b"a.parquet"  # the first file's metadata
    with pytest.raises(InputError, match="lcpipe.grid") as exc:
        concat_parquet([a, c], tmp_path / "ac.parquet", metadata_key="lcpipe.grid")
    assert exc.value.source == str(c)
    assert not (tmp_path / "ac.parquet").exists()
    with pytest.raises(InputError):
        concat_parquet([], tmp_path / "none.parquet")


def test_merged_chunk_features_equal_whole_file(tmp_path, rng):
    df = make_frame(rng, n_obj=6, n_min=15, n_max=40, bands=("r", "g"))
    # one object without g: its g features are NaN in both ways of computing
    df = df[~((df["object_id"] == "obj004") & (df["band"] == "g"))]
    df.to_parquet(tmp_path / "in.parquet")
    res = ingest(tmp_path / "in.parquet", tmp_path / "ing", chunk_size=3)
    assert len(res.chunks) == 2 and res.bands == ["g", "r"]
    parts = []
    for i, c in enumerate(res.chunks):
        extract_features_file(c, tmp_path / f"f{i}.parquet", bands=res.bands)
        parts.append(tmp_path / f"f{i}.parquet")
    merge_feature_files(parts, tmp_path / "merged.parquet")
    extract_features_file(tmp_path / "in.parquet", tmp_path / "whole.parquet", bands=res.bands)
    merged, mmeta = read_features(tmp_path / "merged.parquet")
    whole, wmeta = read_features(tmp_path / "whole.parquet")
    assert mmeta["feature_columns"] == wmeta["feature_columns"]
    assert list(merged.columns) == list(whole.columns)
    assert merged["g:n_points"].eq(0).sum() == 1
    assert merged.isna().to_numpy().sum() > 0  # the comparison below covers NaN cells
    # NaN-aware, exact
    assert_frame_equal(merged.sort_values("object_id", ignore_index=True),
                       whole.sort_values("object_id", ignore_index=True), check_exact=True)
    for k in ("n_objects", "n_series", "n_values_nan"):
        assert mmeta["summary"][k] == wmeta["summary"][k]
