"""Robustness of predictions to the measurement errors (models/robustness.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

from models.robustness import error_robustness, perturbed  # noqa: E402
from pipeline.demo import sample_paths  # noqa: E402
from pipeline.lightcurves import LightCurves, read_lightcurves  # noqa: E402


@pytest.fixture(scope="module")
def twelve() -> LightCurves:
    lcs = read_lightcurves(sample_paths()["lightcurves"])
    keep = np.isin(lcs.object_id, np.unique(lcs.object_id)[:12])
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1])
                           for i in np.flatnonzero(keep)])
    sizes = np.diff(lcs.offsets)[keep]
    return LightCurves(object_id=lcs.object_id[keep], band=lcs.band[keep],
                       offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64), t=lcs.t[rows],
                       mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])


def _scaled(lcs: LightCurves, factor: float) -> LightCurves:
    return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets, t=lcs.t,
                       mag=lcs.mag, mag_err=lcs.mag_err * factor)


def test_redraws_follow_the_error_bars(twelve):
    """mag - measured, in units of mag_err, is standard normal; times and errors kept."""
    draws = np.stack([perturbed(twelve, np.random.default_rng(s)).mag for s in range(20)])
    z = (draws - twelve.mag) / twelve.mag_err
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    d = perturbed(twelve, np.random.default_rng(0))
    assert d.t is twelve.t and d.mag_err is twelve.mag_err


def test_negligible_errors_keep_every_answer_and_large_ones_do_not(twelve, tmp_path):
    """Errors scaled to 1e-9 of their size: a model of the light curves cannot change its
    answer (every model fully stable, probabilities unchanged). Scaled 30x (0.3-3 mag of
    noise): the forest changes some answers. The per-class table is the mean of the
    per-object one."""
    objs, classes, info = error_robustness("crts", _scaled(twelve, 1e-9), tmp_path / "a", k=2)
    assert info["objects"] == 12 and len(objs) == 12 * 3  # forest, cnn, rpca_nearest
    assert (objs["stable_fraction"] == 1.0).all()
    prob = objs["probability_std"].dropna()
    assert len(prob) == 24 and (prob < 1e-4).all()  # float32 network outputs
    noisy, classes, _ = error_robustness("crts", _scaled(twelve, 30.0), tmp_path / "b", k=2,
                                         seed=1)
    forest = noisy[noisy["model"] == "forest"]
    assert forest["stable_fraction"].mean() < 1.0
    assert set(noisy["stable_fraction"]) <= {0.0, 0.5, 1.0}
    ref = noisy.groupby(["model", "predicted_class"])["stable_fraction"].mean()
    got = classes.set_index(["model", "predicted_class"])["stable_fraction"]
    pd.testing.assert_series_equal(got.sort_index(), ref.sort_index(), check_names=False)
