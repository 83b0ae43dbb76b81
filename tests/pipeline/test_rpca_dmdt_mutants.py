"""Values of pipeline/rpca_dmdt.py pinned against independent computations (issue 17).

Written against the surviving mutants of tools/mutation.py, group ``rpca_dmdt``. Every
expected value is computed in this file: the robust projection written out row by row
with ``np.linalg.lstsq`` (``_ref_project``), the projection threshold as the
``(nnz + 1)``-th largest ``|D|`` (``np.sort``), the decomposition composed by hand from
``AltProj`` / ``PCP`` fits (``_ref_fit``: ``b`` from all images, ``c_i`` from ``x - b`` of
each class, means and templates with ``np.mean``), the cross-fitted features from
``StratifiedKFold`` folds refitted here, and the template table from explicit loops over
the pixels. Features are compared on held-out images: each training image has one pixel
whose residual equals its threshold, where rounding decides. Pinned here:

* ``_robust_project`` (any ``n_iter``, at least one round, ``zeta = inf`` = least squares),
  ``_projection_threshold`` (the same fraction of entries as training, ``inf`` if none);
* parameter checks (bounds, ``bool``, messages) and the defaults of every public entry;
  image and label checks (sparse, 1-D, ``None``, NaN labels, column vectors; the source
  and the text of each refusal);
* the fitted state: bases, thresholds, templates, class means, ``fits_`` records,
  ``n_iter_``, for AltProj and PCP, ``tol`` / ``max_iter`` passed on, the ``sqrt``
  transform; the features (order, zero padding of small classes and ranks) and names;
* ``fit_transform``: every fold, the ``cv`` bounds, the fold seed, classes missing from
  an inner fit (the full fit's basis and threshold), no "least populated class" warning;
* ``NearestSubspaceClassifier`` (binary decision ``err_0 - err_1``, multiclass ``-err``,
  parameters passed on), ``rpca_feature_pipeline``;
* ``save_rpca`` / ``load_rpca`` (round trip, metadata, refusals), the template table and
  the two template figures (tiles, colour limits, ticks, titles, size), and
  ``rpca_dmdt_file``: every column of the objects table (features as the model in memory
  gives them), the summary, the metadata, the defaults and the refusals.
"""

from __future__ import annotations

import json
import math
import struct
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.model_selection import StratifiedKFold

from pipeline import rpca_dmdt as rd
from pipeline.dmdt import METADATA_KEY as DMDT_KEY
from pipeline.dmdt import DmDtImages, dmdt_table
from pipeline.errors import ConfigError, InputError
from pipeline.io import write_parquet_atomic
from pipeline.rpca import PCP, AltProj
from pipeline.rpca_dmdt import (
    DmDtRPCA,
    NearestSubspaceClassifier,
    load_rpca,
    rpca_dmdt_file,
    rpca_feature_pipeline,
    save_rpca,
)

SHAPE = (4, 5, 1)
D = int(np.prod(SHAPE))


def planted(rng, sizes=(14, 12, 10), rank_class=2, names=("A", "B", "C"), shape=SHAPE):
    """x = a B + w C_i + one spike + small noise per image (non-negative), and labels."""
    d = int(np.prod(shape))
    B = rng.uniform(0.5, 1.5, d)
    X, y = [], []
    for n, name in zip(sizes, names, strict=False):
        C = rng.uniform(0.0, 1.0, (rank_class, d))
        x = (rng.uniform(2.0, 3.0, (n, 1)) * B + rng.uniform(0.5, 2.0, (n, rank_class)) @ C
             + 0.02 * rng.random((n, d)))
        x[np.arange(n), rng.integers(0, d, n)] += rng.uniform(3.0, 5.0, n)
        X.append(x)
        y += [name] * n
    return np.vstack(X).reshape(-1, *shape), np.asarray(y)


@pytest.fixture(scope="module")
def both():
    """Training images (even rows) and held-out images of the same patterns (odd rows).

    Features are compared on held-out images: a training image has one pixel whose
    residual equals its threshold, where rounding decides the hard threshold."""
    X, y = planted(np.random.default_rng(17), sizes=(28, 24, 20))
    return X[::2], y[::2], X[1::2], y[1::2]


@pytest.fixture(scope="module")
def data(both):
    return both[0], both[1]


@pytest.fixture(scope="module")
def held(both):
    return both[2].reshape(len(both[2]), -1)


def _ref_project(R, V, zeta, n_iter):
    """Each row alone: least squares on the rows of V, hard threshold, repeated."""
    C = np.empty((len(R), len(V)))
    S = np.zeros_like(R)
    for i, r in enumerate(R):
        s = np.zeros_like(r)
        if math.isfinite(zeta):
            for _ in range(max(n_iter, 1)):
                c = np.linalg.lstsq(V.T, r - s, rcond=None)[0]
                e = r - V.T @ c
                s = np.where(np.abs(e) > zeta, e, 0.0)
        C[i] = np.linalg.lstsq(V.T, r - s, rcond=None)[0]
        S[i] = s
    return C, S, R - C @ V - S


def _ref_threshold(D_, S_):
    """The (nnz + 1)-th largest |D|: exactly nnz entries lie above it (distinct values)."""
    k = np.count_nonzero(S_)
    return np.inf if k == 0 else np.sort(np.abs(D_).ravel())[::-1][k]


def _ref_fit(A, y, rb, rc, method="altproj", tol=1e-3, max_iter=200):
    """The decomposition composed by hand from the robust PCA estimators."""
    def est(r):
        return (AltProj(rank=r, tol=tol, max_iter=max_iter) if method == "altproj"
                else PCP(tol=tol, max_iter=max_iter))

    classes = np.unique(y)
    bg = est(rb).fit(A)
    out = {"classes": classes, "Vb": bg.components_[:rb], "zb": _ref_threshold(
        A - bg.low_rank_, bg.sparse_), "b": bg.low_rank_, "Vc": [], "zc": [],
        "c": np.zeros_like(A), "s": np.zeros_like(A)}
    fits = [("background", len(A), bg)]
    R = A - bg.low_rank_
    for c in classes:
        sel = y == c
        f = est(rc).fit(R[sel])
        fits.append((str(c), int(sel.sum()), f))
        out["Vc"].append(f.components_[:rc])
        out["zc"].append(_ref_threshold(R[sel] - f.low_rank_, f.sparse_))
        out["c"][sel] = f.low_rank_
        out["s"][sel] = f.sparse_
    out["fits"] = [{"part": p, "n_objects": n, "rank": f.rank_, "n_iter": f.n_iter_,
                    "converged": f.converged_, "threshold": f.threshold_,
                    "sparse_fraction": np.count_nonzero(f.sparse_) / f.sparse_.size}
                   for p, n, f in fits]
    out["template_b"] = out["b"].mean(axis=0)
    out["means"] = np.array([out["c"][y == c].mean(axis=0) for c in classes])
    out["templates"] = np.array([(out["b"] + out["c"])[y == c].mean(axis=0) for c in classes])
    return out


