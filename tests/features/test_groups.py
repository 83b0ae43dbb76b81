"""Every feature group: protocol checks (as light-curve's test_feature.py) and values
checked against numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from features import (
    ColourFeatures,
    Extractor,
    LightCurveFeatures,
    MultiBandPeriodFeatures,
    PeriodicFeatures,
    check_lightcurve,
)
from features.base import FeatureGroup
from tests.features.synthetic import crts_times, eclipsing, sinusoid

GROUPS = {
    "lightcurve": LightCurveFeatures,
    "periodic": PeriodicFeatures,
    "extractor": lambda: Extractor(LightCurveFeatures(), PeriodicFeatures()),
}


@pytest.fixture(scope="module")
def lc():
    rng = np.random.default_rng(7)
    t = crts_times(rng, n_visits=40)
    m, s = sinusoid(t, 0.4321, 0.3, rng, noise=0.05)
    return t, m, s * rng.uniform(0.8, 1.2, t.size)


@pytest.mark.parametrize("name", GROUPS)
def test_protocol(name, lc):
    g = GROUPS[name]()
    assert isinstance(g, FeatureGroup) and g.__doc__
    assert g.size == len(g.names) == len(g.units) == len(g.descriptions) > 0
    assert len(set(g.names)) == g.size
    assert all(":" not in n for n in g.names)
    v = g(*lc)
    assert v.shape == (g.size,) and v.dtype == np.float64
    assert np.isnan(g.fill_value)


@pytest.mark.parametrize("name", GROUPS)
def test_float32_input_and_unsorted_input(name, lc):
    g = GROUPS[name]()
    t, m, s = lc
    v = g(t, m, s)
    order = np.random.default_rng(1).permutation(t.size)
    np.testing.assert_allclose(g(t[order], m[order], s[order]), v, rtol=1e-10, equal_nan=True)
    m32, s32 = m.astype(np.float32), s.astype(np.float32)
    v32 = g(t, m32, s32)
    assert v32.dtype == np.float64 and v32.shape == v.shape
    # float32 input is widened, not computed in float32: the features of the same
    # (rounded) values given as float64
    np.testing.assert_allclose(v32, g(t, m32.astype(np.float64), s32.astype(np.float64)),
                               rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", GROUPS)
def test_too_few_points_give_fill_value(name):
    g = GROUPS[name]()
    t = np.arange(3.0)
    v = g(t, np.array([1.0, 2.0, 1.5]), np.full(3, 0.1))
    assert v.shape == (g.size,)
    assert g.min_points > 3 and np.isnan(v).all()  # below every group's minimum: all NaN


@pytest.mark.parametrize("name", GROUPS)
def test_bad_input_raises(name):
    g = GROUPS[name]()
    t = np.arange(20.0)
    with pytest.raises(ValueError, match="finite"):
        g(t, np.where(t == 3, np.nan, t), np.ones(20))
    with pytest.raises(ValueError, match="positive"):
        g(t, t, np.zeros(20))
    with pytest.raises(ValueError, match="repeated"):
        g(np.r_[t[:-1], 5.0], t, np.ones(20))


def test_many_equals_single_calls(lc):
    ex = Extractor(LightCurveFeatures(), PeriodicFeatures())
    rng = np.random.default_rng(3)
    lcs = [lc, (lc[0][:25], lc[1][:25], lc[2][:25]), (np.arange(3.0), rng.normal(size=3),
                                                      np.ones(3))]
    batch = ex.many(lcs)
    for row, one in zip(batch, lcs, strict=True):
        np.testing.assert_allclose(row, ex(*one), rtol=1e-12, equal_nan=True)


def test_extractor_concatenates(lc):
    a, b = LightCurveFeatures(), PeriodicFeatures()
    ex = Extractor(a, b)
    assert ex.names == a.names + b.names
    np.testing.assert_allclose(ex(*lc), np.r_[a(*lc), b(*lc)], equal_nan=True)
    with pytest.raises(ValueError, match="duplicate"):
        Extractor(a, a)


def test_lightcurve_values_against_numpy_scipy(lc):
    t, m, s = lc
    g = LightCurveFeatures()
    v = dict(zip(g.names, g(t, m, s), strict=True))
    w = 1 / s**2
    wmean = np.sum(w * m) / w.sum()
    n = m.size
    ref = {
        "amplitude": (m.max() - m.min()) / 2,
        "mean": m.mean(),
        "median": np.median(m),
        "standard_deviation": m.std(ddof=1),
        "skew": stats.skew(m, bias=False),
        "kurtosis": stats.kurtosis(m, bias=False),
        "median_absolute_deviation": np.median(np.abs(m - np.median(m))),
        "weighted_mean": wmean,
        "chi2": np.sum(w * (m - wmean) ** 2) / (n - 1),
        "beyond_1_std": np.mean(np.abs(m - m.mean()) > m.std(ddof=1)),
        "eta": np.sum(np.diff(m) ** 2) / ((n - 1) * m.var(ddof=1)),
        "percent_amplitude": np.max(np.abs(m - np.median(m))),
        "linear_trend": np.polyfit(t - t.mean(), m, 1)[0],
        "linear_fit_slope": np.polyfit(t - t.mean(), m, 1, w=1 / s)[0],
    }
    for k, r in ref.items():
        assert v[k] == pytest.approx(r, rel=1e-6, abs=1e-12), k


def test_periodic_values(lc):
    t, m, s = lc
    g = PeriodicFeatures()
    v = dict(zip(g.names, g(t, m, s), strict=True))
    assert v["period"] == pytest.approx(0.4321, rel=2e-4)
    assert v["fourier_amp1"] == pytest.approx(0.3, abs=0.02)
    assert v["fourier_r21"] < 0.1
    assert v["fourier_explained"] > 0.9
    assert v["folded_lk"] < 0.3 < 0.8 < stats_lk_random(m)
    assert v["peak2_period"] != v["period"]


def stats_lk_random(m):
    """Lafler-Kinman statistic of the magnitudes in random order (about 1)."""
    r = np.random.default_rng(0).permutation(m)
    return np.sum((np.roll(r, -1) - r) ** 2) / (2 * np.sum((r - r.mean()) ** 2))


@pytest.mark.parametrize("depth2,found", [(0.2, 1.0), (0.5, 2.0)])
def test_periodic_eclipsing_binary_doubled_features(depth2, found):
    """Eclipses of depths 0.7 and ``depth2`` at P = 0.9137 d. Unequal enough (0.2), the
    search finds P itself and the fold at 2P adds no odd-harmonic signal; close (0.5), it
    finds P/2 and the fold at twice that period tells the two eclipses apart: a large odd
    F statistic and a difference of the two halves near the depth difference (0.2 mag)."""
    rng = np.random.default_rng(11)
    t = crts_times(rng)
    m, s = eclipsing(t, 0.9137, 0.7, depth2, rng)
    g = PeriodicFeatures()
    v = dict(zip(g.names, g(t, m, s), strict=True))
    assert 0.9137 / v["period"] == pytest.approx(found, rel=1e-3)
    if found == 1.0:
        assert v["double_f_odd"] < 10 and v["double_min_diff"] < 0.05
    else:
        assert v["double_f_odd"] > 100
        assert v["double_min_diff"] == pytest.approx(0.7 - depth2, abs=0.05)
        assert v["double_folded_lk"] < v["folded_lk"]


def test_flat_light_curve_is_nan_not_crash():
    t = np.arange(50.0) * 1.3
    g = PeriodicFeatures()
    assert np.isnan(g(t, np.full(50, 14.0), np.full(50, 0.1))).all()


def test_colour_features():
    g = ColourFeatures(["g", "r", "i"])
    assert g.names == ("g-r", "g-i", "r-i")
    t = np.arange(7.0)
    series = {"g": (t, np.array([15, 16, 17, 15.5, 15.2, 15.1, 19.0]), None),
              "r": (t, np.full(7, 14.5), None)}
    v = g(series)
    assert v[0] == pytest.approx(15.5 - 14.5)
    assert np.isnan(v[1]) and np.isnan(v[2])


def test_multiband_group(lc):
    t, m, s = lc
    g = MultiBandPeriodFeatures(["g", "r"])
    half = t.size // 2
    v = dict(zip(g.names, g({"g": (t[:half], m[:half], s[:half]),
                             "r": (t[half:], m[half:] - 0.4, s[half:])}), strict=True))
    assert v["period"] == pytest.approx(0.4321, rel=1e-3)
    assert v["n_bands"] == 2
    assert v["amp_g"] == pytest.approx(0.3, abs=0.03) and v["amp_r"] == pytest.approx(0.3,
                                                                                      abs=0.03)


def test_check_lightcurve_sorts():
    t, m, s = check_lightcurve([3.0, 1.0, 2.0], [30, 10, 20], None)
    np.testing.assert_array_equal(t, [1, 2, 3])
    np.testing.assert_array_equal(m, [10, 20, 30])
    np.testing.assert_array_equal(s, [1, 1, 1])


def test_docs_list_every_feature():
    from pathlib import Path

    from features import default_extractor

    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    ex = default_extractor()
    names = list(ex.names) + [f"multiband:{n}" for n in MultiBandPeriodFeatures(["{band}"]).names]
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing
    for g in ex.groups:
        for n, u in zip(g.names, g.units, strict=True):
            assert f"`{n}` |" in doc and u in doc
