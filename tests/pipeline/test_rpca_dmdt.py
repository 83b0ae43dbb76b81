"""Robust PCA of dm-dt stacks: planted b + c_i + s recovery, features, classifier, files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from flows.cli import main
from pipeline.dmdt import BINS_PRESETS, dmdt_file
from pipeline.errors import InputError
from pipeline.rpca_dmdt import (
    METADATA_KEY,
    RPCA_FORMAT,
    DmDtRPCA,
    NearestSubspaceClassifier,
    rpca_dmdt_file,
    rpca_feature_pipeline,
)
from tests.helpers import make_frame

SHAPE = (22, 24, 1)
D = int(np.prod(SHAPE))


def _blob(rng, n=3):
    """A smooth non-negative dm-dt-like pattern (sum of Gaussian bumps), unit norm."""
    i, j = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img = np.zeros(SHAPE[:2])
    for _ in range(n):
        ci, cj = rng.uniform(3, 19), rng.uniform(3, 21)
        wi, wj = rng.uniform(1.5, 4), rng.uniform(1.5, 5)
        img += np.exp(-0.5 * (((i - ci) / wi) ** 2 + ((j - cj) / wj) ** 2))
    return (img / np.linalg.norm(img)).ravel()


def planted_stack(rng, n_per_class=(150, 120, 90), rank_class=2, spikes=3, noise=0.01):
    """x = a B + sum_k w_k C_{i,k} + spikes + noise, flattened (N, 528), non-negative.

    Returns images (N, 22, 24, 1), labels, the background pattern B, the class
    patterns C (list of (rank_class, 528)) and the spike mask.
    """
    B = _blob(rng, 4)
    C = [np.stack([_blob(rng) for _ in range(rank_class)]) for _ in n_per_class]
    X, y, mask = [], [], []
    for i, n in enumerate(n_per_class):
        a = rng.uniform(20, 30, (n, 1))
        w = rng.uniform(3, 8, (n, rank_class))
        x = a * B + w @ C[i] + noise * rng.random((n, D))
        m = np.zeros((n, D), dtype=bool)
        for r in range(n):
            m[r, rng.choice(D, spikes, replace=False)] = True
        x[m] += rng.uniform(2, 4, m.sum())
        X.append(x)
        y += [f"class{i}"] * n
        mask.append(m)
    return (np.vstack(X).reshape(-1, *SHAPE), np.asarray(y), B, C, np.vstack(mask))


@pytest.fixture(scope="module")
def stack():
    return planted_stack(np.random.default_rng(2024))


@pytest.fixture(scope="module")
def fitted(stack):
    X, y, *_ = stack
    # rank 3 per class: the 2 class patterns plus the part of B that b's one direction
    # (the dominant direction of all images, not B itself) leaves
    model = DmDtRPCA(1, 3, pixel_transform="none", cv=None)
    parts = model._fit_with_parts(X, y)
    return model, parts


def _angle_residual(patterns, basis):
    """Relative part of each pattern outside span(basis rows) (independent: lstsq)."""
    coef, *_ = np.linalg.lstsq(basis.T, patterns.T, rcond=None)
    return np.linalg.norm(patterns.T - basis.T @ coef, axis=0) / np.linalg.norm(patterns, axis=1)


def test_planted_subspaces_recovered(stack, fitted):
    """Each class's planted patterns lie in span(b basis, c_i basis)."""
    _, _, B, C, _ = stack
    model, _ = fitted
    assert list(model.classes_) == ["class0", "class1", "class2"]
    assert model.background_components_.shape == (1, D)
    for i, Ci in enumerate(C):
        assert model.class_components_[i].shape == (3, D)
        basis = np.vstack([model.background_components_, model.class_components_[i]])
        res = _angle_residual(np.vstack([B, Ci]), basis)
        assert res.max() < 0.02, res
        # and not in another class's model
        other = np.vstack([model.background_components_, model.class_components_[i - 1]])
        assert _angle_residual(Ci, other).max() > 0.2