def _ref_decompose(model, A):
    """b coefficients, then each class on what b leaves: zero-padded coefficients, error
    ||s + e|| and ||s||_1 (the documented features)."""
    a, _, _ = _ref_project(A, model.background_components_, model.background_threshold_,
                           model.n_project_iter)
    R = A - a @ model.background_components_
    n, K = len(A), len(model.classes_)
    b = np.zeros((n, model.rank_background))
    b[:, : a.shape[1]] = a
    coef = np.zeros((n, K, model.rank_class))
    err, l1 = np.empty((n, K)), np.empty((n, K))
    for i, V in enumerate(model.class_components_):
        C, S, E = _ref_project(R, V, model.class_thresholds_[i], model.n_project_iter)
        coef[:, i, : C.shape[1]] = C
        err[:, i] = np.sqrt(((S + E) ** 2).sum(axis=1))
        l1[:, i] = np.abs(S).sum(axis=1)
    return b, coef, err, l1


def _ref_features(model, A):
    b, coef, err, l1 = _ref_decompose(model, A)
    cols = [b]
    for i in range(len(model.classes_)):
        cols += [coef[:, i, :], err[:, i : i + 1], l1[:, i : i + 1]]
    return np.hstack(cols)


def _close(a, b, tol=1e-9):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------ building blocks


@pytest.fixture(scope="module")
def proj_case():
    rng = np.random.default_rng(4)
    V = np.linalg.qr(rng.normal(size=(D, 3)))[0].T  # orthonormal rows
    R = rng.normal(size=(9, 3)) @ V + 0.05 * rng.normal(size=(9, D))
    R[np.arange(9), rng.integers(0, D, 9)] += 4.0
    R[np.arange(9), rng.integers(0, D, 9)] -= 2.5
    return R, V


@pytest.mark.parametrize("n_iter", [0, 1, 2, 3, 10])
def test_robust_project_matches_row_by_row_reference(proj_case, n_iter):
    R, V = proj_case
    C, S, E = rd._robust_project(R, V, 0.3, n_iter)
    rC, rS, rE = _ref_project(R, V, 0.3, n_iter)
    _close(C, rC)
    np.testing.assert_array_equal(S != 0, rS != 0)
    _close(S, rS)
    _close(E, rE)
    _close(R, C @ V + S + E)


def test_robust_project_rounds_matter_and_inf_is_least_squares(proj_case):
    R, V = proj_case
    one = rd._robust_project(R, V, 0.3, 1)
    three = rd._robust_project(R, V, 0.3, 3)
    assert not np.allclose(one[0], three[0])  # the test above sees the number of rounds
    C, S, E = rd._robust_project(R, V, np.inf, 5)
    assert not S.any()
    _close(C, np.linalg.lstsq(V.T, R.T, rcond=None)[0].T)
    _close(E, R - C @ V)


def test_projection_threshold_values():
    D_ = np.array([[5.0, -4.0], [3.0, 1.0]])
    S_ = np.array([[5.0, 0.0], [0.0, 0.0]])
    assert rd._projection_threshold(D_, S_) == 4.0
    assert rd._projection_threshold(D_, np.zeros_like(S_)) == math.inf
    S_[1, 0] = 3.0
    assert rd._projection_threshold(D_, S_) == 3.0
    rng = np.random.default_rng(0)
    big = rng.normal(size=(7, 11))
    for k in (1, 5, 76):
        Sk = np.zeros(big.size)
        Sk[:k] = 1.0
        zeta = rd._projection_threshold(big, Sk.reshape(big.shape))
        assert zeta == _ref_threshold(big, Sk)
        assert np.sum(np.abs(big) > zeta) == k  # the same fraction of entries as in training


def test_orth_rows():
    V = np.arange(12.0).reshape(4, 3)
    out = rd._orth_rows(V, 2)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, V[:2])
    out = rd._orth_rows(np.asfortranarray(V.astype(np.float32)), 3)
    assert out.dtype == np.float64 and out.flags.c_contiguous


# ------------------------------------------------------------------ checks and defaults


def test_defaults_as_documented():
    assert DmDtRPCA().get_params() == {
        "rank_background": 1, "rank_class": 5, "pixel_transform": "sqrt", "method": "altproj",
        "tol": 1e-3, "max_iter": 200, "n_project_iter": 10, "cv": 5, "random_state": 0}
    assert NearestSubspaceClassifier().get_params() == {
        "rank_background": 1, "rank_class": 5, "pixel_transform": "sqrt", "method": "altproj",
        "tol": 1e-3, "max_iter": 200, "n_project_iter": 10}
    assert rd.RPCA_FORMAT == "lcpipe-rpca/1" and rd.METADATA_KEY == "lcpipe.rpca"
    # labels are required (scikit-learn's tag: fit without y is refused)
    assert DmDtRPCA().__sklearn_tags__().target_tags.required is True
    assert NearestSubspaceClassifier().__sklearn_tags__().target_tags.required is True


