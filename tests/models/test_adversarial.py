"""Adversarial check of the CNN (models/adversarial.py): smallest flipping change [sigma].

Exact flip sizes come from a rule model whose answer is known in closed form ('b' iff some
pair of points differs by >= 0.5 mag); a small real network checks the invariants (the
reported change really flips it, error-bar scaling, negligible errors), and the shipped
bundle the bundle entry point.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.adversarial import (
    COLUMNS,
    DEFAULT_EPS,
    _candidates,
    adversarial_check,
    flip_search,
    flip_sizes,
    flip_summary,
    median_flip_size,
)
from models.representations import FINE_BINS, lightcurves_to_inputs
from pipeline.errors import ConfigError, InputError
from pipeline.lightcurves import LightCurves


class RuleModel:
    """'b' iff some pair of points has |dm| >= 0.5 mag (``fine`` input, band V).

    p_b = 0.4 without such a pair, else 0.6 + 0.4 * (mean over non-empty dt columns of
    the dm mass outside (-0.5, 0.5)), so the margin of a 'b' answer shrinks as pairs come
    back inside.
    """

    classes_ = np.array(["a", "b"])
    input_meta_ = {"preset": "fine", "bands": ["V"]}

    def __init__(self) -> None:
        lo, hi = np.asarray(FINE_BINS.dm_edges[:-1]), np.asarray(FINE_BINS.dm_edges[1:])
        self.outside = (lo >= 0.5) | (hi <= -0.5)
        self.calls = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        p = np.asarray(X, dtype=np.float64)[..., 0]  # p(dm | dt), (N, n_dm, n_dt)
        out = p[:, self.outside, :].sum(axis=(1, 2))
        cols = np.maximum((p.sum(axis=1) > 0).sum(axis=1), 1)
        pb = np.where(out > 1e-6, 0.6 + 0.4 * out / cols, 0.4)
        return np.stack([1 - pb, pb], axis=1)


def _lcs(curves: dict[str, np.ndarray], err: float | np.ndarray = 0.1,
         band: str = "V") -> LightCurves:
    """One series per object, daily points, the given magnitudes."""
    ids, lens, t, mag = [], [], [], []
    for oid, m in curves.items():
        ids.append(oid)
        lens.append(len(m))
        t.append(55000.0 + np.arange(len(m), dtype=np.float64))
        mag.append(np.asarray(m, dtype=np.float64))
    mag_all = np.concatenate(mag)
    return LightCurves(object_id=np.asarray(ids, dtype=object),
                       band=np.full(len(ids), band, dtype=object),
                       offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                       t=np.concatenate(t), mag=mag_all,
                       mag_err=np.broadcast_to(np.asarray(err, float), mag_all.shape).copy())


def _scaled(lcs: LightCurves, factor: float) -> LightCurves:
    return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets, t=lcs.t,
                       mag=lcs.mag, mag_err=lcs.mag_err * factor)


def _with_outlier(value: float, n: int = 30, at: int = 12) -> np.ndarray:
    m = np.full(n, 15.0)
    m[at] = value
    return m


@pytest.fixture(scope="module")
def rule_curves() -> LightCurves:
    """Errors 0.1 mag. Flip to 'b' needs a pair moved apart to |dm| >= 0.5:

    * const (all 15.0): two points moved 0.25 each -> eps >= 2.5 -> grid 3;
    * near (one point at 15.45): 0.025 each -> eps >= 0.25 -> grid 0.3;
    * mid (one point at 15.37): 0.065 each -> eps >= 0.65 -> grid 0.75;
    * two_level (5 at 15, 5 at 16, answer 'b'): every cross pair must come within 0.5,
      each point moved 0.25 -> eps >= 2.5: grid 3 or no flip found.
    """
    return _lcs({"const": np.full(30, 15.0), "near": _with_outlier(15.45),
                 "mid": _with_outlier(15.37),
                 "two_level": np.r_[np.full(5, 15.0), np.full(5, 16.0)]})


# --------------------------------------------------------------------------- exact sizes


def test_flip_sizes_of_a_rule_model_are_the_exact_grid_values(rule_curves):
    res = flip_search(RuleModel(), rule_curves, seed=0)
    t = res.table.set_index("object_id")
    assert list(res.table.columns) == list(COLUMNS) and res.eps == DEFAULT_EPS
    assert list(t["predicted_class"]) == ["a", "a", "a", "b"]
    assert t.loc["const", "flip_sigma"] == 3.0
    assert t.loc["near", "flip_sigma"] == 0.3
    assert t.loc["mid", "flip_sigma"] == 0.75
    assert list(t["flipped_to"].iloc[:3]) == ["b", "b", "b"]
    assert list(t["within_1_sigma"]) == [False, True, True, False]
    # never below the true minimum: the two-level curve cannot flip before 2.5 sigma
    two = t.loc["two_level", "flip_sigma"]
    assert np.isnan(two) or two == 3.0
    # a flip needs at least two points moved apart
    assert (t["points_moved"].iloc[:3] >= 2).all()
    # an object stops being searched when it flips: tries * rounds per grid value up to it
    per_level = 32 * 2
    assert t.loc["near", "candidates_tried"] <= 3 * per_level
    assert t.loc["const", "candidates_tried"] > t.loc["mid", "candidates_tried"]
    assert 0.0 < t.loc["near", "candidates_tried"]
    # 'a' answers: p_a = 1 - 0.4; the two-level curve: p_b = 0.6 + 0.4 * its outside mass
    np.testing.assert_allclose(t["probability"].iloc[:3], 0.6)
    assert 0.6 < t.loc["two_level", "probability"] <= 1.0
    np.testing.assert_allclose(t["margin"].iloc[:3], 0.2)


def test_reported_perturbation_flips_and_moves_by_flip_sigma(rule_curves):
    model = RuleModel()
    res = flip_search(model, rule_curves, seed=3)
    adv = res.perturbed_lightcurves(rule_curves)
    _, X, _ = lightcurves_to_inputs(adv, "fine", ["V"])
    got = model.classes_[model.predict_proba(X).argmax(axis=1)]
    t = res.table
    flipped = t["flip_sigma"].notna().to_numpy()
    np.testing.assert_array_equal(got[flipped], t["flipped_to"][flipped])
    np.testing.assert_array_equal(got[~flipped], t["predicted_class"][~flipped])
    # every moved point moved by exactly flip_sigma of its error bar
    obj = np.repeat(np.arange(len(t)), rule_curves.n_points)
    z = (adv.mag - rule_curves.mag) / rule_curves.mag_err
    size = t["flip_sigma"].fillna(0).to_numpy()[obj]
    np.testing.assert_allclose(np.abs(z[res.signs != 0]), size[res.signs != 0], rtol=1e-9)
    assert (z[res.signs == 0] == 0).all()
    np.testing.assert_array_equal(np.bincount(obj, weights=res.signs != 0).astype(int),
                                  t["points_moved"])


def test_guided_rounds_find_flips_random_patterns_miss():
    """The two-level curve flips only if all 10 points move the right way (2^-10 for a
    random pattern): 8 dense + 8 sparse random patterns miss it, the hill climb finds it."""
    lcs = _lcs({"two_level": np.r_[np.full(5, 15.0), np.full(5, 16.0)]})
    once = flip_sizes(RuleModel(), lcs, eps=(3.0,), tries=16, rounds=1, seed=0)
    assert np.isnan(once["flip_sigma"].iloc[0])
    climb = flip_sizes(RuleModel(), lcs, eps=(3.0,), tries=16, rounds=40, seed=0)
    assert climb["flip_sigma"].iloc[0] == 3.0 and climb["flipped_to"].iloc[0] == "a"
    assert climb["points_moved"].iloc[0] == 10


def test_a_flip_at_exactly_one_sigma_is_within_1_sigma():
    t = flip_sizes(RuleModel(), _lcs({"mid": _with_outlier(15.37)}), eps=(0.5, 1.0, 2.0))
    assert t["flip_sigma"].iloc[0] == 1.0 and bool(t["within_1_sigma"].iloc[0])


def test_negligible_error_bars_never_flip(rule_curves):
    t = flip_sizes(RuleModel(), _scaled(rule_curves, 1e-9), tries=8, rounds=1)
    assert t["flip_sigma"].isna().all() and t["flipped_to"].isna().all()
    assert not t["within_1_sigma"].any() and (t["points_moved"] == 0).all()
    assert (t["candidates_tried"] == len(DEFAULT_EPS) * 8).all()


def test_scaling_errors_and_grid_gives_the_same_search(rule_curves):
    """mag_err * 4 with eps / 4: the same changes [mag] (exact in binary), same rows."""
    eps = np.array([0.1, 0.2, 0.3, 0.75, 3.0])
    a = flip_search(RuleModel(), rule_curves, eps=eps, tries=8, seed=5)
    b = flip_search(RuleModel(), _scaled(rule_curves, 4.0), eps=eps / 4, tries=8, seed=5)
    np.testing.assert_array_equal(a.signs, b.signs)
    expect = a.table.assign(flip_sigma=a.table["flip_sigma"] / 4,
                            within_1_sigma=a.table["flip_sigma"] / 4 <= 1)
    pd.testing.assert_frame_equal(b.table, expect)
    assert b.table["within_1_sigma"].sum() == 3  # 0.75 sigma: now all of them within 1


def test_same_seed_same_result_whatever_the_batch(rule_curves):
    a = flip_search(RuleModel(), rule_curves, tries=8, seed=11)
    b = flip_search(RuleModel(), rule_curves, tries=8, seed=11, batch_images=8)
    pd.testing.assert_frame_equal(a.table, b.table)
    np.testing.assert_array_equal(a.signs, b.signs)
    one, four = RuleModel(), RuleModel()
    flip_search(one, rule_curves, tries=8, seed=11, batch_images=8)
    flip_search(four, rule_curves, tries=8, seed=11)
    assert four.calls < one.calls  # one batch of four objects vs one object per batch


def test_candidates_patterns():
    rng = np.random.default_rng(0)
    c = _candidates(rng, 50, 10, None, max_points=3)
    assert c.shape == (10, 50) and c.dtype == np.int8 and set(np.unique(c)) <= {-1, 0, 1}
    moved = np.count_nonzero(c, axis=1)
    assert (moved[:5] == 50).all() and ((moved[5:] >= 1) & (moved[5:] <= 3)).all()
    inc = np.zeros(50, np.int8)
    inc[:4] = [1, -1, 1, 1]
    c = _candidates(rng, 50, 9, inc, max_points=3)
    np.testing.assert_array_equal(c[0], inc)
    assert (c[1:5] != inc).any(axis=1).sum() >= 3  # a redraw can hit the same value
    assert (np.count_nonzero(c[5:7], axis=1) == 50).all()
    assert ((np.count_nonzero(c[7:], axis=1) >= 1) & (np.count_nonzero(c[7:], axis=1) <= 3)
            ).all()


def test_summary_and_censored_median():
    t = pd.DataFrame({"predicted_class": ["a", "a", "a", "b", "b"],
                      "flip_sigma": [0.1, 0.5, np.nan, np.nan, 1.0]})
    t["within_1_sigma"] = t["flip_sigma"] <= 1
    s = flip_summary(t).set_index("predicted_class")
    assert list(s.index) == ["a", "b", "__overall__"]
    assert s.loc["a", "median_flip_sigma"] == 0.5  # 0.1, 0.5, inf
    assert s.loc["b", "median_flip_sigma"] == np.inf  # (1.0 + inf) / 2
    assert s.loc["__overall__", "median_flip_sigma"] == 1.0  # 0.1 0.5 1.0 inf inf
    assert s.loc["a", "within_1_sigma"] == pytest.approx(2 / 3)
    assert s.loc["__overall__", "never_flipped"] == pytest.approx(2 / 5)
    assert list(s["objects"]) == [3, 2, 5]
    assert np.isnan(median_flip_size([]))


def test_bad_input_is_a_clear_error(rule_curves):
    m = RuleModel()
    for eps, msg in [((0.5, 0.2), "strictly increasing"), ((0.0, 1.0), "> 0"),
                     ((), "non-empty"), ((1.0, np.inf), "finite"), ("ab", "numbers")]:
        with pytest.raises(ConfigError, match=msg):
            flip_search(m, rule_curves, eps=eps)
    for kw in ({"tries": 0}, {"rounds": 0}, {"max_points": 0}, {"batch_images": 0},
               {"tries": 2.5}, {"seed": -1}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            flip_search(m, rule_curves, **kw)
    with pytest.raises(InputError, match="mag_err must be finite and > 0"):
        flip_search(m, _scaled(rule_curves, 0.0))
    with pytest.raises(InputError, match=r"model's bands \['V'\]"):
        flip_search(m, _lcs({"x": np.full(5, 15.0)}, band="R"))

    class NoMeta(RuleModel):
        input_meta_ = {}

    with pytest.raises(ConfigError, match="no representation"):
        flip_search(NoMeta(), rule_curves)

    class WithFeatures(RuleModel):
        input_meta_ = {**RuleModel.input_meta_, "feature_names": ["amplitude"]}

    with pytest.raises(ConfigError, match="hybrid network"):
        flip_search(WithFeatures(), rule_curves)
    with pytest.raises(ConfigError, match="fitted classifier"):
        flip_search(object(), rule_curves)
    other = _lcs({"x": np.full(5, 15.0)})
    res = flip_search(m, rule_curves, tries=2, rounds=1)
    with pytest.raises(InputError, match="not the light curves"):
        res.perturbed_lightcurves(other)
    empty = flip_sizes(m, LightCurves(np.array([], object), np.array([], object),
                                      np.zeros(1, np.int64), np.array([]), np.array([]),
                                      np.array([])))
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0


# --------------------------------------------------------------------------- real network


@pytest.fixture(scope="module")
def small_cnn():
    """mahabal2017 on the fine representation: constant vs 1 mag sinusoid (errors 0.02)."""
    pytest.importorskip("keras")
    from models.cnn import DmDtCNN

    rng = np.random.default_rng(7)
    curves, labels = {}, {}
    for k in range(40):
        n = int(rng.integers(40, 70))
        t = 55000 + np.sort(rng.choice(1500, size=n, replace=False)).astype(float)
        amp = 1.0 if k % 2 else 0.0
        curves[f"o{k:03d}"] = (t, 15 + amp * np.sin(2 * np.pi * t / 0.37)
                               + rng.normal(0, 0.02, n))
        labels[f"o{k:03d}"] = "var" if k % 2 else "const"
    lens = [len(t) for t, _ in curves.values()]
    lcs = LightCurves(object_id=np.asarray(list(curves), dtype=object),
                      band=np.full(len(curves), "V", dtype=object),
                      offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                      t=np.concatenate([t for t, _ in curves.values()]),
                      mag=np.concatenate([m for _, m in curves.values()]),
                      mag_err=np.full(sum(lens), 0.02))
    oid, X, meta = lightcurves_to_inputs(lcs, "fine", ["V"])
    y = np.asarray([labels[o] for o in oid])
    clf = DmDtCNN(arch="mahabal2017", epochs=8, batch_size=8, learning_rate=3e-3,
                  patience=8, validation_fraction=0.0, random_state=0).fit(
        X, y, input_meta=meta)
    assert np.mean(clf.predict(X) == y) == 1.0
    return clf, lcs, y


def test_flips_of_a_real_network_are_real(small_cnn):
    """Up to 32 sigma (0.64 mag) the constant stars become variables; the reported change
    is classified as flipped_to by the network itself."""
    clf, lcs, y = small_cnn
    eps = (0.5, 2.0, 8.0, 32.0)
    res = flip_search(clf, lcs, eps=eps, tries=8, rounds=1, seed=0)
    t = res.table
    np.testing.assert_array_equal(t["predicted_class"], y)
    const = (t["predicted_class"] == "const").to_numpy()
    assert t["flip_sigma"][const].notna().all()
    assert (t["flipped_to"][const] == "var").all()
    # a 2 sigma (0.04 mag) change keeps a constant star's dm spread far below a 1 mag
    # variable's; making a variable look constant needs coordinated ~1 mag moves (> 32 sigma)
    assert (t["flip_sigma"][const] >= 8.0).all()
    assert t["flip_sigma"][~const].isna().all()
    _, X, _ = lightcurves_to_inputs(res.perturbed_lightcurves(lcs), "fine", ["V"])
    p = clf.predict_proba(X)
    got = clf.classes_[p.argmax(axis=1)]
    flipped = t["flip_sigma"].notna().to_numpy()
    clear = np.abs(np.diff(np.sort(p, axis=1)[:, -2:], axis=1))[:, 0] > 1e-4
    np.testing.assert_array_equal(got[flipped & clear], t["flipped_to"][flipped & clear])
    np.testing.assert_allclose(p[flipped, :].max(axis=1), t["flip_probability"][flipped],
                               atol=1e-4)

    # same search with errors x 4 and grid / 4: identical rows, sizes / 4
    b = flip_search(clf, _scaled(lcs, 4.0), eps=tuple(e / 4 for e in eps), tries=8,
                    rounds=1, seed=0)
    np.testing.assert_array_equal(b.signs, res.signs)
    np.testing.assert_array_equal(b.table["flip_sigma"], t["flip_sigma"] / 4)
    pd.testing.assert_series_equal(b.table["flipped_to"], t["flipped_to"])

    # errors of 1e-9 of their size: nothing moves a pair across a bin edge
    tiny = flip_sizes(clf, _scaled(lcs, 1e-9), eps=(1.0, 3.0), tries=8, rounds=1)
    assert tiny["flip_sigma"].isna().all() and not tiny["within_1_sigma"].any()
    pd.testing.assert_series_equal(tiny["probability"], t["probability"])


def test_bundle_entry_point_runs_the_bundles_cnn(tmp_path):
    pytest.importorskip("keras")
    from models.bundle import load_bundle
    from models.training import load_model_cached
    from pipeline.demo import sample_paths
    from pipeline.lightcurves import read_lightcurves

    lcs = read_lightcurves(sample_paths()["lightcurves"])
    keep = np.flatnonzero(np.isin(lcs.object_id, lcs.object_id[:3]))
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1]) for i in keep])
    three = LightCurves(object_id=lcs.object_id[keep], band=lcs.band[keep],
                        offsets=np.r_[0, np.cumsum(lcs.n_points[keep])].astype(np.int64),
                        t=lcs.t[rows], mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])
    kw = {"eps": (0.5, 1.0), "tries": 4, "rounds": 1, "seed": 2}
    got = adversarial_check("crts", three, **kw)
    model, _ = load_model_cached("cnn", load_bundle("crts").model_path("cnn"))
    pd.testing.assert_frame_equal(got, flip_sizes(model, three, **kw))
    assert list(got["object_id"]) == list(lcs.object_id[:3])
    assert set(got["predicted_class"]) <= set(model.classes_)

    b = load_bundle("crts")
    info = dict(b.info, models=["rpca_nearest"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(info))
    (tmp_path / "b" / "rpca_nearest.npz").symlink_to(b.model_path("rpca_nearest"))
    with pytest.raises(InputError, match="no CNN"):
        adversarial_check(tmp_path / "b", three, **kw)


# --------------------------------------------------------------------------- hybrid: features


class FeatureRuleModel:
    """A hybrid-like model whose answer depends on one recomputed feature only.

    'b' iff ``V:amplitude`` (half of max - min [mag]) >= 0.25, i.e. the same closed-form
    rule as :class:`RuleModel` (some pair >= 0.5 mag apart), read from the feature table.
    p_b = 0.4 * amp / 0.25 below the threshold (the margin of an 'a' answer shrinks as the
    amplitude grows), 0.6 + 0.4 * min(amp - 0.25, 1) above.
    """

    classes_ = np.array(["a", "b"])
    input_meta_ = {"preset": "fine", "bands": ["V"], "feature_set_version": "1.0",
                   "feature_names": ["V:weighted_mean", "V:amplitude", "V:period"]}

    def __init__(self) -> None:
        self.calls = 0

    def proba_of(self, amp: np.ndarray) -> np.ndarray:
        amp = np.asarray(amp, dtype=np.float64)
        pb = np.where(amp >= 0.25, 0.6 + 0.4 * np.minimum(amp - 0.25, 1.0), 0.4 * amp / 0.25)
        return np.stack([1 - pb, pb], axis=1)

    def predict_proba(self, X: dict) -> np.ndarray:
        self.calls += 1
        assert set(X) == {"dmdt", "features"}
        assert X["dmdt"].shape[1:] == (36, 32, 2) and X["features"].shape == (len(X["dmdt"]), 3)
        return self.proba_of(X["features"][:, 1])


def _first_objects(lcs: LightCurves, k: int) -> LightCurves:
    keep = np.flatnonzero(np.isin(lcs.object_id, pd.unique(lcs.object_id)[:k]))
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1]) for i in keep])
    return LightCurves(object_id=lcs.object_id[keep], band=lcs.band[keep],
                       offsets=np.r_[0, np.cumsum(lcs.n_points[keep])].astype(np.int64),
                       t=lcs.t[rows], mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])


def _extract(lcs: LightCurves) -> pd.DataFrame:
    from features.api import extract_features

    return extract_features(lcs, bands=["V"])


def _rule_on(model: FeatureRuleModel, lcs: LightCurves) -> np.ndarray:
    """The rule's answer on features computed here, independently of the search."""
    amp = _extract(lcs)["V:amplitude"].to_numpy()
    return model.classes_[model.proba_of(amp).argmax(axis=1)]


