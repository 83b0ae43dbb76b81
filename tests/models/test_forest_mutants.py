"""Forest prediction path pinned where mutation testing found it unchecked (issue 17).

Pins, on separable data and hand-built files:

- the NaN / inf policy at *predict* time (``missing="error"`` refuses NaN and inf,
  ``"median"`` imputes NaN with hand-computed training medians and refuses inf);
- that prediction checks the fitted feature names / count instead of re-learning them;
- every refusal of :func:`models.forest.load_forest` (missing file, not a skops
  file, untrusted types, unloadable content, other format, other object, metadata
  that does not describe the trees), with the path and the user-facing message;
- :func:`models.forest_files.check_feature_table` messages (version, missing
  columns) and :func:`models.forest_files.predict_forest_file`'s output metadata,
  run id and summary (classes never predicted counted as 0).
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import skops.io as sio

from features.api import METADATA_KEY
from models.forest import MODEL_FORMAT, LightCurveForest, load_forest, save_forest
from models.forest_files import check_feature_table, predict_forest_file, train_forest_file
from models.predictions import read_predictions
from pipeline.errors import InputError
from pipeline.io import write_parquet_atomic


def _separable(n=80, seed=0):
    """Two classes split by the sign of column 0 (margin 1): any forest gets them right."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 0] = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * rng.uniform(1.0, 3.0, n)
    y = np.where(X[:, 0] > 0, "a", "b")
    return X, y


# ----------------------------------------------------------------- NaN / inf at predict


def test_missing_error_refuses_nan_and_inf_at_predict():
    X, y = _separable()
    clf = LightCurveForest(n_estimators=5, missing="error").fit(X, y)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(Xn)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict_proba(Xn)
    Xi = X.copy()
    Xi[3, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        clf.predict(Xi)


def test_median_imputes_nan_with_training_medians_and_refuses_inf():
    # training medians by hand: column 0 -> 2.0 (of -3, 2, 5 and a NaN), column 1 -> 10.0
    X = np.array([[-3.0, 10.0], [2.0, np.nan], [5.0, 10.0], [np.nan, 30.0],
                  [-4.0, 0.0], [4.0, 20.0]])
    y = np.array(["b", "a", "a", "a", "b", "a"])
    clf = LightCurveForest(n_estimators=7, missing="median").fit(X, y)
    np.testing.assert_array_equal(clf.impute_values_, [2.0, 10.0])
    Xq = np.array([[np.nan, 1.0], [-3.5, np.nan], [np.nan, np.nan]])
    by_hand = np.array([[2.0, 1.0], [-3.5, 10.0], [2.0, 10.0]])
    np.testing.assert_array_equal(clf.predict_proba(Xq), clf.model_.predict_proba(by_hand))
    with pytest.raises(ValueError, match="Input X contains infinity"):
        clf.predict(np.array([[np.inf, 1.0]]))


# ----------------------------------------------------------------- fitted features kept


def test_prediction_checks_fitted_feature_names_and_count():
    X, y = _separable()
    frame = pd.DataFrame(X, columns=list("abcd"))
    clf = LightCurveForest(n_estimators=5).fit(frame, y)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict_proba(frame[list("badc")])
    # the check must not re-learn the names from the prediction input
    assert list(clf.feature_names_in_) == list("abcd") and clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.predict(frame), y)
    arr = LightCurveForest(n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but LightCurveForest is expecting 4"):
        arr.predict(X[:, :3])
    assert arr.n_features_in_ == 4


# ----------------------------------------------------------------- load_forest refusals


def _refused(path, message):
    """load_forest(path) raises InputError '<path>: <message>' (message matched exactly)."""
    with pytest.raises(InputError) as info:
        load_forest(path)
    assert info.value.source == str(path)
    assert re.fullmatch(message, info.value.problem), info.value.problem
    assert str(info.value) == f"{path}: {info.value.problem}"


def test_load_forest_missing_and_non_skops_files(tmp_path):
    _refused(tmp_path / "none.skops", "no such file")
    (tmp_path / "junk.skops").write_text("not a zip")
    _refused(tmp_path / "junk.skops", r"not a skops model file \(.+\)")


def test_load_forest_untrusted_types(tmp_path):
    evil = tmp_path / "evil.skops"
    sio.dump({"format": MODEL_FORMAT, "metadata_json": "{}",
              "model": pd.Timestamp("2020-01-01")}, evil)
    _refused(evil, r"model file contains untrusted types \[.*Timestamp.*\]; refusing to load")


def test_load_forest_unloadable_content(tmp_path, monkeypatch):
    X, y = _separable()
    path = save_forest(LightCurveForest(n_estimators=3).fit(X, y), tmp_path / "m.skops",
                       feature_names=list("abcd"), feature_set_version="1", training_hash="h")

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(sio, "load", broken)
    _refused(path, r"cannot load model \(boom\)")


@pytest.mark.parametrize("obj", [{"format": "other/1", "model": None}, [1, 2, 3]])
def test_load_forest_other_format(tmp_path, obj):
    p = tmp_path / "other.skops"
    sio.dump(obj, p)
    _refused(p, re.escape(f"not an lcpipe forest model (expected format {MODEL_FORMAT})"))


def test_load_forest_other_object(tmp_path):
    p = tmp_path / "dict.skops"
    sio.dump({"format": MODEL_FORMAT, "metadata_json": "{}", "model": {"a": 1}}, p)
    _refused(p, "model file does not hold a LightCurveForest")


def test_load_forest_metadata_must_describe_a_numpy_fitted_forest(tmp_path):
    """A forest fitted on an array has no feature names: only the count can be checked."""
    X, y = _separable()
    clf = LightCurveForest(n_estimators=3).fit(X, y)
    assert not hasattr(clf, "feature_names_in_")
    path = save_forest(clf, tmp_path / "m.skops", feature_names=list("abcd"),
                       feature_set_version="1", training_hash="h")
    model, meta = load_forest(path)
    assert meta["feature_names"] == list("abcd") and meta["classes"] == ["a", "b"]
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    good = json.loads(obj["metadata_json"])
    short = tmp_path / "short.skops"
    sio.dump({**obj, "metadata_json": json.dumps({**good, "feature_names": list("abc")})},
             short, compression=zipfile.ZIP_DEFLATED)
    _refused(short, re.escape("its metadata lists 3 features that are not the 4 the forest "
                              "was fitted on (in that order): an edited or damaged model file"))
    other = tmp_path / "classes.skops"
    sio.dump({**obj, "metadata_json": json.dumps({**good, "classes": ["a", "c"]})}, other,
             compression=zipfile.ZIP_DEFLATED)
    _refused(other, "its metadata lists other classes than the forest's")


# ----------------------------------------------------------------- feature-table files


COLS = ["V:amp", "V:per", "V:mean", "V:skew"]


def _table(path, X, version="1.0"):
    frame = pd.DataFrame(X, columns=COLS)
    frame.insert(0, "object_id", [f"id{i:04d}" for i in range(len(frame))])
    write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), path, metadata={
        METADATA_KEY: {"feature_set_version": version, "feature_columns": COLS}})
    return frame