@pytest.mark.parametrize("kw,msg", [
    ({"rank_background": -1}, r"rank_background must be a non-negative integer \(>= 0\), "
                              r"got -1"),
    ({"rank_class": True}, r"rank_class must be .*\(>= 0\), got True"),
    ({"rank_class": 1.0}, r"rank_class must be .*got 1.0"),
    ({"max_iter": 0}, r"max_iter must be a non-negative integer \(>= 1\), got 0"),
    ({"n_project_iter": 0}, r"n_project_iter must be .*\(>= 1\), got 0"),
    ({"method": "svd"}, r"method must be one of \['altproj', 'pcp'\], got 'svd'"),
    ({"pixel_transform": "log"}, r"pixel_transform must be one of \['sqrt', 'none'\], "
                                 r"got 'log'"),
    ({"tol": 0.0}, r"tol must be > 0, got 0.0"),
    ({"tol": -1}, r"tol must be > 0, got -1"),
    ({"tol": "1e-3"}, r"tol must be > 0, got '1e-3'"),
])
def test_bad_parameters(data, kw, msg):
    X, y = data
    with pytest.raises(ConfigError, match=msg) as info:
        DmDtRPCA(cv=None, **kw).fit(X, y)
    assert isinstance(info.value, ValueError)


def test_boundary_parameters_accepted(data):
    X, y = data
    # rank 0 (b = 0), numpy integers, max_iter = n_project_iter = 1, integer tol
    m = DmDtRPCA(np.int64(0), 1, pixel_transform="none", max_iter=1, n_project_iter=1, tol=1,
                 cv=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        F = m.fit(X, y).transform(X)
    assert m.background_components_.shape == (0, D)
    assert F.shape == (len(X), 3 * 3)


def test_bad_images_and_labels(data):
    X, y = data
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(sp.csr_matrix(X.reshape(len(X), -1)), y)
    assert isinstance(info.value, ValueError)
    assert (info.value.source, info.value.problem) == (
        "images", "sparse input is not supported: pass a dense array")
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(X[:, 0, 0, 0], y)
    assert (info.value.source, info.value.problem) == (
        "images", "need an (N, ...) stack of images, got shape (36,): Reshape your data")
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(X, None)
    assert (info.value.source, info.value.problem) == (
        "labels", "requires y to be passed, but the target y is None")
    yf = (y == "A").astype(float)
    yf[3] = np.nan
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(X, yf)
    assert (info.value.source, info.value.problem) == ("labels",
                                                       "Input y contains NaN or infinity")
    yf[3] = np.inf
    with pytest.raises(InputError, match="Input y contains NaN or infinity"):
        DmDtRPCA(cv=None).fit(X, yf)
    with pytest.raises(ValueError, match="Unknown label type"):
        DmDtRPCA(cv=None).fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(X, y[:-1])
    assert (info.value.source, info.value.problem) == ("labels",
                                                       "need one label per image (36), got 35")
    with pytest.raises(InputError) as info:
        DmDtRPCA(cv=None).fit(-X, y)
    assert (info.value.source, info.value.problem) == (
        "images", "pixel_transform='sqrt' needs non-negative pixels")
    # float labels that are whole numbers are classes; a column vector warns and works
    m = DmDtRPCA(1, 2, cv=None).fit(X, (y == "A").astype(float))
    np.testing.assert_array_equal(m.classes_, [0.0, 1.0])
    with pytest.warns(DataConversionWarning):
        m = DmDtRPCA(1, 2, cv=None).fit(X, y[:, None])
    np.testing.assert_array_equal(m.classes_, ["A", "B", "C"])


def test_float32_images_are_decomposed_in_float64(data, held):
    """float32 images (the 'probability' dm-dt pixels) give the float64 model of their values."""
    X, y = data
    X32 = X.astype(np.float32)
    m32 = DmDtRPCA(1, 2, cv=None).fit(X32, y)
    m64 = DmDtRPCA(1, 2, cv=None).fit(X32.astype(np.float64), y)
    assert m32.background_components_.dtype == np.float64
    _close(m32.class_templates_, m64.class_templates_, tol=1e-12)
    _close(m32.transform(held.astype(np.float32)), m64.transform(held.astype(np.float32)),
           tol=1e-12)


def test_image_shape_and_flattened_input(data):
    X, y = data
    m = DmDtRPCA(1, 2, cv=None).fit(X, y)
    assert m.image_shape_ == SHAPE and m.n_features_in_ == D
    flat = DmDtRPCA(1, 2, cv=None).fit(X.reshape(len(X), -1), y)
    assert flat.image_shape_ == (D,)
    _close(flat.transform(X.reshape(len(X), -1)), m.transform(X))
    # transform does not reset the shape
    m.transform(X.reshape(len(X), -1))
    assert m.image_shape_ == SHAPE
    with pytest.raises(InputError, match="X has 19 features") as info:
        m.transform(X.reshape(len(X), -1)[:, :19])
    assert info.value.source == "images"
    with pytest.raises(InputError, match="non-negative pixels"):
        m.transform(-X)


# ------------------------------------------------------------------ fitted state


def _check_state(m, ref, y, A):
    np.testing.assert_array_equal(m.classes_, ref["classes"])
    _close(m.background_components_, ref["Vb"])
    assert m.background_components_.flags.c_contiguous
    assert m.background_threshold_ == ref["zb"]
    for V, rV in zip(m.class_components_, ref["Vc"], strict=True):
        _close(V, rV)
    _close(m.class_thresholds_, ref["zc"])
    _close(m.background_template_, ref["template_b"])
    _close(m.class_means_, ref["means"])
    _close(m.class_templates_, ref["templates"])
    assert len(m.fits_) == len(ref["fits"])
    for got, want in zip(m.fits_, ref["fits"], strict=True):
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert got[k] == pytest.approx(v) if isinstance(v, float) else got[k] == v, k
    assert m.n_iter_ == sum(f["n_iter"] for f in ref["fits"])


def test_fit_against_hand_composed_altproj(data, held):
    X, y = data
    A = X.reshape(len(X), -1)
    m = DmDtRPCA(1, 2, pixel_transform="none", cv=None)
    parts = m._fit_with_parts(X, y)
    ref = _ref_fit(A, y, 1, 2)
    _check_state(m, ref, y, A)
    assert np.isfinite(ref["zc"]).all() and math.isfinite(ref["zb"])  # thresholds are used
    for k in ("b", "c", "s"):
        _close(parts[k], ref[k])
    _close(m.transform(held), _ref_features(m, held))
    # sqrt: the same model as 'none' on square-rooted pixels
    ms = DmDtRPCA(1, 2, cv=None).fit(X, y)
    _check_state(ms, _ref_fit(np.sqrt(A), y, 1, 2), y, np.sqrt(A))
    _close(ms.transform(held), _ref_features(ms, np.sqrt(held)))


def test_fit_pcp_and_settings_passed_on(data, held):
    X, y = data
    A = X.reshape(len(X), -1)
    m = DmDtRPCA(2, 1, pixel_transform="none", method="pcp", tol=1e-4, cv=None).fit(X, y)
    ref = _ref_fit(A, y, 2, 1, method="pcp", tol=1e-4)
    _check_state(m, ref, y, A)
    _close(m.transform(held), _ref_features(m, held))
    with pytest.warns(ConvergenceWarning):
        m = DmDtRPCA(1, 2, pixel_transform="none", max_iter=2, tol=1e-9, cv=None).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = _ref_fit(A, y, 1, 2, tol=1e-9, max_iter=2)
    _check_state(m, ref, y, A)
    assert not any(f["converged"] for f in m.fits_)
    assert all(f["n_iter"] == 2 for f in m.fits_)


def test_sparse_fraction_of_a_one_pixel_fit():
    """Rank 0: the sparse part is the whole image, every pixel of it non-zero."""
    m = DmDtRPCA(0, 0, pixel_transform="none", cv=None).fit(np.array([[3.0]]), ["a"])
    assert [f["sparse_fraction"] for f in m.fits_] == [1.0, 1.0]
    m = DmDtRPCA(0, 0, pixel_transform="none", cv=None).fit(np.array([[3.0, 0.0]]), ["a"])
    assert [f["sparse_fraction"] for f in m.fits_] == [0.5, 0.5]


def test_small_class_and_rank_padding():
    rng = np.random.default_rng(5)
    X, y = planted(rng, sizes=(24, 4), names=("big", "two"))
    X, y, A = X[::2], y[::2], X[1::2].reshape(14, -1)  # fit on even rows, check on odd
    m = DmDtRPCA(1, 3, pixel_transform="none", n_project_iter=2, cv=None).fit(X, y)
    assert [V.shape[0] for V in m.class_components_] == [3, 2]
    dec = m.decompose(A.reshape(-1, *SHAPE))
    b, coef, err, l1 = _ref_decompose(m, A)
    _close(dec["b_coef"], b)
    _close(dec["class_coef"], coef)
    _close(dec["err"], err)
    _close(dec["l1"], l1)
    assert (dec["class_coef"][:, 1, 2] == 0).all()  # beyond the rank two images support
    assert (dec["l1"] > 0).any()
    F = m.transform(A)
    assert m.get_feature_names_out().dtype == object  # scikit-learn's convention
    names = list(m.get_feature_names_out())
    assert names == ["rpca_b_0", "rpca_big_c0", "rpca_big_c1", "rpca_big_c2", "rpca_big_err",
                     "rpca_big_l1", "rpca_two_c0", "rpca_two_c1", "rpca_two_c2", "rpca_two_err",
                     "rpca_two_l1"]
    _close(F, _ref_features(m, A))
    # a background rank the stack cannot support is zero-padded too
    m2 = DmDtRPCA(3, 1, pixel_transform="none", cv=None).fit(X[:2], y[:2])
    assert m2.background_components_.shape[0] == 2
    assert m2.get_feature_names_out()[:3].tolist() == ["rpca_b_0", "rpca_b_1", "rpca_b_2"]
    assert (m2.transform(A)[:, 2] == 0).all()


# ------------------------------------------------------------------ cross-fitting


def test_fit_transform_every_fold(data):
    X, y = data
    est = DmDtRPCA(1, 2, cv=3, random_state=7)
    F = est.fit_transform(X, y)
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=7).split(X, y):
        ref = DmDtRPCA(1, 2, cv=None).fit(X[tr], y[tr])
        _close(F[te], _ref_features(ref, np.sqrt(X[te].reshape(len(te), -1))))
    # the full fit stays on the estimator
    _check_state(est, _ref_fit(np.sqrt(X.reshape(len(X), -1)), y, 1, 2), y, None)
    other = DmDtRPCA(1, 2, cv=3, random_state=8).fit_transform(X, y)
    assert not np.allclose(other, F)
    _close(DmDtRPCA(1, 2, cv=None).fit_transform(X, y), est.transform(X))