def test_hybrid_flip_sizes_come_from_recomputed_features(rule_curves):
    model = FeatureRuleModel()
    res = flip_search(model, rule_curves, seed=0, features=_extract)
    t = res.table.set_index("object_id")
    assert list(t["predicted_class"]) == ["a", "a", "a", "b"]
    assert list(t["predicted_class"]) == list(_rule_on(model, rule_curves))
    assert t.loc["const", "flip_sigma"] == 3.0
    assert t.loc["near", "flip_sigma"] == 0.3
    assert t.loc["mid", "flip_sigma"] == 0.75
    two = t.loc["two_level", "flip_sigma"]
    assert np.isnan(two) or two == 3.0
    assert list(t["flipped_to"].iloc[:3]) == ["b", "b", "b"]
    p0 = model.proba_of(_extract(rule_curves)["V:amplitude"].to_numpy())
    np.testing.assert_allclose(t["probability"], p0.max(axis=1))
    # the reported change flips the rule on features recomputed here
    adv = res.perturbed_lightcurves(rule_curves)
    flipped = res.table["flip_sigma"].notna().to_numpy()
    got = _rule_on(model, adv)
    np.testing.assert_array_equal(got[flipped], res.table["flipped_to"][flipped])
    np.testing.assert_array_equal(got[~flipped], res.table["predicted_class"][~flipped])
    amp = _extract(adv)["V:amplitude"].to_numpy()
    np.testing.assert_allclose(res.table["flip_probability"][flipped],
                               model.proba_of(amp[flipped]).max(axis=1))


