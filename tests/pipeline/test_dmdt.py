"""dm-dt images: exact against np.histogram2d and light-curve's DmDt; norms; I/O."""

from __future__ import annotations

import json

import light_curve
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline._dmdt_impl import available_backends
from pipeline.contract import ColumnMap
from pipeline.dmdt import (
    BINS_PRESETS,
    DmDtBins,
    compute_dmdt,
    dmdt_file,
    get_bins,
    read_dmdt,
)
from pipeline.errors import ConfigError, InputError
from pipeline.lightcurves import LightCurves, read_lightcurves
from tests.helpers import make_frame


def _lcs(rng, n_obj=8, **kw):
    df = make_frame(rng, n_obj=n_obj, **kw)
    df = df.sort_values(["object_id", "band", "t"], ignore_index=True)
    return LightCurves.from_frame(df)


def _reference_counts(t, m, dm_edges, dt_edges):
    """Independent: all pairs i<j through np.histogram2d."""
    i, j = np.triu_indices(len(t), k=1)
    h, _, _ = np.histogram2d(m[j] - m[i], t[j] - t[i], bins=[dm_edges, dt_edges])
    return h


CUSTOM = DmDtBins("custom", dm_edges=tuple(np.linspace(-2, 2, 41)),
                  dt_edges=tuple(np.r_[0, np.logspace(-2, 3.5, 30)]))


@pytest.mark.parametrize("method", available_backends())
@pytest.mark.parametrize("bins", ["mahabal2017", "scope", CUSTOM])
def test_counts_match_histogram2d(rng, method, bins):
    lcs = _lcs(rng)
    grid = get_bins(bins)
    img = compute_dmdt(lcs, grid, norm="counts", method=method)
    for k, (_, _, t, m, _) in enumerate(lcs):
        ref = _reference_counts(t, m, grid.dm_edges, grid.dt_edges)
        np.testing.assert_array_equal(img.images[k, :, :, 0], ref)


def test_values_exactly_on_edges():
    # dt and dm values that are exactly representable and sit on edges
    t = np.array([0.0, 1.5, 3.0, 4000.0, 4000.0 + 1.5])
    m = np.array([0.0, 0.5, 8.0, -0.5, 0.0])
    lcs = LightCurves(np.array(["x"], object), np.array(["r"], object),
                      np.array([0, 5]), t, m, np.full(5, 0.1))
    grid = BINS_PRESETS["mahabal2017"]
    img = compute_dmdt(lcs, grid, norm="counts").images[0, :, :, 0]
    np.testing.assert_array_equal(img, _reference_counts(t, m, grid.dm_edges, grid.dt_edges))
    dm_e, dt_e = np.array(grid.dm_edges), np.array(grid.dt_edges)

    def at(dm, dt):  # left-closed lookup: the bin whose left edge is <= value
        return img[np.searchsorted(dm_e, dm, side="right") - 1,
                   np.searchsorted(dt_e, dt, side="right") - 1]

    # pairs (0,1) and (3,4): dt = 1.5 and dm = 0.5 sit on left edges -> that bin
    assert at(0.5, 1.5) == 2
    # pair (0,2): dm = 8 is the last dm edge -> closed last dm bin (dt 3.0 in [2.5, 3.5))
    assert img[-1, np.searchsorted(dt_e, 3.0, side="right") - 1] == 1
    # pairs (0,3) and (1,4): dt = 4000 is the last dt edge -> closed last dt bin
    assert img[np.searchsorted(dm_e, -0.5, side="right") - 1, -1] == 2
    # pair (2,4): dm = -8 is the first dm edge -> first dm bin
    assert img[0, :].sum() == 1
    # pairs (0,4) dt = 4001.5 and (2,3) dm = -8.5 fall outside: 8 of 10 binned
    assert img.sum() == 8


@pytest.fixture(scope="module")
def crts_lcs(crts_dir):
    return read_lightcurves(crts_dir / "lightcurves.parquet")


def test_all_backends_identical_on_real_crts(crts_lcs):
    lcs = crts_lcs
    sub = LightCurves(lcs.object_id[:150], lcs.band[:150], lcs.offsets[:151], lcs.t, lcs.mag,
                      lcs.mag_err)
    imgs = {m: compute_dmdt(sub, norm="counts", method=m).images for m in available_backends()}
    for m in imgs:
        np.testing.assert_array_equal(imgs[m], imgs["numpy"])


