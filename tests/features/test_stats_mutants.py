"""features/base.py, lightcurve.py and colour.py pinned against independent numbers (issue 17).

Written against the surviving mutants of tools/mutation.py, group ``features_stats``.
Expected values come from this file: numpy / scipy formulas of the light-curve statistics
(percentiles with numpy's ``hazen`` rule, the one light-curve uses), a weighted least-squares
sinusoid solved with the normal equations, ``np.median`` per band, the feature tables of
docs/features.md (names, units and meanings, in order), and hand-made light curves. Pinned:

* ``check_lightcurve``: float64 contiguous copies of any input, ``sigma=None`` as ones, every
  refusal (shapes, NaN/inf in each array at the first and the last point, zero and negative
  errors, repeated times sorted or not, a non-finite value after an unsorted point) and the
  sorting of all three arrays together;
* ``FeatureGroup``: the ``min_points`` boundary, ``fill_value`` for short input and for
  NaN / inf outputs (and nothing else), float64 output, the shape check, ``size``, ``repr``;
* ``LightCurveFeatures``: names and units against the documented table, descriptions from
  light-curve, 24 values against numpy/scipy, a custom list and its unit check, ``many``
  (boundary at 4 points, ``fill_value``, undefined features of a flat curve, no rows);
* ``ColourFeatures`` (pairs, names, units, descriptions, medians, missing and empty bands) and
  ``MultiBandPeriodFeatures`` (documented names/units/meanings, the configuration, the joint
  search's values in their columns, ``n_bands`` at the 3-point boundary, amplitudes against an
  independent sinusoid fit, bands too short for that fit, flat input, input checks).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import light_curve as lc
import numpy as np
import pytest
from scipy import stats

from features import (
    ColourFeatures,
    LightCurveFeatures,
    MultiBandPeriodFeatures,
    PeriodSearchConfig,
    check_lightcurve,
    find_period_multiband,
)
from features.base import FeatureGroup
from tests.features.synthetic import crts_times, sinusoid

DOC = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()


def _doc_rows(first_cell: str) -> list[list[str]]:
    """Rows of the docs tables (cells stripped) whose first cell matches ``first_cell``."""
    out = []
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first_cell, cells[0]) and len(cells) > 2:
            out.append(cells)
    return out


@pytest.fixture(scope="module")
def lcurve():
    rng = np.random.default_rng(7)
    t = crts_times(rng, n_visits=40)
    m, s = sinusoid(t, 0.4321, 0.3, rng, noise=0.05)
    return t, m, s * rng.uniform(0.8, 1.2, t.size)


# ------------------------------------------------------------------ check_lightcurve


def test_check_lightcurve_converts_and_copies():
    t = np.arange(10, dtype=np.int32)[::-1][::-1]  # a reversed view of a reversed view
    m = np.linspace(14.0, 15.0, 20, dtype=np.float32)[::2]  # strided
    ct, cm, cs = check_lightcurve(t, m, None)
    for a in (ct, cm, cs):
        assert a.dtype == np.float64 and a.flags.c_contiguous and a.shape == (10,)
    np.testing.assert_array_equal(ct, np.arange(10.0))
    np.testing.assert_array_equal(cm, m.astype(np.float64))
    np.testing.assert_array_equal(cs, np.ones(10))
    ct, cm, cs = check_lightcurve([1, 2, 3], [4, 5, 6], [1, 2, 3])
    assert cs.dtype == np.float64 and cs.tolist() == [1.0, 2.0, 3.0]


def test_check_lightcurve_sorts_all_three():
    rng = np.random.default_rng(0)
    t = rng.permutation(np.arange(12.0) * 1.7)
    m, s = 14.0 + 0.1 * t, 0.01 + 0.001 * t
    ct, cm, cs = check_lightcurve(t, m, s)
    order = np.argsort(t)
    np.testing.assert_array_equal(ct, t[order])
    np.testing.assert_array_equal(cm, m[order])
    np.testing.assert_array_equal(cs, s[order])
    # decreasing only at the last point
    ct, cm, _ = check_lightcurve([1.0, 2.0, 3.0, 2.5], [1.0, 2.0, 3.0, 4.0], None)
    assert ct.tolist() == [1.0, 2.0, 2.5, 3.0] and cm.tolist() == [1.0, 2.0, 4.0, 3.0]
    # a descent right after a rise
    ct, cm, _ = check_lightcurve([1.0, 3.0, 2.0], [1.0, 3.0, 2.0], None)
    assert ct.tolist() == [1.0, 2.0, 3.0] and cm.tolist() == [1.0, 2.0, 3.0]
    # already sorted: the same values back
    ct, cm, cs = check_lightcurve(np.arange(5.0), np.arange(5.0) + 10, np.full(5, 0.1))
    assert ct.tolist() == [0, 1, 2, 3, 4] and cm.tolist() == [10, 11, 12, 13, 14]


@pytest.mark.parametrize("where", [0, 5, 9])
@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_lightcurve_non_finite(where, which, bad):
    arrays = [np.arange(10.0), np.full(10, 15.0), np.full(10, 0.1)]
    arrays[which][where] = bad
    with pytest.raises(ValueError, match=r"^t, m and sigma must be finite$"):
        check_lightcurve(*arrays)


@pytest.mark.parametrize("where", [0, 4, 9])
@pytest.mark.parametrize("value", [0.0, -0.1])
def test_check_lightcurve_non_positive_sigma(where, value):
    s = np.full(10, 0.1)
    s[where] = value
    with pytest.raises(ValueError, match=r"^sigma must be positive$"):
        check_lightcurve(np.arange(10.0), np.full(10, 15.0), s)


def test_check_lightcurve_more_refusals():
    # a non-finite value after the first unsorted point is still seen
    with pytest.raises(ValueError, match="finite"):
        check_lightcurve([2.0, 1.0, 3.0, 4.0], [1.0, 1.0, 1.0, np.nan], None)
    with pytest.raises(ValueError, match="positive"):
        check_lightcurve([2.0, 1.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0], [1, 1, 1, 0])
    # repeated times, sorted (the last two) or not
    with pytest.raises(ValueError, match=r"^repeated times in one light curve$"):
        check_lightcurve([1.0, 2.0, 3.0, 3.0], np.zeros(4), None)
    with pytest.raises(ValueError, match="repeated"):
        check_lightcurve([1.0, 1.0, 2.0], np.zeros(3), None)
    with pytest.raises(ValueError, match="repeated"):
        check_lightcurve([3.0, 1.0, 2.0, 1.0], np.zeros(4), None)
    msg = r"^t, m and sigma must be 1-d arrays of the same length$"
    for args in (([1.0, 2.0], [1.0], None), ([1.0, 2.0], [1.0, 2.0], [1.0]),
                 ([[1.0, 2.0]], [[1.0, 2.0]], None), (np.zeros((2, 2)), np.zeros(4), None)):
        with pytest.raises(ValueError, match=msg):
            check_lightcurve(*args)
    # empty and one point are fine (scalars are one point: ascontiguousarray)
    assert [a.tolist() for a in check_lightcurve(1.0, 2.0, 3.0)] == [[1.0], [2.0], [3.0]]
    assert [a.size for a in check_lightcurve([], [], None)] == [0, 0, 0]
    assert check_lightcurve([5.0], [1.0], [0.5])[2].tolist() == [0.5]


# ------------------------------------------------------------------ FeatureGroup


class _Toy(FeatureGroup):
    """mean, NaN, +inf, -inf, max: a group with undefined entries."""

    names = ("mean", "nan", "pinf", "ninf", "max")
    descriptions = ("a",) * 5
    units = ("mag",) * 5
    min_points = 3
    fill_value = -99.0

    def _compute(self, t, m, sigma):
        return [m.mean(), np.nan, np.inf, -np.inf, m.max()]


class _Ints(FeatureGroup):
    names = ("n", "k")
    min_points = 2

    def _compute(self, t, m, sigma):
        return [t.size, 3]


class _Wrong(FeatureGroup):
    names = ("a", "b", "c")

    def _compute(self, t, m, sigma):
        return [1.0, 2.0]


def test_feature_group_protocol():
    g = _Toy()
    assert g.size == 5 and repr(g) == "_Toy(size=5)"
    out = g([2.0, 1.0, 3.0], [5.0, 4.0, 6.0], None)
    assert out.dtype == np.float64 and out.tolist() == [5.0, -99.0, -99.0, -99.0, 6.0]
    short = g([1.0, 2.0], [4.0, 5.0])
    assert short.dtype == np.float64 and short.tolist() == [-99.0] * 5
    ints = _Ints()([0.0, 1.0], [1.0, 1.0])
    assert ints.dtype == np.float64 and ints.tolist() == [2.0, 3.0]
    assert np.isnan(_Ints()([0.0], [1.0])).all() and _Ints().size == 2
    with pytest.raises(RuntimeError, match=r"^_Wrong returned \(2,\), expected \(3,\)$"):
        _Wrong()([0.0], [1.0])
    with pytest.raises(NotImplementedError):
        type("G", (FeatureGroup,), {"names": ("x",)})()([0.0], [1.0])
    assert FeatureGroup.min_points == 1 and np.isnan(FeatureGroup.fill_value)
    assert FeatureGroup.names == FeatureGroup.units == FeatureGroup.descriptions == ()
    # compute_checked is __call__ without the checks
    t, m, s = check_lightcurve([3.0, 1.0, 2.0], [6.0, 4.0, 5.0], None)
    assert g.compute_checked(t, m, s).tolist() == [5.0, -99.0, -99.0, -99.0, 6.0]


# ------------------------------------------------------------------ LightCurveFeatures


def test_lightcurve_names_and_units_as_documented():
    g = LightCurveFeatures()
    rows = [r for r in _doc_rows(r"\d+") if int(r[0]) <= 38]
    assert len(rows) == 38 == g.size
    assert list(g.names) == [r[1].strip("`") for r in rows]
    assert list(g.units) == [r[3] for r in rows]
    assert g.descriptions == tuple(g.extractor.descriptions) and all(g.descriptions)
    assert g.min_points == 4 and g.features is None and np.isnan(g.fill_value)


def test_lightcurve_more_values(lcurve):
    t, m, s = lcurve
    g = LightCurveFeatures()
    v = dict(zip(g.names, g(t, m, s), strict=True))
    n = m.size
    mean, sd, med = m.mean(), m.std(ddof=1), np.median(m)
    amp = (m.max() - m.min()) / 2

    def q(p):
        return np.quantile(m, p, method="hazen")

    w = 1.0 / s**2
    wmean = np.sum(w * m) / w.sum()
    x = t - t.mean()
    slope, icpt = np.polyfit(x, m, 1)
    resid = m - (slope * x + icpt)
    wslope = np.polyfit(x, m, 1, w=1 / s)
    wres = m - np.polyval(wslope, x)
    ref = {
        "anderson_darling_normal": stats.anderson(m, method="interpolate").statistic
        * (1 + 4 / n - 25 / n**2),
        "beyond_2_std": np.mean(np.abs(m - mean) > 2 * sd),
        "cusum": np.ptp(np.cumsum(m - mean)) / (n * sd),
        "excess_variance": (m.var(ddof=1) - np.mean(s**2)) / mean**2,
        "inter_percentile_range_25": q(0.75) - q(0.25),
        "inter_percentile_range_10": q(0.9) - q(0.1),
        "magnitude_percentage_ratio_40_5": (q(0.6) - q(0.4)) / (q(0.95) - q(0.05)),
        "magnitude_percentage_ratio_20_10": (q(0.8) - q(0.2)) / (q(0.9) - q(0.1)),
        "maximum_slope": np.max(np.abs(np.diff(m) / np.diff(t))),
        "median_buffer_range_percentage_10": np.mean(np.abs(m - med) < 0.1 * amp),
        "median_buffer_range_percentage_20": np.mean(np.abs(m - med) < 0.2 * amp),
        "percent_difference_magnitude_percentile_5": (q(0.95) - q(0.05)) / med,
        "percent_difference_magnitude_percentile_10": (q(0.9) - q(0.1)) / med,
        "stetson_K": np.sum(np.abs(m - wmean) / s) / np.sqrt(n * np.sum(((m - wmean) / s) ** 2)),
        "linear_trend_noise": np.sqrt(np.sum(resid**2) / (n - 2)),
        "linear_fit_reduced_chi2": np.sum(wres**2 * w) / (n - 2),
    }
    for k, r in ref.items():
        assert v[k] == pytest.approx(r, rel=1e-6, abs=1e-12), k
    # the parameters as their names say: 1 vs 2 std, 25 vs 10 %, 0.1 vs 0.2 amplitude
    assert v["beyond_1_std"] > v["beyond_2_std"]
    assert v["inter_percentile_range_10"] > v["inter_percentile_range_25"]
    assert v["median_buffer_range_percentage_20"] > v["median_buffer_range_percentage_10"]


def test_lightcurve_custom_list_and_unit_check(lcurve):
    t, m, s = lcurve
    feats = [(lc.Mean(), ("mag",)), (lc.LinearTrend(), ("a", "b", "c"))]
    g = LightCurveFeatures(feats)
    assert g.features is feats
    assert g.names == ("mean", "linear_trend", "linear_trend_sigma", "linear_trend_noise")
    assert g.units == ("mag", "a", "b", "c") and g.size == 4
    assert g(t, m, s)[0] == pytest.approx(m.mean(), rel=1e-12)
    with pytest.raises(ValueError, match=r"^2 units given for 4 outputs$"):
        LightCurveFeatures([(lc.Mean(), ("mag",)), (lc.LinearTrend(), ("a",))])
    with pytest.raises(ValueError, match=r"^3 units given for 1 outputs$"):
        LightCurveFeatures([(lc.Mean(), ("mag", "x", "y"))])


class _Filled(LightCurveFeatures):
    fill_value = -7.0


def test_lightcurve_fill_value_short_and_flat():
    g = LightCurveFeatures()
    names = list(g.names)
    flat = (np.arange(8.0), np.full(8, 15.0), np.full(8, 0.1))
    v = g(*flat)  # undefined statistics of a flat curve: NaN, not an error
    assert np.isnan(v[names.index("skew")]) and v[names.index("mean")] == 15.0
    assert v[names.index("amplitude")] == 0.0
    f = _Filled()
    vf = f(*flat)
    np.testing.assert_array_equal(vf, np.where(np.isnan(v), -7.0, v))
    four = (np.arange(4.0), np.array([1.0, 3.0, 2.0, 5.0]), np.full(4, 0.1))
    three = tuple(a[:3] for a in four)
    assert not np.isnan(g(*four)[names.index("mean")])
    assert g(*four)[names.index("mean")] == 2.75
    assert np.isnan(g(*three)).all() and (f(*three) == -7.0).all()
    batch = f.many([four, three, flat])
    assert batch.shape == (3, f.size)
    np.testing.assert_array_equal(batch[0], f(*four))
    assert (batch[1] == -7.0).all()
    np.testing.assert_array_equal(batch[2], vf)
    np.testing.assert_array_equal(g.many([four, three, flat]),
                                  np.vstack([g(*four), g(*three), v]))
    assert g.many([]).shape == (0, g.size)


def test_many_equals_calls(lcurve):
    g = LightCurveFeatures()
    t, m, s = lcurve
    lcs = [(t, m, s), (t[:30], m[:30] + 1, s[:30])]
    np.testing.assert_array_equal(g.many(lcs), np.vstack([g(*x) for x in lcs]))


# ------------------------------------------------------------------ ColourFeatures


def test_colour_features_definitions():
    g = ColourFeatures(["u", "g", "r", "i"])
    assert g.bands == ("u", "g", "r", "i") and g.size == 6
    assert g.names == ("u-g", "u-r", "u-i", "g-r", "g-i", "r-i")
    assert g.units == ("mag",) * 6
    assert g.descriptions[0] == "median u magnitude minus median g magnitude"
    assert g.descriptions[-1] == "median r magnitude minus median i magnitude"
    assert np.isnan(g.fill_value) and g.min_points == 1
    one = ColourFeatures(["r"])
    assert one.size == 0 and one.names == () and one({"r": ([0.0], [1.0], None)}).shape == (0,)
    med = {"u": 18.0, "g": 16.5, "i": 15.0, "z": 1.0}
    out = g.from_medians(med)
    assert out.dtype == np.float64
    whole = ColourFeatures(["g", "r"]).from_medians({"g": 16, "r": 15})
    assert whole.dtype == np.float64 and whole.tolist() == [1.0]
    np.testing.assert_array_equal(out[[0, 2, 4]], [1.5, 3.0, 1.5])
    assert np.isnan(out[[1, 3, 5]]).all()


def test_colour_features_medians():
    rng = np.random.default_rng(1)
    g = ColourFeatures(("g", "r", "i"))
    mg, mr = rng.normal(16, 0.3, 9), rng.normal(15.2, 0.2, 6)
    series = {"r": (np.arange(6.0), mr, None), "g": (np.arange(9.0), mg, np.ones(9)),
              "i": (np.zeros(0), np.zeros(0), None), "y": (np.arange(3.0), np.ones(3), None)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty band is skipped, not a median of nothing
        v = g(series)
    assert v[0] == np.median(mg) - np.median(mr)  # the median of an even count too
    assert np.isnan(v[1]) and np.isnan(v[2])  # empty band
    series["i"] = (np.zeros(1), np.array([14.75]), None)  # one point is enough
    np.testing.assert_array_equal(g(series)[1:], [np.median(mg) - 14.75,
                                                  np.median(mr) - 14.75])


# ------------------------------------------------------------------ MultiBandPeriodFeatures


def test_multiband_definitions_as_documented():
    cfg = PeriodSearchConfig(min_points=7)
    g = MultiBandPeriodFeatures(["{band}"], cfg)
    rows = [r for r in _doc_rows(r"`multiband:[^`]+`") if len(r) == 4]
    assert [r[0].strip("`") for r in rows] == [f"multiband:{n}" for n in g.names]
    assert [r[2] for r in rows] == list(g.units)
    assert [r[1] for r in rows] == list(g.descriptions)
    assert g.config is cfg and g.min_points == 7 and np.isnan(g.fill_value)
    d = MultiBandPeriodFeatures(("g", "r"))
    assert d.config is None and d.min_points == 10 and d.bands == ("g", "r") and d.size == 7
    assert d.names[5:] == ("amp_g", "amp_r")


def _sine_amp(t, m, s, period):
    """Weighted least squares of m = c + a cos + b sin at ``period``: sqrt(a^2 + b^2)."""
    x = 2 * np.pi * t / period
    X = np.column_stack([np.ones_like(t), np.cos(x), np.sin(x)])
    w = 1.0 / s**2
    c = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * m))
    return math.hypot(c[1], c[2])


@pytest.fixture(scope="module")
def bands():
    rng = np.random.default_rng(3)
    t = crts_times(rng, n_visits=30)
    sel = np.arange(t.size) % 3
    out = {}
    for j, (b, amp) in enumerate((("g", 0.35), ("i", 0.2), ("r", 0.25))):
        tt = t[sel == j]
        m, s = sinusoid(tt, 0.6173, amp, rng, noise=0.04)
        out[b] = (tt, m + j, s)
    return out


def test_multiband_values(bands):
    g = MultiBandPeriodFeatures(["r", "g", "z", "i"])
    # i: 3 points, searched but too few for the sine fit
    series = {"g": bands["g"], "i": tuple(a[:3] for a in bands["i"]), "r": bands["r"]}
    v = g(series)
    tt = np.concatenate([series[b][0] for b in ("g", "i", "r")])
    mm = np.concatenate([series[b][1] for b in ("g", "i", "r")])
    ss = np.concatenate([series[b][2] for b in ("g", "i", "r")])
    band = np.repeat(["g", "i", "r"], [series[b][0].size for b in ("g", "i", "r")])
    res = find_period_multiband(tt, mm, ss, band)
    assert res.period == pytest.approx(0.6173, rel=1e-3)
    np.testing.assert_allclose(v[:4], [res.period, res.power, res.log10_fap, res.snr],
                               rtol=1e-9)
    assert v[4] == 3
    assert v[5] == pytest.approx(_sine_amp(*series["r"], v[0]), rel=1e-9)
    assert v[6] == pytest.approx(_sine_amp(*series["g"], v[0]), rel=1e-9)
    assert np.isnan(v[7]) and np.isnan(v[8])  # no z band; i too short for the fit
    # 4 points are enough for the sine fit
    series["i"] = tuple(a[:4] for a in bands["i"])
    v4 = g(series)
    assert v4[8] == pytest.approx(_sine_amp(*series["i"], v4[0]), rel=1e-9)


def test_multiband_counts_and_undefined(bands):
    g = MultiBandPeriodFeatures(["g", "r"])
    two = {"g": tuple(a[:2] for a in bands["g"]), "r": bands["r"]}
    v = g(two)
    assert v[4] == 1  # two points do not count as a band
    res = find_period_multiband(*bands["r"], np.repeat("r", bands["r"][0].size))
    assert v[0] == pytest.approx(res.period, rel=1e-12) and np.isnan(v[5])
    assert v[6] == pytest.approx(_sine_amp(*bands["r"], v[0]), rel=1e-9)
    # flat in every band: no period, only the band count
    flat = {b: (s[0], np.full(s[0].size, 15.0), s[2]) for b, s in bands.items()}
    v = g(flat)
    assert v[4] == 3 and np.isnan(np.delete(v, 4)).all()
    # too few points for the search (config.min_points)
    few = {"g": tuple(a[:4] for a in bands["g"]), "r": tuple(a[:4] for a in bands["r"])}
    v = MultiBandPeriodFeatures(["g", "r"], PeriodSearchConfig(min_points=9))(few)
    assert v[4] == 2 and np.isnan(np.delete(v, 4)).all()
    assert np.isnan(g({})).sum() == 6 and g({})[4] == 0


def test_multiband_checks_input(bands):
    g = MultiBandPeriodFeatures(["g", "r"])
    t, m, s = bands["g"]
    order = np.random.default_rng(0).permutation(t.size)
    a = g({"g": (t, m, s), "r": bands["r"]})
    b = g({"g": (t[order], m[order], s[order]), "r": bands["r"]})
    np.testing.assert_allclose(b, a, rtol=1e-12)
    m_bad = m.copy()
    m_bad[2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        g({"g": (t, m_bad, s), "r": bands["r"]})
    # compute_checked takes series as they are
    c = g.compute_checked({"g": check_lightcurve(t, m, s), "r": bands["r"]})
    np.testing.assert_array_equal(c, a)