def test_hybrid_features_held_fixed_never_flip():
    """Handing back the measured features for every copy: nothing can flip, while
    recomputing them flips the near curve at 0.3 sigma."""
    model = FeatureRuleModel()
    lcs = _lcs({"near": _with_outlier(15.45)})
    measured = _extract(lcs)

    def fixed(copies: LightCurves) -> pd.DataFrame:
        ids = pd.unique(copies.object_id.astype(str))
        out = measured.loc[np.zeros(len(ids), dtype=int)].reset_index(drop=True)
        out.attrs = dict(measured.attrs)
        return out.assign(object_id=ids)

    kw = {"eps": (0.2, 0.3, 3.0), "tries": 8, "rounds": 2, "seed": 1}
    held = flip_sizes(model, lcs, features=fixed, **kw)
    assert held["flip_sigma"].isna().all() and (held["candidates_tried"] == 3 * 16).all()
    live = flip_sizes(model, lcs, features=_extract, **kw)
    assert live["flip_sigma"].iloc[0] == 0.3


def test_hybrid_feature_rows_are_matched_by_copy_id(rule_curves):
    """The search matches the callable's rows to the copies by object_id: a table in
    another order (and with ids as ints) gives the same search."""
    rng = np.random.default_rng(0)
    orders = []

    def shuffled(copies: LightCurves) -> pd.DataFrame:
        f = _extract(copies)
        perm = rng.permutation(len(f))
        orders.append(perm)
        return f.iloc[perm].assign(object_id=f["object_id"].iloc[perm].astype(int))

    kw = {"tries": 8, "seed": 4, "batch_images": 16}
    a = flip_search(FeatureRuleModel(), rule_curves, features=_extract, **kw)
    b = flip_search(FeatureRuleModel(), rule_curves, features=shuffled, **kw)
    assert any((o != np.arange(len(o))).any() for o in orders)  # really shuffled
    pd.testing.assert_frame_equal(a.table, b.table)
    np.testing.assert_array_equal(a.signs, b.signs)