def test_planted_spikes_in_sparse_part(stack, fitted):
    """The individual part s sits on the planted spikes (precision and recall)."""
    X, _, _, _, mask = stack
    _, parts = fitted
    found = parts["s"] != 0
    tp = np.sum(found & mask)
    assert tp / max(found.sum(), 1) > 0.9
    assert tp / mask.sum() > 0.8
    # the decomposition adds up: x = b + c + s + e with a small dense e
    A = X.reshape(len(X), -1)
    e = A - parts["b"] - parts["c"] - parts["s"]
    assert np.linalg.norm(e) < 0.05 * np.linalg.norm(A)


def test_features_names_and_nearest_subspace(stack):
    X, y, *_ = stack
    tr, te = next(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    model = DmDtRPCA(1, 2, cv=None).fit(X[tr], y[tr])
    F = model.transform(X[te])
    names = model.get_feature_names_out()
    assert F.shape == (len(te), 1 + 3 * (2 + 2)) and len(names) == F.shape[1]
    assert names[0] == "rpca_b_0" and "rpca_class1_err" in names and "rpca_class2_l1" in names
    assert np.isfinite(F).all()
    nsc = NearestSubspaceClassifier(1, 2).fit(X[tr], y[tr])
    assert nsc.score(X[te], y[te]) > 0.95
    # the classifier predicts the class of smallest reconstruction error feature
    err = F[:, [list(names).index(f"rpca_{c}_err") for c in model.classes_]]
    np.testing.assert_array_equal(nsc.predict(X[te]), model.classes_[np.argmin(err, axis=1)])


def test_cross_fitted_features_come_from_other_folds():
    """fit_transform row = transform by a model fitted without that image (no leakage)."""
    X, y, *_ = planted_stack(np.random.default_rng(8), n_per_class=(60, 50, 40))
    est = DmDtRPCA(1, 2, cv=3, random_state=5)
    F = est.fit_transform(X, y)
    tr, te = next(StratifiedKFold(3, shuffle=True, random_state=5).split(X, y))
    ref = DmDtRPCA(1, 2, cv=None).fit(X[tr], y[tr]).transform(X[te])
    np.testing.assert_allclose(F[te], ref, rtol=1e-10, atol=1e-10)
    in_sample = est.transform(X[te])
    assert not np.allclose(F[te], in_sample)
    np.testing.assert_allclose(DmDtRPCA(1, 2, cv=None).fit_transform(X, y), est.transform(X),
                               rtol=1e-10, atol=1e-10)


def test_class_absent_from_an_inner_fold(rng):
    """The out-of-fold features, written out: per stratified fold (seeded like the
    estimator), an inner fit on the training part transforms the held-out images; a class
    the inner part lacks (here the one-object class, in the fold that holds it out) takes
    the full fit's subspace and threshold."""
    import copy

    from sklearn.model_selection import StratifiedKFold

    X, y, *_ = planted_stack(rng, n_per_class=(40, 30, 1))
    est = DmDtRPCA(1, 2, cv=3)
    F = est.fit_transform(X, y)
    assert np.isfinite(F).all()
    names = list(est.get_feature_names_out())
    full = DmDtRPCA(1, 2, cv=None).fit(X, y)
    rare = est.classes_[np.argmin([np.sum(y == c) for c in est.classes_])]
    skf = StratifiedKFold(3, shuffle=True, random_state=est.random_state)
    with pytest.warns(UserWarning, match="least populated class"):
        splits = list(skf.split(X.reshape(len(X), -1), y))
    lacking = 0
    for tr, te in splits:
        inner = DmDtRPCA(1, 2, cv=None).fit(X[tr], y[tr])
        if rare not in y[tr]:
            lacking += 1
            hand = copy.deepcopy(inner)
            k = list(full.classes_).index(rare)
            pos = {c: i for i, c in enumerate(inner.classes_)}
            hand.classes_ = full.classes_
            hand.class_components_ = [full.class_components_[k] if c == rare else
                                      inner.class_components_[pos[c]] for c in full.classes_]
            hand.class_thresholds_ = np.array([
                full.class_thresholds_[k] if c == rare else inner.class_thresholds_[pos[c]]
                for c in full.classes_])
            inner = hand
        G = inner.transform(X[te])
        for j, name in enumerate(inner.get_feature_names_out()):
            np.testing.assert_allclose(F[te, names.index(name)], G[:, j], rtol=1e-10,
                                       atol=1e-12, err_msg=name)
    assert lacking == 1


def test_feature_pipeline_with_extra_columns(stack, rng):
    X, y, *_ = stack
    extra = rng.normal(size=(len(X), 3))
    extra[::7, 1] = np.nan  # light-curve features may be undefined
    Z = np.hstack([X.reshape(len(X), -1), extra])
    tr, te = next(StratifiedKFold(4, shuffle=True, random_state=1).split(Z, y))
    pipe = rpca_feature_pipeline(D, RandomForestClassifier(30, random_state=0),
                                 rank_background=1, rank_class=2, cv=2)
    pipe.fit(Z[tr], y[tr])
    assert pipe.score(Z[te], y[te]) > 0.9


def test_bad_images_and_labels(rng):
    X = rng.random((10, *SHAPE))
    y = np.repeat(["a", "b"], 5)
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        DmDtRPCA(cv=None).fit(bad, y)
    with pytest.raises(InputError, match="non-negative"):
        DmDtRPCA(cv=None).fit(X - 1, y)
    with pytest.raises(InputError, match="one label per image"):
        DmDtRPCA(cv=None).fit(X, y[:-1])
    model = DmDtRPCA(1, 2, cv=None).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.transform(rng.random((3, 20)))


def _expected_failures(est):
    if isinstance(est, NearestSubspaceClassifier):
        reason = ("toy data of 2-5 features: every class subspace spans the whole space, "
                  "so errors tie")
        return {"check_classifiers_train": reason, "check_methods_subset_invariance": reason}
    if est.cv is not None:
        reason = "fit_transform returns cross-fitted features by design (like TargetEncoder)"
        return {"check_transformer_general": reason,
                "check_transformer_data_not_an_array": reason}
    return {}


@parametrize_with_checks(
    [DmDtRPCA(pixel_transform="none", cv=None), DmDtRPCA(pixel_transform="none", cv=3),
     NearestSubspaceClassifier(pixel_transform="none")],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ files and CLI


@pytest.fixture(scope="module")
def dmdt_and_labels(tmp_path_factory):
    rng = np.random.default_rng(77)
    d = tmp_path_factory.mktemp("rpca")
    frame = make_frame(rng, n_obj=40, n_min=30, n_max=80)
    frame.to_parquet(d / "lc.parquet")
    dmdt_file(d / "lc.parquet", d / "dmdt.parquet")
    ids = sorted(frame.object_id.unique())
    labels = pd.DataFrame({"object_id": ids[:-3] + ["not_in_images"],
                           "label": (["A", "B"] * 40)[: len(ids) - 3] + ["A"]})
    labels.to_csv(d / "labels.csv", index=False)
    return d


def test_rpca_file_outputs(dmdt_and_labels, tmp_path):
    d = dmdt_and_labels
    s = rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path, rank_class=3)
    assert s["objects"] == 40 and s["fitted"] == 37 and s["unlabelled"] == 3
    assert s["labels_without_image"] == 1 and s["classes"] == {"A": 19, "B": 18}
    objects = pq.read_table(tmp_path / "rpca_objects.parquet")
    meta = json.loads(objects.schema.metadata[METADATA_KEY.encode()])
    assert meta["format"] == RPCA_FORMAT and meta["version"]
    df = objects.to_pandas()
    assert len(df) == 40 and df.fitted.sum() == 37
    assert df.loc[~df.fitted, "label"].isna().all()
    assert df.loc[~df.fitted, "sparse_l1"].isna().all()
    assert df.loc[df.fitted, ["sparse_l1", "residual_norm", "b_norm"]].notna().all().all()
    for col in ("object_id", "label", "nearest_class", "rpca_b_0", "rpca_A_c2", "rpca_B_err",
                "rpca_B_l1"):
        assert col in df.columns
    assert set(meta["feature_columns"]) <= set(df.columns)
    tpl = pq.read_table(tmp_path / "rpca_templates.parquet").to_pandas()
    # background mean + 1 component, and per class: mean, template, 3 components
    assert len(tpl) == (2 + 2 * 5) * D
    bins = BINS_PRESETS["mahabal2017"]
    row = tpl[(tpl.template == "A") & (tpl.kind == "template")].iloc[5 * 24 + 7]
    assert (row.dm_index, row.dt_index) == (5, 7)
    assert (row.dm_lo, row.dm_hi) == (bins.dm_edges[5], bins.dm_edges[6])
    assert (row.dt_lo, row.dt_hi) == (bins.dt_edges[7], bins.dt_edges[8])
    comp = tpl[(tpl.template == "background") & (tpl.kind == "component")].value.to_numpy()
    assert abs(np.linalg.norm(comp) - 1) < 1e-9
    for png in ("rpca_templates.png", "rpca_class_parts.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "rpca_summary.json").read_text())["fitted"] == 37


def test_rpca_file_errors(dmdt_and_labels, tmp_path):
    d = dmdt_and_labels
    pd.DataFrame({"object_id": ["x", "y"], "label": ["A", "B"]}).to_csv(
        tmp_path / "other.csv", index=False)
    with pytest.raises(InputError, match="no labelled image"):
        rpca_dmdt_file(d / "dmdt.parquet", tmp_path / "other.csv", tmp_path / "o")
    with pytest.raises(InputError):
        rpca_dmdt_file(d / "labels.csv", d / "labels.csv", tmp_path / "o")


def test_cli(dmdt_and_labels, tmp_path, capsys):
    d = dmdt_and_labels
    rc = main(["rpca", str(d / "dmdt.parquet"), "--labels", str(d / "labels.csv"),
               "-o", str(tmp_path), "--rank-class", "2"])
    assert rc == 0
    assert "37 fitted" in capsys.readouterr().out
    assert (tmp_path / "rpca_objects.parquet").exists()
    rc = main(["rpca", str(d / "dmdt.parquet"), "--labels", str(tmp_path / "missing.csv"),
               "-o", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv" in err[0]


@pytest.mark.slow
def test_crts_nearest_subspace_beats_chance(crts_dir, tmp_path):
    """Real CRTS dm-dt images, 7 paper classes, 150 objects each, 2-fold CV."""
    from pipeline.contract import ColumnMap
    from pipeline.dmdt import compute_dmdt
    from pipeline.labels import PAPER_CLASSES, read_labels
    from pipeline.lightcurves import read_lightcurves

    labels = read_labels(crts_dir / "labels.csv")
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.choice(labels.index[labels == c], 150, replace=False)
                          for c in PAPER_CLASSES])
    frame = pd.read_parquet(crts_dir / "lightcurves.parquet")
    frame[frame["object_id"].isin(set(ids))].to_parquet(tmp_path / "lc.parquet")
    img = compute_dmdt(read_lightcurves(tmp_path / "lc.parquet", ColumnMap.from_spec("crts")))
    y = labels.reindex(img.object_id.astype(str)).to_numpy().astype(str)
    accs = []
    for tr, te in StratifiedKFold(2, shuffle=True, random_state=0).split(img.images, y):
        accs.append(NearestSubspaceClassifier().fit(img.images[tr], y[tr])
                    .score(img.images[te], y[te]))
    assert np.mean(accs) > 0.4  # 7 balanced classes: chance is 0.14
