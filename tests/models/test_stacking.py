"""Stacked ensemble and calibration metrics, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.evaluation import cross_validate, reliability, stratified_folds
from models.stacking import StackedClassifier, load_stack, save_stack, stack_inputs
from pipeline.errors import InputError


def _bases(rng: np.random.Generator, n: int = 600):
    """Two base models over 3 classes: A tells 'a' from 'b' but guesses on 'c';
    B knows 'c' from the rest but mixes 'a' and 'b'."""
    y = np.repeat(np.array(["a", "b", "c"]), n // 3)
    idx = np.searchsorted(["a", "b", "c"], y)
    pa = np.full((n, 3), 0.1)
    pa[np.arange(n), idx] = 0.8
    pa[y == "c"] = rng.dirichlet([1, 1, 1], (y == "c").sum())
    pb = np.where((y == "c")[:, None], [0.05, 0.05, 0.9], [0.45, 0.45, 0.1])
    noise = rng.dirichlet([50, 50, 50], n)
    pa, pb = (pa + 0.2 * noise) / 1.2, (pb + 0.2 * noise[::-1]) / 1.2
    return y, pa, pb


def test_probabilities_equal_scikit_learn_on_the_log_inputs():
    """The stored softmax (binary folded to two rows) gives scikit-learn's probabilities."""
    rng = np.random.default_rng(0)
    y, pa, pb = _bases(rng)
    X = stack_inputs([pa, pb])
    for yy in (y, np.where(y == "c", "c", "ab")):
        st = StackedClassifier(C=0.5).fit(X, yy)
        ref = LogisticRegression(C=0.5, max_iter=5000).fit(np.log(np.clip(X, 1e-4, 1)), yy)
        np.testing.assert_allclose(st.predict_proba(X), ref.predict_proba(
            np.log(np.clip(X, 1e-4, 1))), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(st.classes_, ref.classes_)


def test_stack_beats_each_base_model_out_of_fold():
    """Each base model is wrong where the other is right: the stack, cross-validated on
    their probabilities, beats both (accuracy of each base model = argmax)."""
    rng = np.random.default_rng(1)
    y, pa, pb = _bases(rng)
    cls = np.array(["a", "b", "c"])
    acc_a, acc_b = np.mean(cls[pa.argmax(1)] == y), np.mean(cls[pb.argmax(1)] == y)
    oof = cross_validate(StackedClassifier(), stack_inputs([pa, pb]), y,
                         stratified_folds(y, 5, seed=0))
    acc = np.mean(oof.y_pred == y)
    assert acc > max(acc_a, acc_b) + 0.1, (acc, acc_a, acc_b)


def test_save_load_round_trip_and_damage(tmp_path):
    rng = np.random.default_rng(2)
    y, pa, pb = _bases(rng)
    X = stack_inputs([pa, pb])
    st = StackedClassifier(base_models=["forest", "cnn"]).fit(X, y)
    p = save_stack(st, tmp_path / "stack.npz", extra={"classes_hash": "x"})
    loaded, meta = load_stack(p)
    np.testing.assert_array_equal(loaded.predict_proba(X), st.predict_proba(X))
    assert meta["base_models"] == ["forest", "cnn"] and meta["classes_hash"] == "x"
    with np.load(p) as z:
        arrays = dict(z)
    np.savez(tmp_path / "bad.npz", **{**arrays, "coef": arrays["coef"][:, :4]})
    with pytest.raises(InputError, match="do not fit 3 distinct classes"):
        load_stack(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not an lcpipe stacked model"):
        load_stack(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="expected 6 probability columns"):
        st.predict_proba(X[:, :3])


def test_reliability_by_hand():
    """Two bins by hand: 4 objects at 0.95 with 3 right, 2 at 0.55 with 2 right.
    ECE = 4/6 |0.75 - 0.95| + 2/6 |1.0 - 0.55| = 0.13333 + 0.15 = 0.28333."""
    proba = np.array([[0.95, 0.05]] * 4 + [[0.45, 0.55]] * 2)
    y = np.array(["a", "a", "a", "b", "b", "b"])
    ece, rows = reliability(y, proba, ["a", "b"], n_bins=10)
    assert ece == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.45)
    assert rows["n"].tolist() == [2, 4] and rows["bin_low"].tolist() == [0.5, 0.9]
    np.testing.assert_allclose(rows["accuracy"], [1.0, 0.75])
    np.testing.assert_allclose(rows["confidence"], [0.55, 0.95])


def test_reliability_of_calibrated_and_overconfident_models():
    """Correct with exactly the stated probability: ECE near 0. Claiming 0.1 more than
    the truth everywhere: ECE near 0.1."""
    rng = np.random.default_rng(3)
    n = 200_000
    conf = rng.uniform(0.5, 0.85, n)
    right = rng.random(n) < conf
    y = np.where(right, "a", "b")
    ece, _ = reliability(y, np.c_[conf, 1 - conf], ["a", "b"], n_bins=10)
    assert ece < 0.005
    over = np.c_[conf + 0.1, 0.9 - conf]
    ece, _ = reliability(y, over, ["a", "b"], n_bins=10)
    assert ece == pytest.approx(0.1, abs=0.005)
