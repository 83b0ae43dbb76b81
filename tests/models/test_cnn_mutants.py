"""The CNN prediction path against an independent computation (issue 17).

A network with hand-set weights (Flatten -> Dense softmax) stands in for a trained one,
so every probability has a closed form computed here with numpy: the tests check
values, not shapes, and need no training (fast enough to run against every mutant of
``tools/mutation.py cnn_predict``). Error messages are compared whole.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

pytest.importorskip("keras")

from models.cnn import DmDtCNN, _check_images, load_cnn  # noqa: E402
from pipeline.errors import InputError  # noqa: E402

SHAPE = (3, 4, 2)
CLASSES = np.array(["EA", "EW", "RRab"])
META = {"preset": "test", "norm": "max", "bands": ["V"], "channels": ["counts"],
        "dm_edges": [-1.0, 0.0, 0.5, 1.0], "dt_edges": [0.0, 1.0, 10.0, 100.0, 1000.0]}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def linear():
    """A fitted-looking DmDtCNN whose network is softmax(flatten(x) @ W + b): (clf, W, b)."""
    import keras

    rng = np.random.default_rng(17)
    n_in = int(np.prod(SHAPE))
    W = rng.normal(scale=0.7, size=(n_in, len(CLASSES))).astype(np.float32)
    b = np.array([0.3, -0.2, 0.1], dtype=np.float32)
    inp = keras.Input(SHAPE)
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([W, b])
    clf = DmDtCNN(inference_batch_size=3)
    clf.classes_ = CLASSES.copy()
    clf.model_ = model
    clf.input_shape_ = SHAPE
    clf.input_meta_ = dict(META)
    clf.class_weight_ = {0: 1.0, 1: 2.5, 2: 0.5}
    clf.best_epoch_ = 7
    clf.learning_rate_ = 1e-3
    clf.n_train_ = 120
    clf.n_augmented_ = 30
    clf.training_hash_ = "abc123"
    return clf, W.astype(np.float64), b.astype(np.float64)


def _expected(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    return _softmax(x @ W + b)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE))


# --------------------------------------------------------------------------- _check_images


def test_check_images_converts_and_keeps_values():
    X = np.arange(2 * 3 * 4 * 2, dtype=np.int64).reshape(2, 3, 4, 2)[:, :, ::-1]  # strided
    out = _check_images(X)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, X.astype(np.float32))
    three = np.random.default_rng(0).random((5, 3, 4))
    out3 = _check_images(three)
    assert out3.shape == (5, 3, 4, 1)
    np.testing.assert_array_equal(out3[..., 0], three.astype(np.float32))
    np.testing.assert_array_equal(_check_images(np.ones((1, 3, 4, 2), bool)), 1.0)


@pytest.mark.parametrize(("X", "what", "message"), [
    (np.array([[["a"]]]), "X", "X must be numeric, got dtype <U1"),
    (np.zeros((2, 3), complex), "imgs", "imgs must be numeric, got dtype complex128"),
    (np.zeros((4, 10)), "X", "X must be dm-dt images of shape (n_objects, n_dm, n_dt[, "
                             "n_channels]), got an array of shape (4, 10)"),
    (np.zeros((1, 2, 3, 4, 5)), "X", "X must be dm-dt images of shape (n_objects, n_dm, "
                                     "n_dt[, n_channels]), got an array of shape "
                                     "(1, 2, 3, 4, 5)"),
    (np.zeros((0, 3, 4, 2)), "imgs", "imgs has no images"),
    (np.zeros((0, 3, 4)), "X", "X has no images"),
    (np.array([[[[0.0, np.inf]]]]), "X", "X contains NaN or infinite values"),
    (np.array([[[[np.nan]]]]), "imgs", "imgs contains NaN or infinite values"),
])
def test_check_images_errors_whole(X, what, message):
    with pytest.raises(ValueError) as info:
        _check_images(X, what) if what != "X" else _check_images(X)
    assert str(info.value) == message


# --------------------------------------------------------------------------- predict


@pytest.mark.parametrize("n", [1, 3, 7])
def test_predict_proba_is_the_softmax_of_the_weights(linear, n):
    """Batches of 3 (``inference_batch_size``): 1 image, one full batch, a partial one."""
    clf, W, b = linear
    X = _images(n, seed=n)
    p = clf.predict_proba(X)
    assert p.dtype == np.float64 and p.shape == (n, len(CLASSES))
    np.testing.assert_allclose(p, _expected(X, W, b), rtol=2e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.predict(X), CLASSES[np.argmax(_expected(X, W, b), 1)])


def test_predict_names_each_class_where_it_wins(linear):
    """Images built to make each class win by a wide margin come back as that class."""
    clf, W, b = linear
    X = np.stack([np.sign(W[:, k]).reshape(SHAPE) * 3 for k in range(len(CLASSES))])
    assert list(np.argmax(_expected(X, W, b), 1)) == [0, 1, 2]
    assert list(clf.predict(X)) == list(CLASSES)
    assert list(clf.predict(X[::-1])) == list(CLASSES[::-1])


def test_predict_of_three_d_images_adds_the_channel(linear):
    clf, W, b = linear
    one = DmDtCNN()
    one.__dict__.update({k: v for k, v in clf.__dict__.items() if k.endswith("_")})
    import keras

    inp = keras.Input((3, 4, 1))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    one.model_ = keras.Model(inp, out)
    W1 = W[::2]
    one.model_.layers[-1].set_weights([W1.astype(np.float32), b.astype(np.float32)])
    one.input_shape_ = (3, 4, 1)
    X = np.random.default_rng(5).normal(size=(4, 3, 4))
    np.testing.assert_allclose(one.predict_proba(X), _expected(X, W1, b), rtol=2e-5, atol=1e-7)


def test_predict_refuses_other_shapes_and_unfitted(linear):
    clf, _, _ = linear
    with pytest.raises(InputError) as info:
        clf.predict_proba(np.zeros((2, 3, 4, 1)))
    assert str(info.value) == ("<images>: dm-dt images of shape (3, 4, 1) given to a model "
                               "trained on shape (3, 4, 2) (different bins, bands or "
                               "representation?)")
    with pytest.raises(InputError, match=r"shape \(4, 3, 2\) given"):
        clf.predict(np.zeros((2, 4, 3, 2)))
    with pytest.raises(ValueError, match="^X contains NaN"):
        clf.predict(np.full((1, *SHAPE), np.nan))
    for call in (DmDtCNN().predict, DmDtCNN().predict_proba):
        with pytest.raises(NotFittedError):
            call(np.zeros((1, *SHAPE)))


# --------------------------------------------------------------------------- check_input_meta


def test_check_input_meta_accepts_the_same_and_partial(linear):
    clf, _, _ = linear
    clf.check_input_meta(dict(META))
    clf.check_input_meta({})
    clf.check_input_meta({"bands": "V", "channels": "counts"})  # scalars = one-item lists
    edges = np.asarray(META["dt_edges"]) * (1 + 5e-10)
    clf.check_input_meta({"dt_edges": list(edges)})  # within 1e-9 relative
    with pytest.raises(NotFittedError):
        DmDtCNN().check_input_meta({})


@pytest.mark.parametrize(("key", "value"), [
    ("preset", "mahabal2017"), ("norm", "paper"), ("bands", ["V", "r"]), ("bands", ["r"]),
    ("channels", ["counts", "log_count"]),
])
def test_check_input_meta_names_the_difference(linear, key, value):
    clf, _, _ = linear
    with pytest.raises(InputError) as info:
        clf.check_input_meta({**META, key: value}, source="imgs.parquet")
    assert str(info.value) == (
        f"imgs.parquet: dm-dt images have {key} {value!r} but the model was trained on "
        f"{key} {META[key]!r}; recompute them with the model's settings")


@pytest.mark.parametrize("key", ["dm_edges", "dt_edges"])
def test_check_input_meta_edges(linear, key):
    clf, _, _ = linear
    mine = np.asarray(META[key])
    moved = mine.copy()
    moved[1] += 1e-6 * max(1.0, abs(moved[1]))
    shorter = mine[:-1]
    words = key.replace("_", " ")
    for other in (moved, shorter, np.append(mine, mine[-1] + 1)):
        with pytest.raises(InputError) as info:
            clf.check_input_meta({key: list(other)})
        assert str(info.value) == (
            f"<images>: dm-dt images use other {words} ({len(other) - 1} bins) than the "
            f"model was trained on ({len(mine) - 1} bins, preset 'test')")
    if key == "dm_edges":  # the 0 edge: relative 1e-9 of 0 is 0, no absolute slack
        zero = list(mine)
        zero[1] = 5e-9
        with pytest.raises(InputError, match="other dm edges"):
            clf.check_input_meta({key: zero})
    saved = clf.input_meta_
    try:
        clf.input_meta_ = {**META, "bins": "fine"}
        with pytest.raises(InputError, match=r"bins, preset 'fine'\)$"):
            clf.check_input_meta({key: list(moved)})
        clf.input_meta_ = {key: META[key]}
        with pytest.raises(InputError, match=r"bins, preset '\?'\)$"):
            clf.check_input_meta({key: list(moved)})
        clf.input_meta_ = {}
        clf.check_input_meta({key: list(moved)})  # nothing to compare with
    finally:
        clf.input_meta_ = saved


# --------------------------------------------------------------------------- load_cnn


@pytest.fixture(scope="module")
def saved(linear, tmp_path_factory):
    clf, _, _ = linear
    return clf.save(tmp_path_factory.mktemp("cnn") / "m")


def _copy(saved, tmp_path, edit=None):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(saved, d)
    if edit is not None:
        meta = json.loads((d / "model.json").read_text())
        edit(meta)
        (d / "model.json").write_text(json.dumps(meta))
    return d


def test_load_restores_every_attribute(linear, saved):
    clf, W, b = linear
    got = load_cnn(saved)
    assert type(got) is DmDtCNN
    assert got.get_params() == clf.get_params() and got.inference_batch_size == 3
    assert isinstance(got.classes_, np.ndarray) and list(got.classes_) == list(CLASSES)
    assert got.input_shape_ == SHAPE and isinstance(got.input_shape_, tuple)
    assert got.input_meta_ == META
    assert got.class_weight_ == {0: 1.0, 1: 2.5, 2: 0.5}
    assert (got.best_epoch_, got.learning_rate_, got.n_train_, got.n_augmented_,
            got.training_hash_) == (7, 1e-3, 120, 30, "abc123")
    X = _images(5, seed=9)
    np.testing.assert_allclose(got.predict_proba(X), _expected(X, W, b), rtol=2e-5, atol=1e-7)
    assert not hasattr(got, "history_")


def test_load_without_optional_metadata(saved, tmp_path):
    def strip(meta):
        for k in ("input_meta", "class_weight", "best_epoch", "learning_rate", "n_train",
                  "n_augmented", "training_hash", "model_sha256", "estimator"):
            meta.pop(k)

    got = load_cnn(_copy(saved, tmp_path, strip))
    assert type(got) is DmDtCNN and got.input_meta_ == {} and got.class_weight_ == {}
    assert (got.best_epoch_, got.learning_rate_, got.n_train_, got.n_augmented_,
            got.training_hash_) == (None, None, None, None, None)
    got.check_input_meta({"preset": "anything"})


def _refused(d, file, problem):
    with pytest.raises(InputError) as info:
        load_cnn(d)
    assert str(info.value) == f"{file}: {problem}"


@pytest.mark.parametrize("name", ["model.json", "model.keras"])
def test_load_missing_file(saved, tmp_path, name):
    d = _copy(saved, tmp_path)
    (d / name).unlink()
    _refused(d, d, f"not an lcpipe CNN model folder: {name} missing")
    (d / name).mkdir()
    _refused(d, d, f"not an lcpipe CNN model folder: {name} missing")


def test_load_unreadable_or_foreign_metadata(saved, tmp_path):
    d = _copy(saved, tmp_path)
    meta_path = d / "model.json"
    meta_path.write_text("{not json")
    with pytest.raises(InputError, match="^" + str(meta_path) + ": cannot read model metadata: "
                       "Expecting property name"):
        load_cnn(d)
    meta_path.write_text("[1, 2]")
    _refused(d, meta_path, "unknown model format None (expected 'lcpipe-cnn/1')")
    meta_path.write_text(json.dumps({"format": "other/1"}))
    _refused(d, meta_path, "unknown model format 'other/1' (expected 'lcpipe-cnn/1')")
    meta_path.write_text(json.dumps({"classes": ["a"]}))
    _refused(d, meta_path, "unknown model format None (expected 'lcpipe-cnn/1')")


@pytest.mark.parametrize(("drop", "listed"), [
    (["classes"], "classes"), (["params"], "params"), (["input_shape"], "input_shape"),
    (["classes", "input_shape"], "classes, input_shape"),
    (["classes", "params", "input_shape"], "classes, params, input_shape"),
])
def test_load_metadata_lacking_keys(saved, tmp_path, drop, listed):
    d = _copy(saved, tmp_path, lambda m: [m.pop(k) for k in drop])
    _refused(d, d / "model.json", f"model metadata lacks {listed}")


@pytest.mark.parametrize("classes", ["EA", [], ["EA", "EW", "EA"], ["1", 1, "RRab"],
                                     {"EA": 0}])
def test_load_bad_classes(saved, tmp_path, classes):
    d = _copy(saved, tmp_path, lambda m: m.update(classes=classes))
    _refused(d, d / "model.json",
             "model metadata: 'classes' must be a list of distinct class names")


def test_load_weights_of_another_save(saved, tmp_path):
    d = _copy(saved, tmp_path, lambda m: m.update(model_sha256="0" * 64))
    _refused(d, d, "model.keras is not the network model.json describes (an interrupted "
                   "save, or files mixed from two models): retrain, or restore the folder")


def test_load_unknown_estimator_and_parameters(saved, tmp_path):
    d = _copy(saved, tmp_path, lambda m: m.update(estimator="Forest"))
    _refused(d, d / "model.json",
             "unknown estimator 'Forest' in model metadata (expected one of DmDtCNN, "
             "HybridCNN)")
    d2 = tmp_path / "p"
    _copy(saved, tmp_path / "p0", lambda m: m["params"].update(depth=3)).rename(d2)
    with pytest.raises(InputError) as info:
        load_cnn(d2)
    assert str(info.value).startswith(f"{d2 / 'model.json'}: model metadata has unknown "
                                      "parameters: ")
    assert "depth" in str(info.value)


def test_load_network_with_other_output_count(saved, tmp_path):
    d = _copy(saved, tmp_path, lambda m: m.update(classes=["a", "b"]))
    _refused(d, d / "model.json", "the network has 3 outputs but the metadata names 2 classes")
    d = _copy(saved, tmp_path / "4", lambda m: m.update(classes=["a", "b", "c", "d"]))
    _refused(d, d / "model.json", "the network has 3 outputs but the metadata names 4 classes")


def test_load_corrupt_and_code_carrying_archives(saved, tmp_path):
    import keras

    d = _copy(saved, tmp_path, lambda m: m.pop("model_sha256"))
    (d / "model.keras").write_bytes(b"")
    with pytest.raises(InputError) as info:
        load_cnn(d)
    text = str(info.value)
    assert text.startswith(f"{d / 'model.keras'}: cannot load the Keras model: ")
    assert "asks to run code" not in text
    assert "\n" not in text and len(text) <= len(str(d / "model.keras")) + 2 + 31 + 200

    inp = keras.Input(SHAPE)
    lam = keras.layers.Lambda(lambda x: x * 2.0)(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(lam))
    keras.Model(inp, out).save(tmp_path / "lam.keras")
    with zipfile.ZipFile(tmp_path / "lam.keras") as z:
        assert "config.json" in z.namelist()
    (d / "model.keras").write_bytes((tmp_path / "lam.keras").read_bytes())
    _refused(d, d / "model.keras", "cannot load the Keras model: it asks to run code when "
                                   "loaded (refused: lcpipe loads plain models only)")


def test_load_imports_the_hybrid_module_for_a_hybrid_folder(saved, tmp_path, monkeypatch):
    """``HybridCNN`` registers itself when ``models.hybrid`` is imported: a hybrid folder
    loads in a process that has not imported it yet (here: the module forgotten)."""
    import sys

    import models
    from models.cnn import ESTIMATORS

    monkeypatch.delitem(ESTIMATORS, "HybridCNN", raising=False)
    monkeypatch.delitem(sys.modules, "models.hybrid", raising=False)
    monkeypatch.delattr(models, "hybrid", raising=False)
    d = _copy(saved, tmp_path, lambda m: m.update(estimator="HybridCNN",
                                                  params={"nonsense": 1}))
    with pytest.raises(InputError, match="model metadata has unknown parameters"):
        load_cnn(d)
    assert "HybridCNN" in ESTIMATORS and ESTIMATORS["HybridCNN"].__name__ == "HybridCNN"


@pytest.mark.parametrize(("raised", "why"), [
    (ValueError(""), "ValueError"),
    (OSError("   \n "), "OSError"),
    (ValueError("first line " + "x" * 300 + "\nsecond line"), "first line " + "x" * 189),
    (RuntimeError("  padded  \nmore"), "padded"),
    (ValueError("pass safe_mode=False to load it"), "it asks to run code when loaded "
                                                    "(refused: lcpipe loads plain models only)"),
    (ValueError("Deserializing an Unsafe lambda"), "it asks to run code when loaded "
                                                   "(refused: lcpipe loads plain models only)"),
])
def test_load_keras_failure_is_one_line(saved, tmp_path, monkeypatch, raised, why):
    """Whatever Keras raises becomes one line: its first line cut to 200 characters, or
    the exception's type when it says nothing."""
    import keras

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(keras.saving, "load_model", fail)
    _refused(saved, saved / "model.keras", f"cannot load the Keras model: {why}")