def test_fit_transform_cv_bounds():
    rng = np.random.default_rng(9)
    X, y = planted(rng, sizes=(6,), names=("only",))
    n = len(X)
    F = DmDtRPCA(1, 1, cv=n, pixel_transform="none").fit_transform(X, y)  # leave one out
    for i in range(n):
        keep = np.arange(n) != i
        ref = DmDtRPCA(1, 1, cv=None, pixel_transform="none").fit(X[keep], y[keep])
        _close(F[i : i + 1], _ref_features(ref, X[i : i + 1].reshape(1, -1)))
    for cv in (1, 0, n + 1):
        with pytest.raises(ConfigError, match=rf"cv must be in \[2, n_images\], got {cv}"):
            DmDtRPCA(1, 1, cv=cv).fit_transform(X, y)
    assert DmDtRPCA(1, 1, cv=2).fit_transform(X, y).shape == (n, 4)


def test_fit_transform_class_missing_from_inner_fits():
    rng = np.random.default_rng(21)
    X, y = planted(rng, sizes=(9, 8, 1), names=("a", "b", "lone"))
    est = DmDtRPCA(1, 2, cv=3, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the small class is expected
        F = est.fit_transform(X, y)
    missing = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = list(StratifiedKFold(3, shuffle=True, random_state=2).split(X, y))
    for tr, te in folds:
        inner = DmDtRPCA(1, 2, cv=3, random_state=2).fit(X[tr], y[tr])
        if "lone" not in inner.classes_:
            missing += 1
            # the full fit's basis and threshold for the class the inner fit has not seen
            inner.classes_ = est.classes_
            inner.class_components_ = inner.class_components_ + [est.class_components_[2]]
            inner.class_thresholds_ = np.r_[inner.class_thresholds_, est.class_thresholds_[2]]
        _close(F[te], _ref_features(inner, np.sqrt(X[te].reshape(len(te), -1))))
    assert missing == 1
    # the merge itself, on classes in another order
    inner = DmDtRPCA(1, 2, cv=None).fit(X[y != "a"], y[y != "a"])
    comps = [V.copy() for V in inner.class_components_]
    thr = inner.class_thresholds_.copy()
    merged = est._merged_with(inner)
    np.testing.assert_array_equal(merged.classes_, ["a", "b", "lone"])
    _close(merged.class_components_[0], est.class_components_[0])
    _close(merged.class_components_[1], comps[0])
    _close(merged.class_components_[2], comps[1])
    _close(merged.class_thresholds_, [est.class_thresholds_[0], thr[0], thr[1]])


# ------------------------------------------------------------------ classifier, pipeline


def test_nearest_subspace_classifier(data, both):
    X, y = data
    Xt = both[2]
    nsc = NearestSubspaceClassifier(1, 2, pixel_transform="none", method="pcp", tol=1e-4,
                                    max_iter=50, n_project_iter=3).fit(X, y)
    assert nsc.decomposition_.get_params() == {
        "rank_background": 1, "rank_class": 2, "pixel_transform": "none", "method": "pcp",
        "tol": 1e-4, "max_iter": 50, "n_project_iter": 3, "cv": None, "random_state": 0}
    np.testing.assert_array_equal(nsc.classes_, ["A", "B", "C"])
    assert nsc.n_features_in_ == D and nsc.n_iter_ == nsc.decomposition_.n_iter_ > 0
    err = _ref_decompose(nsc.decomposition_, Xt.reshape(len(Xt), -1))[2]
    _close(nsc.decision_function(Xt), -err)
    np.testing.assert_array_equal(nsc.predict(Xt), nsc.classes_[np.argmin(err, axis=1)])
    # two classes: err_0 - err_1, positive for classes_[1]
    two = y != "C"
    nsc2 = NearestSubspaceClassifier(1, 2, pixel_transform="none").fit(X[two], y[two])
    err2 = _ref_decompose(nsc2.decomposition_, Xt.reshape(len(Xt), -1))[2]
    dec = nsc2.decision_function(Xt)
    _close(dec, err2[:, 0] - err2[:, 1])
    np.testing.assert_array_equal(nsc2.predict(Xt), np.where(dec > 0, "B", "A"))
    assert (dec > 0).any() and (dec < 0).any()


def test_feature_pipeline_columns(data, held):
    X, y = data
    rng = np.random.default_rng(2)
    extra = rng.normal(size=(len(held), 2))
    Z = np.hstack([X.reshape(len(X), -1), rng.normal(size=(len(X), 2))])
    pipe = rpca_feature_pipeline(D, NearestSubspaceClassifier(), rank_background=1,
                                 rank_class=2, cv=None, pixel_transform="none")
    assert [name for name, _ in pipe.steps] == ["features", "classifier"]
    ct = pipe.named_steps["features"]
    assert ct.remainder == "passthrough"
    assert ct.transformers[0][0] == "rpca" and ct.transformers[0][2] == list(range(D))
    assert ct.transformers[0][1].get_params()["rank_class"] == 2
    _close(ct.fit_transform(Z, y)[:, -2:], Z[:, -2:])
    out = ct.transform(np.hstack([held, extra]))
    ref = DmDtRPCA(1, 2, cv=None, pixel_transform="none").fit(X, y)
    _close(out, np.hstack([_ref_features(ref, held), extra]))


# ------------------------------------------------------------------ model files


def test_save_load_roundtrip(data, tmp_path):
    X, y = data
    m = DmDtRPCA(1, 2, n_project_iter=4, cv=None).fit(X, y)
    # extra metadata that JSON cannot hold is written as text (a path, say)
    p = save_rpca(m, tmp_path / "m.npz", extra={"part": "x", "n": 3, "src": tmp_path / "s"})
    assert p == tmp_path / "m.npz"
    with np.load(p, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(
            ["meta_json", "background_components", "background_threshold",
             "class_thresholds", "background_template", "class_means", "class_templates",
             "class_components_0", "class_components_1", "class_components_2"])
    m2, meta = load_rpca(p)
    assert meta["format"] == "lcpipe-rpca-model/1" and meta["part"] == "x" and meta["n"] == 3
    assert meta["src"] == str(tmp_path / "s")
    assert meta["classes"] == ["A", "B", "C"] and meta["image_shape"] == list(SHAPE)
    assert meta["params"] == m.get_params() and meta["n_iter"] == m.n_iter_
    assert meta["version"] == rd.__version__
    assert m2.get_params() == m.get_params()
    assert m2.image_shape_ == SHAPE and m2.n_iter_ == m.n_iter_ and m2.n_features_in_ == D
    assert m2.fits_ == json.loads(json.dumps(m.fits_))
    assert isinstance(m2.background_threshold_, float)
    assert m2.background_threshold_ == m.background_threshold_
    np.testing.assert_array_equal(m2.classes_, m.classes_)
    for k in ("background_components_", "class_thresholds_", "background_template_",
              "class_means_", "class_templates_"):
        np.testing.assert_array_equal(getattr(m2, k), getattr(m, k))
    for a, b in zip(m2.class_components_, m.class_components_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m2.transform(X), m.transform(X))
    m3, meta3 = load_rpca(save_rpca(m, tmp_path / "plain.npz"))
    assert "part" not in meta3 and m3.n_iter_ == m.n_iter_


def test_load_refuses(data, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nometa.npz", a=np.zeros(2))
    for name in ("missing.npz", "junk.npz", "nometa.npz"):
        with pytest.raises(InputError) as info:
            load_rpca(tmp_path / name)
        assert info.value.problem.startswith("cannot read robust-PCA model: ")
        assert info.value.source == str(tmp_path / name)
    meta = np.frombuffer(json.dumps({"format": "other/1"}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "other.npz", meta_json=meta)
    with pytest.raises(InputError) as info:
        load_rpca(tmp_path / "other.npz")
    assert info.value.problem == "not an lcpipe robust-PCA model (format 'other/1')"
    assert info.value.source == str(tmp_path / "other.npz")
    with pytest.raises(Exception, match="not fitted"):
        save_rpca(DmDtRPCA(), tmp_path / "unfitted.npz")
    assert not (tmp_path / "unfitted.npz").exists()


# ------------------------------------------------------------------ templates


def _edges(n_dm, n_dt):
    dm = np.array([-8.0, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 8.0])[: n_dm + 1]
    dt = np.round(np.geomspace(0.01, 3000.0, n_dt + 1), 4)
    return dm, dt


@pytest.fixture(scope="module")
def two_band():
    rng = np.random.default_rng(3)
    X, y = planted(rng, sizes=(10, 9), names=("RR", "EW"), shape=(3, 4, 2))
    return DmDtRPCA(1, 2, cv=None).fit(X, y)


def test_template_table_values(two_band):
    m = two_band
    dm, dt = _edges(3, 4)
    meta = {"dm_edges": dm.tolist(), "dt_edges": dt.tolist(), "bands": ["g", "r"],
            "norm": "max"}
    tab = rd._template_table(m, meta).to_pandas()
    imgs = [("background", "mean", 0, m.background_template_)]
    imgs += [("background", "component", k + 1, v)
             for k, v in enumerate(m.background_components_)]
    for i, c in enumerate(m.classes_):
        imgs += [(c, "mean", 0, m.class_means_[i]), (c, "template", 0, m.class_templates_[i])]
        imgs += [(c, "component", k + 1, v) for k, v in enumerate(m.class_components_[i])]
    rows = []
    for name, kind, comp, v in imgs:
        img = v.reshape(3, 4, 2)
        for i in range(3):
            for j in range(4):
                for b in range(2):
                    rows.append((name, kind, comp, "gr"[b], i, j, dm[i], dm[i + 1], dt[j],
                                 dt[j + 1], img[i, j, b]))
    ref = pd.DataFrame(rows, columns=["template", "kind", "component", "band", "dm_index",
                                      "dt_index", "dm_lo", "dm_hi", "dt_lo", "dt_hi",
                                      "value"])
    assert len(tab) == len(ref) == (2 + 2 * 4) * 24
    assert list(tab.columns) == list(ref.columns)
    for c in ref.columns:
        if c == "value":
            _close(tab[c].to_numpy(), ref[c].to_numpy())
        else:
            assert tab[c].tolist() == ref[c].tolist(), c
    sch = rd._template_table(m, meta).schema
    assert [str(sch.field(c).type) for c in ("component", "dm_index", "dt_index")] == [
        "int16"] * 3
    # without band names: channel numbers
    meta.pop("bands")
    assert rd._template_table(m, meta).column("band").to_pylist()[:4] == ["0", "1", "0", "1"]


@pytest.fixture
def figures(monkeypatch):
    from matplotlib.figure import Figure

    saved = []
    orig = Figure.savefig

    def record(self, *a, **kw):
        saved.append((self, kw))
        return orig(self, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def _check_style(fig):
    """Font sizes, aspect, layout and one colour bar per image, as _plot_templates sets them."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert fig._suptitle.get_fontsize() == 10
    axes = _image_axes(fig)
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == len(axes)
    for ax in axes:
        assert ax.get_aspect() == "auto" and ax.title.get_fontsize() == 9
        assert ax.xaxis.label.get_fontsize() == ax.yaxis.label.get_fontsize() == 8
        assert {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {7}


def test_template_figures(two_band, tmp_path, figures):
    m = two_band
    dm, dt = _edges(3, 4)
    meta = {"dm_edges": dm.tolist(), "dt_edges": dt.tolist(), "bands": ["g", "r"],
            "norm": "max"}
    paths = rd.write_rpca_templates(m, meta, tmp_path, prefix="x_", metadata={"k": "v"})
    assert paths == [tmp_path / "x_templates.parquet", tmp_path / "x_templates.png",
                     tmp_path / "x_class_parts.png"]
    assert pq.read_schema(paths[0]).metadata[b"k"] == b"v"
    assert len(pq.read_table(paths[0])) == (2 + 2 * 4) * 24
    (tpl, kw1), (parts, kw2) = figures
    assert kw1["dpi"] == kw2["dpi"] == 110 and kw1["format"] == "png"
    assert tpl._suptitle.get_text() == "dm-dt class templates (sqrt of max pixels)"
    assert parts._suptitle.get_text() == ("class backgrounds c_i (mean over the class, "
                                          "b removed)")
    axes = _image_axes(tpl)
    assert [ax.get_title() for ax in axes] == ["background b (mean)", "EW: b + c_i",
                                               "RR: b + c_i"]
    want = [m.background_template_, m.class_templates_[0], m.class_templates_[1]]
    for ax, v in zip(axes, want, strict=True):
        im = ax.images[0]
        np.testing.assert_array_equal(im.get_array(), v.reshape(3, 4, 2)[:, :, 0])
        assert im.cmap.name == "viridis" and im.origin == "lower"
        assert tuple(im.get_extent()) == (0, 4, 0, 3)
        assert ax.get_xlabel() == "Δt [days] (bin edges)"
        assert ax.get_ylabel() == "Δm [mag] (bin edges)"
        assert list(ax.get_xticks()) == [0, 4]
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{dt[0]:.3g}", f"{dt[4]:.3g}"]
        assert list(ax.get_yticks()) == [0, 1, 2, 3]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["-8", "-3", "-1", "0"]
    axes = _image_axes(parts)
    assert [ax.get_title() for ax in axes] == ["EW: c_i", "RR: c_i"]
    for ax, v in zip(axes, m.class_means_, strict=True):
        im = ax.images[0]
        img = v.reshape(3, 4, 2)[:, :, 0]
        np.testing.assert_array_equal(im.get_array(), img)
        lim = np.abs(img).max()
        assert im.cmap.name == "RdBu_r" and im.get_clim() == (-lim, lim)
    # sizes: 3.6 x 3.3 inches per tile at 110 dpi
    assert _png_size(paths[1]) == (round(3 * 3.6 * 110), round(3.3 * 110))
    assert _png_size(paths[2]) == (round(2 * 3.6 * 110), round(3.3 * 110))
    _check_style(tpl)
    _check_style(parts)
    # untransformed pixels: the title names the plain units
    figures.clear()
    plain = DmDtRPCA(1, 1, pixel_transform="none", cv=None).fit(
        np.abs(np.random.default_rng(0).normal(size=(6, 3, 4, 2))), np.repeat(["x"], 6))
    rd.write_rpca_templates(plain, meta, tmp_path / "plain")
    assert figures[0][0]._suptitle.get_text() == "dm-dt class templates (max pixels)"
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "rpca_class_parts.png", "rpca_templates.parquet", "rpca_templates.png"]
    # one tile: a 1 x 1 grid
    assert [ax.get_title() for ax in _image_axes(figures[1][0])] == ["x: c_i"]
    assert _png_size(tmp_path / "plain" / "rpca_class_parts.png") == (396, 363)


def test_template_ticks_at_round_edges(tmp_path, figures):
    """dm ticks at the edges -8, -3, -1, 0, 1, 3, 8 mag; dt ticks at every fourth edge."""
    dm = [-9.0, -8.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 8.0, 9.0]
    dt = list(np.geomspace(0.01, 4000.0, 11))
    img = np.arange(14 * 10, dtype=float).reshape(14, 10)
    rd._plot_templates(tmp_path / "t.png", [("a", img), ("b", -img)], {
        "dm_edges": dm, "dt_edges": dt}, "T", diverging=False)
    fig, _ = figures[0]
    for ax in _image_axes(fig):
        assert list(ax.get_yticks()) == [1, 3, 5, 7, 9, 11, 13]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["-8", "-3", "-1", "0", "1",
                                                                 "3", "8"]
        assert list(ax.get_xticks()) == [0, 4, 8]
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{dt[k]:.3g}"
                                                                for k in (0, 4, 8)]
        assert tuple(ax.images[0].get_extent()) == (0, 10, 0, 14)
        assert ax.images[0].get_clim() == (ax.images[0].get_array().min(),
                                           ax.images[0].get_array().max())
    _check_style(fig)


def test_template_grid_wraps_and_blank_diverging(tmp_path, figures):
    dm, dt = _edges(3, 4)
    meta = {"dm_edges": dm.tolist(), "dt_edges": dt.tolist()}
    imgs = [(f"t{k}", np.full((3, 4), float(k))) for k in range(6)]
    rd._plot_templates(tmp_path / "g.png", imgs, meta, "T", diverging=True)
    fig, _ = figures[0]
    grid = [ax for ax in fig.axes if ax.get_subplotspec() is not None
            and ax.get_label() != "<colorbar>"]
    assert len(grid) == 8
    assert [ax.get_visible() for ax in grid] == [True] * 6 + [False] * 2
    axes = _image_axes(fig)
    assert [ax.get_title() for ax in axes] == [f"t{k}" for k in range(6)]
    assert axes[0].images[0].get_clim() == (-1.0, 1.0)  # all zero: limits +-1
    assert axes[3].images[0].get_clim() == (-3.0, 3.0)
    assert _png_size(tmp_path / "g.png") == (round(4 * 3.6 * 110), round(2 * 3.3 * 110))
    assert fig._suptitle.get_text() == "T"
    _check_style(fig)
    for ax in axes:
        assert ax.images[0].cmap.name == "RdBu_r" and ax.images[0].origin == "lower"
        assert tuple(ax.images[0].get_extent()) == (0, 4, 0, 3)


# ------------------------------------------------------------------ the file command


def _write_dmdt(path, X, ids):
    n, n_dm, n_dt, n_b = X.shape
    dm, dt = _edges(n_dm, n_dt)
    meta = {"dm_edges": dm.tolist(), "dt_edges": dt.tolist(), "bands": ["r"],
            "norm": "probability", "shape": [n_dm, n_dt, n_b], "version": "test"}
    npts = np.full((n, n_b), 10, dtype=np.int64)
    img = DmDtImages(np.asarray(ids, dtype=object), X.astype(np.float32), npts,
                     npts * 9 // 2, meta)
    write_parquet_atomic(dmdt_table(img), path, metadata={DMDT_KEY: meta})
    return meta


@pytest.fixture(scope="module")
def file_case(tmp_path_factory):
    rng = np.random.default_rng(33)
    X, y = planted(rng, sizes=(9, 8, 2), names=("P", "Q", "R"))
    d = tmp_path_factory.mktemp("rpca_file")
    ids = [f"o{k:02d}" for k in range(len(X) + 2)]
    # two extra objects without labels; every value a float32, as the file holds them
    Xall = np.vstack([X, X[:2] * 1.1]).astype(np.float32).astype(np.float64)
    meta = _write_dmdt(d / "dmdt.parquet", Xall, ids)
    lab = pd.DataFrame({"object_id": ids[: len(X)] + ["ghost1", "ghost2"],
                        "label": list(y) + ["P", "Q"]})
    lab.to_csv(d / "labels.csv", index=False)
    return d, Xall, np.r_[y, [None, None]].astype(object), ids, meta


def test_rpca_file_values(file_case, tmp_path):
    d, X, lab, ids, dmeta = file_case
    out = tmp_path / "new" / "out"  # folders are created
    s = rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", out, rank_class=2,
                       min_class_size=3, tol=1e-4, max_iter=150)
    fit = np.array([v in ("P", "Q") for v in lab])
    A = np.sqrt(X.reshape(len(X), -1))
    ref_m = DmDtRPCA(1, 2, tol=1e-4, max_iter=150, cv=None)
    parts = ref_m._fit_with_parts(X[fit], lab[fit].astype(str))
    ref = _ref_fit(A[fit], lab[fit].astype(str), 1, 2, tol=1e-4, max_iter=150)
    # the file's features and nearest classes are those of the model in memory (the
    # features themselves are checked against the reference on held-out images above)
    F = ref_m.transform(X)
    nearest = ref_m.classes_[np.argmin(ref_m.decompose(X)["err"], axis=1)]
    _close(F[~fit], _ref_features(ref_m, A[~fit]))
    df = pq.read_table(out / "rpca_objects.parquet").to_pandas()
    names = list(ref_m.get_feature_names_out())
    assert list(df.columns) == ["object_id", "label", "fitted", "nearest_class", "b_norm",
                                "c_norm", "sparse_l1", "residual_norm", *names]
    assert df.object_id.tolist() == ids
    labels = pq.read_table(out / "rpca_objects.parquet").column("label").to_pylist()
    assert labels == [None if v is None else v for v in lab]
    assert df.fitted.tolist() == fit.tolist()
    assert df.nearest_class.tolist() == nearest.tolist()
    _close(df[names].to_numpy(), F)
    bn = np.linalg.norm(ref["b"], axis=1)
    cn = np.linalg.norm(ref["c"], axis=1)
    l1 = np.abs(ref["s"]).sum(axis=1)
    rn = np.linalg.norm(A[fit] - ref["b"] - ref["c"] - ref["s"], axis=1)
    table = pq.read_table(out / "rpca_objects.parquet")
    for col, v in (("b_norm", bn), ("c_norm", cn), ("sparse_l1", l1), ("residual_norm", rn)):
        _close(df.loc[fit, col].to_numpy(), v)
        assert df.loc[~fit, col].isna().all(), col
        # not fitted: null in Arrow (what DuckDB and pyarrow see), as docs/rpca.md says
        assert table.column(col).null_count == int((~fit).sum()), col
    _close(parts["s"], ref["s"])
    settings = {"rank_background": 1, "rank_class": 2, "pixel_transform": "sqrt",
                "method": "altproj", "tol": 1e-4, "max_iter": 150, "min_class_size": 3,
                "n_project_iter": 10}
    meta = json.loads(pq.read_schema(out / "rpca_objects.parquet").metadata[b"lcpipe.rpca"])
    assert meta == {"format": "lcpipe-rpca/1", "version": rd.__version__,
                    "settings": settings, "classes": ["P", "Q"], "feature_columns": names,
                    "image_shape": list(SHAPE), "dm_edges": dmeta["dm_edges"],
                    "dt_edges": dmeta["dt_edges"], "bands": ["r"], "norm": "probability",
                    "source": str(d / "dmdt.parquet")}
    tmeta = json.loads(pq.read_schema(out / "rpca_templates.parquet").metadata[b"lcpipe.rpca"])
    assert tmeta == meta
    fits = [{**f, "threshold": pytest.approx(f["threshold"]),
             "sparse_fraction": pytest.approx(f["sparse_fraction"])} for f in ref["fits"]]
    assert s == {
        "format": "lcpipe-rpca/1", "version": rd.__version__,
        "input": str(d / "dmdt.parquet"), "labels": str(d / "labels.csv"),
        "objects": 21, "fitted": 17, "unlabelled": 2, "left_out_small_classes": {"R": 2},
        "labels_without_image": 2, "classes": {"P": 9, "Q": 8},
        "in_sample_nearest_subspace_accuracy": pytest.approx(
            np.mean(nearest[fit] == lab[fit])),
        "fits": fits, "not_converged": [], "settings": settings,
        "outputs": {k: str(out / k) for k in ("rpca_objects.parquet",
                                              "rpca_templates.parquet",
                                              "rpca_templates.png", "rpca_class_parts.png")},
    }
    assert json.loads((out / "rpca_summary.json").read_text()) == s
    for k in s["outputs"].values():
        assert (out / k).exists()


def test_rpca_file_not_converged_and_defaults(file_case, tmp_path):
    d, X, lab, ids, _ = file_case
    with pytest.warns(ConvergenceWarning):
        s = rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path, method="pcp",
                           max_iter=1, pixel_transform="none", rank_background=2)
    assert s["not_converged"] == ["background", "P", "Q", "R"]
    assert s["left_out_small_classes"] == {} and s["fitted"] == 19
    df = pq.read_table(tmp_path / "rpca_objects.parquet").to_pandas()
    fit = np.array([v is not None for v in lab])
    with pytest.warns(ConvergenceWarning):
        ref = DmDtRPCA(2, 5, method="pcp", max_iter=1, pixel_transform="none", cv=None).fit(
            X[fit], lab[fit].astype(str))
    names = list(ref.get_feature_names_out())
    assert "rpca_b_1" in names and "rpca_R_c4" in names
    _close(df[names].to_numpy(), ref.transform(X))
    # every setting at its documented default
    s = rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "defaults")
    assert s["settings"] == {"rank_background": 1, "rank_class": 5, "pixel_transform": "sqrt",
                             "method": "altproj", "tol": 1e-3, "max_iter": 200,
                             "min_class_size": 1, "n_project_iter": 10}
    ref = DmDtRPCA(cv=None).fit(X[fit], lab[fit].astype(str))
    df = pq.read_table(tmp_path / "defaults" / "rpca_objects.parquet").to_pandas()
    _close(df[list(ref.get_feature_names_out())].to_numpy(), ref.transform(X))
    assert s["fits"] == json.loads(json.dumps(ref.fits_))


def test_rpca_file_refusals(file_case, tmp_path, monkeypatch):
    d, X, lab, ids, dmeta = file_case
    with pytest.raises(ConfigError, match="min_class_size must be >= 1, got 0"):
        rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "a", min_class_size=0)
    with pytest.raises(ConfigError, match=r"--min-class-size 10: every class is smaller "
                                          r"\(largest 9 labelled images\)"):
        rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "b",
                       min_class_size=10)
    assert rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "c",
                          rank_class=1, min_class_size=9)["classes"] == {"P": 9}
    pd.DataFrame({"object_id": ["zz", ids[0]], "label": ["P", "Q"]}).iloc[:1].to_csv(
        tmp_path / "none.csv", index=False)
    with pytest.raises(InputError, match=r"no labelled image to fit \(labels match 0 of 21 "
                                         r"objects in .*dmdt.parquet\)") as info:
        rpca_dmdt_file(d / "dmdt.parquet", tmp_path / "none.csv", tmp_path / "d")
    assert info.value.source == str(tmp_path / "none.csv")
    assert not (tmp_path / "d").exists()
    # what read_dmdt already refuses, checked again here
    from pipeline import dmdt as dmdt_mod

    real = dmdt_mod.read_dmdt(d / "dmdt.parquet")
    dup = DmDtImages(np.r_[real.object_id[:-1], real.object_id[:1]], real.images,
                     real.n_points, real.n_pairs, real.meta)
    monkeypatch.setattr(dmdt_mod, "read_dmdt", lambda p: dup)
    with pytest.raises(InputError) as info:
        rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "e")
    assert info.value.problem == "object_id is not unique"
    assert info.value.source == str(d / "dmdt.parquet")
    bad = real.images.copy()
    bad[3, 0, 0, 0] = np.inf
    nan = DmDtImages(real.object_id, bad, real.n_points, real.n_pairs, real.meta)
    monkeypatch.setattr(dmdt_mod, "read_dmdt", lambda p: nan)
    with pytest.raises(InputError) as info:
        rpca_dmdt_file(d / "dmdt.parquet", d / "labels.csv", tmp_path / "f")
    assert info.value.problem == "non-finite pixel values"
    assert info.value.source == str(d / "dmdt.parquet")
