"""Tests of the synthetic survey generator (pipeline.simulate, ``lcpipe simulate``).

Shapes are checked with computations independent of the simulator: a
Lomb-Scargle periodogram from light-curve, least-squares Fourier fits, the
exact Ornstein-Uhlenbeck transition density, and the CRTS error curve.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline.contract import read_table
from pipeline.errors import ConfigError
from pipeline.io import read_json_metadata
from pipeline.lightcurves import LightCurves
from pipeline.simulate import (
    BANDS,
    CLASSES,
    METADATA_KEY,
    SurveyConfig,
    simulate_lightcurves,
    simulate_survey,
)
from pipeline.validate import clean_frame

CRTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "crts"


def _by_object(frame: pd.DataFrame):
    for oid, g in frame.groupby("object_id", sort=True):
        yield oid, g["t"].to_numpy(), g["mag"].to_numpy(), g["mag_err"].to_numpy()


def _fourier_fit(t, mag, err, period, n_harm):
    """Weighted least-squares Fourier series at a fixed period; model on a phase grid."""
    def design(phase):
        cols = [np.ones_like(phase)]
        for k in range(1, n_harm + 1):
            cols += [np.cos(2 * np.pi * k * phase), np.sin(2 * np.pi * k * phase)]
        return np.column_stack(cols)

    coef, *_ = np.linalg.lstsq(design(t / period % 1.0) / err[:, None], mag / err, rcond=None)
    return design(np.linspace(0, 1, 1000, endpoint=False)) @ coef


# --------------------------------------------------------------------- determinism


def test_same_seed_same_output_other_seed_differs():
    a = simulate_lightcurves(40, seed=7)
    b = simulate_lightcurves(40, seed=7)
    c = simulate_lightcurves(40, seed=8)
    pd.testing.assert_frame_equal(a.lightcurves, b.lightcurves)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.truth["label"].equals(c.truth["label"]) or not np.allclose(
        a.truth["mag_ref"], c.truth["mag_ref"])


@pytest.mark.parametrize("bands", [("V",), ("g", "r")])
def test_object_does_not_depend_on_range(bands):
    whole = simulate_lightcurves(30, seed=3, bands=bands)
    part = simulate_lightcurves(12, seed=3, start=9, bands=bands)
    ids = part.truth["object_id"]
    assert ids.iloc[0] == "sim0000009"
    expected = whole.lightcurves[whole.lightcurves["object_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.lightcurves, expected)
    pd.testing.assert_frame_equal(part.truth, whole.truth.iloc[9:21].reset_index(drop=True))


def test_survey_independent_of_chunk_size(tmp_path):
    small = simulate_survey(53, tmp_path / "a", seed=5, chunk_objects=4, bands=("g", "r"))
    big = simulate_survey(53, tmp_path / "b", seed=5, chunk_objects=1000, bands=("g", "r"))
    assert small.n_rows == big.n_rows == pq.ParquetFile(small.lightcurves).metadata.num_rows
    assert pq.ParquetFile(small.lightcurves).metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(pd.read_parquet(small.lightcurves),
                                  pd.read_parquet(big.lightcurves))
    assert small.labels.read_text() == big.labels.read_text()
    # and equal to the in-memory simulation, sorted by object_id, band, t
    sim = simulate_lightcurves(53, seed=5, bands=("g", "r", "i"))
    resorted = sim.lightcurves.sort_values(["object_id", "band", "t"], ignore_index=True)
    pd.testing.assert_frame_equal(resorted, sim.lightcurves)
    sim = simulate_lightcurves(53, seed=5, bands=("g", "r"))
    got = read_table(small.lightcurves).astype({"object_id": object, "band": object})
    pd.testing.assert_frame_equal(got, sim.lightcurves, check_dtype=False)
    lcs = LightCurves.from_frame(got)  # the dm-dt input container accepts it as clean
    assert len(lcs) == 2 * 53


# ------------------------------------------------------------------ format / contract


def test_output_follows_contract(tmp_path):
    cfg = SurveyConfig()
    res = simulate_survey(120, tmp_path / "sim", seed=1, chunk_objects=50)
    assert res.lightcurves == tmp_path / "sim" / "lightcurves.parquet"
    frame = read_table(res.lightcurves)
    assert list(frame.columns) == ["object_id", "band", "t", "mag", "mag_err"]
    assert frame[["t", "mag", "mag_err"]].notna().all().all()
    assert np.isfinite(frame[["t", "mag", "mag_err"]].to_numpy()).all()
    assert (frame["mag_err"] > 0).all()
    assert (frame["band"] == "V").all()
    # sorted by object_id, then t strictly increasing inside each object
    ids = frame["object_id"].to_numpy()
    assert (ids[1:] >= ids[:-1]).all()
    same = ids[1:] == ids[:-1]
    assert (np.diff(frame["t"].to_numpy())[same] > 0).all()
    # labels: one row per object, in the same order, all known classes
    labels = pd.read_csv(res.labels)
    assert list(labels.columns[:3]) == ["object_id", "label", "period"]
    assert labels["object_id"].tolist() == [f"sim{i:07d}" for i in range(120)]
    assert labels["object_id"].tolist() == list(pd.unique(ids))
    assert set(labels["label"]) <= set(CLASSES)
    periodic = labels["label"].isin(["RRab", "RRc", "EW", "EA", "LPV"])
    assert labels.loc[periodic, "period"].gt(0).all()
    assert labels.loc[~periodic, "period"].isna().all()
    # points per light curve and baseline
    n_pts = frame.groupby("object_id").size()
    assert n_pts.min() >= cfg.min_points * (1 - 3 * cfg.visit_loss) - cfg.visits_per_night
    assert n_pts.max() <= cfg.max_points + cfg.visits_per_night
    assert n_pts.std() > 50  # really varies
    span = frame.groupby("object_id")["t"].agg(lambda t: t.max() - t.min())
    assert span.min() > (cfg.min_seasons - 1) * 365.25
    assert span.max() < (cfg.max_seasons + 1) * 365.25
    # the validation rules find nothing to drop, merge or quarantine
    cleaned = clean_frame(frame)
    assert cleaned.counts.rows_out == len(frame) and not cleaned.counts.objects_quarantined
    pd.testing.assert_frame_equal(cleaned.frame.reset_index(drop=True), frame, check_dtype=False)
    meta = read_json_metadata(res.lightcurves, METADATA_KEY)
    assert meta["n"] == 120 and meta["seed"] == 1 and meta["bands"] == ["V"]


def test_cadence_nights_seasons_and_moon():
    cfg = SurveyConfig()
    sim = simulate_lightcurves(60, seed=2, classes=["constant"], config=cfg)
    synodic, new_moon = 29.530589, 51549.76
    for _, t, _, _ in _by_object(sim.lightcurves):
        night = np.floor(t)
        # several exposures per night, about visit_spacing apart, <= visits_per_night each
        _, per_night = np.unique(night, return_counts=True)
        assert np.median(per_night) == cfg.visits_per_night
        gaps = np.diff(t)
        short = gaps[gaps < 0.1] / cfg.visit_spacing  # jittered by +-15% per exposure
        assert np.median(short) == pytest.approx(1.0, abs=0.1)
        assert np.mean(np.abs(short - 1) <= 0.3) > 0.75
        # seasonal gaps: yearly gaps of months
        assert np.sum(gaps > 365.25 - cfg.season_length[1] - 2 * cfg.moon_gap) >= 2
        # nights fall in the dark part of the night in Arizona (MJD fraction 0.1-0.5)
        frac = t % 1.0
        slack = 0.2 * cfg.visit_spacing  # first exposure jitter
        assert frac.min() >= 0.1 - slack
        assert frac.max() <= 0.5 + cfg.visits_per_night * cfg.visit_spacing
        # no observations near full moon
        phase = (night - new_moon) % synodic
        assert np.all(np.abs(phase - synodic / 2) >= cfg.moon_gap / 2 - 1)


def test_reported_errors_follow_crts_error_curve():
    # median CRTS (CSS) mag_err in 0.5-mag bins of the real data (../shared, 1.65M rows)
    crts = {(14.0, 14.5): 0.055, (16.0, 16.5): 0.071, (17.5, 18.0): 0.105,
            (18.5, 19.0): 0.154, (19.0, 19.5): 0.192}
    sim = simulate_lightcurves(400, seed=4, classes=["constant"])
    mag, err = sim.lightcurves["mag"], sim.lightcurves["mag_err"]
    for (lo, hi), ref in crts.items():
        sel = (mag >= lo) & (mag < hi)
        assert sel.sum() > 100
        assert abs(np.median(err[sel]) / ref - 1) < 0.3, (lo, np.median(err[sel]), ref)


@pytest.mark.slow
@pytest.mark.skipif(not (CRTS / "lightcurves.parquet").exists(), reason="no CRTS data")
def test_error_curve_matches_real_crts():
    real = pd.read_parquet(CRTS / "lightcurves.parquet", columns=["mag", "mag_err"])
    sim = simulate_lightcurves(400, seed=4, classes=["constant"]).lightcurves
    for lo in np.arange(14.0, 19.5, 0.5):
        r = real["mag_err"][(real["mag"] >= lo) & (real["mag"] < lo + 0.5)].median()
        s = sim["mag_err"][(sim["mag"] >= lo) & (sim["mag"] < lo + 0.5)].median()
        assert abs(s / r - 1) < 0.35, (lo, s, r)


def test_magnitude_error_monotone_and_floor():
    cfg = SurveyConfig()
    m = np.linspace(10, 21, 200)
    err = cfg.magnitude_error(m)
    assert np.all(np.diff(err) > 0)
    assert err[0] == pytest.approx(cfg.error_floor, rel=0.01)
    assert cfg.magnitude_error(np.array([cfg.ref_mag]))[0] == pytest.approx(
        math.hypot(cfg.error_floor, cfg.error_ref))
    # photon-noise limit: random error grows by 10**0.2 per magnitude when faint
    faint = cfg.magnitude_error(np.array([25.0, 26.0]), seeing=1.0)
    assert faint[1] / faint[0] == pytest.approx(10**0.4, rel=0.05)


# ---------------------------------------------------------------------- class shapes


def test_constant_star_chi2_is_one():
    sim = simulate_lightcurves(200, seed=6, classes=["constant"])
    red = []
    for _, _, mag, err in _by_object(sim.lightcurves):
        w = 1 / err**2
        mean = np.sum(w * mag) / np.sum(w)
        red.append(np.sum(w * (mag - mean) ** 2) / (len(mag) - 1))
    red = np.array(red)
    assert np.mean(red) == pytest.approx(1.0, abs=0.03)
    assert np.percentile(red, 99) < 1.6


@pytest.mark.parametrize("label, factor", [("RRab", 1.0), ("RRc", 1.0), ("EW", 0.5)])
def test_period_recovered_by_lomb_scargle(label, factor):
    """The highest periodogram peak is the period (EW: half the orbital period)."""
    light_curve = pytest.importorskip("light_curve")
    freqs = np.linspace(0, 2 * np.pi * 10.0, 2**17 + 1)  # angular, up to 10 cycles/day
    periodogram = light_curve.Periodogram(peaks=1, freqs=freqs, fast=True)
    cfg = SurveyConfig(min_points=200, max_points=400)
    sim = simulate_lightcurves(50, seed=9, classes=[label], config=cfg)
    truth = sim.truth.set_index("object_id")
    good, tested = 0, 0
    for oid, t, mag, err in _by_object(sim.lightcurves):
        if truth.loc[oid, "amplitude"] / np.median(err) < 3:
            continue
        tested += 1
        period, _ = periodogram(t, mag, err)
        good += abs(period / (factor * truth.loc[oid, "period"]) - 1) < 0.01
    assert tested >= 25
    assert good / tested >= 0.95


def test_rrab_is_a_sawtooth():
    """Folded RRab: the rise (faint -> bright) takes much less time than the decline."""
    sim = simulate_lightcurves(30, seed=12, classes=["RRab"],
                               config=SurveyConfig(min_points=300, max_points=500))
    truth = sim.truth.set_index("object_id")
    for oid, t, mag, err in _by_object(sim.lightcurves):
        model = _fourier_fit(t, mag, err, truth.loc[oid, "period"], n_harm=6)
        i_max, i_min = np.argmax(model), np.argmin(model)  # faintest, brightest
        rise = (i_min - i_max) % len(model) / len(model)
        assert rise < 0.3, (oid, rise)
        assert np.ptp(model) == pytest.approx(truth.loc[oid, "amplitude"], rel=0.25)


def test_lpv_amplitude_and_period():
    sim = simulate_lightcurves(40, seed=13, classes=["LPV"])
    truth = sim.truth.set_index("object_id")
    assert truth["period"].between(100, 600).all()
    assert truth["amplitude"].min() >= 1.5
    fitted = 0
    for oid, t, mag, err in _by_object(sim.lightcurves):
        period, amplitude = truth.loc[oid, ["period", "amplitude"]]
        assert np.ptp(mag) > 0.8 * amplitude
        phase = np.sort(t / period % 1.0)
        if np.max(np.diff(np.r_[phase, phase[0] + 1])) > 0.25:
            continue  # cycle not covered well enough for a Fourier fit
        fitted += 1
        model = _fourier_fit(t, mag, err, period, n_harm=3)
        assert np.ptp(model) == pytest.approx(amplitude, rel=0.1), oid
    assert fitted >= 30


def test_ea_is_flat_with_narrow_eclipses():
    cfg = SurveyConfig(min_points=300, max_points=500)
    sim = simulate_lightcurves(40, seed=14, classes=["EA"], config=cfg)
    truth = sim.truth.set_index("object_id")
    deep_total = 0
    for oid, t, mag, err in _by_object(sim.lightcurves):
        base = truth.loc[oid, "mag_ref"]
        resid = (mag - base) / err
        # flat: most points sit at the out-of-eclipse level
        assert np.mean(np.abs(resid) < 3) > 0.7
        # eclipses only make it fainter: the bright side is pure noise about the
        # baseline, a half-normal with median 0.674 sigma
        assert np.median(-resid[resid < 0]) == pytest.approx(0.674, abs=0.15)
        # points well below the baseline are in eclipse: near phase 0 or 0.5
        deep = resid > 5
        deep_total += deep.sum()
        phase = (t - cfg.start_mjd) / truth.loc[oid, "period"]
        phase = phase - np.round(phase)  # offset from the nearest phase-0 of some epoch
        dist = np.abs(np.subtract.outer(phase[deep], phase[deep]))
        # all deep points of an object line up within two narrow phase windows
        near = np.minimum(dist % 1, 1 - dist % 1)
        assert np.all((near < 0.12) | (np.abs(near - 0.5) < 0.16))
        assert np.max(mag - base) < truth.loc[oid, "amplitude"] + 6 * np.max(err)
    assert deep_total > 100


def test_ew_minima_nearly_equal_and_continuous():
    sim = simulate_lightcurves(30, seed=15, classes=["EW"],
                               config=SurveyConfig(min_points=300, max_points=500))
    truth = sim.truth.set_index("object_id")
    for oid, t, mag, err in _by_object(sim.lightcurves):
        if truth.loc[oid, "amplitude"] / np.median(err) < 4:
            continue
        model = _fourier_fit(t, mag, err, truth.loc[oid, "period"], n_harm=4)
        n = len(model)
        model = np.roll(model, -np.argmax(model))  # primary minimum (faintest) at phase 0
        prim = model[0] - model.min()
        sec = model[4 * n // 10: 6 * n // 10].max() - model.min()
        assert 0.6 < sec / prim <= 1.0, oid
        # continuous variation: no flat out-of-eclipse stretch
        assert np.mean(np.abs(np.diff(model))) > 0


def test_agn_follows_exact_ou_transitions():
    """Noise-free AGN: the innovations of the exact OU transition are N(0, 1)."""
    cfg = SurveyConfig(error_floor=0.0, error_ref=1e-7)
    sim = simulate_lightcurves(80, seed=16, classes=["AGN"], config=cfg)
    truth = sim.truth.set_index("object_id")
    innov, first = [], []
    for oid, t, mag, _ in _by_object(sim.lightcurves):
        tau = truth.loc[oid, "tau"]
        sigma = truth.loc[oid, "amplitude"] / math.sqrt(2)  # SF_inf = sqrt(2) sigma
        x = mag - truth.loc[oid, "mag_ref"]
        a = np.exp(-np.diff(t) / tau)
        innov.append((x[1:] - a * x[:-1]) / (sigma * np.sqrt(1 - a**2)))
        first.append(x[0] / sigma)
    innov = np.concatenate(innov)
    assert len(innov) > 5000
    assert np.mean(innov) == pytest.approx(0, abs=0.05)
    assert np.std(innov) == pytest.approx(1, abs=0.05)
    assert np.std(first) == pytest.approx(1, abs=0.3)
    assert truth["tau"].between(30, 1000).all()


def test_class_mix_and_magnitude_range():
    cfg = SurveyConfig()
    sim = simulate_lightcurves(1400, seed=17, config=SurveyConfig(min_points=1, max_points=4))
    counts = sim.truth["label"].value_counts()
    assert set(counts.index) == set(CLASSES)
    assert counts.min() > 150 and counts.max() < 250
    assert sim.truth["mag_ref"].between(*cfg.mag_range).all()


def test_multiband_offsets_and_amplitudes():
    bands = ("g", "r")
    const = simulate_lightcurves(30, seed=18, bands=bands, classes=["constant"]).lightcurves
    med = const.groupby(["object_id", "band"])["mag"].median().unstack()
    assert set(const["band"]) == set(bands)
    colour = BANDS["g"][0] - BANDS["r"][0]
    assert np.median(med["g"] - med["r"]) == pytest.approx(colour, abs=0.02)
    assert np.allclose(med["g"] - med["r"], colour, atol=0.15)
    lpv = simulate_lightcurves(20, seed=19, bands=bands, classes=["LPV"]).lightcurves
    std = lpv.groupby(["object_id", "band"])["mag"].std().unstack()
    ratio = (std["g"] / std["r"]).median()
    assert ratio == pytest.approx(BANDS["g"][1] / BANDS["r"][1], rel=0.1)
    # exposures of a night cycle through the bands
    n_per_band = lpv.groupby(["object_id", "band"]).size().unstack()
    assert ((n_per_band["g"] / n_per_band["r"]).between(0.7, 1.4)).all()


# -------------------------------------------------------------------- errors and CLI


@pytest.mark.parametrize("kwargs", [
    {"bands": ("V", "q")},
    {"bands": ("V", "V")},
    {"classes": ["RRab", "Cepheid"]},
    {"classes": []},
    {"seed": -1},
    {"seed": 1.5},
    {"n": -1},
])
def test_bad_arguments_raise_config_error(kwargs):
    args = {"n": 3, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        simulate_lightcurves(**args)


@pytest.mark.parametrize("kwargs", [
    {"min_points": 10, "max_points": 5},
    {"visit_loss": 1.0},
    {"mag_range": (19.0, 13.0)},
    {"min_seasons": 0},
])
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigError):
        SurveyConfig(**kwargs)


def test_survey_rejects_bad_sizes(tmp_path):
    with pytest.raises(ConfigError):
        simulate_survey(0, tmp_path)
    with pytest.raises(ConfigError):
        simulate_survey(5, tmp_path, chunk_objects=0)
    assert not (tmp_path / "lightcurves.parquet").exists()


def test_cli_writes_files(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["simulate", "-n", "25", "-o", str(out), "--seed", "4", "--bands", "g,r",
               "--chunk-objects", "10"])
    assert rc == 0
    assert "25 light curves" in capsys.readouterr().out
    frame = read_table(out / "lightcurves.parquet").astype({"object_id": object, "band": object})
    assert frame["object_id"].nunique() == 25
    assert set(frame["band"]) == {"g", "r"}
    expected = simulate_lightcurves(25, seed=4, bands=("g", "r")).lightcurves
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert len(pd.read_csv(out / "labels.csv")) == 25


def test_cli_bad_band_exits_2(tmp_path, capsys):
    rc = main(["simulate", "-n", "5", "-o", str(tmp_path / "x"), "--bands", "V,q"])
    assert rc == 2
    assert "bad bands" in capsys.readouterr().err
