"""Per-class and per-object explanations (models/interpret.py, lcpipe explain)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forest import LightCurveForest
from models.interpret import class_feature_table, class_map_rows, forest_contributions


@pytest.fixture(scope="module")
def forest_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(240, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    a, c = np.nan_to_num(X[:, 0]), np.nan_to_num(X[:, 2])
    y = np.where(a > 0.3, "a", np.where(c > 0, "b", "c"))
    X[:, 4] = 1.0  # constant: never split on
    return X, y


def test_contributions_sum_to_the_forest_probabilities(forest_data):
    """bias + sum of contributions = predict_proba for every object and class (the
    decomposition is exact); a feature no tree splits on contributes exactly 0."""
    X, y = forest_data
    forest = LightCurveForest(n_estimators=40, random_state=0).fit(X, y)
    bias, contrib = forest_contributions(forest, X[:30])
    assert contrib.shape == (30, 5, 3) and bias.shape == (30, 3)
    np.testing.assert_allclose(bias + contrib.sum(axis=1), forest.predict_proba(X[:30]),
                               atol=1e-12)
    assert np.all(contrib[:, 4, :] == 0.0)
    # the bias is the same for every object: the trees' mean root proportions
    assert np.allclose(bias, bias[0]) and np.isclose(bias[0].sum(), 1.0)
    # the features that decide the classes carry most of the credit
    credit = np.abs(contrib).sum(axis=(0, 2))
    assert set(np.argsort(-credit)[:2]) == {0, 2}


def test_contributions_of_a_stump_by_hand():
    """One tree, one split, no bootstrap: bias = class fractions of the training set,
    contribution = leaf fractions - root fractions, all on the split feature."""
    X = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [10.0, 5.0], [11.0, 5.0]])
    y = np.array(["a", "a", "a", "b", "b"])
    forest = LightCurveForest(n_estimators=1, max_depth=1, random_state=0,
                              max_features=None).fit(X, y)
    from sklearn.ensemble import RandomForestClassifier

    # the same tree without the bootstrap, so that the fractions are the data's
    forest.model_ = RandomForestClassifier(n_estimators=1, max_depth=1, bootstrap=False,
                                           max_features=None, random_state=0)
    forest.model_.fit(X, np.array([0, 0, 0, 1, 1]))
    bias, contrib = forest_contributions(forest, np.array([[0.5, 5.0], [10.5, 5.0]]))
    np.testing.assert_allclose(bias, [[0.6, 0.4], [0.6, 0.4]])
    np.testing.assert_allclose(contrib[:, 0, :], [[0.4, -0.4], [-0.6, 0.6]])
    assert np.all(contrib[:, 1, :] == 0)


def test_class_feature_table_against_pandas(forest_data):
    X, y = forest_data
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    got = class_feature_table(frame, y, ["a", "b", "c", "absent"])
    long = frame.assign(label=y).melt(id_vars="label", var_name="feature")
    ref = long.groupby(["label", "feature"])["value"].agg(
        objects="count", mean="mean", median="median", std=lambda v: v.std(ddof=0))
    for (c, f), r in ref.iterrows():
        row = got[(got["class"] == c) & (got["feature"] == f)].iloc[0]
        assert row["objects"] == r["objects"]
        assert row["missing"] == (y == c).sum() - r["objects"]
        assert row["mean"] == pytest.approx(r["mean"])
        assert row["std"] == pytest.approx(r["std"])
        assert row["median"] == pytest.approx(r["median"])
    absent = got[got["class"] == "absent"]
    assert len(absent) == 5 and (absent["objects"] == 0).all() and absent["mean"].isna().all()


def test_class_map_rows_hold_every_cell():
    maps = np.arange(2 * 3 * 4 * 2, dtype=float).reshape(2, 3, 4, 2)
    meta = {"dm_edges": [-1.0, 0.0, 1.0, 2.0], "dt_edges": [1.0, 2.0, 4.0, 8.0, 16.0],
            "channels": ["g:p", "g:n"]}
    rows = class_map_rows(maps, "saliency", ["x", "y"], meta, [5, 6])
    assert len(rows) == maps.size
    r = rows[(rows["class"] == "y") & (rows["dm_index"] == 2) & (rows["dt_index"] == 3)
             & (rows["channel"] == "g:n")].iloc[0]
    assert r["value"] == maps[1, 2, 3, 1] and r["objects"] == 6
    assert (r["dm_lo"], r["dm_hi"], r["dt_lo"], r["dt_hi"]) == (1.0, 2.0, 8.0, 16.0)
    am = class_map_rows(maps, "activation_max", ["x", "y"], meta)
    assert am["objects"].isna().all() and set(am["kind"]) == {"activation_max"}


def test_explain_command_on_the_shipped_bundle(tmp_path, capsys):
    """lcpipe explain: the forest's contributions plus bias give the forest probability
    that the prediction table (classify's path) holds; the CNN maps are scaled to max 1
    per object; an unknown object is one line naming it."""
    pytest.importorskip("keras")
    from flows.cli import main
    from pipeline.demo import sample_paths

    lc = sample_paths()["lightcurves"]
    ids = sorted(pd.read_parquet(lc, columns=["object_id"])["object_id"].astype(str)
                 .unique())[:2]
    out = tmp_path / "ex"
    assert main(["explain", "--model", "crts", "--data", str(lc), "--objects",
                 ",".join(ids), "-o", str(out)]) == 0
    pred = pd.read_parquet(out / "explain_predictions.parquet")
    feats = pd.read_parquet(out / "explain_features.parquet")
    forest = pred[pred["model"] == "forest"].set_index("object_id")
    for oid, g in feats.groupby("object_id"):
        assert g["contribution"].sum() + g["bias"].iloc[0] == pytest.approx(
            forest.loc[oid, "probability"], abs=1e-9)
        assert (g["predicted_class"] == forest.loc[oid, "predicted_class"]).all()
        assert sorted(g["rank"]) == list(range(1, len(g) + 1))
    maps = pd.read_parquet(out / "explain_maps.parquet")
    assert set(maps["kind"]) == {"gradcam", "saliency"} and set(maps["object_id"]) == set(ids)
    peak = maps.groupby(["kind", "object_id"])["value"].max()
    assert np.allclose(peak, 1.0)
    cnn = pred[pred["model"] == "cnn"].set_index("object_id")["predicted_class"]
    assert (maps.set_index("object_id")["predicted_class"] == cnn.reindex(
        maps["object_id"]).to_numpy()).all()
    assert (out / "explain_gradcam.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["explain", "--model", "crts", "--data", str(lc), "--objects",
                 f"{ids[0]},NOPE", "-o", str(tmp_path / "ex2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NOPE" in err[0]