def test_hybrid_without_features_or_with_bad_tables_is_a_clear_error(rule_curves):
    model = FeatureRuleModel()
    with pytest.raises(ConfigError, match=r"hybrid network\): pass features="):
        flip_search(model, rule_curves)
    with pytest.raises(ConfigError, match="image-only network"):
        flip_search(RuleModel(), rule_curves, features=_extract)
    with pytest.raises(ConfigError, match="callable"):
        flip_search(model, rule_curves, features="V:amplitude")
    kw = {"tries": 2, "rounds": 1, "eps": (1.0,)}

    def drop_first(copies):
        return _extract(copies).iloc[1:]

    with pytest.raises(InputError, match="object missing"):
        flip_search(model, rule_curves, features=drop_first, **kw)

    def no_amplitude(copies):
        return _extract(copies).drop(columns=["V:amplitude"])

    with pytest.raises(InputError, match="feature columns the model needs are missing"):
        flip_search(model, rule_curves, features=no_amplitude, **kw)

    def other_version(copies):
        f = _extract(copies)
        f.attrs["feature_set_version"] = "1.0+abcdef12"
        return f

    with pytest.raises(InputError, match="feature-set version"):
        flip_search(model, rule_curves, features=other_version, **kw)

    def no_version(copies):
        f = _extract(copies)
        f.attrs = {}
        return f

    with pytest.raises(ConfigError, match="no feature-set version"):
        flip_search(model, rule_curves, features=no_version, **kw)

    def twice(copies):
        f = _extract(copies)
        return pd.concat([f, f.iloc[:1]])

    with pytest.raises(InputError, match="two rows for one copy"):
        flip_search(model, rule_curves, features=twice, **kw)


