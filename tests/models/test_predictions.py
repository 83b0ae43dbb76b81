"""The one prediction schema: rows of a model, agreement between models, files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.predictions import (
    PREDICTIONS_METADATA_KEY,
    merge_predictions,
    new_run_id,
    prediction_frame,
    read_predictions,
    with_agreement,
    write_predictions,
)
from pipeline.errors import InputError
from pipeline.io import read_json_metadata
from pipeline.reports import METADATA_KEY, table_schema

CLASSES = ["EA", "EW", "RRab"]


def _objects(n: int) -> list[str]:
    return [f"CSS{k:06d}" for k in range(n)]


def test_prediction_frame_from_probabilities(rng):
    n = 40
    proba = rng.dirichlet(np.ones(len(CLASSES)), n)
    fold = rng.integers(0, 5, n)
    true = rng.choice(CLASSES, n)
    f = prediction_frame(_objects(n), "forest", CLASSES, proba, run_id="run-1", split="cv",
                         fold=fold, true_class=true)
    assert list(f.columns) == table_schema("predictions", CLASSES).names
    assert len(f) == n
    assert (f["run_id"] == "run-1").all() and (f["split"] == "cv").all()
    assert (f["model"] == "forest").all()
    assert f["object_id"].tolist() == _objects(n)
    assert f["true_class"].tolist() == list(true)
    assert str(f["fold"].dtype) == "Int32" and f["fold"].tolist() == fold.tolist()
    # independent: the class of the largest probability, and that probability
    for i in range(n):
        row = {c: proba[i, j] for j, c in enumerate(CLASSES)}
        best = max(row, key=row.get)
        assert f["predicted_class"].iat[i] == best
        assert f["probability"].iat[i] == row[best]
    np.testing.assert_array_equal(f[[f"prob_{c}" for c in CLASSES]].to_numpy(), proba)
    assert str(f["models_agree"].dtype) == "boolean" and f["models_agree"].isna().all()


def test_prediction_frame_defaults_and_predicted_only(rng):
    pred = rng.choice(CLASSES, 7)
    f = prediction_frame(np.arange(7), "rpca_nearest", CLASSES, predicted=pred, run_id="r",
                         split="classify")
    assert list(f.columns) == table_schema("predictions", CLASSES).names
    assert f["object_id"].tolist() == [str(k) for k in range(7)]
    assert f["predicted_class"].tolist() == list(pred)
    assert f["probability"].isna().all()
    assert f[[f"prob_{c}" for c in CLASSES]].isna().all().all()
    assert f["fold"].isna().all() and f["true_class"].isna().all()
    # empty input: the schema's columns, no rows
    e = prediction_frame([], "cnn", CLASSES, np.zeros((0, 3)), run_id="r", split="test")
    assert list(e.columns) == table_schema("predictions", CLASSES).names and len(e) == 0


@pytest.mark.parametrize("shape", [(5, 2), (4, 3), (5,), (5, 3, 1)])
def test_prediction_frame_rejects_wrong_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        prediction_frame(_objects(5), "cnn", CLASSES, np.full(shape, 0.2), run_id="r",
                         split="test")


def test_prediction_frame_needs_proba_or_predicted():
    with pytest.raises(ValueError):
        prediction_frame(_objects(2), "cnn", CLASSES, run_id="r", split="test")


def test_new_run_id():
    a, b = new_run_id(), new_run_id()
    assert a != b
    assert re.fullmatch(r"run-\d{8}T\d{6}Z-[0-9a-f]{6}", a)
    assert a[0].isalpha() and b[0].isalpha()
    c = new_run_id("train")
    assert c.startswith("train-") and re.fullmatch(r"train-\d{8}T\d{6}Z-[0-9a-f]{6}", c)


def _three_models(rng) -> pd.DataFrame:
    """forest/cnn/rpca rows on test and cv splits; some objects seen by one model only."""
    frames = []
    objs = _objects(30)
    for model, keep in (("forest", 30), ("cnn", 22), ("rpca_nearest", 15)):
        for split in ("test", "cv"):
            ids = objs[:keep] if split == "test" else objs[5:keep]
            # few classes: agreement and disagreement both occur
            pred = rng.choice(CLASSES[:2], len(ids), p=[0.8, 0.2])
            frames.append(prediction_frame(ids, model, CLASSES, predicted=pred, run_id="r",
                                           split=split))
    frame = pd.concat(frames, ignore_index=True)
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def test_with_agreement_matches_independent_computation(rng):
    frame = _three_models(rng)
    out = with_agreement(frame)
    assert list(out.columns) == list(frame.columns) and len(out) == len(frame)
    assert frame["models_agree"].isna().all()  # the input is not modified
    assert out.drop(columns="models_agree").equals(frame.drop(columns="models_agree"))
    # independent: plain Python over (object, split)
    preds: dict[tuple[str, str], list[str]] = {}
    for o, s, p in zip(frame["object_id"], frame["split"], frame["predicted_class"],
                       strict=True):
        preds.setdefault((o, s), []).append(p)
    expected = [None if len(preds[(o, s)]) == 1 else len(set(preds[(o, s)])) == 1
                for o, s in zip(frame["object_id"], frame["split"], strict=True)]
    got = [None if pd.isna(v) else bool(v) for v in out["models_agree"]]
    assert got == expected
    assert str(out["models_agree"].dtype) == "boolean"
    assert {True, False, None} <= set(got)  # the three cases occur


@pytest.fixture
def predictions(rng) -> pd.DataFrame:
    n = 12
    parts = [
        prediction_frame(_objects(n), "forest", CLASSES, rng.dirichlet(np.ones(3), n),
                         run_id="run-a", split="cv", fold=np.arange(n) % 3,
                         true_class=rng.choice(CLASSES, n)),
        prediction_frame(_objects(n), "rpca_nearest", CLASSES,
                         predicted=rng.choice(CLASSES, n), run_id="run-a", split="test"),
    ]
    return with_agreement(pd.concat(parts, ignore_index=True))


def test_write_read_round_trip(tmp_path, predictions):
    path = write_predictions(predictions, tmp_path / "p.parquet", metadata={"bundle": "b1"})
    frame, meta = read_predictions(path)
    assert meta == {"classes": CLASSES, "models": ["forest", "rpca_nearest"], "bundle": "b1"}
    schema = pq.read_schema(path)
    assert schema.remove_metadata().equals(table_schema("predictions", CLASSES))
    keys = set(schema.metadata)
    assert {PREDICTIONS_METADATA_KEY.encode(), METADATA_KEY.encode()} <= keys
    assert PREDICTIONS_METADATA_KEY == "lcpipe.predictions" and METADATA_KEY == "lcpipe.report"
    report = read_json_metadata(path, METADATA_KEY)
    assert report["table"] == "predictions" and report["run_id"] == "run-a"
    # values: compare as plain Python objects (NA-aware)
    assert list(frame.columns) == list(predictions.columns)

    def plain(df: pd.DataFrame) -> list[list]:
        return [[None if pd.isna(v) else v for v in row]
                for row in df.astype(object).itertuples(index=False)]

    assert plain(frame) == plain(predictions)


def test_round_trip_keeps_nullable_dtypes(tmp_path, predictions):
    frame, _ = read_predictions(write_predictions(predictions, tmp_path / "p.parquet"))
    assert str(frame["fold"].dtype) == "Int32"
    assert str(frame["models_agree"].dtype) == "boolean"


def test_read_predictions_refuses_other_files(tmp_path):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match="lcpipe.predictions"):
        read_predictions(tmp_path / "x.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(InputError):
        read_predictions(tmp_path / "junk.parquet")


def test_merge_predictions_stamps_run_id(tmp_path, predictions):
    a = predictions[predictions["model"] == "forest"]
    b = predictions[predictions["model"] == "rpca_nearest"].assign(run_id="run-old")
    pa_ = write_predictions(a, tmp_path / "a.parquet")
    pb = write_predictions(b, tmp_path / "b.parquet")
    out = merge_predictions([pa_, pb], tmp_path / "m.parquet", run_id="run-new",
                            metadata={"chunks": 2})
    frame, meta = read_predictions(out)
    assert (frame["run_id"] == "run-new").all() and len(frame) == len(predictions)
    assert meta["chunks"] == 2 and meta["models"] == ["forest", "rpca_nearest"]
    assert read_json_metadata(out, METADATA_KEY)["run_id"] == "run-new"
    # the other columns are the two files' rows, in order
    got = frame.drop(columns="run_id").astype(object).where(frame.notna(), None)
    ref = predictions.drop(columns="run_id").astype(object).where(predictions.notna(), None)
    assert got.values.tolist() == ref.values.tolist()


def test_lying_prediction_tables_are_refused(tmp_path, rng):
    """A table whose rows break the prediction contract: the same object twice for one
    model and split, probabilities outside [0, 1] or not summing to 1, a predicted class
    that is not the most probable (issue 16). Each names the file and the object."""
    proba = rng.dirichlet(np.ones(len(CLASSES)), 6)
    good = with_agreement(pd.concat([
        prediction_frame(_objects(6), "forest", CLASSES, proba, run_id="r", split="classify"),
        prediction_frame(_objects(6), "rpca_nearest", CLASSES, predicted=["EA"] * 6,
                         run_id="r", split="classify")], ignore_index=True))
    write_predictions(good, tmp_path / "good.parquet")
    assert len(read_predictions(tmp_path / "good.parquet")[0]) == 12  # null probs allowed

    def lying(name, edit):
        f = good.copy()
        edit(f)
        return write_predictions(f, tmp_path / f"{name}.parquet")

    def swap(f):
        i = f.index[(f.model == "forest") & (f.object_id == _objects(6)[2])][0]
        wrong = [c for c in CLASSES if c != f.at[i, "predicted_class"]][0]
        f.at[i, "predicted_class"] = wrong

    cases = {
        lying("dup", lambda f: f.__setitem__("object_id", [_objects(6)[0]] * 2
                                              + list(f.object_id[2:]))): "predicted twice",
        lying("range", lambda f: f.__setitem__("prob_EA", f.prob_EA + 0.5)): "outside",
        lying("argmax", swap): "not the most probable",
    }
    for path, needle in cases.items():
        with pytest.raises(InputError, match=needle) as info:
            read_predictions(path)
        assert str(path) in str(info.value) and "object CSS" in str(info.value)


def test_survey_table_of_schema_1_0_is_upserted(tmp_path, rng):
    """A survey's prediction table written before 1.1 (no answer columns) takes new rows:
    its old rows get null answers, the new ones theirs."""
    import pyarrow as pa

    from models.predictions import upsert_predictions

    proba = rng.dirichlet(np.ones(len(CLASSES)), 4)
    old = prediction_frame(_objects(4), "forest", CLASSES, proba, run_id="run-old",
                           split="classify")
    path = write_predictions(old, tmp_path / "survey.parquet")
    t = pq.read_table(path)
    pq.write_table(t.drop_columns(["answer", "unknown_reason"]).replace_schema_metadata(
        t.schema.metadata), path)
    new = write_predictions(old.iloc[:1].assign(run_id="x"), tmp_path / "new.parquet")
    out = upsert_predictions(path, [new], tmp_path / "out.parquet", run_id="run-new")
    frame, _ = read_predictions(out)
    assert frame["run_id"].tolist() == ["run-new", "run-old", "run-old", "run-old"]
    assert frame["answer"].tolist()[0] == old["predicted_class"].iloc[0]
    assert frame["answer"].iloc[1:].isna().all()
    assert pa.types.is_string(pq.read_schema(out).field("answer").type)
