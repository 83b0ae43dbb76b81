"""Stacked ensemble and calibration metrics, against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


# ------------------------------------------------------------------ "unknown"


def test_choose_threshold_by_hand():
    """Top probabilities 0.9 (right), 0.8 (right), 0.7 (wrong), 0.6 (right), 0.5 (wrong):
    accuracy of the k most confident = 1, 1, 2/3, 3/4, 3/5. For 0.75 the lowest
    threshold is 0.6 (4 answered, 3 right); for 0.9 it is 0.8; for 0.6 every object is
    answered (0.0); for 1.0 it is 0.8 again; nothing reaches 1.0 when the best is wrong."""
    from models.evaluation import choose_threshold, coverage_rows

    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    proba = np.c_[conf, 1 - conf]
    y = np.array(["a", "a", "b", "a", "b"])
    cls = ["a", "b"]
    assert choose_threshold(y, proba, cls, 0.75) == 0.6
    assert choose_threshold(y, proba, cls, 0.9) == 0.8
    assert choose_threshold(y, proba, cls, 0.6) == 0.0
    assert choose_threshold(y, proba, cls, 1.0) == 0.8
    assert choose_threshold(np.array(["b", "a", "a", "a", "a"]), proba, cls, 1.0) > 0.9
    # a tie at 0.8 (one right, one wrong) answers both or neither
    conf = np.array([0.9, 0.8, 0.8, 0.5])
    y = np.array(["a", "a", "b", "b"])
    assert choose_threshold(y, np.c_[conf, 1 - conf], cls, 0.9) == 0.9
    rows = coverage_rows(y, np.c_[conf, 1 - conf], cls, [0.0, 0.85, 0.95])
    assert rows["answered"].tolist() == [4, 1, 0]
    np.testing.assert_allclose(rows["coverage"], [1.0, 0.25, 0.0])
    np.testing.assert_allclose(rows["accuracy"], [0.5, 1.0, np.nan])  # 0.5 top of 'b' is 'a'


def test_apply_unknown_marks_low_confidence_rows_and_says_why():
    from models.predictions import UNKNOWN, apply_unknown, check_predictions, prediction_frame

    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]])
    f = prediction_frame(["o1", "o2", "o3"], "stack", ["a", "b"], proba, run_id="r",
                         split="classify")
    g = prediction_frame(["o1"], "rpca_nearest", ["a", "b"], predicted=["b"], run_id="r",
                         split="classify")
    out = apply_unknown(pd.concat([f, g], ignore_index=True), {"stack": 0.6, "forest": 0.99})
    assert out["answer"].tolist() == ["a", UNKNOWN, "b", "b"]
    assert out["unknown_reason"].iloc[1] == "top probability 0.550 < 0.600 (threshold of stack)"
    assert out["unknown_reason"].isna().tolist() == [True, False, True, True]
    assert out["predicted_class"].tolist() == ["a", "a", "b", "b"]  # kept
    check_predictions(out, "x")
    out.loc[0, "answer"] = "b"
    with pytest.raises(InputError, match="neither the predicted class nor 'unknown'"):
        check_predictions(out, "x")
