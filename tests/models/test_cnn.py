"""CNN on dm-dt images: representations, augmentation, estimator, saliency, persistence, CLI.

Tiny seeded data, a few epochs each, TensorFlow backend on CPU; no GPU needed.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.exceptions import NotFittedError

pytest.importorskip("keras")

from models.cnn import (
    ARCHITECTURES,
    DEFAULT_LEARNING_RATE,
    DmDtCNN,
    _class_weights,
    _validation_split,
    load_cnn,
)
from models.representations import (
    FINE_BINS,
    REPRESENTATIONS,
    images_to_inputs,
    lightcurves_to_inputs,
    log_count,
    p_dm_given_dt,
    subsample_lightcurves,
)
from pipeline.dmdt import compute_dmdt
from pipeline.errors import ConfigError, InputError
from pipeline.io import write_parquet_atomic
from pipeline.lightcurves import LightCurves


def _frame(rng: np.random.Generator, n_obj: int = 40, classes=("const", "var")) -> pd.DataFrame:
    """Light curves: 'var' = 1 mag sinusoid (P = 0.37 d), 'const' = 0.02 mag noise."""
    rows = []
    for k in range(n_obj):
        c = classes[k % len(classes)]
        n = int(rng.integers(40, 80))
        nights = np.sort(rng.choice(1500, size=n // 4 + 1, replace=False)).astype(float)
        t = 55000 + (nights[:, None] + np.arange(4) * 0.007).ravel()[:n]
        amp = 1.0 if c == "var" else 0.0
        mag = 15 + amp * np.sin(2 * np.pi * t / 0.37) + rng.normal(0, 0.02, len(t))
        rows.append(pd.DataFrame({"object_id": f"o{k:03d}", "band": "V", "t": t, "mag": mag,
                                  "mag_err": 0.02, "label": c}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def lcs_and_labels():
    frame = _frame(np.random.default_rng(7))
    labels = frame.groupby("object_id")["label"].first()
    return LightCurves.from_frame(frame.drop(columns="label")), labels


def _separable(rng: np.random.Generator, n: int = 96, shape=(22, 24, 1)):
    """Noise images; class 'b' has a bright 3x3 patch around (10, 12)."""
    X = rng.random((n, *shape)).astype(np.float32) * 0.3
    y = np.repeat(np.array(["a", "b"]), n // 2)
    X[y == "b", 9:12, 11:14, :] += 1.5
    perm = rng.permutation(n)
    return X[perm], y[perm]


# --------------------------------------------------------------------------- representations


def test_fine_representation_against_histogram2d(lcs_and_labels):
    lcs, _ = lcs_and_labels
    _, X, meta = lightcurves_to_inputs(lcs, "fine")
    assert X.shape == (len(lcs), 36, 32, 2) and meta["channels"] == ["V:p_dm_given_dt",
                                                                      "V:log_count"]
    for s in (0, 1, 5):
        _, _, t, m, _ = lcs.series(s)
        i, j = np.triu_indices(len(t), k=1)
        h, _, _ = np.histogram2d(m[j] - m[i], t[j] - t[i],
                                 bins=[FINE_BINS.dm_edges, FINE_BINS.dt_edges])
        col = h.sum(axis=0)
        expect = np.where(col > 0, h / np.where(col > 0, col, 1), 0.0)
        np.testing.assert_allclose(X[s, :, :, 0], expect, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(X[s, :, :, 1], np.log10(1 + h) / 5, rtol=1e-6)


def test_paper_representation_equals_dmdt_paper_norm(lcs_and_labels):
    lcs, _ = lcs_and_labels
    from_counts, _ = images_to_inputs(compute_dmdt(lcs, "mahabal2017", norm="counts"), "paper")
    from_paper, _ = images_to_inputs(compute_dmdt(lcs, "mahabal2017", norm="paper"), "paper")
    np.testing.assert_array_equal(from_counts, from_paper)
    assert from_paper.max() <= 255 and from_paper.max() > 1
    np.testing.assert_array_equal(from_paper, np.round(from_paper))


def test_channel_functions(rng):
    c = rng.integers(0, 50, size=(3, 5, 4, 2))
    c[0, :, 1, 0] = 0
    p = p_dm_given_dt(c)
    sums = p.sum(axis=1)
    np.testing.assert_allclose(np.delete(sums[0, :, 0], 1), 1.0, rtol=1e-6)
    assert sums[0, 1, 0] == 0
    np.testing.assert_allclose(log_count(c), np.log10(1 + c) / 5, rtol=1e-6)


def test_wrong_grid_or_norm_is_a_clear_error(lcs_and_labels):
    lcs, _ = lcs_and_labels
    with pytest.raises(InputError, match="needs grid 'lcpipe_fine'.*--norm counts"):
        images_to_inputs(compute_dmdt(lcs, "mahabal2017", norm="counts"), "fine")
    with pytest.raises(InputError, match="normalised 'probability'"):
        images_to_inputs(compute_dmdt(lcs, "mahabal2017", norm="probability"), "paper")


def test_subsample_lightcurves_are_subsets(lcs_and_labels):
    lcs, _ = lcs_and_labels
    copies, origin = subsample_lightcurves(lcs, 3, fraction=(0.3, 0.6), min_points=10, seed=1)
    assert len(copies) == 3 * len(lcs)
    np.testing.assert_array_equal(origin, np.repeat(np.arange(len(lcs)), 3))
    for s in range(len(copies)):
        oid, _, t, m, _ = copies.series(s)
        src_id, _, ts, ms, _ = lcs.series(int(origin[s]))
        assert oid.startswith(src_id + "#aug")
        pos = np.searchsorted(ts, t)
        np.testing.assert_array_equal(ts[pos], t)
        np.testing.assert_array_equal(ms[pos], m)
        assert 10 <= len(t) < len(ts)
    again, _ = subsample_lightcurves(lcs, 3, fraction=(0.3, 0.6), min_points=10, seed=1)
    np.testing.assert_array_equal(again.t, copies.t)
    # the mean kept fraction sits inside the requested range
    frac = copies.n_points / np.repeat(lcs.n_points, 3)
    assert 0.3 < frac.mean() < 0.6


# --------------------------------------------------------------------------- estimator pieces


def test_class_weights_balanced_and_capped():
    y = np.array([0] * 300 + [1] * 30 + [2] * 3)
    w = _class_weights(y, 3, cap=None)
    np.testing.assert_allclose(w, [333 / 900, 333 / 90, 333 / 9])
    np.testing.assert_allclose(_class_weights(y, 3, cap=10.0), [333 / 900, 333 / 90, 10.0])


def test_validation_split_stratified(rng):
    y = np.array([0] * 100 + [1] * 20 + [2] * 1)
    tr, va = _validation_split(y, 0.2, rng)
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == len(y)
    assert [int(np.sum(y[va] == c)) for c in range(3)] == [20, 4, 0]


def test_not_fitted_and_bad_input():
    clf = DmDtCNN()
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((2, 22, 24, 1)))
    with pytest.raises(ValueError, match="dm-dt images of shape"):
        clf.fit(np.zeros((4, 10)), ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.full((4, 22, 24, 1), np.nan), ["a", "b", "a", "b"])


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_separable_two_class_is_learnt(arch):
    X, y = _separable(np.random.default_rng(0))
    X_test, y_test = _separable(np.random.default_rng(1), n=100)
    clf = DmDtCNN(arch=arch, epochs=6, batch_size=16, learning_rate=3e-3, patience=6,
                  random_state=0).fit(X, y)
    assert np.mean(clf.predict(X_test) == y_test) > 0.95
    assert list(clf.classes_) == ["a", "b"]
    h = clf.history_
    assert list(h.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                               "learning_rate"]
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]


def test_dmdtnet_predicts_faint_images_after_a_short_fit():
    """Pixels as faint as real p(dm|dt) ones (tenths): the batch-normalised network's
    inference statistics must catch up within the few epochs early stopping allows. With
    Keras' default momentum (0.99) its moving variance was still ~10x the batch variance
    after 60 steps: predictions were near-constant (every CRTS fold collapsed to one
    class, accuracy 0.19)."""
    rng = np.random.default_rng(0)

    def faint(n):
        X = (rng.random((n, 36, 32, 2)) * 0.1).astype(np.float32)
        y = np.repeat(["a", "b"], n // 2)
        X[y == "b", 10:16, 8:14, 0] += np.float32(0.1)
        return X, y

    X, y = faint(640)
    X_test, y_test = faint(200)
    clf = DmDtCNN(arch="dmdtnet", epochs=6, batch_size=64, validation_fraction=0,
                  random_state=0).fit(X, y)  # 60 steps
    assert np.mean(clf.predict(X_test) == y_test) > 0.95


@pytest.mark.parametrize("arch", ["mahabal2017", "vgg6"])
def test_default_learning_rate_is_the_architectures(arch, tmp_path):
    X, y = _separable(np.random.default_rng(0), n=32)
    clf = DmDtCNN(arch=arch, epochs=1, random_state=0).fit(X, y)
    assert clf.learning_rate_ == DEFAULT_LEARNING_RATE[arch]
    assert clf.history_["learning_rate"].iloc[0] == pytest.approx(DEFAULT_LEARNING_RATE[arch])
    assert load_cnn(clf.save(tmp_path / "m")).learning_rate_ == DEFAULT_LEARNING_RATE[arch]
    clf = DmDtCNN(arch=arch, epochs=1, learning_rate=2e-4, random_state=0).fit(X, y)
    assert clf.history_["learning_rate"].iloc[0] == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="learning_rate"):
        DmDtCNN(arch=arch, learning_rate=0.0).fit(X, y)


def test_saliency_peaks_on_planted_pixel(planted_model):
    clf, X, y = planted_model
    assert np.mean(clf.predict(X) == y) > 0.95
    sal = clf.saliency(X[:40])
    assert sal.shape == (40, 22, 24, 1) and np.all(sal >= 0)
    mean = sal.mean(axis=0)[..., 0]
    assert np.unravel_index(np.argmax(mean), mean.shape) == (12, 15)


def test_grad_cam_lights_the_planted_region(planted_model):
    """Only pixel (12, 15) tells 'b' from 'a': the mean class map of the 'b' images peaks
    within the last convolution's receptive cell around it (the map is on a coarser grid,
    resized to the input), far above the map's mean elsewhere."""
    clf, X, y = planted_model
    b = X[y == "b"][:32]
    cam = clf.grad_cam(b, np.full(len(b), "b"))
    assert cam.shape == (len(b), 22, 24)
    assert np.all((cam >= 0) & (cam <= 1)) and np.allclose(cam.max(axis=(1, 2)), 1.0)
    mean = cam.mean(axis=0)
    peak = np.unravel_index(np.argmax(mean), mean.shape)
    assert abs(peak[0] - 12) <= 3 and abs(peak[1] - 15) <= 3, peak
    far = np.ones_like(mean, dtype=bool)
    far[8:17, 11:20] = False
    assert mean[12, 15] > 3 * mean[far].mean()
    with pytest.raises(ValueError, match="unknown target class 'zz'"):
        clf.grad_cam(b[:2], np.array(["zz", "b"]))