@pytest.mark.slow
def test_numba_matches_light_curve_on_all_crts(crts_lcs):
    lcs = crts_lcs
    grid = BINS_PRESETS["mahabal2017"]
    ours = compute_dmdt(lcs, grid, norm="counts").images[..., 0]
    dmdt = light_curve.DmDt(dt=np.array(grid.dt_edges), dm=np.array(grid.dm_edges),
                            dt_type="asis", dm_type="asis")
    theirs = np.stack([dmdt.points(t, m, sorted=True).T for _, _, t, m, _ in lcs])
    np.testing.assert_array_equal(ours, theirs)


def test_normalisations(rng):
    lcs = _lcs(rng)
    counts = compute_dmdt(lcs, norm="counts")
    npairs = counts.n_pairs[:, None, None, :]
    c = counts.images.astype(np.float64)
    paper = compute_dmdt(lcs, norm="paper").images
    assert paper.dtype == np.uint8
    np.testing.assert_array_equal(paper, np.ceil(255 * c / npairs))
    prob = compute_dmdt(lcs, norm="probability").images
    assert prob.dtype == np.float32
    np.testing.assert_allclose(prob, c / npairs, rtol=1e-6)
    mx = compute_dmdt(lcs, norm="max").images
    np.testing.assert_allclose(mx.max(axis=(1, 2)), 1.0)
    with pytest.raises(ConfigError):
        compute_dmdt(lcs, norm="l2")


def test_pairs_outside_grid_still_count_in_npairs():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    m = np.array([15.0, 15.0, 30.0, 15.0])  # dm of 15 mag: outside the +-8 grid
    lcs = LightCurves(np.array(["x"], object), np.array(["r"], object), np.array([0, 4]),
                      t, m, np.full(4, 0.1))
    img = compute_dmdt(lcs, norm="probability")
    assert img.n_pairs[0, 0] == 6
    assert img.images.sum() == pytest.approx(3 / 6)


def test_multiband_channels_and_missing_band(rng):
    df = make_frame(rng, n_obj=4, bands=("g", "r"))
    df = df[~((df["object_id"] == "obj002") & (df["band"] == "g"))]
    df = df.sort_values(["object_id", "band", "t"], ignore_index=True)
    lcs = LightCurves.from_frame(df)
    img = compute_dmdt(lcs, norm="counts")
    assert img.meta["bands"] == ["g", "r"]
    assert img.images.shape == (4, 22, 24, 2)
    k = list(img.object_id).index("obj002")
    assert img.images[k, :, :, 0].sum() == 0 and img.missing_bands[k].tolist() == [True, False]
    seen = set()
    for oid, band, t, m, _ in lcs:
        ch = img.meta["bands"].index(band)
        o = list(img.object_id).index(oid)
        grid = BINS_PRESETS["mahabal2017"]
        np.testing.assert_array_equal(img.images[o, :, :, ch],
                                      _reference_counts(t, m, grid.dm_edges, grid.dt_edges))
        assert int(img.n_pairs[o, ch]) == len(t) * (len(t) - 1) // 2
        seen.add((oid, band))
    assert len(seen) == 7  # 4 objects x 2 bands, less obj002's g: every channel checked


