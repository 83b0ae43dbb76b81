"""Activation maximisation, dm-dt rebinning and the comparison with robust-PCA templates.

Two tiny networks (mahabal2017, a few epochs on CPU): one where a planted pixel of raw
images separates the classes, one on the ``fine`` representation where a planted cell of
pair counts does.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

pytest.importorskip("keras")

from models.cnn import DmDtCNN
from models.explain import (
    _Projection,
    activation_maximisation,
    class_scores,
    count_image,
    rebin_image,
    rebin_matrix,
    template_correlation,
)
from models.representations import FINE_BINS, REPRESENTATIONS
from pipeline.dmdt import BINS_PRESETS
from pipeline.errors import ConfigError
from pipeline.rpca_dmdt import DmDtRPCA

PAPER = BINS_PRESETS["mahabal2017"]
PEAK = (24, 12)  # fine-grid cell (dm bin, dt bin) that makes class 'peak'


@pytest.fixture(scope="module")
def fine_model():
    """mahabal2017 on the 'fine' representation of Poisson pair counts (columns beyond dt
    bin 24 empty, as for short light curves); class 'peak' has 40 more pairs in cell PEAK."""
    rep = REPRESENTATIONS["fine"]
    rng = np.random.default_rng(5)
    n = 96
    counts = rng.poisson(0.4, size=(n, 36, 32, 1))
    counts[:, :, 25:] = 0
    y = np.repeat(np.array(["flat", "peak"]), n // 2)
    counts[y == "peak", PEAK[0], PEAK[1], 0] += 40
    X = rep.from_counts(counts, np.zeros((n, 1)))
    clf = DmDtCNN(arch="mahabal2017", epochs=6, batch_size=16, learning_rate=3e-3,
                  patience=6, random_state=0).fit(X, y, input_meta=rep.meta(["V"]))
    return clf, X, y


def _best_real(clf, X, y):
    """Highest score of each class over the real images of that class."""
    s = class_scores(clf, X)
    return np.array([s[y == c, k].max() for k, c in enumerate(clf.classes_)])


# --------------------------------------------------------------------------- maximisation


def test_maximising_image_beats_every_real_image_and_stays_in_range(planted_model):
    """The issue's test: each class's maximising image scores above every real training
    image of that class; it lies exactly in the per-channel range of the real images; the
    'b' image is at the channel maximum on the planted pixel, the 'a' image at its minimum."""
    clf, X, y = planted_model
    assert np.mean(clf.predict(X) == y) > 0.95
    images, scores = activation_maximisation(clf, X, steps=100)
    real = _best_real(clf, X, y)
    assert np.all(scores > real), (scores, real)
    assert np.all(scores > 2 * real)  # measured: 45.3 and 32.1 against 3.9 and 5.7
    np.testing.assert_allclose(scores, class_scores(clf, images)[[0, 1], [0, 1]], rtol=1e-6)
    lo, hi = X.min(), X.max()
    assert images.min() >= lo >= 0 and images.max() <= hi
    assert images[1, 12, 15, 0] == hi
    assert images[0, 12, 15, 0] == images[0].min() == pytest.approx(lo, abs=1e-7)
    # one class only, in the order asked; noise start: seeded, and also above every real image
    only_b, s_b = activation_maximisation(clf, X, ["b"], steps=100, start="noise", seed=1)
    again, _ = activation_maximisation(clf, X, ["b"], steps=100, start="noise", seed=1)
    np.testing.assert_array_equal(only_b, again)
    assert only_b.shape == (1, 22, 24, 1) and s_b[0] > real[1]
    assert only_b[0, 12, 15, 0] == hi


def test_bad_settings_are_config_errors(planted_model):
    clf, X, _ = planted_model
    for kw in ({"steps": -1}, {"learning_rate": 0.0}, {"l2": -1.0}, {"start": "zeros"}):
        with pytest.raises(ConfigError):
            activation_maximisation(clf, X, **kw)
    with pytest.raises(ValueError, match="unknown class 'zz'"):
        activation_maximisation(clf, X, ["zz"])


def test_fine_representation_constraints_hold_exactly(fine_model):
    """On 'fine' inputs the p(dm|dt) channel is the log_count channel's counts divided by
    their column sums: every dt column sums to 1, or is 0 where log_count is 0 all along;
    log_count stays inside the real images' range; scores beat every real image; the 'peak'
    image holds the most pairs allowed in the planted cell, the 'flat' image none."""
    clf, X, y = fine_model
    images, scores = activation_maximisation(clf, X, steps=100)
    assert np.all(scores > _best_real(clf, X, y))
    p, lc = images[..., 0].astype(np.float64), images[..., 1].astype(np.float64)
    assert lc.min() >= 0 and lc.max() <= X[..., 1].max()
    counts = 10 ** (5 * lc) - 1
    colsum = counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, np.where(colsum > 0, counts / np.where(colsum > 0, colsum, 1),
                                           0), rtol=1e-5, atol=1e-7)
    sums = p.sum(axis=1)
    empty = (lc == 0).all(axis=1)
    np.testing.assert_allclose(sums[~empty], 1.0, rtol=1e-6)
    assert np.all(sums[empty] == 0) and np.all(p >= 0)
    peak = list(clf.classes_).index("peak")
    assert lc[peak][PEAK] == X[..., 1].max() and lc[1 - peak][PEAK] == 0


def test_chain_rule_through_the_derived_channel_matches_finite_differences(fine_model, rng):
    """d score / d u of the projection, for a linear score W . x(u), against central
    differences of x(u) itself (columns with at least one pair, where x is smooth)."""
    clf, X, _ = fine_model
    proj = _Projection(X, clf.input_meta_)
    u = proj.project(rng.uniform(0.2, 0.9, size=(1, 36, 32, 2)))
    W = rng.normal(size=u.shape)
    grad = proj.score_gradient(W, proj.to_input(u))
    assert np.all(grad[..., 0] == 0)  # p(dm|dt) is not free
    h = 1e-6
    for i, j in [(0, 0), (PEAK[0], PEAK[1]), (35, 24), (17, 3)]:
        up, dn = u.copy(), u.copy()
        up[0, i, j, 1] += h
        dn[0, i, j, 1] -= h
        fd = ((W * proj.to_input(up)).sum() - (W * proj.to_input(dn)).sum()) / (2 * h)
        assert grad[0, i, j, 1] == pytest.approx(fd, rel=1e-5)


# --------------------------------------------------------------------------- rebinning


def test_rebin_onto_a_coarsening_sums_the_merged_cells(rng):
    """Target = unions of source bins (mahabal2017 dm edges are fine-grid edges; every
    second and fourth fine dt edge): each target cell is the sum of its source cells."""
    img = rng.random((36, 32, 2))
    dm, dt = np.asarray(FINE_BINS.dm_edges), np.asarray(FINE_BINS.dt_edges)
    to_dm = np.asarray(PAPER.dm_edges)
    assert np.isin(to_dm, dm).all()
    for step in (2, 4):
        to_dt = dt[::step]
        out = rebin_image(img, dm, dt, to_dm, to_dt)
        i_dm = np.searchsorted(dm, to_dm[:-1])
        expect = np.add.reduceat(np.add.reduceat(img, i_dm, axis=0), np.arange(0, 32, step),
                                 axis=1)
        np.testing.assert_allclose(out, expect, rtol=1e-12)
        assert out.sum() == pytest.approx(img.sum(), rel=1e-12)


def test_rebin_hand_example_with_partial_overlaps():
    """dm [0, 1, 2] -> [0.5, 1.5, 3]: bin 0 puts half in target 0 (its [0, 0.5) half is
    dropped), bin 1 half in each. dt [1, 10, 100] -> [10**0.5, 10, 1000] in log10 dt:
    bin 0 puts half in target 0 (the [1, 10**0.5) half is dropped), bin 1 all in target 1."""
    img = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = rebin_image(img, [0, 1, 2], [1, 10, 100], [0.5, 1.5, 3], [10 ** 0.5, 10, 1000])
    # target (0, 0): 0.5*0.5*1 + 0.5*0.5*3 = 1.0; (0, 1): 0.5*2 + 0.5*4 = 3.0
    # target (1, 0): 0.5*0.5*3 = 0.75;             (1, 1): 0.5*4 = 2.0
    np.testing.assert_allclose(out, [[1.0, 3.0], [0.75, 2.0]], rtol=1e-12)
    np.testing.assert_allclose(rebin_matrix([0, 1, 2], [0.5, 1.5, 3]), [[0.5, 0], [0.5, 0.5]])


def test_rebin_identity_and_zero_dt_edge(rng):
    """Same grid: same image (also mahabal2017, whose first dt edge is 0). mahabal2017 ->
    fine: both span dm +-8 mag and dt up to 4000 d, and the [0, 1/145) d bin is taken one
    bin wide in log dt ([1/290, 1/145), inside the fine grid), so the total is kept."""
    for grid, shape in ((FINE_BINS, (36, 32, 2)), (PAPER, (22, 24))):
        img = rng.random(shape)
        np.testing.assert_allclose(rebin_image(img, grid.dm_edges, grid.dt_edges,
                                               grid.dm_edges, grid.dt_edges), img, rtol=1e-12)
    img = rng.random((22, 24))
    out = rebin_image(img, PAPER.dm_edges, PAPER.dt_edges, FINE_BINS.dm_edges,
                      FINE_BINS.dt_edges)
    assert out.sum() == pytest.approx(img.sum(), rel=1e-12)
    w = rebin_matrix(PAPER.dt_edges, FINE_BINS.dt_edges, log=True)
    lo = np.log10(1 / 145) - np.log10(2)  # first bin [1/290, 1/145) in log dt
    fine = np.log10(FINE_BINS.dt_edges)
    expect = np.clip(np.minimum(fine[1:], np.log10(1 / 145)) - np.maximum(fine[:-1], lo), 0,
                     None) / np.log10(2)
    np.testing.assert_allclose(w[0], expect, rtol=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        rebin_matrix([0, 1, 1], [0, 2])


# --------------------------------------------------------------------------- templates


def test_template_correlation_with_known_templates(rng):
    """Templates of classes a, b, c on the mahabal2017 grid (sqrt pixel transform): the 'a'
    image is the square of 2 T_a + 1 (correlation 1 after the sqrt); the 'b' image is the
    square of T_c (its own correlation is corr(T_c, T_b), its best other class 'c' at 1);
    class 'z' has no template."""
    T = rng.random((3, 22 * 24)) + 0.1
    rpca = SimpleNamespace(class_templates_=T, classes_=np.array(["a", "b", "c"]),
                           image_shape_=(22, 24, 1), pixel_transform="sqrt")
    meta = {"dm_edges": list(PAPER.dm_edges), "dt_edges": list(PAPER.dt_edges),
            "channels": ["V:paper"], "bands": ["V"]}
    img = np.stack([(2 * T[0] + 1) ** 2, T[2] ** 2, T[1] ** 2]).reshape(3, 22, 24, 1)
    tab = template_correlation(img, meta, rpca, meta, classes=["a", "b", "z"])
    assert list(tab.columns) == ["class", "correlation_own", "best_other_class",
                                 "correlation_best_other", "rank_own"]
    r = [[pearsonr(np.sqrt(img[k].ravel()), T[j]).statistic for j in range(3)]
         for k in range(3)]
    a, b, z = (tab.iloc[k] for k in range(3))
    assert a["correlation_own"] == pytest.approx(1.0, abs=1e-12) and a["rank_own"] == 1
    assert a["best_other_class"] == ["b", "c"][int(np.argmax(r[0][1:]))]
    assert b["correlation_own"] == pytest.approx(r[1][1], rel=1e-12)
    assert b["best_other_class"] == "c" and b["correlation_best_other"] == pytest.approx(1.0)
    assert b["rank_own"] == 1 + sum(v > r[1][1] for v in r[1])
    assert np.isnan(z["correlation_own"]) and pd.isna(z["rank_own"])
    assert z["best_other_class"] == "b" and z["correlation_best_other"] == pytest.approx(1.0)


def _blob_counts(bins, dm: float, dt: float, rng, n: int) -> np.ndarray:
    """Poisson(0.3) pair counts with 30 more in the cell holding (dm [mag], dt [days])."""
    c = rng.poisson(0.3, size=(n, *bins.shape, 1)).astype(np.float64)
    i = np.searchsorted(bins.dm_edges, dm) - 1
    j = np.searchsorted(bins.dt_edges, dt) - 1
    c[:, i, j, 0] += 30
    return c


def test_template_correlation_ranks_own_class_first_on_a_fitted_rpca(rng):
    """DmDtRPCA fitted on mahabal2017-grid counts of two classes (Poisson background, a
    blob at dm 0.7 mag, dt 0.1 d or at dm -1.7 mag, dt 300 d); 'fine' network inputs holding
    the blobs alone (log_count channel, p(dm|dt) from it), turned back into counts and
    rebinned onto its grid: each is closest to its own class template."""
    blobs = {"short": (0.7, 0.1), "long": (-1.7, 300.0)}
    X = np.concatenate([_blob_counts(PAPER, *blobs[c], rng, 20) for c in blobs])
    y = np.repeat(list(blobs), 20)
    rpca = DmDtRPCA(1, 2, cv=None).fit(X, y)
    rep = REPRESENTATIONS["fine"]
    blob_only = np.zeros((2, 36, 32, 1))
    for k, (dm, dt) in enumerate(blobs.values()):
        blob_only[k, np.searchsorted(FINE_BINS.dm_edges, dm) - 1,
                  np.searchsorted(FINE_BINS.dt_edges, dt) - 1] = 30
    am = rep.from_counts(blob_only, np.zeros((2, 1)))
    counts, bands = count_image(am, rep.meta(["V"]))
    assert bands == ["V"]
    np.testing.assert_allclose(counts, blob_only, rtol=1e-5, atol=1e-5)
    tab = template_correlation(am, rep.meta(["V"]), rpca,
                               {"dm_edges": PAPER.dm_edges, "dt_edges": PAPER.dt_edges,
                                "bands": ["V"]}, classes=list(blobs))
    assert tab["rank_own"].tolist() == [1, 1]
    assert (tab["correlation_own"] > 0.8).all()  # measured 0.86 and 0.91
    assert (tab["correlation_own"] > tab["correlation_best_other"] + 0.5).all()


# --------------------------------------------------------------------------- report


def test_activation_check_rows(fine_model, rng):
    """The report's activation_check (models.interpret): each class's maximising score, the
    best real score of that class recomputed here, and the template correlations of
    template_correlation; the class_maps rows hold the maximising images cell by cell."""
    from models.interpret import activation_check, class_map_rows

    clf, X, y = fine_model
    rpca = DmDtRPCA(1, 2, cv=None).fit(
        np.concatenate([_blob_counts(PAPER, 0.7, 0.1, rng, 10),
                        _blob_counts(PAPER, -1.7, 300.0, rng, 10)]), np.repeat(["a", "b"], 10))
    image_meta = {"dm_edges": PAPER.dm_edges, "dt_edges": PAPER.dt_edges, "bands": ["V"]}
    images, scores = activation_maximisation(clf, X, steps=20)
    check = activation_check(clf, images, scores, X, y, clf.input_meta_, (rpca, image_meta))
    assert check["class"].tolist() == ["flat", "peak"]
    np.testing.assert_allclose(check["score"], scores)
    np.testing.assert_allclose(check["best_real_score"], _best_real(clf, X, y), rtol=1e-6)
    assert (check["score"] > check["best_real_score"]).all()
    corr = template_correlation(images, clf.input_meta_, rpca, image_meta,
                                classes=["flat", "peak"])
    pd.testing.assert_series_equal(check["correlation_best_other"], corr["correlation_best_other"])
    assert check["rank_own"].isna().all()  # 'flat' and 'peak' have no template
    none = activation_check(clf, images, scores, X, y, clf.input_meta_)
    assert none["correlation_own"].isna().all() and none["rank_own"].isna().all()
    rows = class_map_rows(images, "activation_max", ["flat", "peak"], clf.input_meta_)
    for k, c in enumerate(["flat", "peak"]):
        r = rows[(rows["class"] == c) & (rows["channel"] == "V:log_count")]
        grid = np.zeros((36, 32))
        grid[r["dm_index"], r["dt_index"]] = r["value"]
        np.testing.assert_array_equal(grid, images[k, ..., 1])
