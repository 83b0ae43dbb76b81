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
        st = StackedClassifier(C=0.5, method="logistic").fit(X, yy)
        ref = LogisticRegression(C=0.5, max_iter=5000).fit(np.log(np.clip(X, 1e-4, 1)), yy)
        np.testing.assert_allclose(st.predict_proba(X), ref.predict_proba(
            np.log(np.clip(X, 1e-4, 1))), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(st.classes_, ref.classes_)


@pytest.mark.parametrize("method", ["pool", "logistic"])
def test_stack_beats_each_base_model_out_of_fold(method):
    """Each base model is wrong where the other is right: the stack, cross-validated on
    their probabilities, beats both (accuracy of each base model = argmax)."""
    rng = np.random.default_rng(1)
    y, pa, pb = _bases(rng)
    cls = np.array(["a", "b", "c"])
    acc_a, acc_b = np.mean(cls[pa.argmax(1)] == y), np.mean(cls[pb.argmax(1)] == y)
    oof = cross_validate(StackedClassifier(method=method), stack_inputs([pa, pb]), y,
                         stratified_folds(y, 5, seed=0))
    acc = np.mean(oof.y_pred == y)
    assert acc > max(acc_a, acc_b) + 0.1, (acc, acc_a, acc_b)


def _pool_by_hand(probas, w, eps=1e-4):
    """prod_m max(p_m, eps) ** w_m, normalised per row."""
    prod = np.ones_like(probas[0])
    for p, wm in zip(probas, w, strict=True):
        prod = prod * np.clip(p, eps, 1.0) ** wm
    return prod / prod.sum(axis=1, keepdims=True)


def _log_loss(y_idx, proba):
    return float(-np.mean(np.log(proba[np.arange(len(y_idx)), y_idx])))


def test_pool_is_the_normalised_weighted_product_of_the_base_models():
    rng = np.random.default_rng(4)
    y, pa, pb = _bases(rng)
    st = StackedClassifier().fit(stack_inputs([pa, pb]), y)
    assert st.method == "pool" and st.weights_.shape == (2,) and (st.weights_ >= 0).all()
    np.testing.assert_allclose(st.predict_proba(stack_inputs([pa, pb])),
                               _pool_by_hand([pa, pb], st.weights_), rtol=1e-10)
    np.testing.assert_array_equal(st.intercept_, 0.0)


def _pooled_labels(rng, n, w):
    """Two random 4-class base models and labels drawn from their pool with weights w."""
    pa, pb = rng.dirichlet(np.ones(4), n), rng.dirichlet(np.ones(4), n)
    truth = _pool_by_hand([pa, pb], w, eps=0.0)
    return (rng.random(n)[:, None] > truth.cumsum(axis=1)).sum(axis=1), pa, pb


def test_pool_weights_minimise_the_log_loss_on_a_grid():
    """No point of a 0.02 grid over [0, 3]^2 has a lower log loss than the fitted weights,
    and the grid's best point is next to them."""
    rng = np.random.default_rng(5)
    y_idx, pa, pb = _pooled_labels(rng, 3000, (1.2, 0.7))
    st = StackedClassifier().fit(stack_inputs([pa, pb]), np.array(list("abcd"))[y_idx])
    fitted = _log_loss(y_idx, _pool_by_hand([pa, pb], st.weights_))
    grid = np.arange(0.0, 3.0001, 0.02)
    losses = np.array([[_log_loss(y_idx, _pool_by_hand([pa, pb], (a, b))) for b in grid]
                       for a in grid])
    assert fitted <= losses.min() + 1e-9
    i, j = np.unravel_index(losses.argmin(), losses.shape)
    np.testing.assert_allclose(st.weights_, [grid[i], grid[j]], atol=0.03)


def test_pool_recovers_the_weights_that_made_the_labels_and_drops_a_useless_model():
    """Labels drawn from p ~ pa^1.5 pb^0.5 (20,000 objects, 4 classes): the fit finds
    (1.5, 0.5) to a few hundredths; a third model unrelated to the labels gets ~0."""
    rng = np.random.default_rng(6)
    y_idx, pa, pb = _pooled_labels(rng, 20_000, (1.5, 0.5))
    pc = rng.dirichlet(np.ones(4), len(y_idx))
    y = np.array(list("abcd"))[y_idx]
    st = StackedClassifier(eps=1e-12).fit(stack_inputs([pa, pb, pc]), y)
    np.testing.assert_allclose(st.weights_[:2], [1.5, 0.5], atol=0.06)
    assert st.weights_[2] < 0.05


def test_pool_with_a_class_missing_from_y_answers_every_class():
    """A fold without the class 'd': given the columns' classes, the pool fits on the
    other rows, keeps 'd' in its output, is still the normalised product, and its
    exponents beat their neighbours; without the classes the column count is refused."""
    rng = np.random.default_rng(8)
    y_idx, pa, pb = _pooled_labels(rng, 3000, (1.2, 0.7))
    y = np.array(list("abcd"))[y_idx]
    keep = y != "d"
    X = stack_inputs([pa, pb])
    st = StackedClassifier(classes=list("abcd")).fit(X[keep], y[keep])
    assert list(st.classes_) == list("abcd")
    np.testing.assert_allclose(st.predict_proba(X), _pool_by_hand([pa, pb], st.weights_),
                               rtol=1e-10)
    sub = [pa[keep], pb[keep]]
    fitted = _log_loss(y_idx[keep], _pool_by_hand(sub, st.weights_))
    for step in ([0.05, 0], [-0.05, 0], [0, 0.05], [0, -0.05]):
        assert fitted < _log_loss(y_idx[keep], _pool_by_hand(sub, st.weights_ + step))
    with pytest.raises(ValueError, match="pass classes= if y lacks a class"):
        StackedClassifier().fit(X[keep], y[keep])
    with pytest.raises(ValueError, match="holds class 'e'"):
        StackedClassifier(classes=list("abcd")).fit(X[:3], ["a", "b", "e"])


def test_bad_stack_method_or_columns_are_refused():
    from pipeline.errors import ConfigError

    rng = np.random.default_rng(7)
    y, pa, pb = _bases(rng)
    with pytest.raises(ConfigError, match="'pool' or 'logistic', not 'mean'"):
        StackedClassifier(method="mean").fit(stack_inputs([pa, pb]), y)
    with pytest.raises(ValueError, match="n_models x 3 probability columns"):
        StackedClassifier().fit(stack_inputs([pa, pb])[:, :5], y)


@pytest.mark.parametrize("method", ["pool", "logistic"])
def test_save_load_round_trip_of_each_method(tmp_path, method):
    rng = np.random.default_rng(2)
    y, pa, pb = _bases(rng)
    X = stack_inputs([pa, pb])
    st = StackedClassifier(base_models=["forest", "cnn"], method=method).fit(X, y)
    loaded, meta = load_stack(save_stack(st, tmp_path / "stack.npz"))
    assert loaded.method == meta["method"] == method
    np.testing.assert_array_equal(loaded.predict_proba(X), st.predict_proba(X))
    if method == "pool":
        np.testing.assert_array_equal(loaded.weights_, st.weights_)


def test_stack_file_without_a_method_is_a_logistic_regression(tmp_path):
    """Stacks saved before the pool existed (no 'method' in their metadata) load as the
    logistic regression they are."""
    import json

    rng = np.random.default_rng(2)
    y, pa, pb = _bases(rng)
    X = stack_inputs([pa, pb])
    st = StackedClassifier(base_models=["forest", "cnn"], method="logistic").fit(X, y)
    p = save_stack(st, tmp_path / "stack.npz")
    with np.load(p) as z:
        arrays = dict(z)
    meta = json.loads(str(arrays["meta"]))
    del meta["method"]
    np.savez(tmp_path / "old.npz", **{**arrays, "meta": np.asarray(json.dumps(meta))})
    loaded, _ = load_stack(tmp_path / "old.npz")
    assert loaded.method == "logistic"
    np.testing.assert_array_equal(loaded.predict_proba(X), st.predict_proba(X))


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
