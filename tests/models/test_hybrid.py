"""The hybrid network: a CNN branch on dm-dt images and a dense branch on features."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from models.cnn import DmDtCNN, load_cnn  # noqa: E402
from models.hybrid import HybridCNN, hybrid_inputs  # noqa: E402
from pipeline.errors import ConfigError, InputError  # noqa: E402


def _xor_data(rng: np.random.Generator, n: int = 240):
    """Class = (planted pixel on) XOR (feature 0 > 0): neither input alone decides it."""
    img = (rng.random((n, 16, 16, 1)) * 0.2).astype(np.float32)
    on = rng.random(n) < 0.5
    img[on, 4, 7, 0] += 2.0
    F = rng.normal(size=(n, 4)) * np.array([1.0, 50.0, 1e-3, 1.0])  # very different scales
    F[:, 3] = np.nan  # a feature missing everywhere
    F[rng.random(n) < 0.1, 1] = np.nan
    y = np.where(on ^ (F[:, 0] > 0), "b", "a")
    return hybrid_inputs(img, F), y


@pytest.fixture(scope="module")
def trained():
    X, y = _xor_data(np.random.default_rng(0))
    est = HybridCNN(arch="mahabal2017", epochs=40, patience=8, learning_rate=3e-3,
                    random_state=0).fit(X, y)
    return est, X, y


def test_both_branches_are_used(trained):
    """The XOR of an image pixel and a feature is learnt by the hybrid (held-out objects),
    not by an image-only CNN of the same architecture and training."""
    est, X, y = trained
    Xt, yt = _xor_data(np.random.default_rng(1), 200)
    acc = np.mean(est.predict(Xt) == yt)
    cnn = DmDtCNN(arch="mahabal2017", epochs=40, patience=8, learning_rate=3e-3,
                  random_state=0).fit(X["dmdt"], y)
    acc_cnn = np.mean(cnn.predict(Xt["dmdt"]) == yt)
    assert acc > 0.9 and acc_cnn < 0.7, (acc, acc_cnn)


def test_scaler_medians_and_missing_features(trained):
    """The scaler in the network holds the training medians and 3 x IQR / 1.349; a missing
    feature gets the median (a feature missing everywhere: 0, scale 1), so NaN and the
    median give the same probabilities."""
    est, X, _ = trained
    F = X["features"]
    med = np.nanmedian(F[:, :3], axis=0)
    iqr = np.nanpercentile(F[:, :3], 75, axis=0) - np.nanpercentile(F[:, :3], 25, axis=0)
    np.testing.assert_allclose(est.feature_center_[:3], med)
    np.testing.assert_allclose(est.feature_scale_[:3], iqr / 1.349)
    assert est.feature_center_[3] == 0.0 and est.feature_scale_[3] == 1.0
    layer = est.model_.get_layer("feature_scaler")
    np.testing.assert_allclose(np.asarray(layer.mean).ravel(), est.feature_center_, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.asarray(layer.variance).ravel()),
                               3 * est.feature_scale_, rtol=1e-5)
    a = {"dmdt": X["dmdt"][:5], "features": X["features"][:5].copy()}
    b = {"dmdt": a["dmdt"], "features": a["features"].copy()}
    a["features"][:, 1] = np.nan
    a["features"][0, 0] = np.inf
    b["features"][:, 1] = est.feature_center_[1]
    b["features"][0, 0] = est.feature_center_[0]
    b["features"][:, 3] = 0.0
    np.testing.assert_array_equal(est.predict_proba(a), est.predict_proba(b))


def test_save_load_round_trip_and_checks(trained, tmp_path):
    est, X, _ = trained
    est.save(tmp_path / "m")
    back = load_cnn(tmp_path / "m")
    assert isinstance(back, HybridCNN) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.feature_center_, est.feature_center_)
    with pytest.raises(InputError, match="features input of shape"):
        back.predict_proba(hybrid_inputs(X["dmdt"], X["features"][:, :3]))
    with pytest.raises(ValueError, match="hybrid network takes X"):
        back.predict_proba(X["dmdt"])
    with pytest.raises(ConfigError, match="not the hybrid"):
        back.saliency(X)
    with pytest.raises(ValueError, match="features must have shape"):
        hybrid_inputs(X["dmdt"], X["features"][:10])
    with pytest.raises(ConfigError, match="feature_units"):
        HybridCNN(feature_units=1).fit(X, np.repeat(["a", "b"], len(X["dmdt"]) // 2))


def test_same_seed_same_network():
    X, y = _xor_data(np.random.default_rng(2), 80)
    a = HybridCNN(arch="mahabal2017", epochs=2, random_state=3).fit(X, y)
    b = HybridCNN(arch="mahabal2017", epochs=2, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.training_hash_ == b.training_hash_
