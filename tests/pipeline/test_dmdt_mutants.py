"""dm-dt tests that pin what mutation testing (issue 17) found unchecked.

Pinned here, each against literal values or an independent computation
(``np.histogram2d`` of all pairs, numpy arithmetic, ``clean_frame``):

* ``DmDtBins`` validation (one edge, one bin, repeated edges, negative dt) and its
  user-facing messages; ``to_dict`` and the JSON round trip of ``get_bins``, its
  default, the ``.json`` / unknown-name distinction, a grid's name read from JSON;
* the dtypes of every normalisation, of ``n_points`` / ``n_pairs``, the
  normalisations of channels with 0, 1 and 2 points, the per-channel maximum;
* ``compute_dmdt``'s copy-free single-band path only where it applies, its metadata,
  the backend it calls;
* ``dmdt_file``: several bands, renamed columns and bands, a cleaning config, blocks
  where every object is quarantined, its summary; the Parquet schema; ``dmdt_table``;
* ``read_dmdt``: empty files, missing columns, unreadable files, messages;
* the pointer kernel (dt grids too fine for the bit table): several series, pairs
  exactly on every dt edge (closed last edge), a first dt bin starting at 0, series
  above the interleaving threshold, dm outside the grid.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import dmdt as dmdt_mod
from pipeline._dmdt_impl import BACKENDS, _dt_table
from pipeline._version import __version__
from pipeline.contract import ColumnMap
from pipeline.dmdt import (
    BINS_PRESETS,
    METADATA_KEY,
    DmDtBins,
    compute_dmdt,
    dmdt_file,
    dmdt_table,
    get_bins,
    read_dmdt,
    scan_bands,
)
from pipeline.errors import ConfigError, InputError
from pipeline.io import write_parquet_atomic
from pipeline.lightcurves import LightCurves
from pipeline.validate import CleaningConfig, clean_frame
from tests.helpers import make_frame

MAHABAL = BINS_PRESETS["mahabal2017"]


def _reference(t, m, dm_edges, dt_edges):
    """Independent: all pairs i < j through np.histogram2d."""
    i, j = np.triu_indices(len(t), k=1)
    h, _, _ = np.histogram2d(m[j] - m[i], t[j] - t[i], bins=[dm_edges, dt_edges])
    return h.astype(np.int64)


def _lcs(series):
    """LightCurves from [(object_id, band, t, m), ...] (already grouped and sorted)."""
    lens = [len(s[2]) for s in series]
    return LightCurves(np.array([s[0] for s in series], object),
                       np.array([s[1] for s in series], object),
                       np.r_[0, np.cumsum(lens)].astype(np.int64),
                       np.concatenate([np.asarray(s[2], float) for s in series]),
                       np.concatenate([np.asarray(s[3], float) for s in series]),
                       np.full(sum(lens), 0.1))


# --- DmDtBins and get_bins -------------------------------------------------------------

def test_bins_need_two_edges_each_and_accept_one_bin():
    with pytest.raises(ConfigError, match=r"^dm edges need at least two values, got \[0\.0\]$"):
        DmDtBins("x", (0.0,), (0.0, 1.0))
    with pytest.raises(ConfigError, match=r"^dt edges need at least two values, got \[1\.0\]$"):
        DmDtBins("x", (0.0, 1.0), (1.0,))
    one = DmDtBins("x", (0.0, 1.0), (0.0, 2.0))
    assert one.shape == (1, 1)


def test_bins_reject_repeated_edges_and_negative_dt():
    with pytest.raises(ConfigError, match=r"^dm edges must be finite and strictly increasing$"):
        DmDtBins("x", (0.0, 1.0, 1.0), (0.0, 1.0))
    with pytest.raises(ConfigError, match=r"^dt edges must be finite and strictly increasing$"):
        DmDtBins("x", (0.0, 1.0), (0.0, 1.0, 1.0))
    with pytest.raises(ConfigError,
                       match=r"^dt edges must start at >= 0 days \(i < j in time order\)$"):
        DmDtBins("x", (0.0, 1.0), (-1.0, 0.0, 1.0))


def test_to_dict_and_json_round_trip(tmp_path):
    scope = BINS_PRESETS["scope"]
    assert scope.to_dict() == {"name": "scope", "dm_edges": list(scope.dm_edges),
                               "dt_edges": list(scope.dt_edges)}
    assert scope.to_dict()["dt_edges"][1] == 0.02759 and scope.to_dict()["dm_edges"][0] == -8
    (tmp_path / "s.json").write_text(json.dumps(scope.to_dict()))
    assert get_bins(tmp_path / "s.json") == scope
    # no name in the JSON: 'custom'
    (tmp_path / "b.json").write_text(json.dumps({"dm_edges": [-1, 0, 1], "dt_edges": [0, 5]}))
    assert get_bins(tmp_path / "b.json") == DmDtBins("custom", (-1.0, 0.0, 1.0), (0.0, 5.0))
    # upper-case suffix of an existing file
    (tmp_path / "B.JSON").write_text(json.dumps({"name": "mine", "dm_edges": [0, 1],
                                                 "dt_edges": [0, 1]}))
    assert get_bins(str(tmp_path / "B.JSON")).name == "mine"


def test_get_bins_default_and_errors(tmp_path):
    assert get_bins() is BINS_PRESETS["mahabal2017"]
    with pytest.raises(ConfigError, match=r"^unknown bins 'nonsense': use one of "
                       r"\['lcpipe_fine', 'mahabal2017', 'scope'\] or a JSON file$"):
        get_bins("nonsense")
    # a missing *.json file is a file that cannot be read, not an unknown preset name
    with pytest.raises(InputError, match=r"missing\.json: cannot read bins JSON: "):
        get_bins(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match=r"broken\.json: cannot read bins JSON: "):
        get_bins(tmp_path / "broken.json")
    for name, obj in (("dm.json", {"dm_edges": [0, 1]}), ("dt.json", {"dt_edges": [0, 1]}),
                      ("list.json", ["dm_edges", "dt_edges"])):
        (tmp_path / name).write_text(json.dumps(obj))
        with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: bins JSON needs "
                           r"'dm_edges' and 'dt_edges' lists$"):
            get_bins(tmp_path / name)
    (tmp_path / "text.json").write_text(json.dumps({"dm_edges": ["a", 1], "dt_edges": [0, 1]}))
    with pytest.raises(InputError,
                       match=r"text\.json: bins JSON edges must be lists of numbers \("):
        get_bins(tmp_path / "text.json")


# --- normalisations ----------------------------------------------------------------------

def _three_channels():
    """Object 'a': band g with 2 points (one pair), r with 1 point, i with 0 (absent);
    object 'b': g with 5 points, r with 4 points, i with 3 points."""
    return _lcs([
        ("a", "g", [0.0, 2.0], [15.0, 15.2]),
        ("a", "r", [1.0], [14.0]),
        ("b", "g", [0.0, 1.0, 2.0, 3.0, 4.0], [15.0, 15.0, 15.0, 15.0, 15.2]),
        ("b", "i", [0.0, 1.0, 2.0], [12.0, 12.3, 12.0]),
        ("b", "r", [0.0, 1.5, 3.0, 20.0], [14.0, 14.0, 14.0, 14.0]),
    ])


def test_normalisations_of_small_and_empty_channels():
    lcs = _three_channels()
    counts = compute_dmdt(lcs, norm="counts", bands=["g", "r", "i"])
    assert counts.images.dtype == np.int32
    assert counts.n_points.dtype == np.int64 and counts.n_pairs.dtype == np.int64
    np.testing.assert_array_equal(counts.n_points, [[2, 1, 0], [5, 4, 3]])
    np.testing.assert_array_equal(counts.n_pairs, [[1, 0, 0], [10, 6, 3]])
    ref = np.zeros(counts.images.shape, np.int64)
    for oid, band, t, m, _ in lcs:
        o, c = ["a", "b"].index(oid), ["g", "r", "i"].index(band)
        ref[o, :, :, c] = _reference(t, m, MAHABAL.dm_edges, MAHABAL.dt_edges)
    np.testing.assert_array_equal(counts.images, ref)
    c = ref.astype(np.float64)

    prob = compute_dmdt(lcs, norm="probability", bands=["g", "r", "i"]).images
    assert prob.dtype == np.float32
    npairs = np.array([[1, 0, 0], [10, 6, 3]], float)[:, None, None, :]
    expected = np.divide(c, npairs, out=np.zeros_like(c), where=npairs > 0)
    np.testing.assert_allclose(prob, expected, rtol=1e-6)
    # the one pair of a/g (dm 0.2, dt 2): probability 1 in one cell; a/r and a/i all 0
    assert prob[0, :, :, 0].max() == 1.0 and prob[0, :, :, 0].sum() == 1.0
    assert not prob[0, :, :, 1:].any()

    mx = compute_dmdt(lcs, norm="max", bands=["g", "r", "i"]).images
    assert mx.dtype == np.float32
    peak = c.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(mx, np.divide(c, peak, out=np.zeros_like(c), where=peak > 0),
                               rtol=1e-6)
    assert mx[0, :, :, 0].sum() == 1.0 and not mx[0, :, :, 1:].any()
    # b/g: 10 pairs, 6 with dm 0; the maximum is per channel, not over bands or objects
    assert mx[1, :, :, 0].max() == 1.0 and sorted(np.unique(mx[1, :, :, 0]))[1] == np.float32(
        c[1, :, :, 0][c[1, :, :, 0] > 0].min() / c[1, :, :, 0].max())

    paper = compute_dmdt(lcs, norm="paper", bands=["g", "r", "i"]).images
    assert paper.dtype == np.uint8
    np.testing.assert_array_equal(paper, np.ceil(np.divide(
        255 * c, npairs, out=np.zeros_like(c), where=npairs > 0)))


def test_unknown_norm_and_method_messages(tmp_path):
    lcs = _three_channels()
    msg = r"^unknown normalisation 'l2': use one of \['paper', 'probability', 'max', 'counts'\]$"
    with pytest.raises(ConfigError, match=msg):
        compute_dmdt(lcs, norm="l2")
    with pytest.raises(ConfigError, match=msg):
        dmdt_mod._normalise(np.zeros((1, 2, 2, 1), np.int64), np.ones((1, 1), np.int64), "l2")
    with pytest.raises(ConfigError, match=msg):
        dmdt_file(tmp_path / "absent.parquet", tmp_path / "o.parquet", norm="l2")
    with pytest.raises(ConfigError, match=r"^unknown dm-dt method 'fast': use 'auto' or one of "
                       r"\['numba', 'numpy', 'light-curve'\]$"):
        compute_dmdt(lcs, method="fast")


def test_method_selects_the_backend(monkeypatch):
    lcs = _three_channels()
    calls = []
    real = BACKENDS["numpy"]

    def spy(*args):
        calls.append("numpy")
        return real(*args)

    monkeypatch.setitem(BACKENDS, "numpy", spy)
    compute_dmdt(lcs, norm="counts", method="numpy")
    assert calls == ["numpy"]
    compute_dmdt(lcs, norm="counts", method="auto")
    assert calls == ["numpy"]


# --- compute_dmdt: channel layout and metadata ----------------------------------------------

def test_one_band_per_object_in_a_two_band_grid():
    # every object has one series, but of different bands: not the single-channel path
    lcs = _lcs([("a", "g", [0.0, 1.0, 3.0], [15.0, 15.4, 14.9]),
                ("b", "r", [0.0, 0.5, 2.0, 9.0], [16.0, 16.1, 15.0, 16.0])])
    img = compute_dmdt(lcs, norm="counts")
    assert img.meta["bands"] == ["g", "r"] and img.images.shape == (2, 22, 24, 2)
    np.testing.assert_array_equal(img.n_points, [[3, 0], [0, 4]])
    for o, (_, _, t, m, _) in enumerate(lcs):
        np.testing.assert_array_equal(img.images[o, :, :, o],
                                      _reference(t, m, MAHABAL.dm_edges, MAHABAL.dt_edges))
        assert not img.images[o, :, :, 1 - o].any()


def test_bands_subset_ignores_other_series():
    lcs = _three_channels()
    img = compute_dmdt(lcs, norm="counts", bands=["r"])
    assert img.images.shape == (2, 22, 24, 1)
    np.testing.assert_array_equal(img.n_points, [[1], [4]])
    assert img.n_points.dtype == np.int64 and img.n_pairs.dtype == np.int64
    t, m = np.array([0.0, 1.5, 3.0, 20.0]), np.full(4, 14.0)
    np.testing.assert_array_equal(img.images[1, :, :, 0],
                                  _reference(t, m, MAHABAL.dm_edges, MAHABAL.dt_edges))
    assert not img.images[0].any()
    # one band, one series per object: the copy-free path, same dtypes
    single = compute_dmdt(_lcs([("a", "r", [0.0, 1.0, 2.0], [1.0, 1.5, 1.0])]), norm="counts")
    assert single.n_points.dtype == np.int64 and single.n_pairs.dtype == np.int64
    np.testing.assert_array_equal(single.n_pairs, [[3]])


def test_metadata():
    img = compute_dmdt(_three_channels(), "scope", norm="paper", bands=["g", "r"])
    scope = BINS_PRESETS["scope"]
    assert img.meta == {
        "bins": "scope",
        "dm_edges": list(scope.dm_edges),
        "dt_edges": list(scope.dt_edges),
        "norm": "paper",
        "bands": ["g", "r"],
        "shape": [26, 26, 2],
        "dtype": "uint8",
        "edge_convention": "numpy.histogram2d: [a, b) except the last bin [a, b]",
        "version": __version__,
    }
    assert compute_dmdt(_three_channels(), norm="max").meta["dtype"] == "float32"


# --- files --------------------------------------------------------------------------------

def _two_band_frame(rng, n_obj=6):
    df = make_frame(rng, n_obj=n_obj, n_min=12, n_max=30, bands=("g", "r"))
    return df.sort_values(["object_id", "band", "t"], kind="stable", ignore_index=True)


def _expected(df, norm, bands, config=None):
    """Independent of dmdt_file: clean the whole frame at once, then compute_dmdt."""
    res = clean_frame(df, config)
    return compute_dmdt(LightCurves.from_frame(res.frame), norm=norm, bands=bands), res.counts


def test_dmdt_file_two_bands_summary_and_schema(tmp_path, rng):
    df = _two_band_frame(rng)
    # last object: r band only, in its own block (the block has no g series)
    last = df["object_id"] == df["object_id"].max()
    df = df[~(last & (df["band"] == "g"))].reset_index(drop=True)
    df.to_parquet(tmp_path / "lc.parquet", row_group_size=40)
    summary = dmdt_file(tmp_path / "lc.parquet", tmp_path / "o.parquet", norm="paper",
                        chunk_rows=40)
    exp, counts = _expected(df, "paper", ["g", "r"])
    got = read_dmdt(tmp_path / "o.parquet")
    assert got.images.dtype == np.uint8 and got.images.shape == (6, 22, 24, 2)
    np.testing.assert_array_equal(got.images, exp.images)
    np.testing.assert_array_equal(got.object_id, exp.object_id)
    np.testing.assert_array_equal(got.n_points, exp.n_points)
    np.testing.assert_array_equal(got.n_pairs, exp.n_pairs)
    assert got.n_pairs.dtype == np.int64
    assert summary == {
        "output": str(tmp_path / "o.parquet"),
        "objects": 6,
        "pairs": int(exp.n_pairs.sum()),
        "bins": "mahabal2017",
        "shape": [22, 24, 2],
        "norm": "paper",
        "bands": ["g", "r"],
        "cleaning": counts.to_dict(),
    }
    assert summary["cleaning"]["rows_in"] == len(df)
    schema = pq.read_schema(tmp_path / "o.parquet")
    assert schema.field("image").type == pa.list_(pa.uint8(), 22 * 24 * 2)
    assert schema.field("n_points_band").type == pa.list_(pa.int64(), 2)
    # explicit bands: only those channels
    dmdt_file(tmp_path / "lc.parquet", tmp_path / "r.parquet", norm="counts", bands=["r"])
    r = read_dmdt(tmp_path / "r.parquet")
    assert r.meta["bands"] == ["r"] and r.images.dtype == np.int32
    np.testing.assert_array_equal(r.images[..., 0],
                                  _expected(df, "counts", ["g", "r"])[0].images[..., 1])
    assert pq.read_schema(tmp_path / "r.parquet").field("image").type == pa.list_(
        pa.int32(), 22 * 24)


def test_dmdt_file_renamed_columns_bands_and_cleaning_config(tmp_path, rng):
    df = _two_band_frame(rng, n_obj=5)  # 24 to 58 rows per object
    short = df["object_id"].isin(["obj000", "obj003"])
    df = pd.concat([df[~short], df[short].groupby("object_id").head(15)]).sort_values(
        ["object_id", "band", "t"], ignore_index=True)
    raw = df.rename(columns={"t": "mjd"}).assign(band=df["band"].map({"g": 1, "r": 2}))
    raw.to_parquet(tmp_path / "raw.parquet")
    cmap = ColumnMap(names={"t": ("mjd",)}, band_values={1: "g", 2: "r"})
    assert scan_bands(tmp_path / "raw.parquet", cmap) == ["g", "r"]
    config = CleaningConfig(min_points=20)  # quarantines obj000 and obj003
    summary = dmdt_file(tmp_path / "raw.parquet", tmp_path / "o.parquet", norm="counts",
                        cmap=cmap, config=config)
    exp, counts = _expected(df, "counts", ["g", "r"], config)
    assert summary["objects"] == len(exp) == 3
    assert summary["cleaning"] == counts.to_dict()
    assert sum(summary["cleaning"]["objects_quarantined"].values()) == 2
    got = read_dmdt(tmp_path / "o.parquet")
    np.testing.assert_array_equal(got.images, exp.images)
    np.testing.assert_array_equal(got.object_id, exp.object_id)


def test_scan_bands_errors_name_the_file(tmp_path, rng):
    make_frame(rng).drop(columns="mag").to_parquet(tmp_path / "nomag.parquet")
    with pytest.raises(InputError, match=r"nomag\.parquet: missing column for 'mag'"):
        scan_bands(tmp_path / "nomag.parquet", ColumnMap())
    make_frame(rng).drop(columns="band").to_parquet(tmp_path / "noband.parquet")
    assert scan_bands(tmp_path / "noband.parquet", ColumnMap()) == [dmdt_mod.DEFAULT_BAND]


def test_blocks_with_every_object_quarantined_are_skipped(tmp_path, rng):
    good = make_frame(rng, n_obj=4, n_min=15, n_max=20)
    bad = make_frame(rng, n_obj=4, n_min=3, n_max=5)  # fewer than 10 points: quarantined
    bad["object_id"] = "a" + bad["object_id"]  # sorted first
    df = pd.concat([bad, good]).sort_values(["object_id", "t"], ignore_index=True)
    df.to_parquet(tmp_path / "lc.parquet", row_group_size=10)
    summary = dmdt_file(tmp_path / "lc.parquet", tmp_path / "o.parquet", chunk_rows=10)
    assert summary["objects"] == 4
    assert sum(summary["cleaning"]["objects_quarantined"].values()) == 4
    got = read_dmdt(tmp_path / "o.parquet")
    assert sorted(got.object_id) == sorted(good["object_id"].unique())
    # nothing left at all: one InputError naming the file, no output
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: no light curve left after cleaning "
                       r"\(quarantined objects: \{.*: 4\}\)$"):
        dmdt_file(tmp_path / "bad.parquet", tmp_path / "b.parquet")
    assert not (tmp_path / "b.parquet").exists()


def test_dmdt_table_round_trip_and_empty_files(tmp_path):
    img = compute_dmdt(_three_channels(), norm="probability", bands=["g", "r", "i"])
    table = dmdt_table(img)
    assert table.schema.field("image").type == pa.list_(pa.float32(), 22 * 24 * 3)
    assert table.column("n_pairs").to_pylist() == [1, 19]
    assert table.column("missing_bands").to_pylist() == [["i"], []]
    write_parquet_atomic(table, tmp_path / "t.parquet", metadata={METADATA_KEY: img.meta})
    back = read_dmdt(tmp_path / "t.parquet")
    np.testing.assert_array_equal(back.images, img.images)
    assert back.images.dtype == np.float32
    np.testing.assert_array_equal(back.n_points, img.n_points)
    np.testing.assert_array_equal(back.n_pairs, img.n_pairs)
    assert back.meta == img.meta
    # no object at all (a table of 0 rows; dmdt_table itself cannot build one: the
    # reshape(0, -1) of _to_table fails): shapes (0, ...) with the metadata's band count
    write_parquet_atomic(table.slice(0, 0), tmp_path / "e.parquet",
                         metadata={METADATA_KEY: {**img.meta, "norm": "paper"}})
    e = read_dmdt(tmp_path / "e.parquet")
    assert e.images.shape == (0, 22, 24, 3) and e.images.dtype == np.uint8
    assert e.n_points.shape == (0, 3) and e.n_points.dtype == np.int64
    assert e.n_pairs.shape == (0, 3) and len(e) == 0


def test_read_dmdt_errors_name_the_file(tmp_path, rng):
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"x\.parquet: cannot read dm-dt Parquet: "):
        read_dmdt(tmp_path / "x.parquet")
    make_frame(rng).to_parquet(tmp_path / "lc.parquet")
    with pytest.raises(InputError, match=r"lc\.parquet: no 'lcpipe\.dmdt' metadata: not "
                       r"written by `lcpipe dmdt`$"):
        read_dmdt(tmp_path / "lc.parquet")
    img = compute_dmdt(_three_channels(), norm="probability")
    table = dmdt_table(img)
    md = {METADATA_KEY: img.meta}
    write_parquet_atomic(table.drop_columns(["n_points_band", "image"]),
                         tmp_path / "cols.parquet", metadata=md)
    with pytest.raises(InputError, match=r"cols\.parquet: dm-dt table lacks column\(s\) "
                       r"image, n_points_band$"):
        read_dmdt(tmp_path / "cols.parquet")
    flat = np.asarray(table.column("image").to_pylist(), np.float32)
    flat[1, 3] = np.inf
    write_parquet_atomic(table.set_column(5, "image", pa.FixedSizeListArray.from_arrays(
        pa.array(flat.ravel(), pa.float32()), flat.shape[1])), tmp_path / "inf.parquet",
        metadata=md)
    with pytest.raises(InputError, match=r"inf\.parquet: images hold NaN or infinite values$"):
        read_dmdt(tmp_path / "inf.parquet")
    for name, col, typ in (
            ("str.parquet", pa.array(["x", "y"], pa.string()), "string"),
            ("strlist.parquet", pa.array([["x"], ["y"]], pa.list_(pa.string())),
             "list<element: string>")):
        write_parquet_atomic(table.set_column(5, "image", col), tmp_path / name, metadata=md)
        with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: column 'image' has "
                           rf"type {typ}, not a list of pixel values$"):
            read_dmdt(tmp_path / name)
    dup = table.set_column(0, "object_id", pa.array(["b", "b"], pa.string()))
    write_parquet_atomic(dup, tmp_path / "dup.parquet", metadata=md)
    with pytest.raises(InputError, match=r"dup\.parquet: object b: object listed twice "
                       r"\(or without id\) in the dm-dt table$"):
        read_dmdt(tmp_path / "dup.parquet")


# --- pointer kernel (dt grids finer than the bit table) -------------------------------------

# first bin [0, 1) holds the many close pairs; 100 + 2**-10 and 100 + 2**-9 are 1e-5 apart
# relative (finer than the 1/1024-octave table): the pointer kernel; all edges exactly
# representable, times on a 2**-10 grid, so many dt are exactly on an edge (400: closed)
PTR_DT = (0.0, 1.0, 100.0, 100.0 + 2.0**-10, 100.0 + 2.0**-9, 150.0, 400.0)
PTR_DM = tuple(np.linspace(-2, 2, 9))


def _ptr_series(rng, n, start=0.0):
    base = np.r_[0.0, 0.25, 1.0, 100.0, 100.0 + 2.0**-10, 100.0 + 2.0**-9, 150.0, 250.0, 400.0]
    rest = np.round(rng.uniform(0, 420, n - len(base)) * 1024) / 1024
    t = np.unique(np.r_[base, rest]) + start
    while len(t) < n:
        t = np.unique(np.r_[t, np.round(rng.uniform(0, 420) * 1024) / 1024 + start])
    m = np.round(rng.normal(0, 1.2, len(t)), 1)  # some |dm| > 2: outside the grid
    m[-2:] = [0.0, 0.5]  # the last pair (150 days apart) is inside the grid
    t[-1] = t[-2] + 150.0
    return t, m


def test_pointer_kernel_several_series_exact_edges(rng):
    assert _dt_table(PTR_DT, 10) is None
    grid = DmDtBins("ptr", PTR_DM, PTR_DT)
    # 201 and 250 points: >= 20 000 pairs (interleaved sub-histograms); 12 and 200 below
    sizes = [200, 12, 201, 250, 40]
    series = []
    for k, n in enumerate(sizes):
        t, m = _ptr_series(rng, n, start=float(k))
        series.append((f"o{k}", "r", t, m))
    lcs = _lcs(series)
    assert [len(s[2]) for s in series] == sizes
    got = compute_dmdt(lcs, grid, norm="counts").images[..., 0]
    for k, (_, _, t, m) in enumerate(series):
        ref = _reference(t, m, PTR_DM, PTR_DT)
        np.testing.assert_array_equal(got[k], ref)
        assert ref[:, 0].sum() > 0 and ref[:, -1].sum() > 0
    # hand-checked pairs exactly on edges: dt = 1 -> [1, 100); dt = 100 -> [100, 100+2**-10);
    # dt = 400 -> closed last bin [150, 400]; dt = 0.25 -> [0, 1)
    t = np.array([0.0, 0.25, 1.0, 100.0, 400.0])
    m = np.zeros(5)
    one = compute_dmdt(_lcs([("x", "r", t, m)]), grid, norm="counts").images[0, :, :, 0]
    assert one[4].tolist() == [2, 3, 1, 0, 0, 4]
    assert one.sum() == 10


@pytest.mark.parametrize("method", sorted(BACKENDS))
def test_backends_return_int64_counts(method):
    """Every backend returns raw int64 counts of shape (n_series, n_dm, n_dt) (module doc)."""
    lcs = _three_channels()
    out = BACKENDS[method](lcs, np.asarray(MAHABAL.dm_edges), np.asarray(MAHABAL.dt_edges))
    assert out.dtype == np.int64 and out.shape == (5, 22, 24)
    for k, (_, _, t, m, _) in enumerate(lcs):
        np.testing.assert_array_equal(out[k], _reference(t, m, MAHABAL.dm_edges,
                                                         MAHABAL.dt_edges))


def test_dmdt_table_of_no_objects_has_the_schema_and_no_rows():
    """Images of zero objects give a zero-row table of the same schema (it used to fail in
    a reshape of 0 rows)."""
    from pipeline.dmdt import DmDtImages, compute_dmdt, dmdt_table
    from pipeline.lightcurves import LightCurves

    lcs = LightCurves(object_id=np.array(["a"]), band=np.array(["V"]),
                      offsets=np.array([0, 12]), t=np.arange(12.0) * 3,
                      mag=np.linspace(15, 16, 12), mag_err=np.full(12, 0.1))
    img = compute_dmdt(lcs)
    empty = DmDtImages(object_id=img.object_id[:0], images=img.images[:0],
                       n_points=img.n_points[:0], n_pairs=img.n_pairs[:0], meta=img.meta)
    full, none = dmdt_table(img), dmdt_table(empty)
    assert none.num_rows == 0 and none.schema == full.schema


def test_sub_histogram_mask_threshold():
    """The pointer kernel interleaves 4 sub-histograms (mask 3) from 20 000 pairs on:
    200 points make 19 900 pairs (one histogram), 201 make 20 100. Speed only (the sums
    are checked above for series on both sides); pinned so that the switch is where its
    comment says."""
    from pipeline._dmdt_impl import _SUB, _SUB_MIN_PAIRS, _sub_mask

    assert (_SUB, _SUB_MIN_PAIRS) == (4, 20_000)
    assert [_sub_mask(n) for n in (0, 1, 2, 200, 201, 250, 10_000)] == [0, 0, 0, 0, 3, 3, 3]


def test_bit_table_kernel_with_a_dt_grid_starting_above_zero(rng):
    """The table kernel skips, per point, the pairs closer in time than the first dt edge
    (``jlo``): a grid starting at 0.5 d, times on a 0.25 d lattice so that many pairs lie
    exactly on that edge (kept: bins are [lo, hi)) and just below it (dropped)."""
    dm = np.array([-1.5, -0.5, -0.1, 0.0, 0.1, 0.5, 1.5])
    dt = np.array([0.5, 0.75, 2.0, 10.0, 60.0])
    assert _dt_table(tuple(dt), len(dm) + 1) is not None  # the table kernel, not pointers
    series = []
    for k, n in enumerate([3, 40, 160, 25]):
        t = np.unique(rng.integers(0, 240, n)) * 0.25 + 1000.0 * k
        m = np.round(rng.normal(0, 0.6, len(t)), 1)
        series.append((f"o{k}", "r", t, m))
    got = compute_dmdt(_lcs(series), DmDtBins("lo", dm, dt), norm="counts",
                       method="numba").images[..., 0]
    for k, (_, _, t, m) in enumerate(series):
        np.testing.assert_array_equal(got[k], _reference(t, m, dm, dt))
    assert got[:, :, 0].sum() > 40  # pairs exactly on the first edge (dt = 0.5) are counted


def test_paper_norm_skips_empty_channels_only():
    """ceil(255 count / pairs) per series and channel; a channel without pairs stays 0 and
    the channels and series after it are still normalised."""
    from pipeline._dmdt_impl import paper_norm

    counts = np.zeros((2, 2, 3, 2), np.int64)
    counts[0, :, :, 1] = [[1, 2, 0], [3, 0, 4]]  # 10 pairs
    counts[1, :, :, 0] = [[0, 0, 7], [0, 0, 0]]  # 7 pairs
    counts[1, :, :, 1] = [[1, 1, 1], [0, 0, 0]]  # 3 pairs
    n_pairs = np.array([[0, 10], [7, 3]], np.int64)
    out = paper_norm(counts, n_pairs)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, :, 0], 0)
    np.testing.assert_array_equal(out[0, :, :, 1], [[26, 51, 0], [77, 0, 102]])
    np.testing.assert_array_equal(out[1, :, :, 0], [[0, 0, 255], [0, 0, 0]])
    np.testing.assert_array_equal(out[1, :, :, 1], [[85, 85, 85], [0, 0, 0]])


def test_pointer_lookup_table_size_limit():
    """The pointer kernel's dm table has cells half the narrowest bin wide, at most
    2**22 of them: exactly 2**22 is allowed, 2**23 is an error naming the count."""
    from pipeline._dmdt_impl import _lookup

    ext, lut, lo, inv_w = _lookup(np.array([0.0, 2.0**-21, 1.0]))
    assert len(lut) == 2**22 + 2 and lo == 0.0 and inv_w == 2.0**22
    assert list(lut[:3]) == [0, 1, 1] and lut[-1] == len(ext) - 2
    with pytest.raises(ConfigError) as info:
        _lookup(np.array([0.0, 2.0**-22, 1.0]))
    assert str(info.value) == ("dm edges too unevenly spaced for the lookup table "
                               "(8388608 cells); use method='numpy'")


def test_available_backends_names_every_backend():
    from pipeline._dmdt_impl import available_backends

    assert available_backends() == ["numba", "numpy", "light-curve"]


@pytest.mark.parametrize("far", [None, 200.0])
def test_table_kernel_pairs_exactly_on_edges_inside_cells(far):
    """Edges that are not dyadic fractions lie inside the kernel's table cells, where
    one exact comparison decides the bin; pairs whose dt or dm equal such an edge exactly
    (times and magnitudes measured from a first point at 0) go to the bin above, as in
    np.histogram2d. With a point 200 mag away the kernel clips dm (its other loop)."""
    dm = np.array([-0.7, -0.3, 0.1, 0.3, 0.7, 1.1])
    dt = np.array([0.0, 0.3, 0.7, 1.1, 2.9, 30.0])
    assert _dt_table(tuple(dt), len(dm) + 1) is not None
    t = np.array([0.0, 0.3, 0.7, 1.1, 2.9, 5.0, 12.25, 29.0])
    m = np.array([0.0, 0.3, 0.7, -0.3, 1.1, 0.1, -0.7, 0.3])
    if far is not None:
        t, m = np.append(t, 29.5), np.append(m, far)
    got = compute_dmdt(_lcs([("x", "r", t, m)]), DmDtBins("in", dm, dt), norm="counts",
                       method="numba").images[0, :, :, 0]
    ref = _reference(t, m, dm, dt)
    np.testing.assert_array_equal(got, ref)
    # the pairs with the first point, by hand: bins [lo, hi), the last one closed
    first = np.zeros_like(ref)
    for tj, mj in zip(t[1:], m[1:], strict=True):
        k = min(np.searchsorted(dt, tj, side="right") - 1, len(dt) - 2) if tj <= dt[-1] else -1
        b = min(np.searchsorted(dm, mj, side="right") - 1, len(dm) - 2) if mj <= dm[-1] else -1
        if 0 <= k < len(dt) - 1 and 0 <= b < len(dm) - 1:
            first[b, k] += 1
    rest = _reference(t[1:], m[1:], dm, dt)
    np.testing.assert_array_equal(got - rest, first)
    # on inner edges: (dt, dm) = (0.3, 0.3), (0.7, 0.7); on the closed last dm edge: (2.9, 1.1)
    assert first[3, 1] == 1 and first[4, 2] == 1 and first[4, 4] == 1


def test_kernel_with_magnitudes_far_beyond_the_grid():
    """A series spanning more than the grid's dm range + 64 mag takes the clipped table;
    its pairs are still counted exactly (those beyond the grid dropped)."""
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 400, 60))
    m = np.round(rng.normal(15, 0.8, 60), 2)
    m[[5, 17, 40]] = [99.0, -40.0, 160.0]
    for grid in (MAHABAL, DmDtBins("ptr", PTR_DM, PTR_DT)):
        got = compute_dmdt(_lcs([("x", "r", t, m)]), grid, norm="counts",
                           method="numba").images[0, :, :, 0]
        np.testing.assert_array_equal(got, _reference(t, m, grid.dm_edges, grid.dt_edges))


def _raw_lcs(oids, offsets, t, m):
    t, m = np.asarray(t, float), np.asarray(m, float)
    return LightCurves(np.array(oids, object), np.array(["r"] * len(oids), object),
                       np.asarray(offsets, np.int64), t, m, np.full(len(t), 0.1))


def test_unclean_input_to_the_kernel_names_the_object():
    """The compiled counts check their input: non-finite values and times that decrease
    within a series are errors naming the series' object; a series starting before the
    previous one ends, repeated times and rows outside the series (arrays shared with
    other batches) are fine."""
    from pipeline._dmdt_impl import counts_numba

    dm, dt = np.asarray(MAHABAL.dm_edges), np.asarray(MAHABAL.dt_edges)
    # rows 0-1 and 8 lie outside the batch: NaN and a time going back are not its business
    t = [np.nan, 9.0, 5.0, 6.0, 7.5, 1.0, 1.0, 3.0, 0.5]
    m = [np.nan, 1.0, 15.0, 15.2, 14.9, 16.0, 16.3, 16.1, np.inf]
    lcs = _raw_lcs(["a", "b"], [2, 5, 8], t, m)
    got = counts_numba(lcs, dm, dt)
    np.testing.assert_array_equal(got[0], _reference(np.array(t[2:5]), np.array(m[2:5]), dm, dt))
    np.testing.assert_array_equal(got[1], _reference(np.array(t[5:8]), np.array(m[5:8]), dm, dt))

    cases = [
        (["a", "b", "c"], [0, 2, 4, 6], [1, 2, 1, np.nan, 3, 4], "b",
         "non-finite t or mag (input not clean: use clean=True or `lcpipe validate`)"),
        (["a", "b", "c"], [0, 2, 4, 6], [1, 2, 1, 2, 3, 4], None, None),
        (["a", "b", "c"], [0, 2, 4, 6], [1, 2, 1, 2, 3, 2.5], "c",
         "times decrease within a series (input not sorted: use clean=True or "
         "`lcpipe validate`)"),
        (["a", "b", "c"], [0, 3, 5, 6], [1, 2, 1.5, 1, 2, 3], "a",
         "times decrease within a series (input not sorted: use clean=True or "
         "`lcpipe validate`)"),
        (["a", "b"], [1, 3, 5], [7, 1, 2, 1, 2], None, None),  # row 0 outside
        (["a", "b"], [1, 3, 5], [7, 1, 2, 2, 1], "b",
         "times decrease within a series (input not sorted: use clean=True or "
         "`lcpipe validate`)"),
        (["a", "b"], [1, 3, 5], [7, 1, np.inf, 1, 2], "a",
         "non-finite t or mag (input not clean: use clean=True or `lcpipe validate`)"),
        (["a", "b", "c"], [0, 2, 4, 6], [1, 2, np.nan, 1, 3, 4], "b",  # b's first row
         "non-finite t or mag (input not clean: use clean=True or `lcpipe validate`)"),
        (["a", "b"], [0, 1, 3], [5, 1, 2], None, None),  # one-point series, then earlier
        (["a", "b"], [0, 2, 2], [1, 2], None, None),  # an empty last series
        (["a", "b"], [0, 0, 3], [1, 3, 2], "b",  # an empty first series
         "times decrease within a series (input not sorted: use clean=True or "
         "`lcpipe validate`)"),
    ]
    for oids, offsets, t, who, problem in cases:
        lcs = _raw_lcs(oids, offsets, t, np.ones(len(t)))
        if who is None:
            counts_numba(lcs, dm, dt)
            continue
        with pytest.raises(InputError) as info:
            counts_numba(lcs, dm, dt)
        assert str(info.value) == f"<light curves>: object {who}: {problem}", (t, offsets)
