"""Shared CV helpers: folds, out-of-fold loop, metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from models.evaluation import cross_validate, format_report, metrics_report, stratified_folds


def test_folds_are_the_standard_split(rng):
    y = rng.choice(["a", "b", "c"], 103)
    folds = stratified_folds(y)
    ref = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(103), y))
    assert len(folds) == 5
    for (tr, te), (rtr, rte) in zip(folds, ref, strict=True):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(te, rte)
    np.testing.assert_array_equal(np.sort(np.concatenate([te for _, te in folds])),
                                  np.arange(103))


def test_oof_predictions_come_from_held_out_models(rng):
    # 1-NN on duplicated points: in-sample it would be perfect; out of fold it
    # must use the other copy, which carries the opposite label
    X = rng.normal(size=(40, 2))
    X = np.vstack([X, X])
    y = np.r_[np.repeat(["a", "b"], 20), np.repeat(["b", "a"], 20)]
    folds = [(np.arange(40, 80), np.arange(40)), (np.arange(40), np.arange(40, 80))]
    res = cross_validate(KNeighborsClassifier(1), X, y, folds, keep_estimators=True)
    assert (res.y_pred != y).all()
    np.testing.assert_array_equal(res.fold, np.r_[np.zeros(40), np.ones(40)])
    np.testing.assert_allclose(res.proba.sum(axis=1), 1.0)
    assert len(res.estimators) == 2 and len(res.fit_seconds) == 2


def test_missing_class_in_a_fold_gets_zero_probability():
    X = np.arange(10.0)[:, None]
    y = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2)
    folds = [(np.arange(8), np.arange(8, 10)), (np.arange(2, 10), np.arange(2)),
             (np.r_[0, 1, 8, 9], np.arange(2, 8))]
    res = cross_validate(DummyClassifier(strategy="prior"), X, y, folds)
    np.testing.assert_array_equal(res.classes, ["a", "b", "c"])
    assert (res.proba[8:, 2] == 0).all()  # 'c' absent from that fold's training part
    np.testing.assert_allclose(res.proba.sum(axis=1), 1.0)


def test_dataframe_and_dict_inputs_and_callback(rng):
    X = pd.DataFrame(rng.normal(size=(30, 2)), columns=["u", "v"])
    y = np.repeat(["a", "b", "c"], 10)
    folds = stratified_folds(y, n_splits=3)
    seen = []
    cross_validate(DummyClassifier(), X, y, folds,
                       fold_callback=lambda i, est, Xt, yt: seen.append((i, type(Xt), len(yt))))
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][1] is pd.DataFrame

    class TwoInputs(DummyClassifier):
        def fit(self, X, y):
            assert set(X) == {"img", "n"} and len(X["img"]) == len(y)
            return super().fit(X["n"], y)

        def predict_proba(self, X):
            return super().predict_proba(X["n"])

    res = cross_validate(TwoInputs(), {"img": np.zeros((30, 4, 4)), "n": X}, y, folds)
    assert res.proba.shape == (30, 3)


def test_bad_folds_rejected():
    y = np.array(["a", "b"] * 5)
    with pytest.raises(ValueError, match="overlap"):
        cross_validate(DummyClassifier(), np.zeros((10, 1)), y,
                           [(np.arange(5), np.arange(5)), (np.arange(5), np.arange(3, 10))])
    with pytest.raises(ValueError, match="leave"):
        cross_validate(DummyClassifier(), np.zeros((10, 1)), y, [(np.arange(5), np.arange(5))])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_report_matches_sklearn(rng):
    classes = ["x", "y", "z", "w"]
    y_true = rng.choice(classes[:3], 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.choice(classes, 200))
    r = metrics_report(y_true, y_pred, classes)
    assert r["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=classes,
                                                   average="macro", zero_division=0))
    rec = recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    assert r["per_class_recall"] == pytest.approx(dict(zip(classes, rec, strict=True)))
    assert r["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=classes).tolist()
    assert r["support"]["w"] == 0 and r["n"] == 200
    text = format_report(r, title="t")
    assert "| x |" in text and "balanced accuracy" in text


def test_sample_copies_follow_their_fold():
    from models.evaluation import SampleCopies

    X = np.arange(12.0).reshape(6, 2)
    aug = SampleCopies(X[[0, 0, 3, 5]] + 100, [0, 0, 3, 5])
    sub = aug.for_samples(np.array([3, 5, 1]))
    np.testing.assert_array_equal(sub.origin, [0, 1])  # positions within [3, 5, 1]
    np.testing.assert_array_equal(sub.X, X[[3, 5]] + 100)
    assert len(aug.for_samples(np.array([2, 4]))) == 0

    seen = []

    class Recorder(DummyClassifier):
        def fit(self, X, y, augmentation=None):
            seen.append(len(augmentation))
            return super().fit(X, y)

    y = np.array(["a", "b"] * 3)
    folds = [(np.array([0, 1, 2]), np.array([3, 4, 5])), (np.array([3, 4, 5]), np.array([0, 1, 2]))]
    cross_validate(Recorder(), X, y, folds, fit_params={"augmentation": aug})
    assert seen == [2, 2]  # copies of 0 (twice) / copies of 3 and 5


def test_train_test_split_is_stratified_and_deterministic(rng):
    from models.evaluation import train_test_split_stratified

    y = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["solo"])
    tr, te = train_test_split_stratified(y, 0.2, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
    assert (y[te] == "a").sum() == 10 and (y[te] == "c").sum() == 2
    assert "solo" in set(y[tr])
    tr2, te2 = train_test_split_stratified(y, 0.2, seed=3)
    np.testing.assert_array_equal(te, te2)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metric_and_confusion_rows_match_sklearn(rng):
    from sklearn.metrics import log_loss, precision_score

    from models.evaluation import confusion_rows, metric_rows

    classes = ["x", "y", "z"]
    y_true = rng.choice(classes, 150)
    proba = rng.dirichlet(np.ones(3), 150)
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    rows = {r["class"]: r for r in metric_rows(y_true, y_pred, classes, proba)}
    prec = precision_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    assert [rows[c]["precision"] for c in classes] == pytest.approx(prec)
    o = rows["__overall__"]
    assert o["accuracy"] == pytest.approx(np.mean(y_true == y_pred)) and o["support"] == 150
    assert o["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert o["log_loss"] == pytest.approx(log_loss(y_true, proba, labels=classes))
    assert rows["x"]["accuracy"] is None
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    cr = confusion_rows(y_true, y_pred, classes)
    assert len(cr) == 9 and sum(r["count"] for r in cr) == 150
    assert {(r["true_class"], r["predicted_class"]): r["count"] for r in cr}[("y", "z")] == cm[1, 2]


# ----------------------------------------------------------------------------- temperature


def test_apply_temperature_against_the_power_formula():
    """softmax(log p / T) is p**(1/T) renormalised; T = 1 is the identity; the order of the
    classes in each row (the argmax) is kept; zeros stay (almost) zero."""
    from models.evaluation import apply_temperature

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(5), size=200)
    P[0] = [1.0, 0.0, 0.0, 0.0, 0.0]
    for T in (0.5, 1.0, 2.5):
        ref = P ** (1 / T)
        ref /= ref.sum(axis=1, keepdims=True)
        got = apply_temperature(P, T)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
        assert (got.argmax(axis=1) == P.argmax(axis=1)).all()
    np.testing.assert_allclose(apply_temperature(P, 1.0), P, atol=1e-12)
    assert apply_temperature(P, 0.5)[1].max() > P[1].max()  # sharper
    assert apply_temperature(P, 2.0)[1].max() < P[1].max()  # softer
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(P, 0.0)


def test_fit_temperature_recovers_a_known_distortion():
    """Labels drawn from softmax(z); the model reports softmax(z * 2) (over-confident) or
    softmax(z / 2) (under-confident): the fitted T is 2 or 1/2 within a few per cent, and
    ~1 for the true probabilities; the log loss at the fitted T is below that at nearby T
    (a minimum, computed here directly)."""
    from models.evaluation import apply_temperature, fit_temperature

    rng = np.random.default_rng(1)
    n, k = 40_000, 4
    z = rng.normal(0, 1.5, size=(n, k))
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y_idx = (rng.random(n)[:, None] > np.cumsum(p_true, axis=1)).sum(axis=1)
    classes = ["a", "b", "c", "d"]
    y = np.asarray(classes)[y_idx]
    for scale, expected in ((2.0, 2.0), (0.5, 0.5), (1.0, 1.0)):
        q = np.exp(z * scale)
        q /= q.sum(axis=1, keepdims=True)
        T = fit_temperature(y, q, classes)
        assert T == pytest.approx(expected, rel=0.04), scale

        def nll(t, q=q):
            return -np.mean(np.log(apply_temperature(q, t)[np.arange(n), y_idx]))

        assert nll(T) <= min(nll(T * 1.05), nll(T / 1.05))
    assert fit_temperature([], np.zeros((0, 4)), classes) == 1.0
    with pytest.raises(ValueError, match="not among"):
        fit_temperature(["e"], np.full((1, 4), 0.25), classes)


def test_out_of_fold_calibration_never_sees_its_own_fold():
    """The CV rows of fold k are scaled with the temperature fitted on the other folds
    (recomputed here); the returned temperature is the one fitted on every fold."""
    from models.evaluation import apply_temperature, calibrate_out_of_fold, fit_temperature

    rng = np.random.default_rng(2)
    classes = ["a", "b", "c"]
    P = rng.dirichlet(np.ones(3) * 0.5, size=300)
    y = np.asarray(classes)[np.where(rng.random(300) < 0.7, P.argmax(axis=1),
                                     rng.integers(0, 3, 300))]
    fold = np.arange(300) % 3
    T, Q = calibrate_out_of_fold(y, P, fold, classes)
    assert T == fit_temperature(y, P, classes)
    for k in range(3):
        Tk = fit_temperature(y[fold != k], P[fold != k], classes)
        assert Tk != pytest.approx(T, rel=1e-6)
        np.testing.assert_allclose(Q[fold == k], apply_temperature(P[fold == k], Tk))
