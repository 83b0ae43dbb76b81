"""Scientific constants pinned to their sources, quoted here as literals (issue 17).

A change to any of these values changes what lcpipe computes; it must be deliberate, so it
must fail a test that says where the value comes from.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.dmdt import BINS_PRESETS, compute_dmdt
from pipeline.lightcurves import LightCurves

# Mahabal et al. 2017 (arXiv:1709.06257), the authors' dm-dt code: 22 dm x 24 dt bins;
# dm [mag], dt [days]
MAHABAL2017_DM = (-8, -5, -3, -2.5, -2, -1.5, -1, -0.5, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3,
                  0.5, 1, 1.5, 2, 2.5, 3, 5, 8)
MAHABAL2017_DT = (0, 1 / 145, 2 / 145, 3 / 145, 4 / 145, 1 / 25, 2 / 25, 3 / 25, 1.5, 2.5, 3.5,
                  4.5, 5.5, 7, 10, 20, 30, 60, 90, 120, 240, 600, 960, 2000, 4000)
# ZTF SCoPe (scope-ml, config.defaults.yaml, feature_generation.dmdt_ints: dmints, dtints):
# 26 x 26
SCOPE_DM = (-8, -4.5, -3, -2.5, -2, -1.5, -1.25, -0.75, -0.5, -0.3, -0.2, -0.1, -0.05, 0, 0.05,
            0.1, 0.2, 0.3, 0.5, 0.75, 1.25, 1.5, 2, 2.5, 3, 4.5, 8)
SCOPE_DT = (0.0, 0.02759, 0.04, 0.08, 0.12, 0.3, 0.75, 1, 1.5, 2.5, 3.5, 4.5, 5.5, 7, 10, 20,
            30, 45, 60, 90, 120, 180, 240, 360, 500, 650, 2000)


@pytest.mark.parametrize("name,dm,dt", [("mahabal2017", MAHABAL2017_DM, MAHABAL2017_DT),
                                        ("scope", SCOPE_DM, SCOPE_DT)])
def test_bin_presets_are_their_sources(name, dm, dt):
    grid = BINS_PRESETS[name]
    assert grid.dm_edges == tuple(float(x) for x in dm)
    assert grid.dt_edges == tuple(float(x) for x in dt)
    assert grid.shape == (len(dm) - 1, len(dt) - 1)


def test_lcpipe_fine_grid_is_its_definition():
    """lcpipe's CNN grid (docs/dmdt.md): dm +-(0.05 ... 8) mag symmetric about 0 (36 bins),
    dt 32 log-spaced bins from 1/480 d (3 min) to 4000 d."""
    fine = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5,
            3.0, 5.0, 8.0)
    grid = BINS_PRESETS["lcpipe_fine"]
    assert grid.dm_edges == tuple([-x for x in fine[::-1]] + [0.0] + list(fine))
    np.testing.assert_allclose(grid.dt_edges, np.geomspace(1 / 480, 4000, 33), rtol=0)
    assert grid.shape == (36, 32)


def test_hand_made_light_curve_cells_and_paper_normalisation():
    """Four points, six pairs, every cell written out by hand (mahabal2017 bins, pairs
    i < j, dm = m_j - m_i, dt = t_j - t_i):

    ====== ======= ======= ================ ===============
    pair    dt [d]  dm      dt bin           dm bin
    ====== ======= ======= ================ ===============
    0-1     0.005   +0.25   0 [0, 1/145)     13 [0.2, 0.3)
    0-2     1.0     -0.40   7 [3/25, 1.5)    7 [-0.5, -0.3)
    0-3     100     +2.00   18 [90, 120)     18 [2, 2.5)
    1-2     0.995   -0.65   7                6 [-1, -0.5)
    1-3     99.995  +1.75   18               17 [1.5, 2)
    2-3     99      +2.40   18               18
    ====== ======= ======= ================ ===============

    'paper' pixels are ceil(255 * count / pairs): 1 pair -> 43, 2 pairs -> 85.
    """
    t = np.array([0.0, 0.005, 1.0, 100.0])
    m = np.array([15.0, 15.25, 14.6, 17.0])
    lcs = LightCurves(np.array(["x"], dtype=object), np.array(["r"], dtype=object),
                      np.array([0, 4]), t, m, np.full(4, 0.1))
    counts = compute_dmdt(lcs, "mahabal2017", norm="counts").images[0, :, :, 0]
    expected = np.zeros((22, 24), dtype=np.int64)
    for (dm_bin, dt_bin), n in {(13, 0): 1, (7, 7): 1, (18, 18): 2, (6, 7): 1,
                                (17, 18): 1}.items():
        expected[dm_bin, dt_bin] = n
    np.testing.assert_array_equal(counts, expected)
    paper = compute_dmdt(lcs, "mahabal2017", norm="paper")
    assert paper.images.dtype == np.uint8 and int(paper.n_pairs[0, 0]) == 6
    assert paper.images[0, 18, 18, 0] == 85 and paper.images[0, 13, 0, 0] == 43
    assert int((paper.images > 0).sum()) == 5


def test_pcp_default_lambda_is_candes_et_al():
    """Candès, Li, Ma & Wright 2011 (J. ACM 58, 11), Theorem 1.1: lambda = 1/sqrt(max(n1, n2))."""
    from pipeline.rpca import PCP

    rng = np.random.default_rng(0)
    for shape in ((30, 12), (12, 30)):
        model = PCP().fit(rng.normal(size=shape))
        assert model.lambda_ == pytest.approx(1 / np.sqrt(30), rel=1e-15)


def test_period_search_defaults():
    """The period search of docs/features.md: 0.05-1000 d, coarse grid oversampled 1.5x,
    fine 10x around 20 candidates, the sidereal-day aliases up to 20 harmonics removed."""
    from features.period import PeriodSearchConfig

    c = PeriodSearchConfig()
    assert (c.period_min, c.period_max) == (0.05, 1000.0)
    assert (c.coarse_oversampling, c.fine_oversampling) == (1.5, 10.0)
    assert (c.n_candidates, c.alias_harmonics, c.alias_width) == (20, 20, None)