def test_input_gradient_of_linear_scores_is_the_weights(rng):
    """Independent check of the autodiff helper: for scores = W x + b, d score_k / dx = W[:, k]."""
    import keras

    from models.cnn import _input_gradient

    inp = keras.Input((4, 5, 2))
    score = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    W = rng.normal(size=(40, 3)).astype(np.float32)
    score.layers[-1].set_weights([W, rng.normal(size=3).astype(np.float32)])
    x = rng.random((6, 4, 5, 2)).astype(np.float32)
    target = np.array([0, 1, 2, 2, 1, 0])
    g = _input_gradient(score, x, target)
    np.testing.assert_allclose(g, W[:, target].T.reshape(6, 4, 5, 2), rtol=1e-6)


def test_fitted_model_holds_plain_keras_layers(tmp_path):
    """The saved file holds standard Keras layers only: it loads with plain keras (no lcpipe
    custom objects, safe mode) to the same probabilities."""
    import keras

    X, y = _separable(np.random.default_rng(2), n=48)
    clf = DmDtCNN(arch="vgg6", epochs=1, random_state=0).fit(X, y)
    kinds = {type(layer).__name__ for layer in clf.model_.layers if layer.name.startswith("conv")}
    assert kinds == {"Conv2D"}
    clf.save(tmp_path / "m")
    model = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False,
                                    safe_mode=True)
    np.testing.assert_allclose(model.predict(X, verbose=0), clf.predict_proba(X), rtol=1e-6)