def test_bundle_entry_point_refuses_missing_or_unknown_networks(rule_curves):
    with pytest.raises(InputError, match="crts.*no hybrid network"):
        adversarial_check("crts", rule_curves, model="hybrid")
    with pytest.raises(ConfigError, match="model must be one of"):
        adversarial_check("crts", rule_curves, model="forest")
    with pytest.raises(ConfigError, match="flip_search"):
        adversarial_check("crts", rule_curves, model="cnn", features=_extract)
    with pytest.raises(ConfigError, match="n_jobs"):
        adversarial_check("crts", rule_curves, model="cnn", n_jobs=0)


def test_bundle_entry_point_runs_the_bundles_hybrid(tmp_path):
    """A tiny hybrid put in a copy of the shipped bundle: adversarial_check searches it with
    the features computed as classify does, in one process or several."""
    pytest.importorskip("keras")
    from features.api import extract_features
    from models.bundle import load_bundle
    from models.forest_files import select_feature_columns
    from models.hybrid import HybridCNN, hybrid_inputs
    from pipeline.demo import sample_paths
    from pipeline.lightcurves import read_lightcurves

    b = load_bundle("crts")
    bands = list(b.info["bands"])
    lcs = _first_objects(read_lightcurves(sample_paths()["lightcurves"]), 16)
    feats = extract_features(lcs, bands=bands)
    names = select_feature_columns(feats.attrs)
    oid, X, meta = lightcurves_to_inputs(lcs, "fine", bands)
    assert list(oid) == list(feats["object_id"])
    y = np.where(np.arange(len(oid)) % 2, "EA", "EW")
    net = HybridCNN(arch="mahabal2017", epochs=1, batch_size=8, validation_fraction=0.0,
                    random_state=0).fit(
        hybrid_inputs(X, feats[names].to_numpy(np.float64)), y,
        input_meta={**meta, "feature_names": names,
                    "feature_set_version": feats.attrs["feature_set_version"]})
    (tmp_path / "b").mkdir()
    net.save(tmp_path / "b" / "hybrid")
    (tmp_path / "b" / "cnn").symlink_to(b.model_path("cnn"))
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(dict(b.info,
                                                                models=["cnn", "hybrid"])))

    three = _first_objects(lcs, 3)
    kw = {"eps": (0.5, 3.0), "tries": 4, "rounds": 1, "seed": 2}
    got = adversarial_check(tmp_path / "b", three, model="hybrid", **kw)
    want = flip_sizes(net, three, features=lambda c: extract_features(c, bands=bands), **kw)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)
    assert list(got["object_id"]) == list(three.object_id)
    assert (got["candidates_tried"] >= 4).all()
    two = adversarial_check(tmp_path / "b", three, model="hybrid", n_jobs=2, **kw)
    pd.testing.assert_frame_equal(two, got, check_exact=False, atol=1e-6)
