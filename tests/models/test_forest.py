"""Random-forest baseline: estimator contract, NaN policy, CV, safe persistence, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import skops.io as sio
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from features.api import METADATA_KEY
from flows.cli import main
from models.forest import (
    LightCurveForest,
    cross_validate_forest,
    load_forest,
    save_forest,
)
from models.forest_files import (
    cv_forest_file,
    load_training_set,
    predict_forest_file,
    train_forest_file,
)
from pipeline.errors import ConfigError, InputError
from pipeline.io import write_parquet_atomic
from pipeline.labels import select_classes


@parametrize_with_checks([LightCurveForest(n_estimators=5),
                          LightCurveForest(n_estimators=5, missing="median")])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _data(rng, n=300):
    X = rng.normal(size=(n, 4))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0.8, "rare", np.where(X[:, 0] > -0.3, "b", "c"))
    return X, y


def test_not_fitted_and_defaults(rng):
    clf = LightCurveForest()
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((2, 3)))
    assert clf.class_weight == "balanced" and clf.missing == "native"
    X, y = _data(rng)
    clf.set_params(n_estimators=20).fit(X, y)
    assert clf.model_.class_weight == "balanced"
    assert clf.feature_importances_.shape == (4,)
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)


def test_nan_policies(rng):
    X, y = _data(rng)
    X[rng.random(X.shape) < 0.1] = np.nan
    native = LightCurveForest(n_estimators=30).fit(X, y)
    assert native.score(X, y) > 0.9
    with pytest.raises(ValueError, match="NaN"):
        LightCurveForest(n_estimators=5, missing="error").fit(X, y)
    med = LightCurveForest(n_estimators=30, missing="median").fit(X, y)
    # equivalent to a forest on the median-imputed table
    imputed = np.where(np.isnan(X), np.nanmedian(X, axis=0), X)
    np.testing.assert_allclose(med.impute_values_, np.nanmedian(X, axis=0))
    np.testing.assert_allclose(med.predict_proba(X), med.model_.predict_proba(imputed))
    with pytest.raises(ValueError):
        LightCurveForest(n_estimators=5, missing="zero").fit(X, y)
    with pytest.raises(ValueError, match="infinity"):
        LightCurveForest(n_estimators=5).fit(np.where(np.isnan(X), np.inf, X), y)


def test_cross_validation_and_importances(rng):
    X, y = _data(rng, 400)
    X = np.column_stack([X, rng.normal(size=400)])  # column 4: pure noise
    cv = cross_validate_forest(X, y, params={"n_estimators": 30}, importances=True,
                               n_repeats=2, feature_names=list("abcde"))
    r = cv["report"]
    assert r["n"] == 400 and r["balanced_accuracy"] > 0.7
    assert sorted(r["classes"]) == ["b", "c", "rare"]
    np.testing.assert_allclose(cv["oof"].proba.sum(axis=1), 1.0)
    imp = {e["feature"]: e["mean"] for e in cv["importances"]}
    assert imp["a"] > imp["e"] and imp["a"] > 0.1
    assert len(cv["fold_reports"]) == 5


def test_save_load_roundtrip_and_refusal(tmp_path, rng):
    X, y = _data(rng)
    clf = LightCurveForest(n_estimators=10).fit(X, y)
    path = save_forest(clf, tmp_path / "m.skops", feature_names=list("abcd"),
                       feature_set_version="1.0", training_hash="sha256:x")
    model, meta = load_forest(path)
    np.testing.assert_array_equal(model.predict_proba(X), clf.predict_proba(X))
    assert meta["classes"] == ["b", "c", "rare"] and meta["feature_names"] == list("abcd")
    assert meta["feature_set_version"] == "1.0" and meta["training_data_hash"] == "sha256:x"
    assert {"scikit-learn", "numpy", "skops", "python"} <= set(meta["package_versions"])
    # a file with a type outside the allow-list is refused, not executed
    evil = tmp_path / "evil.skops"
    sio.dump({"format": "lcpipe-forest/1", "metadata_json": "{}",
              "model": pd.Timestamp("2020-01-01")}, evil)
    with pytest.raises(InputError, match="untrusted"):
        load_forest(evil)
    (tmp_path / "junk.skops").write_text("not a zip")
    with pytest.raises(InputError):
        load_forest(tmp_path / "junk.skops")
    with pytest.raises(ValueError, match="feature names"):
        save_forest(clf, tmp_path / "x.skops", feature_names=["a"], feature_set_version="1",
                    training_hash="h")


def test_lying_forest_metadata_is_refused(tmp_path, rng):
    """A model file whose metadata no longer describes its trees (features shortened or
    reordered, other classes, not JSON) is refused in one line, not used in a wrong order."""
    import json
    import zipfile

    X, y = _data(rng)
    clf = LightCurveForest(n_estimators=5).fit(pd.DataFrame(X, columns=list("abcd")), y)
    path = save_forest(clf, tmp_path / "m.skops", feature_names=list("abcd"),
                       feature_set_version="1.0", training_hash="h")
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    good = json.loads(obj["metadata_json"])
    cases = {
        "short": (json.dumps({**good, "feature_names": list("abc")}), "not the 4"),
        "order": (json.dumps({**good, "feature_names": list("bacd")}), "in that order"),
        "classes": (json.dumps({**good, "classes": ["x", "y", "z"]}), "other classes"),
        "json": ("{oops", "damaged model metadata"),
    }
    for name, (meta, needle) in cases.items():
        p = tmp_path / f"{name}.skops"
        sio.dump({**obj, "metadata_json": meta}, p, compression=zipfile.ZIP_DEFLATED)
        with pytest.raises(InputError, match=needle) as info:
            load_forest(p)
        assert str(p) in str(info.value) and "\n" not in str(info.value)


def _feature_table(path, rng, n=240, version="1.0"):
    X, y = _data(rng, n)
    ids = [f"id{i:04d}" for i in range(n)]
    cols = ["V:amp", "V:per", "V:mean", "V:skew"]
    frame = pd.DataFrame(X, columns=cols)
    frame.insert(0, "object_id", ids)
    frame["V:n_points"] = 50
    write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), path, metadata={
        METADATA_KEY: {"feature_set_version": version, "feature_columns": cols}})
    labels = pd.DataFrame({"object_id": ids, "label": y})
    return frame, labels


def test_training_set_selection(tmp_path, rng):
    _, labels = _feature_table(tmp_path / "f.parquet", rng)
    labels.iloc[:5, 1] = "other"
    labels = pd.concat([labels.iloc[10:], pd.DataFrame({"object_id": ["ghost"],
                                                        "label": ["b"]})])
    labels.to_csv(tmp_path / "l.csv", index=False)
    ts = load_training_set(tmp_path / "f.parquet", tmp_path / "l.csv", classes="b,c,rare")
    assert ts.feature_names == ["V:amp", "V:per", "V:skew"]  # 'mean' excluded by default
    assert ts.counts["n_unlabelled"] == 10 and ts.counts["n_labels_without_object"] == 1
    assert ts.counts["n_other_classes"] == 0 and len(ts.y) == 230
    with pytest.raises(ConfigError, match="not in the labels"):
        select_classes("paper7", ["b", "c"])
    assert select_classes("all", ["c", "b", "c"]) == ["b", "c"]


def test_files_train_predict_cv_and_version_check(tmp_path, rng):
    frame, labels = _feature_table(tmp_path / "f.parquet", rng)
    labels.to_csv(tmp_path / "l.csv", index=False)
    s = train_forest_file(tmp_path / "f.parquet", tmp_path / "l.csv", tmp_path / "m.skops",
                          params={"n_estimators": 20})
    assert s["n_used"] == 240 and s["n_features"] == 3
    p = predict_forest_file(tmp_path / "m.skops", tmp_path / "f.parquet", tmp_path / "p.parquet")
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert list(pred.columns) == ["run_id", "object_id", "split", "fold", "true_class", "model",
                                  "predicted_class", "probability", "prob_b", "prob_c",
                                  "prob_rare", "models_agree", "answer", "unknown_reason"]
    assert (pred.model == "forest").all() and (pred.split == "classify").all()
    assert p["n_objects"] == 240 and (pred.object_id == frame.object_id).all()
    np.testing.assert_allclose(pred.probability, pred.filter(like="prob_").max(axis=1))
    np.testing.assert_allclose(pred.filter(like="prob_").sum(axis=1), 1.0)
    # the predicted class is the argmax of its probabilities, under the right name ...
    probs = pred.filter(like="prob_")
    names = np.array([c[len("prob_"):] for c in probs.columns])
    assert (pred.predicted_class.to_numpy() == names[probs.to_numpy().argmax(axis=1)]).all()
    # ... the file path predicts what the model does in memory, and it is right on data
    # whose classes follow from the features
    model, _ = load_forest(tmp_path / "m.skops")
    X = frame[["V:amp", "V:per", "V:skew"]]
    assert (pred.predicted_class.to_numpy() == model.predict(X)).all()
    truth = labels.set_index("object_id").loc[pred.object_id, "label"].to_numpy()
    assert (pred.predicted_class.to_numpy() == truth).mean() > 0.95
    # features of another version: clear error
    _feature_table(tmp_path / "g.parquet", rng, version="0.9")
    with pytest.raises(InputError, match="version '0.9'.*trained on version '1.0'"):
        predict_forest_file(tmp_path / "m.skops", tmp_path / "g.parquet", tmp_path / "q.parquet")
    r = cv_forest_file(tmp_path / "f.parquet", tmp_path / "l.csv", tmp_path / "cv.json",
                       classes="all", params={"n_estimators": 20})
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["accuracy"] == pytest.approx(r["accuracy"]) and saved["n"] == 240
    oof = pd.read_parquet(tmp_path / "cv.oof.parquet")
    assert len(oof) == 240 and set(oof.fold) == set(range(5))


def test_cli_forest(tmp_path, rng, capsys):
    _feature_table(tmp_path / "f.parquet", rng)[1].to_csv(tmp_path / "l.csv", index=False)
    f, lab = str(tmp_path / "f.parquet"), str(tmp_path / "l.csv")
    assert main(["forest", "train", f, "--labels", lab, "-o", str(tmp_path / "m.skops"),
                 "--n-estimators", "10"]) == 0
    assert main(["forest", "predict", str(tmp_path / "m.skops"), f, "-o",
                 str(tmp_path / "p.parquet")]) == 0
    assert main(["forest", "cv", f, "--labels", lab, "--classes", "all", "--n-estimators",
                 "10", "-o", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "balanced accuracy" in out and "Confusion matrix" in out
    assert main(["forest", "cv", f, "--labels", lab, "--classes", "paper7"]) == 2
    assert "not in the labels" in capsys.readouterr().err