def test_file_roundtrip_chunking_and_threads(tmp_path, rng):
    df = make_frame(rng, n_obj=25).sort_values("object_id", kind="stable")
    df.to_parquet(tmp_path / "lc.parquet", row_group_size=50)
    a = dmdt_file(tmp_path / "lc.parquet", tmp_path / "a.parquet", chunk_rows=60)
    dmdt_file(tmp_path / "lc.parquet", tmp_path / "b.parquet", chunk_rows=10**6, n_jobs=-1)
    ra, rb = read_dmdt(tmp_path / "a.parquet"), read_dmdt(tmp_path / "b.parquet")
    np.testing.assert_array_equal(ra.images, rb.images)
    assert a["objects"] == 25 and ra.images.shape == (25, 22, 24, 1)
    direct = compute_dmdt(read_lightcurves(tmp_path / "lc.parquet"))
    np.testing.assert_array_equal(ra.images, direct.images)
    np.testing.assert_array_equal(ra.object_id, direct.object_id)
    meta = ra.meta
    assert meta["shape"] == [22, 24, 1] and meta["norm"] == "paper"
    assert meta["dm_edges"][0] == -8 and meta["dt_edges"][-1] == 4000
    tbl = pd.read_parquet(tmp_path / "a.parquet")
    assert list(tbl.columns) == ["object_id", "n_points", "n_pairs", "n_points_band",
                                 "missing_bands", "image"]
    np.testing.assert_array_equal(tbl["n_pairs"], tbl["n_points"] * (tbl["n_points"] - 1) // 2)


def test_ztf_two_bands_end_to_end(ztf_dir, tmp_path):
    s = dmdt_file(ztf_dir / "lightcurves.parquet", tmp_path / "z.parquet",
                  cmap=ColumnMap.from_spec("ztf"), norm="probability")
    img = read_dmdt(tmp_path / "z.parquet")
    assert s["bands"] == ["g", "r"] and img.images.shape == (25, 22, 24, 2)
    inside = img.images.sum(axis=(1, 2))
    assert np.all(inside <= 1 + 1e-5)
    assert np.all(inside[img.n_points > 1] > 0.5)
    assert np.all(inside[img.n_points == 0] == 0)
    assert img.missing_bands.any()  # one object of the sample has no r point
    tbl = pd.read_parquet(tmp_path / "z.parquet")
    flagged = tbl.loc[tbl["missing_bands"].map(len) > 0, "object_id"]
    assert set(flagged) == set(img.object_id[img.missing_bands.any(axis=1)])


def test_custom_bins_json(tmp_path, rng):
    (tmp_path / "b.json").write_text(json.dumps({"dm_edges": [-1, 0, 1], "dt_edges": [0, 10,
                                                                                       100]}))
    grid = get_bins(tmp_path / "b.json")
    assert grid.shape == (2, 2)
    (tmp_path / "bad.json").write_text(json.dumps({"dm_edges": [0, -1], "dt_edges": [0, 1]}))
    with pytest.raises(ConfigError):
        get_bins(tmp_path / "bad.json")
    with pytest.raises(ConfigError):
        get_bins("nonsense")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json"):
        get_bins(tmp_path / "broken.json")


def test_read_dmdt_rejects_other_files(tmp_path, rng):
    make_frame(rng).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match="not written by"):
        read_dmdt(tmp_path / "x.parquet")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(2, 30),
       st.sampled_from([0.01, 0.1, 1.0]))
def test_random_edges_and_quantised_values_match_reference(seed, n_dm, n_dt, q):
    """Random uneven edges; magnitudes/times quantised so many pairs land on edges."""
    rng = np.random.default_rng(seed)
    dm_edges = np.unique(np.round(rng.uniform(-3, 3, n_dm + 1), 2))
    dt_edges = np.unique(np.round(np.r_[0, rng.uniform(0, 50, n_dt)], 1))
    if len(dm_edges) < 2 or len(dt_edges) < 2:
        return
    grid = DmDtBins("custom", tuple(dm_edges), tuple(dt_edges))
    n = int(rng.integers(2, 80))
    t = np.unique(np.round(rng.uniform(0, 60, n), 1))
    m = np.round(rng.normal(0, 1, len(t)) / q) * q
    lcs = LightCurves(np.array(["x"], object), np.array(["r"], object),
                      np.array([0, len(t)]), t, m, np.full(len(t), 0.1))
    ours = compute_dmdt(lcs, grid, norm="counts").images[0, :, :, 0]
    np.testing.assert_array_equal(ours, _reference_counts(t, m, dm_edges, dt_edges))


def _one(t, m, oid="x"):
    return LightCurves(np.array([oid], object), np.array(["r"], object),
                       np.array([0, len(t)]), np.asarray(t, float), np.asarray(m, float),
                       np.full(len(t), 0.1))


def test_long_series_over_several_tiles(rng):
    # > 1024 points: the kernel works in row tiles of 1024 pairs
    t = np.sort(rng.uniform(0, 3000, 2600))
    m = rng.normal(15, 1.5, len(t))
    for name in ("mahabal2017", "scope"):
        grid = BINS_PRESETS[name]
        ours = compute_dmdt(_one(t, m), grid, norm="counts").images[0, :, :, 0]
        np.testing.assert_array_equal(ours, _reference_counts(t, m, grid.dm_edges,
                                                              grid.dt_edges))


def test_huge_magnitude_span_is_clipped_correctly(rng):
    # outliers hundreds of mag away: the dm table is clipped, pairs stay outside the grid
    t = np.sort(rng.uniform(0, 500, 300))
    m = rng.normal(15, 0.5, len(t))
    m[::37] = 900.0
    m[5::41] = -450.0
    m[7] = 15.0 + 8.0 - 1e-12  # near the outer edges, close to the clip
    grid = BINS_PRESETS["mahabal2017"]
    ours = compute_dmdt(_one(t, m), grid, norm="counts").images[0, :, :, 0]
    np.testing.assert_array_equal(ours, _reference_counts(t, m, grid.dm_edges, grid.dt_edges))