def test_check_feature_table_messages():
    frame = pd.DataFrame(np.zeros((2, 4)), columns=COLS)
    mmeta = {"feature_set_version": "1.0", "feature_names": ["V:amp", "V:per", "V:skew"]}
    with pytest.raises(InputError) as info:
        check_feature_table({"feature_set_version": "0.9"}, frame, mmeta, "feat.parquet",
                            "model.skops")
    assert info.value.source == "feat.parquet"
    assert info.value.problem == (
        "feature-set version '0.9', but model model.skops was trained on version '1.0'; "
        "recompute the features with the same lcpipe feature set (and period-search "
        "settings)")
    need = {"feature_set_version": "1.0",
            "feature_names": ["V:amp", "B:amp", "B:per", "B:skew", "R:amp", "V:skew"]}
    with pytest.raises(InputError) as info:
        check_feature_table({"feature_set_version": "1.0"}, frame, need, "feat.parquet", "m")
    assert info.value.source == "feat.parquet"
    assert info.value.problem == ("4 feature columns the model needs are missing, e.g. "
                                  "['B:amp', 'B:per', 'B:skew'] (bands differ?)")
    out = check_feature_table({"feature_set_version": 1.0}, frame, {**mmeta,
                              "feature_set_version": "1.0"}, "f", "m")
    assert list(out.columns) == ["V:amp", "V:per", "V:skew"]


def test_predict_forest_file_metadata_summary_and_errors(tmp_path):
    """Predictions of a table whose rows all lie in class 'a': counts {'a': n, 'b': 0}."""
    X, y = _separable(120, seed=1)
    _table(tmp_path / "train.parquet", X)
    pd.DataFrame({"object_id": [f"id{i:04d}" for i in range(len(y))], "label": y}).to_csv(
        tmp_path / "l.csv", index=False)
    s = train_forest_file(tmp_path / "train.parquet", tmp_path / "l.csv", tmp_path / "m.skops",
                          params={"n_estimators": 10})
    Xa = np.random.default_rng(2).normal(size=(15, 4))
    Xa[:, 0] = np.linspace(1.5, 3.0, 15)  # well inside class 'a'
    _table(tmp_path / "new.parquet", Xa)
    out = tmp_path / "pred.parquet"
    summary = predict_forest_file(tmp_path / "m.skops", tmp_path / "new.parquet", out)
    assert summary == {"output": str(out), "n_objects": 15,
                       "predicted_counts": {"a": 15, "b": 0}}
    pred, meta = read_predictions(out)
    assert (pred.predicted_class == "a").all()
    assert pred.run_id.str.fullmatch(r"forest-\d{8}T\d{6}Z-[0-9a-f]{6}").all()
    assert meta["model"] == str(tmp_path / "m.skops")
    assert meta["input"] == str(tmp_path / "new.parquet")
    assert meta["feature_set_version"] == "1.0"
    assert meta["training_data_hash"] == s["training_data_hash"]
    # errors name the feature table and the model
    _table(tmp_path / "old.parquet", Xa, version="0.9")
    with pytest.raises(InputError) as info:
        predict_forest_file(tmp_path / "m.skops", tmp_path / "old.parquet", tmp_path / "q.parquet")
    assert info.value.source == str(tmp_path / "old.parquet")
    assert f"but model {tmp_path / 'm.skops'} was trained" in info.value.problem
    assert not (tmp_path / "q.parquet").exists()
