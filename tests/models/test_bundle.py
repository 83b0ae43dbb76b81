"""Model bundles from real saved models (forest, robust PCA); the robust-PCA model file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.bundle import BUNDLE_FORMAT, load_bundle, resolve_bundle, write_bundle
from models.forest import LightCurveForest, load_forest, save_forest
from models.settings import TrainSettings
from pipeline.errors import InputError
from pipeline.rpca_dmdt import DmDtRPCA, load_rpca, save_rpca

SHAPE = (6, 5, 1)


def _images(rng, n_per_class=20):
    """Two classes of non-negative images that differ in the upper half."""
    X = rng.random((2 * n_per_class, *SHAPE))
    X[n_per_class:, :3] += 2.0
    y = np.array(["EA"] * n_per_class + ["RRab"] * n_per_class)
    return X, y


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict:
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("models")
    X, y = _images(rng)
    rpca = DmDtRPCA(1, 2, cv=None).fit(X, y)
    save_rpca(rpca, d / "rpca.npz", extra={"grid": "paper"})
    F = rng.random((30, 4))
    labels = np.array(["EA", "RRab"] * 15)
    forest = LightCurveForest(n_estimators=5).fit(F, labels)
    save_forest(forest, d / "forest.skops", feature_names=list("abcd"),
                feature_set_version="1.0", training_hash="sha256:test")
    return {"dir": d, "forest": d / "forest.skops", "rpca_nearest": d / "rpca.npz",
            "X": X, "F": F, "rpca": rpca, "forest_model": forest}


def _info(**extra) -> dict:
    return {"classes": ["EA", "RRab"], "bands": ["CSS_V"],
            "grids": {"cnn": "fine", "rpca": "paper"},
            "settings": TrainSettings(chunk_size=50, refit=False).model_dump(), **extra}


def _paths(saved: dict, kinds=("forest", "rpca_nearest")) -> dict[str, str]:
    return {k: str(saved[k]) for k in kinds}


def test_write_and_load_bundle(tmp_path, saved_models):
    out = write_bundle(tmp_path / "b", _paths(saved_models), _info(scores={"forest": 0.5}))
    assert out == tmp_path / "b"
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "forest.skops",
                                                     "rpca_nearest.npz"]
    # the model files are copies of the saved ones
    assert (out / "forest.skops").read_bytes() == saved_models["forest"].read_bytes()
    assert (out / "rpca_nearest.npz").read_bytes() == saved_models["rpca_nearest"].read_bytes()
    info = json.loads((out / "bundle.json").read_text())
    assert info["format"] == BUNDLE_FORMAT == "lcpipe-bundle/1"
    assert info["models"] == ["forest", "rpca_nearest"]
    assert info["classes"] == ["EA", "RRab"] and info["scores"] == {"forest": 0.5}
    b = load_bundle(out)
    assert b.path == out and b.models == ["forest", "rpca_nearest"]
    assert b.settings == TrainSettings(chunk_size=50, refit=False)
    assert b.model_path("forest") == out / "forest.skops"
    # the bundled models load and predict like the originals
    forest, meta = load_forest(b.model_path("forest"))
    np.testing.assert_array_equal(forest.predict_proba(saved_models["F"]),
                                  saved_models["forest_model"].predict_proba(saved_models["F"]))
    assert meta["feature_names"] == list("abcd")
    rpca, rmeta = load_rpca(b.model_path("rpca_nearest"))
    assert rmeta["grid"] == "paper"
    np.testing.assert_array_equal(rpca.transform(saved_models["X"]),
                                  saved_models["rpca"].transform(saved_models["X"]))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resolve_bundle(tmp_path, saved_models):
    run = tmp_path / "run"
    old = write_bundle(run / "bundles" / "run-20240101T000000Z-aaaaaa", _paths(saved_models),
                       _info())
    new = write_bundle(run / "bundles" / "run-20250101T000000Z-000000", _paths(saved_models),
                       _info())
    (run / "bundles" / "zz-not-a-bundle").mkdir()  # no bundle.json: ignored
    assert resolve_bundle(old) == old
    assert resolve_bundle(str(new)) == new
    assert resolve_bundle(run) == new  # the newest bundle of a run folder
    assert load_bundle(run).path == new
    for bad in (tmp_path / "nothing", tmp_path / "empty", run / "bundles" / "zz-not-a-bundle"):
        bad.mkdir(exist_ok=True)
        with pytest.raises(InputError, match="not a model bundle"):
            resolve_bundle(bad)
    (tmp_path / "lonely" / "bundles").mkdir(parents=True)
    with pytest.raises(InputError):
        load_bundle(tmp_path / "lonely")


def test_write_over_existing_bundle_replaces_it(tmp_path, saved_models):
    out = tmp_path / "b"
    write_bundle(out, _paths(saved_models), _info())
    (out / "stale.txt").write_text("from the old bundle")
    write_bundle(out, _paths(saved_models, ("forest",)), _info(note="second"))
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "forest.skops"]
    b = load_bundle(out)
    assert b.models == ["forest"] and b.info["note"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no '.b.*' temporary folder left


def test_failed_write_leaves_old_bundle_and_no_temp(tmp_path, saved_models):
    out = tmp_path / "b"
    write_bundle(out, _paths(saved_models), _info())
    before = (out / "bundle.json").read_text()
    with pytest.raises(OSError):
        write_bundle(out, {"forest": str(tmp_path / "missing.skops")}, _info())
    assert (out / "bundle.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_bad_bundles_are_refused(tmp_path, saved_models):
    good = write_bundle(tmp_path / "good", _paths(saved_models), _info())

    def copy(name: str) -> Path:
        return Path(shutil.copytree(good, tmp_path / name))

    wrong = copy("wrong_format")
    info = json.loads((wrong / "bundle.json").read_text())
    (wrong / "bundle.json").write_text(json.dumps({**info, "format": "lcpipe-bundle/99"}))
    with pytest.raises(InputError, match="lcpipe-bundle/99") as exc:
        load_bundle(wrong)
    assert exc.value.source == str(wrong / "bundle.json")

    missing = copy("missing_model")
    (missing / "forest.skops").unlink()
    with pytest.raises(InputError, match="forest.skops"):
        load_bundle(missing)

    unknown = copy("unknown_model")
    (unknown / "bundle.json").write_text(json.dumps({**info, "models": ["forest", "svm"]}))
    with pytest.raises(InputError, match="svm"):
        load_bundle(unknown)

    settings = copy("bad_settings")
    (settings / "bundle.json").write_text(json.dumps(
        {**info, "settings": {**info["settings"], "chunk_size": 0}}))
    with pytest.raises(InputError, match="chunk_size"):
        load_bundle(settings)

    broken = copy("broken_json")
    (broken / "bundle.json").write_text("{not json")
    with pytest.raises(InputError, match="bundle.json"):
        load_bundle(broken)


def test_rpca_save_load_round_trip(tmp_path, saved_models):
    rpca = saved_models["rpca"]
    path = save_rpca(rpca, tmp_path / "m.npz", extra={"bins": "paper"})
    model, meta = load_rpca(path)
    X = saved_models["X"]
    a, b = rpca.decompose(X), model.decompose(X)
    assert sorted(a) == sorted(b) == ["b_coef", "class_coef", "err", "l1"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(model.classes_, rpca.classes_)
    assert model.get_params() == rpca.get_params()
    assert meta["bins"] == "paper" and meta["classes"] == ["EA", "RRab"]
    assert tuple(meta["image_shape"]) == SHAPE
    # arrays only: readable without pickle, no object arrays
    with np.load(path, allow_pickle=False) as z:
        assert z.files
        for k in z.files:
            assert z[k].dtype != object, k
    # a different model gives a different decomposition (the comparison above can fail)
    other = DmDtRPCA(1, 1, cv=None).fit(X, saved_models["X"][:, 0, 0, 0] > 0.5)
    assert not np.array_equal(other.decompose(X)["err"], a["err"])


def test_load_rpca_refuses_foreign_files(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(InputError):
        load_rpca(tmp_path / "plain.npz")
    np.savez(tmp_path / "pickled.npz", meta_json=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(InputError):
        load_rpca(tmp_path / "pickled.npz")
    with pytest.raises(InputError):
        load_rpca(tmp_path / "absent.npz")


@pytest.mark.parametrize("bad", [{"forest": "warm"}, {"forest": 0}, {"forest": -1.0},
                                 {"forest": float("nan")}, [1.0]])
def test_bad_temperatures_are_a_clear_error(tmp_path, saved_models, bad):
    """A bundle.json whose temperatures are not finite numbers > 0 is refused, naming the
    file and the model, before any prediction; good ones come back as floats."""
    from models.bundle import _temperatures

    good = load_bundle(write_bundle(tmp_path / "g", _paths(saved_models),
                                    _info(temperatures={"forest": 0.7})))
    assert _temperatures(good) == {"forest": 0.7}
    b = load_bundle(write_bundle(tmp_path / "b", _paths(saved_models),
                                 _info(temperatures=bad)))
    with pytest.raises(InputError, match=r"bundle\.json.*temperature .*finite number > 0"):
        _temperatures(b)