def test_fine_dt_edges_use_the_pointer_kernel_and_agree(rng):
    from pipeline._dmdt_impl import _dt_table

    # relative dt bin width 1e-5: too fine for the bit table -> pointer fallback
    dt_edges = np.r_[100.0, 100.001, 100.002, 150.0, 400.0]
    assert _dt_table(tuple(dt_edges), 10) is None
    assert _dt_table(tuple(BINS_PRESETS["mahabal2017"].dt_edges), 24) is not None
    grid = DmDtBins("fine-dt", tuple(np.linspace(-2, 2, 9)), tuple(dt_edges))
    t = np.unique(np.round(rng.uniform(0, 500, 200), 3))
    m = np.round(rng.normal(0, 1, len(t)), 1)
    ours = compute_dmdt(_one(t, m), grid, norm="counts").images[0, :, :, 0]
    np.testing.assert_array_equal(ours, _reference_counts(t, m, grid.dm_edges, grid.dt_edges))


def test_large_grid_uses_int32_tables_and_agrees(rng):
    from pipeline._dmdt_impl import _dm_table, _dt_table

    # 150 x 140 bins: flat bin indices beyond int16, so the fast tables are int32
    dm_edges = tuple(np.round(np.linspace(-3, 3, 151), 6))
    dt_edges = tuple(np.r_[0.0, np.geomspace(0.01, 1000.0, 140)])
    assert _dt_table(dt_edges, 152)[2].dtype == np.int32
    assert _dm_table(dm_edges, 4.0, 142)[2].dtype == np.int32
    grid = DmDtBins("large", dm_edges, dt_edges)
    t = np.unique(np.round(rng.uniform(0, 1000, 400), 2))
    m = np.round(rng.normal(0, 1, len(t)), 2)
    ours = compute_dmdt(_one(t, m), grid, norm="counts").images[0, :, :, 0]
    np.testing.assert_array_equal(ours, _reference_counts(t, m, grid.dm_edges, grid.dt_edges))


@pytest.mark.parametrize("bad", ["nan_mag", "inf_t", "unsorted"])
def test_unclean_light_curves_rejected_with_object_named(rng, bad):
    t = np.sort(rng.uniform(0, 100, 20))
    m = rng.normal(15, 0.3, 20)
    if bad == "nan_mag":
        m[4] = np.nan
    elif bad == "inf_t":
        t[-1] = np.inf
    else:
        t[[3, 4]] = t[[4, 3]]
    good = (np.arange(10.0), np.zeros(10))
    lcs = LightCurves(np.array(["ok", "bad1"], object), np.array(["r", "r"], object),
                      np.array([0, 10, 30]), np.r_[good[0], t], np.r_[good[1], m],
                      np.full(30, 0.1))
    with pytest.raises(InputError, match="bad1"):
        compute_dmdt(lcs, norm="counts", method="numba")


def test_read_dmdt_refuses_lying_tables(tmp_path, rng):
    """A dm-dt file whose images do not match its metadata's shape, with a duplicate id,
    with NaN pixels or with damaged metadata: one InputError naming the file (issue 16)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.dmdt import METADATA_KEY
    from pipeline.errors import InputError

    df = make_frame(rng, n_obj=3).sort_values("object_id", kind="stable")
    df.to_parquet(tmp_path / "lc.parquet")
    dmdt_file(tmp_path / "lc.parquet", tmp_path / "d.parquet", norm="probability")
    table = pq.read_table(tmp_path / "d.parquet")
    meta = json.loads(table.schema.metadata[METADATA_KEY.encode()])

    def variant(name, tab=None, md=None):
        tab = tab if tab is not None else table
        raw = md if md is not None else json.dumps(meta).encode()
        pq.write_table(tab.replace_schema_metadata({METADATA_KEY.encode(): raw}),
                       tmp_path / name)
        return tmp_path / name

    ids = table.column("object_id").to_pylist()
    img = table.column("image").to_pylist()
    nan_img = [[float("nan")] + list(img[0][1:])] + img[1:]
    cases = {
        variant("shape.parquet", md=json.dumps({**meta, "shape": [22, 24, 2]}).encode()):
            "not 3 x 22 x 24 x 2",
        variant("dup.parquet", tab=table.set_column(
            table.schema.get_field_index("object_id"), "object_id",
            pa.array([ids[0], ids[0], ids[2]]))): "listed twice",
        variant("nan.parquet", tab=table.set_column(
            table.schema.get_field_index("image"), "image",
            pa.array(nan_img, table.schema.field("image").type))): "NaN",
        variant("meta.parquet", md=b"{oops"): "damaged",
    }
    for path, needle in cases.items():
        with pytest.raises(InputError, match=needle) as info:
            read_dmdt(path)
        assert str(path) in str(info.value)
    assert len(read_dmdt(tmp_path / "d.parquet")) == 3
