"""What changed in a growing survey folder (:mod:`pipeline.survey`), without Prefect.

Every expectation is computed independently: file sizes and mtimes from ``os.stat``,
the rows of the selected objects with a plain pandas filter of the source files, and
the per-object hashes are compared across edits of the clean chunks and across
chunkings of the same data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.chunks import ingest
from pipeline.contract import ColumnMap, read_table
from pipeline.errors import InputError
from pipeline.io import write_parquet_atomic
from pipeline.survey import (
    MANIFEST_FORMAT,
    FileEntry,
    Manifest,
    changed_files,
    extract_objects,
    object_hashes,
    objects_in_files,
    read_manifest,
    scan_survey,
    write_manifest,
)
from pipeline.validate import CleaningConfig
from tests.helpers import make_frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def _crts_frame(rng: np.random.Generator, ids: list[int], n_min: int = 12,
                n_max: int = 30) -> pd.DataFrame:
    """CRTS export columns (``ID`` integer, ``MJD``, ``Mag``, ``Magerr``), unsorted."""
    rows = []
    for i in ids:
        n = int(rng.integers(n_min, n_max))
        rows.append(pd.DataFrame({
            "ID": np.int64(i), "MJD": 53500 + rng.uniform(0, 3000, n),
            "Mag": rng.normal(16, 0.5, n), "Magerr": rng.uniform(0.02, 0.2, n)}))
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=1,
                                                    ignore_index=True)


# -- scan_survey / changed_files -----------------------------------------------------------


def test_scan_survey_sizes_mtimes_relative_paths(tmp_path: Path, rng: np.random.Generator):
    sv = tmp_path / "survey"
    frame = make_frame(rng, n_obj=3)
    made = [_write(frame, sv / "night-0.parquet"), _write(frame.head(20), sv / "b" / "n1.csv"),
            _write(frame.head(5), sv / "b" / "c" / "n2.pq")]
    # not light-curve files: hidden, underscore (e.g. a temp file), other suffix
    _write(frame, sv / ".night-9.parquet.abc.tmp")
    _write(frame, sv / "_partial.parquet")
    (sv / "notes.txt").write_text("x")
    os.utime(made[1], ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))

    got = scan_survey(sv)
    expected = [FileEntry(str(p.relative_to(sv)), p.stat().st_size, p.stat().st_mtime_ns)
                for p in made]
    assert sorted(got, key=lambda f: f.path) == sorted(expected, key=lambda f: f.path), got
    entry = next(f for f in got if f.path == os.path.join("b", "n1.csv"))
    assert entry.mtime_ns == 1_600_000_000_123_456_789  # nanoseconds, not rounded
    assert all(not Path(f.path).is_absolute() for f in got)

    # one file: its name relative to its folder
    one = scan_survey(made[0])
    assert one == [FileEntry("night-0.parquet", made[0].stat().st_size,
                             made[0].stat().st_mtime_ns)]
    with pytest.raises(InputError):
        scan_survey(tmp_path / "nowhere")


def test_changed_files_new_modified_removed(tmp_path: Path, rng: np.random.Generator):
    sv = tmp_path / "survey"
    frame = make_frame(rng, n_obj=4)
    for name in ("a.parquet", "b.parquet", "c.parquet", "d.parquet"):
        _write(frame, sv / name)
    before = scan_survey(sv)
    assert changed_files(before, before) == ([], [])

    _write(frame.head(10), sv / "a.parquet")                     # new content, new size
    st = (sv / "b.parquet").stat()
    os.utime(sv / "b.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # mtime only (1 ns)
    (sv / "c.parquet").unlink()                                  # removed
    _write(frame, sv / "sub" / "e.parquet")                      # new
    now = scan_survey(sv)

    changed, removed = changed_files(now, before)
    assert sorted(f.path for f in changed) == ["a.parquet", "b.parquet",
                                               os.path.join("sub", "e.parquet")]
    assert removed == ["c.parquet"]
    # the entries returned are the current ones (what the next manifest records)
    assert all(f in now for f in changed)
    # d.parquet is unchanged: the same entry in both scans
    assert [f for f in now if f.path == "d.parquet"] == [f for f in before
                                                         if f.path == "d.parquet"]
    # nothing before: everything is new, nothing removed
    assert changed_files(now, []) == (now, [])
    assert changed_files([], before) == ([], sorted(f.path for f in before))


# -- objects_in_files / extract_objects ----------------------------------------------------


@pytest.fixture
def crts_survey(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, pd.DataFrame]]:
    """Three CRTS-like files (two Parquet, one CSV) sharing some objects."""
    sv = tmp_path / "crts"
    frames = {
        "n0.parquet": _crts_frame(rng, [101, 102, 103, 104, 105]),
        os.path.join("later", "n1.csv"): _crts_frame(rng, [103, 105, 106]),
        "n2.parquet": _crts_frame(rng, [101, 105, 107, 108]).assign(
            flag=lambda d: np.arange(len(d)) % 3),               # an extra column
    }
    for name, f in frames.items():
        _write(f, sv / name)
    return sv, frames


def test_objects_in_files_preset_id_column_and_integer_ids(crts_survey):
    sv, frames = crts_survey
    cmap = ColumnMap.from_spec("crts")
    files = scan_survey(sv)
    by_path = {f.path: f for f in files}
    assert objects_in_files(sv, files, cmap) == {"101", "102", "103", "104", "105", "106",
                                                 "107", "108"}
    csv = os.path.join("later", "n1.csv")
    assert objects_in_files(sv, [by_path[csv]], cmap) == {"103", "105", "106"}
    assert objects_in_files(sv, [by_path["n2.parquet"]], cmap) == {"101", "105", "107", "108"}
    assert objects_in_files(sv, [], cmap) == set()
    # without the preset the id column is not found: a one-line user error
    with pytest.raises(InputError, match="object_id"):
        objects_in_files(sv, files)


def test_extract_objects_rows_of_the_chosen_objects(crts_survey, tmp_path: Path):
    sv, frames = crts_survey
    cmap = ColumnMap.from_spec("crts")
    files = scan_survey(sv)
    chosen = {"101", "105", "106", "999"}                        # 999 exists nowhere
    out = extract_objects(sv, files, chosen, tmp_path / "x" / "extract.parquet", cmap)
    assert out == tmp_path / "x" / "extract.parquet"
    assert [p.name for p in out.parent.iterdir()] == ["extract.parquet"]  # no temp file left
    got = pq.read_table(out).to_pandas()

    # independent: read every source file with pandas and filter
    src = pd.concat([pd.read_parquet(sv / n) if n.endswith(".parquet") else pd.read_csv(sv / n)
                     for n in frames], ignore_index=True)
    want = src[src["ID"].astype(str).isin(chosen)]
    assert set(got.columns) == {"ID", "MJD", "Mag", "Magerr", "flag"}  # source names kept
    assert len(got) == len(want) > 0
    cols = ["ID", "MJD", "Mag", "Magerr"]
    a = got[cols].sort_values(cols, ignore_index=True)
    b = want[cols].sort_values(cols, ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert pd.api.types.is_integer_dtype(got["ID"])              # ids keep their type
    # the extra column of one file: its values for its rows, null for the others
    assert got["flag"].notna().sum() == want["flag"].notna().sum()
    # grouped by object: each id in one contiguous run
    ids = got["ID"].to_numpy()
    runs = ids[np.r_[True, ids[1:] != ids[:-1]]]
    assert len(runs) == len(set(ids)) == 3, runs
    # the same column map reads it, every row of the chosen objects is there
    canon = read_table(out, cmap)
    assert canon.groupby("object_id", observed=True).size().to_dict() == \
        want.groupby(want["ID"].astype(str)).size().to_dict()

    # only some files: the rows of those files only
    n2 = [f for f in files if f.path == "n2.parquet"]
    part = pq.read_table(extract_objects(sv, n2, {"105"}, tmp_path / "p.parquet", cmap))
    assert part.num_rows == int((frames["n2.parquet"]["ID"] == 105).sum())
    with pytest.raises(InputError, match="none of the objects"):
        extract_objects(sv, files, {"999"}, tmp_path / "none.parquet", cmap)


def test_extract_objects_string_ids_lcpipe_names(tmp_path: Path, rng: np.random.Generator):
    frame = make_frame(rng, n_obj=6, bands=("g", "r"))
    sv = tmp_path / "s"
    _write(frame.iloc[::2], sv / "a.parquet")
    _write(frame.iloc[1::2], sv / "b.parquet")
    files = scan_survey(sv)
    out = extract_objects(sv, files, {"obj001", "obj004"}, tmp_path / "e.parquet")
    got = pd.read_parquet(out)
    want = frame[frame["object_id"].isin({"obj001", "obj004"})]
    key = ["object_id", "band", "t"]
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True)[list(frame.columns)],
                                  want.sort_values(key, ignore_index=True),
                                  check_dtype=False)
    assert got["object_id"].tolist() == sorted(got["object_id"])  # grouped, ascending


# -- object_hashes -------------------------------------------------------------------------


def _chunks(frame: pd.DataFrame, tmp: Path, chunk_size: int, name: str) -> list[str]:
    src = _write(frame, tmp / f"{name}.parquet")
    return ingest(src, tmp / name, config=CleaningConfig(min_points=5),
                  chunk_size=chunk_size).chunks


def test_object_hashes_one_value_changes_one_object(tmp_path: Path,
                                                    rng: np.random.Generator):
    frame = make_frame(rng, n_obj=12, n_min=8, n_max=25, bands=("g", "r"))
    base = object_hashes(_chunks(frame, tmp_path, 5, "base"))
    assert base["object_id"].tolist() == sorted(frame["object_id"].unique())
    assert base["content_hash"].str.fullmatch("sha256:[0-9a-f]{64}").all()
    assert base["content_hash"].is_unique  # different curves, different hashes
    # the same clean light curves cut into other chunks, and from a shuffled input
    for size in (1, 3, 100):
        other = object_hashes(_chunks(frame.sample(frac=1.0, random_state=size), tmp_path,
                                      size, f"size{size}"))
        pd.testing.assert_frame_equal(other, base, obj=f"chunk_size {size}")

    idx = int(np.flatnonzero(frame["object_id"] == "obj007")[3])
    edits = {
        "mag": lambda f: f.assign(mag=f["mag"].where(f.index != idx, f["mag"] + 1e-9)),
        "mag_err": lambda f: f.assign(mag_err=f["mag_err"].where(f.index != idx,
                                                                 f["mag_err"] * 1.5)),
        "t": lambda f: f.assign(t=f["t"].where(f.index != idx, f["t"] + 0.001)),
        "band": lambda f: f.assign(band=f["band"].where(f.index != idx, "i")),
        "extra point": lambda f: pd.concat([f, f.loc[[idx]].assign(t=f.loc[idx, "t"] + 0.5)],
                                           ignore_index=True),
        "point removed": lambda f: f.drop(index=idx),
    }
    for what, edit in edits.items():
        h = object_hashes(_chunks(edit(frame), tmp_path, 5, what.replace(" ", "_")))
        diff = h.merge(base, on="object_id", suffixes=("", "_base"))
        moved = diff.loc[diff["content_hash"] != diff["content_hash_base"], "object_id"]
        assert moved.tolist() == ["obj007"], what
    assert object_hashes([]).empty


def test_object_hashes_of_hand_written_chunks(tmp_path: Path):
    """Chunks as the ingest writes them: whole objects, grouped, sorted."""
    def chunk(rows: list[tuple], name: str) -> str:
        f = pd.DataFrame(rows, columns=["object_id", "band", "t", "mag", "mag_err"])
        return str(_write(f, tmp_path / name))

    a = ("a", "V", 1.0, 15.0, 0.1)
    b1, b2 = ("b", "V", 1.0, 16.0, 0.1), ("b", "V", 2.0, 16.5, 0.1)
    c = ("c", "V", 1.0, 15.0, 0.1)
    one = object_hashes([chunk([a, b1, b2, c], "one.parquet")])
    two = object_hashes([chunk([c], "c.parquet"), chunk([a, b1, b2], "ab.parquet")])
    pd.testing.assert_frame_equal(one, two)            # sorted by object, chunking ignored
    assert one["object_id"].tolist() == ["a", "b", "c"]
    h = dict(zip(one["object_id"], one["content_hash"], strict=True))
    assert h["a"] == h["c"]                            # the id is not part of the content
    assert h["a"] != h["b"]
    empty = object_hashes([chunk([], "empty.parquet"), chunk([a], "a.parquet")])
    assert empty["object_id"].tolist() == ["a"] and empty["content_hash"][0] == h["a"]


# -- manifest ------------------------------------------------------------------------------


def _manifest() -> Manifest:
    objects = pd.DataFrame({
        "object_id": ["a", "b", "q"],
        "content_hash": ["sha256:" + "1" * 64, "sha256:" + "2" * 64, None],
        "status": ["classified", "classified", "quarantined"],
        "run_id": ["reprocess-1", "reprocess-2", "reprocess-2"],
    })
    return Manifest(bundle_hash="sha256:" + "f" * 64,
                    files=[FileEntry("n0.parquet", 123, 1_700_000_000_000_000_001),
                           FileEntry(os.path.join("x", "n1.csv"), 45, 1_700_000_000_999_999_999)],
                    objects=objects, run_id="reprocess-2",
                    extra={"predictions": "/some/predictions.parquet", "n": 3})


def test_manifest_round_trip(tmp_path: Path):
    path = tmp_path / "out" / "manifest.parquet"
    assert read_manifest(path) is None
    m = _manifest()
    assert write_manifest(path, m) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.parquet"]
    back = read_manifest(path)
    assert back is not None
    assert back.bundle_hash == m.bundle_hash and back.run_id == m.run_id
    assert back.files == m.files                 # exact sizes and nanosecond mtimes
    assert back.extra == m.extra
    pd.testing.assert_frame_equal(back.objects[list(m.objects.columns)], m.objects,
                                  check_dtype=False)
    # the quarantined object's hash is a real null, not the string 'None'/'nan'
    q = pq.read_table(path).to_pydict()
    assert q["content_hash"][2] is None and q["content_hash"][0] == "sha256:" + "1" * 64
    meta = json.loads(pq.read_schema(path).metadata[b"lcpipe.manifest"])
    assert meta["format"] == MANIFEST_FORMAT

    # NaN (as pandas gives it after a merge) is stored as null too
    m2 = _manifest()
    m2.objects["content_hash"] = m2.objects["content_hash"].astype(object).where(
        m2.objects["status"] == "classified", np.nan)
    write_manifest(path, m2)
    assert pq.read_table(path).column("content_hash").null_count == 1
    assert read_manifest(path).objects["content_hash"].isna().tolist() == [False, False, True]


def test_manifest_foreign_file_is_an_input_error(tmp_path: Path):
    plain = tmp_path / "plain.parquet"        # a Parquet file without the manifest metadata
    pq.write_table(pa.table({"object_id": ["a"]}), plain)
    with pytest.raises(InputError, match="not a reprocess manifest"):
        read_manifest(plain)
    junk = tmp_path / "junk.parquet"          # not Parquet at all
    junk.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(InputError):
        read_manifest(junk)
    other = tmp_path / "other.parquet"        # another format version
    write_parquet_atomic(pa.table({"object_id": ["a"]}), other,
                         metadata={"lcpipe.manifest": {"format": "lcpipe-reprocess-manifest/99"}})
    with pytest.raises(InputError, match="unknown manifest format"):
        read_manifest(other)
    truncated = tmp_path / "truncated.parquet"  # a manifest cut short (a partial copy)
    write_manifest(tmp_path / "m.parquet", _manifest())
    data = (tmp_path / "m.parquet").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        read_manifest(truncated)


def test_files_of_matches_a_plain_loop():
    """The vectorised lookup of the manifest equals splitting every row in Python."""
    import numpy as np

    from pipeline.survey import FILES_SEP, files_of

    rng = np.random.default_rng(0)
    paths = [f"night-{i}.parquet" for i in range(6)]
    rows = []
    for k in range(300):
        fs = sorted(set(rng.choice(paths, size=int(rng.integers(0, 4)))))
        rows.append((f"o{k}", FILES_SEP.join(fs)))
    objects = pd.DataFrame(rows, columns=["object_id", "files"])
    objects.loc[5, "files"] = None
    changed, ids = {"night-2.parquet", "night-5.parquet"}, {"o1", "o7", "o299", "missing"}
    expected = {}
    for o, fs in rows:
        got = set(fs.split(FILES_SEP)) - {""}
        if o == "o5":
            got = set()
        if got & changed or o in ids:
            expected[o] = got
    assert files_of(objects, changed, ids) == expected
    assert files_of(objects.iloc[:0], changed, ids) == {}