def test_save_load_identical_and_meta_checked(planted_model, tmp_path):
    clf, X, _ = planted_model
    clf.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["classes"] == ["a", "b"] and meta["training_hash"] == clf.training_hash_
    assert meta["input_meta"] == {"preset": "test", "norm": "raw"}
    loaded = load_cnn(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.check_input_meta({"preset": "test", "norm": "raw"})
    with pytest.raises(InputError, match="norm 'other'"):
        loaded.check_input_meta({"norm": "other"})
    with pytest.raises(InputError, match="shape"):
        loaded.predict(X[:, :20])


def test_lying_model_folders_are_refused_in_one_line(planted_model, tmp_path):
    """Metadata that does not match its network: weights of another save (an interrupted
    save), a class count unlike the outputs, duplicate or missing classes, unknown
    parameters, a truncated archive. Each is an InputError of one line naming the file."""
    clf, X, _ = planted_model
    good = clf.save(tmp_path / "good")
    other = DmDtCNN(arch="mahabal2017", epochs=1, random_state=3).fit(X, clf.predict(X))
    other.save(tmp_path / "other")

    def variant(name, edit=None, keras_from=None, truncate=False):
        d = tmp_path / name
        shutil.copytree(good, d)
        if keras_from is not None:
            shutil.copy(keras_from / "model.keras", d / "model.keras")
        if truncate:
            data = (d / "model.keras").read_bytes()
            (d / "model.keras").write_bytes(data[: len(data) // 2])
        if edit is not None:
            meta = json.loads((d / "model.json").read_text())
            edit(meta)
            (d / "model.json").write_text(json.dumps(meta))
        return d

    def no_hash(m):
        m.pop("model_sha256")

    cases = {
        variant("mixed", keras_from=tmp_path / "other"): "interrupted save",
        variant("three", lambda m: (no_hash(m), m.update(classes=["a", "b", "c"]))):
            "2 outputs but the metadata names 3 classes",
        variant("dup", lambda m: m.update(classes=["a", "a"])): "distinct class names",
        variant("nocls", lambda m: m.pop("classes")): "lacks classes",
        variant("param", lambda m: m["params"].update(bogus=1)): "unknown parameters",
        variant("trunc", no_hash, truncate=True): "cannot load the Keras model",
    }
    for d, needle in cases.items():
        with pytest.raises(InputError, match=needle) as info:
            load_cnn(d)
        assert "\n" not in str(info.value) and str(d) in str(info.value)
    assert load_cnn(good).classes_.tolist() == ["a", "b"]


def test_save_replaces_a_model_folder_as_a_unit(planted_model, tmp_path):
    """Saving over a model folder leaves exactly the new model (its old training curves
    go with it); a folder holding anything else is refused in one line, untouched."""
    clf, X, _ = planted_model
    other = DmDtCNN(arch="mahabal2017", epochs=1, random_state=3).fit(X, clf.predict(X)[::-1])
    d = other.save(tmp_path / "m")
    (d / "training_curves.png").write_bytes(b"old curves")
    clf.save(d)
    assert sorted(p.name for p in d.iterdir()) == ["model.json", "model.keras"]
    np.testing.assert_array_equal(load_cnn(d).predict_proba(X), clf.predict_proba(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="thesis.tex.*choose a new or empty folder"):
        clf.save(mine)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


_SAVER = """
import itertools, sys
from models.cnn import load_cnn
models = [load_cnn(sys.argv[1]), load_cnn(sys.argv[2])]
print("ready", flush=True)
for est in itertools.cycle(models):
    est.save(sys.argv[3])
"""


def test_sigkill_during_saves_leaves_a_loadable_model(planted_model, tmp_path):
    """A process saving two models in turn over one folder, killed (SIGKILL) at seeded
    random moments: the folder always loads, as one of the two models."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    clf, X, _ = planted_model
    other = DmDtCNN(arch="mahabal2017", epochs=1, random_state=3).fit(X, clf.predict(X)[::-1])
    a, b = clf.save(tmp_path / "a"), other.save(tmp_path / "b")
    target = clf.save(tmp_path / "target")
    answers = [clf.predict_proba(X[:8]), other.predict_proba(X[:8])]
    assert not np.array_equal(*answers)
    root = Path(__file__).resolve().parents[2]
    rng = np.random.default_rng(17)
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(a), str(b), str(target)],
                                stdout=subprocess.PIPE, text=True, cwd=root,
                                env={**os.environ, "PYTHONPATH": str(root),
                                     "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 1.5)))
        proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.stdout.close()
        p = load_cnn(target).predict_proba(X[:8])  # load_cnn checks weights vs metadata
        assert any(np.array_equal(p, q) for q in answers)
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
            "a", "b", "target"]


def test_same_seed_same_model():
    X, y = _separable(np.random.default_rng(5), n=80)
    kw = dict(arch="mahabal2017", epochs=2, batch_size=16, random_state=11)
    p1 = DmDtCNN(**kw).fit(X, y).predict_proba(X)
    p2 = DmDtCNN(**kw).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(p1, p2, atol=1e-5)


def test_tensorboard_logs_change_nothing_but_the_log_folder(tmp_path, monkeypatch, capsys):
    """fit(tensorboard=DIR) writes per-epoch loss and accuracy (train and validation; the
    values of history_) and a histogram of every weight each epoch; the model predicts
    bit-identically to one trained without logs and its parameters and saved metadata do not
    mention them. Without the package: one ConfigError naming the extra; the CLI refuses a log
    folder inside the model folder before any work."""
    import importlib.util

    from sklearn.base import clone
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    from flows.cli import main

    X, y = _separable(np.random.default_rng(4), n=48)
    kw = dict(arch="mahabal2017", epochs=3, batch_size=16, patience=5, random_state=2)
    plain = DmDtCNN(**kw).fit(X, y)
    logged = DmDtCNN(**kw)
    assert clone(logged).get_params() == plain.get_params()
    logged.fit(X, y, tensorboard=tmp_path / "tb")
    np.testing.assert_array_equal(logged.predict_proba(X), plain.predict_proba(X))
    assert logged.get_params() == plain.get_params()
    meta = json.loads((logged.save(tmp_path / "m") / "model.json").read_text())
    assert "tensorboard" not in json.dumps(meta)

    def tensors(sub):
        acc = EventAccumulator(str(tmp_path / "tb" / sub), size_guidance={"tensors": 0}).Reload()
        return {t: [(e.step, make_ndarray(e.tensor_proto)) for e in acc.Tensors(t)]
                for t in acc.Tags()["tensors"]}, acc

    h = logged.history_
    for sub, prefix in (("train", ""), ("validation", "val_")):
        tags, _ = tensors(sub)
        for name in ("loss", "accuracy"):
            steps, values = zip(*tags[f"epoch_{name}"], strict=True)
            assert list(steps) == [0, 1, 2]
            np.testing.assert_allclose(np.asarray(values, float), h[prefix + name], rtol=1e-6)
    tags, acc = tensors("train")
    weights = [f"{v.path}/histogram" for v in logged.model_.weights]
    assert weights == [f"{n}/{p}/histogram" for n in ("conv1", "conv2", "logits")
                       for p in ("kernel", "bias")]
    for tag in weights:
        assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "histograms"
        assert [s for s, _ in tags[tag]] == [0, 1, 2]
        # buckets (left edge, right edge, count): one count per weight
        assert tags[tag][-1][1][:, 2].sum() == logged.model_.get_layer(
            tag.split("/")[0]).weights[0 if "/kernel/" in tag else 1].numpy().size

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard"
                        else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install lcpipe\[tensorboard\]"):
        DmDtCNN(**kw).fit(X, y, tensorboard=tmp_path / "tb2")
    monkeypatch.undo()
    assert not (tmp_path / "tb2").exists()
    capsys.readouterr()
    assert main(["cnn", "train", str(tmp_path / "none.parquet"), "--labels",
                 str(tmp_path / "none.csv"), "-o", str(tmp_path / "new"),
                 "--tensorboard", str(tmp_path / "new" / "tb")]) == 2
    assert "outside the model folder" in capsys.readouterr().err


def test_augmented_images_only_from_training_part(lcs_and_labels):
    lcs, labels = lcs_and_labels
    oid, X, meta = lightcurves_to_inputs(lcs, "paper")
    y = labels.reindex(oid).to_numpy()
    from models.representations import augmented_inputs

    aug = augmented_inputs(lcs, "paper", 2, seed=0)
    assert aug.X.shape == (2 * len(X), *X.shape[1:])
    clf = DmDtCNN(arch="mahabal2017", epochs=1, validation_fraction=0.25,
                  random_state=0).fit(X, y, augmentation=aug, input_meta=meta)
    assert clf.n_augmented_ == 2 * clf.n_train_


def _fit_spy(record):
    """A DmDtCNN subclass whose network calls ``record(x, y, fit_kwargs)`` with what Keras'
    ``fit`` receives, then fits."""

    class Spy(DmDtCNN):
        def _network(self, X, n_classes):
            net = super()._network(X, n_classes)
            fit = net.fit

            def spy(x, y_fit, **kw):
                record(np.asarray(x), np.asarray(y_fit), kw)
                return fit(x, y_fit, **kw)

            net.fit = spy
            return net

    return Spy


def test_augmented_copies_train_with_their_origin_and_label(rng):
    """Provenance, from what Keras' fit receives: every training row is the image of an
    object outside the validation part or a copy of one (each copy of those, once, with
    its origin's label); no validation object and no copy of one is trained on."""
    from models.evaluation import SampleCopies

    n = 40
    X = rng.random((n, 22, 24, 1)).astype(np.float32)
    y = np.array(["a", "b", "c", "d"] * 10)
    origin = np.repeat(np.arange(n), 2)
    copies = (X[origin] + rng.random((2 * n, 22, 24, 1)).astype(np.float32)) * np.float32(2)
    seen = {}
    Spy = _fit_spy(lambda x, y_fit, kw: seen.update(
        x=x, y=y_fit, val=np.asarray(kw["validation_data"][0])))
    clf = Spy(arch="mahabal2017", epochs=1, validation_fraction=0.25, random_state=0).fit(
        X, y, augmentation=SampleCopies(copies, origin))
    key = {X[i].tobytes(): ("orig", i) for i in range(n)}
    key.update({copies[k].tobytes(): ("copy", k) for k in range(2 * n)})
    val = {key[r.tobytes()] for r in seen["val"]}
    assert all(kind == "orig" for kind, _ in val) and len(val) == n - clf.n_train_
    val_objects = {i for _, i in val}
    rows = [key[r.tobytes()] for r in seen["x"]]
    assert len(rows) == len(set(rows)) == clf.n_train_ + clf.n_augmented_
    train_objects = {i for kind, i in rows if kind == "orig"}
    assert train_objects == set(range(n)) - val_objects
    used = {k for kind, k in rows if kind == "copy"}
    assert used == {k for k in range(2 * n) if origin[k] in train_objects}
    for (kind, i), label in zip(rows, seen["y"], strict=True):
        obj = i if kind == "orig" else origin[i]
        assert clf.classes_[label] == y[obj]


@pytest.mark.parametrize("class_weight", ["balanced", None])
def test_sample_weights_keras_receives(rng, class_weight):
    """The loss weights of every training and validation row, from what Keras' fit gets:
    n / (n_classes n_c) over the training rows (capped) when balanced, 1 when None."""
    y = np.array(["a"] * 30 + ["b"] * 6 + ["c"] * 4)
    X = rng.random((len(y), 22, 24, 1)).astype(np.float32)
    seen = {}
    Spy = _fit_spy(lambda x, y_fit, kw: seen.update(
        y=y_fit, w=np.asarray(kw["sample_weight"]), y_val=np.asarray(kw["validation_data"][1]),
        w_val=np.asarray(kw["validation_data"][2])))
    clf = Spy(arch="mahabal2017", epochs=1, validation_fraction=0.25, class_weight=class_weight,
              max_class_weight=3.0, random_state=0).fit(X, y)
    n_tr = np.bincount(seen["y"], minlength=3)
    want = (np.minimum(len(seen["y"]) / (3 * n_tr), 3.0) if class_weight else np.ones(3))
    if class_weight:
        assert want.max() == 3.0 and len(set(np.round(want, 9))) == 3  # the cap bites once
    np.testing.assert_allclose(seen["w"], want[seen["y"]], rtol=1e-6)
    np.testing.assert_allclose(seen["w_val"], want[seen["y_val"]], rtol=1e-6)
    assert clf.class_weight_ == pytest.approx({i: float(want[i]) for i in range(3)})


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_is_the_loss_early_stopping_watches(smoothing):
    """The validation loss Keras reports for the kept epoch equals numpy's cross-entropy
    of the kept network's probabilities against the smoothed one-hot targets
    (1 - s on the class, + s / n_classes everywhere) and not against the plain ones."""
    X, y = _separable(np.random.default_rng(3), n=64)
    clf = DmDtCNN(arch="mahabal2017", epochs=3, batch_size=16, validation_fraction=0.25,
                  label_smoothing=smoothing, random_state=0).fit(X, y)
    classes, y_idx = np.unique(y, return_inverse=True)
    _, va = _validation_split(y_idx, 0.25, np.random.default_rng(0))  # fit's first draw
    p = np.clip(clf.predict_proba(X[va]), 1e-7, 1 - 1e-7)
    onehot = np.eye(2)[y_idx[va]]

    def xent(target):
        return float(np.mean(-np.sum(target * np.log(p), axis=1)))

    kept = clf.history_["val_loss"].iloc[clf.best_epoch_ - 1]
    assert kept == pytest.approx(xent(onehot * (1 - smoothing) + smoothing / 2), rel=1e-4)
    if smoothing:
        assert abs(kept - xent(onehot)) > 1e-3
    assert clf.history_["accuracy"].notna().all()
    assert clf.get_params()["label_smoothing"] == smoothing


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_label_smoothing_outside_0_1_is_refused(bad):
    X, y = _separable(np.random.default_rng(0), n=16)
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        DmDtCNN(label_smoothing=bad).fit(X, y)


def test_label_smoothing_setting_reaches_every_network():
    """``cnn_label_smoothing`` of the train settings, ``CNNTrainConfig.label_smoothing`` and
    ``lcpipe cnn --label-smoothing`` set the estimators' ``label_smoothing``."""
    import argparse

    from flows.cli import cnn as cli_cnn
    from models.cnn_workflows import CNNTrainConfig
    from models.hybrid import HybridCNN
    from models.settings import TrainSettings
    from models.training import _estimator

    settings = TrainSettings(cnn_label_smoothing=0.15)
    for kind in ("cnn", "hybrid"):
        assert _estimator(kind, settings).label_smoothing == 0.15, kind
    assert CNNTrainConfig(label_smoothing=0.15).estimator("vgg6").label_smoothing == 0.15
    assert HybridCNN(label_smoothing=0.15).get_params()["label_smoothing"] == 0.15
    p = argparse.ArgumentParser()
    cli_cnn._add_training(p)
    assert cli_cnn._config(p.parse_args(["--label-smoothing", "0.15"])).label_smoothing == 0.15
    with pytest.raises(SystemExit):
        p.parse_args(["--label-smoothing", "1"])
    with pytest.raises(Exception, match="cnn_label_smoothing"):
        TrainSettings(cnn_label_smoothing=1.0)


def test_class_weight_setting_reaches_every_network():
    """``cnn_class_weight`` of the train settings, ``CNNTrainConfig.class_weight`` and
    ``lcpipe cnn --class-weight`` all set the estimators' ``class_weight``."""
    from flows.cli import cnn as cli_cnn
    from models.cnn_workflows import CNNTrainConfig
    from models.settings import TrainSettings
    from models.training import _estimator

    for name, want in (("balanced", "balanced"), ("none", None)):
        settings = TrainSettings(cnn_class_weight=name)
        for kind in ("cnn", "hybrid"):
            assert _estimator(kind, settings).class_weight == want, (kind, name)
        assert CNNTrainConfig(class_weight=want).estimator("vgg6").class_weight == want
        p = __import__("argparse").ArgumentParser()
        cli_cnn._add_training(p)
        assert cli_cnn._config(p.parse_args(["--class-weight", name])).class_weight == want
    # the default everywhere: no class weights (more accurate on CRTS, docs/cnn.md)
    from models.hybrid import HybridCNN

    assert TrainSettings().cnn_class_weight == "none"
    assert CNNTrainConfig().class_weight is None
    assert DmDtCNN().class_weight is None and HybridCNN().class_weight is None
    p = __import__("argparse").ArgumentParser()
    cli_cnn._add_training(p)
    assert cli_cnn._config(p.parse_args([])).class_weight is None
    with pytest.raises(Exception, match="cnn_class_weight"):
        TrainSettings(cnn_class_weight="inverse")
    from models.cnn import class_weight_from_name

    with pytest.raises(ConfigError, match="'balanced' or 'none', not 'inverse'"):
        class_weight_from_name("inverse")


# --------------------------------------------------------------------------- CLI end to end


@pytest.fixture
def lc_files(lcs_and_labels, tmp_path):
    """The fixture light curves and labels as files (Parquet, CSV)."""
    lcs, labels = lcs_and_labels
    frame = pd.DataFrame({"object_id": np.repeat(lcs.object_id, lcs.n_points),
                          "band": "V", "t": lcs.t, "mag": lcs.mag, "mag_err": lcs.mag_err})
    lc_path = tmp_path / "lc.parquet"
    write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), lc_path)
    lab_path = tmp_path / "labels.csv"
    labels.rename("label").rename_axis("object_id").reset_index().to_csv(lab_path, index=False)
    return lc_path, lab_path


def test_cross_validate_cnn_outputs(lc_files, lcs_and_labels, tmp_path):
    from models.cnn_workflows import CNNTrainConfig, CVRun, cross_validate_cnn

    lc_path, lab_path = lc_files
    _, labels = lcs_and_labels
    lines = []
    s = cross_validate_cnn(lc_path, lab_path, tmp_path / "cv",
                           [CVRun("paper", "mahabal2017", augment=1)], classes="all",
                           config=CNNTrainConfig(epochs=3, learning_rate=3e-3), n_splits=2,
                           log=lines.append)
    assert len(lines) == 2 and s["n_objects"] == len(labels)
    rep = s["runs"][0]["report"]
    assert rep["classes"] == ["const", "var"] and rep["accuracy"] > 0.8
    from models.predictions import read_predictions

    oof, _ = read_predictions(tmp_path / "cv" / "oof_predictions.parquet")
    assert list(oof["object_id"]) == sorted(labels.index)
    assert sorted(oof["fold"].unique()) == [0, 1]
    assert set(oof["model"]) == {"paper/mahabal2017+aug1"} and set(oof["split"]) == {"cv"}
    assert np.mean(oof["predicted_class"] == oof["true_class"]) == rep["accuracy"]
    probs = oof[["prob_const", "prob_var"]].to_numpy()
    np.testing.assert_array_equal(oof["predicted_class"],
                                  np.array(["const", "var"])[probs.argmax(axis=1)])
    assert "| paper/mahabal2017+aug1 |" in (tmp_path / "cv" / "cv_results.md").read_text()


def test_cli_train_predict_saliency(lcs_and_labels, lc_files, tmp_path, capsys):
    from flows.cli import main

    _, labels = lcs_and_labels
    lc_path, lab_path = lc_files
    fine_json = tmp_path / "fine.json"
    fine_json.write_text(json.dumps(FINE_BINS.to_dict()))
    dm_fine, dm_paper = tmp_path / "fine.parquet", tmp_path / "paper.parquet"
    assert main(["dmdt", str(lc_path), "-o", str(dm_fine), "--bins", str(fine_json),
                 "--norm", "counts"]) == 0
    assert main(["dmdt", str(lc_path), "-o", str(dm_paper)]) == 0
    model = tmp_path / "model"
    assert main(["cnn", "train", str(dm_fine), "--labels", str(lab_path), "-o", str(model),
                 "--arch", "mahabal2017", "--epochs", "8", "--learning-rate", "3e-3",
                 "--augment", "1", "--lightcurves", str(lc_path)]) == 0
    assert (model / "training_curves.png").stat().st_size > 0
    curves = pd.read_parquet(model / "training_curves.parquet")
    assert len(curves) >= 1 and {"loss", "val_loss"} <= set(curves.columns)
    pred = tmp_path / "pred.parquet"
    assert main(["cnn", "predict", str(dm_fine), "--model", str(model), "-o", str(pred)]) == 0
    p = pd.read_parquet(pred).set_index("object_id")
    np.testing.assert_allclose(p[["prob_const", "prob_var"]].sum(axis=1), 1.0, rtol=1e-5)
    assert (p["model"] == "cnn").all()
    assert np.mean(p["predicted_class"] == labels.reindex(p.index)) > 0.9
    # a file on other bins is refused with a one-line message naming the fix
    capsys.readouterr()
    assert main(["cnn", "predict", str(dm_paper), "--model", str(model), "-o",
                 str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "needs grid 'lcpipe_fine'" in err and err.count("\n") == 1
    out = tmp_path / "sal"
    assert main(["cnn", "saliency", str(dm_fine), "--model", str(model), "-o", str(out),
                 "--labels", str(lab_path), "--objects", "o000,o001"]) == 0
    mean = pd.read_parquet(out / "mean_saliency.parquet")
    assert set(mean["class"]) == {"const", "var"}
    assert len(mean) == 2 * 36 * 32 * 2
    assert {"dm_lo", "dm_hi", "dt_lo", "dt_hi"} <= set(mean.columns)
    assert (out / "mean_saliency.png").stat().st_size > 0
    obj = pd.read_parquet(out / "object_saliency.parquet")
    assert set(obj["object_id"]) == {"o000", "o001"}
    # class activation maps: one map for all bands, each object's map scaled to max 1
    assert main(["cnn", "saliency", str(dm_fine), "--model", str(model), "-o", str(out),
                 "--objects", "o000", "--method", "gradcam"]) == 0
    cam = pd.read_parquet(out / "mean_gradcam.parquet")
    assert len(cam) == 2 * 36 * 32 and set(cam["channel"]) == {"all"}
    assert cam["gradcam"].between(0, 1).all()
    one = pd.read_parquet(out / "object_gradcam.parquet")
    assert one["gradcam"].max() in (0.0, 1.0) and len(one) == 36 * 32


def test_representation_presets_documented():
    for name, rep in REPRESENTATIONS.items():
        assert rep.name == name and rep.description
