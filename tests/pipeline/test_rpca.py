"""Robust PCA estimators: planted recovery, support, determinism, degenerate input, API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from pipeline import _rpca_impl
from pipeline.errors import ConfigError, InputError
from pipeline.rpca import PCP, AltProj, available_methods

ESTIMATORS = {"altproj": AltProj, "pcp": PCP}


def planted(rng, m, n, rank, frac=0.05):
    """M = L0 + S0: L0 = U V^T with Gaussian factors, S0 with ``frac`` gross corruptions.

    Corruption magnitudes are uniform in [2, 10] times the standard deviation of
    the entries of L0, with random signs.
    """
    L0 = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    mask = rng.random((m, n)) < frac
    k = int(mask.sum())
    S0 = np.zeros((m, n))
    S0[mask] = rng.choice([-1.0, 1.0], k) * rng.uniform(2.0, 10.0, k) * L0.std()
    return L0, S0


def _estimator(name, rank):
    return AltProj(rank=rank) if name == "altproj" else PCP()


@pytest.fixture(scope="module")
def recovery():
    """Fits of the planted 2,000 x 528 problems, shared by the recovery tests."""
    out = {}
    for rank in (5, 25):
        L0, S0 = planted(np.random.default_rng(100 + rank), 2000, 528, rank)
        for name in ESTIMATORS:
            out[name, rank] = (L0, S0, _estimator(name, rank).fit(L0 + S0))
    return out


def test_available_methods():
    assert available_methods() == ["altproj", "pcp"]
    assert set(_rpca_impl.METHODS) == set(ESTIMATORS)


@pytest.mark.parametrize("rank", [5, 25])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_planted_recovery(recovery, name, rank):
    L0, S0, est = recovery[name, rank]
    assert est.converged_
    assert est.rank_ == rank
    assert np.linalg.norm(est.low_rank_ - L0) / np.linalg.norm(L0) < 1e-3
    # the support of S0 is recovered exactly, and its values closely
    np.testing.assert_array_equal(est.sparse_ != 0, S0 != 0)
    assert np.linalg.norm(est.sparse_ - S0) / np.linalg.norm(S0) < 1e-3


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_factors_consistent(name):
    """components_ / singular_values_ describe low_rank_ (checked with numpy's SVD)."""
    L0, S0 = planted(np.random.default_rng(3), 600, 120, 4)
    est = _estimator(name, 4).fit(L0 + S0)
    V = est.components_
    np.testing.assert_allclose(V @ V.T, np.eye(est.rank_), atol=1e-10)
    s_ref = np.linalg.svd(est.low_rank_, compute_uv=False)
    np.testing.assert_allclose(est.singular_values_, s_ref[: est.rank_], rtol=1e-8)
    assert s_ref[est.rank_] < 1e-8 * s_ref[0]
    # rows of L lie in the span of components_
    resid = est.low_rank_ - (est.low_rank_ @ V.T) @ V
    assert np.linalg.norm(resid) < 1e-9 * np.linalg.norm(est.low_rank_)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_deterministic_for_fixed_seed(name):
    M1 = np.add(*planted(np.random.default_rng(7), 600, 120, 4))
    M2 = np.add(*planted(np.random.default_rng(7), 600, 120, 4))
    a = _estimator(name, 4).fit(M1)
    b = _estimator(name, 4).fit(M2)
    np.testing.assert_array_equal(a.low_rank_, b.low_rank_)
    np.testing.assert_array_equal(a.sparse_, b.sparse_)
    assert a.n_iter_ == b.n_iter_


def test_altproj_unknown_rank(rng):
    L0, S0 = planted(rng, 800, 150, 6)
    est = AltProj(rank=None).fit(L0 + S0)
    assert est.converged_ and est.rank_ == 6
    assert np.linalg.norm(est.low_rank_ - L0) / np.linalg.norm(L0) < 1e-3


def test_altproj_one_rank_per_stage_matches(rng):
    """rank_ratio=1 (the paper's schedule) recovers the same matrix."""
    L0, S0 = planted(rng, 800, 150, 3)
    est = AltProj(rank=3, rank_ratio=1.0).fit(L0 + S0)
    assert est.converged_
    assert len(set(est.history_["rank"])) == 3  # stages of rank 1, 2, 3
    assert np.linalg.norm(est.low_rank_ - L0) / np.linalg.norm(L0) < 1e-3


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_wide_matrix_and_float32(rng, name):
    L0, S0 = planted(rng, 600, 150, 3)
    wide = _estimator(name, 3).fit((L0 + S0).T)
    assert wide.low_rank_.shape == (150, 600) and wide.components_.shape == (3, 600)
    assert np.linalg.norm(wide.low_rank_ - L0.T) / np.linalg.norm(L0) < 1e-3
    f32 = _estimator(name, 3).fit((L0 + S0).astype(np.float32))
    assert f32.low_rank_.dtype == np.float32 and f32.sparse_.dtype == np.float32
    assert np.linalg.norm(f32.low_rank_ - L0) / np.linalg.norm(L0) < 1e-3


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_input_not_modified(rng, name):
    M = np.add(*planted(rng, 300, 60, 2))
    M.setflags(write=False)  # a write would raise
    copy = M.copy()
    _estimator(name, 2).fit(M)
    np.testing.assert_array_equal(M, copy)


def test_no_full_svd_of_the_stack(rng, monkeypatch):
    """Only small matrices (Gram, Ritz, QR factors) are ever decomposed."""
    m, n = 500, 80
    M = np.add(*planted(rng, m, n, 3))
    big = []

    def guard(fn):
        def wrapped(a, *args, **kw):
            if min(np.shape(a)) >= n and max(np.shape(a)) >= m:
                big.append(np.shape(a))
            return fn(a, *args, **kw)
        return wrapped

    for mod in (np.linalg, scipy.linalg):
        for fname in ("svd", "eigh", "qr"):
            monkeypatch.setattr(mod, fname, guard(getattr(mod, fname)))
    AltProj(rank=3).fit(M)
    PCP().fit(M)
    assert big == []


# ------------------------------------------------------------------ degenerate input


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_all_zeros(name):
    est = _estimator(name, 3).fit(np.zeros((50, 20)))
    assert est.rank_ == 0 and est.converged_ and est.n_iter_ == 0
    assert not est.low_rank_.any() and not est.sparse_.any()
    assert est.components_.shape == (0, 20)


def test_altproj_purely_sparse_input(rng):
    """Isolated spikes are both sparse and low-rank (coherent): ambiguous input.

    The measured beta accepts the coherent low-rank reading (an exact split);
    the paper's incoherent beta = mu^2 r / sqrt(mn) (mu = r = 1) gives rank 0.
    """
    m, n = 200, 60
    M = np.zeros((m, n))
    idx = rng.choice(M.size, 30, replace=False)
    M.flat[idx] = rng.uniform(5, 10, 30)
    est = AltProj(rank=None).fit(M)
    assert est.converged_
    np.testing.assert_allclose(est.low_rank_ + est.sparse_, M, atol=1e-9)
    paper = AltProj(rank=None, beta=1 / np.sqrt(m * n)).fit(M)
    assert paper.converged_ and paper.rank_ == 0
    assert not paper.low_rank_.any()
    np.testing.assert_array_equal(paper.sparse_, M)


def test_rank_zero_requested(rng):
    M = rng.standard_normal((30, 10))
    est = AltProj(rank=0).fit(M)
    assert est.rank_ == 0 and not est.low_rank_.any()
    np.testing.assert_array_equal(est.sparse_, M)


@pytest.mark.parametrize("shape", [(3, 40), (40, 3)])
def test_fewer_rows_or_columns_than_rank(rng, shape):
    """rank >= min(m, n): every matrix qualifies, so L = M, S = 0 exactly."""
    M = rng.standard_normal(shape)
    est = AltProj(rank=5).fit(M)
    np.testing.assert_array_equal(est.low_rank_, M)
    assert not est.sparse_.any() and est.rank_ == 3 and est.converged_


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_non_finite_input_is_a_clear_error(rng, name, bad):
    M = rng.standard_normal((20, 8))
    M[3, 4] = bad
    with pytest.raises(InputError, match="NaN|inf") as info:
        _estimator(name, 2).fit(M)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("M", [np.zeros((0, 5)), np.zeros((5, 0)), np.zeros(5),
                               np.array([["a", "b"]])])
def test_bad_shapes_and_types(M):
    with pytest.raises(InputError):
        AltProj().fit(M)


@pytest.mark.parametrize("est", [AltProj(rank=-1), AltProj(rank=2.5), AltProj(tol=0),
                                 AltProj(max_iter=0), AltProj(rank_ratio=1.5),
                                 AltProj(beta=-1.0), PCP(rho=1.0), PCP(lam=0.0),
                                 PCP(max_iter=1.5)])
def test_bad_parameters(est):
    with pytest.raises(ConfigError) as info:
        est.fit(np.ones((5, 5)))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_non_convergence_is_reported(rng, name):
    M = np.add(*planted(rng, 300, 60, 3))
    est = _estimator(name, 3).set_params(max_iter=2)
    with pytest.warns(ConvergenceWarning, match="converged_ is False"):
        est.fit(M)
    assert not est.converged_ and est.n_iter_ == 2


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_sklearn_api(rng, name):
    est = _estimator(name, 2)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    params = est.get_params()
    M = np.add(*planted(rng, 100, 30, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fitted = est.fit(M)
    assert fitted is est and est.get_params() == params
    assert est.n_features_in_ == 30
    assert clone(est).get_params() == params
    for attr in ("low_rank_", "sparse_", "rank_", "n_iter_", "converged_", "components_"):
        assert hasattr(est, attr)


def test_altproj_noisy_data_noise_not_declared_sparse(rng):
    """Dense noise stays out of S with the noise floor, and the fit terminates."""
    L0, S0 = planted(rng, 800, 150, 4)
    sigma_e = 0.02 * L0.std()
    E = sigma_e * rng.standard_normal(L0.shape)
    est = AltProj(rank=4, tol=1e-6).fit(L0 + S0 + E)
    assert est.converged_
    assert est.threshold_ > 2.5 * sigma_e  # floor: 3 robust standard deviations
    assert np.linalg.norm(est.low_rank_ - L0) / np.linalg.norm(L0) < 0.01
    found, true = est.sparse_ != 0, S0 != 0
    assert np.mean(found[true]) > 0.99  # corruptions found
    assert np.mean(found[~true]) < 0.005  # Gaussian noise beyond 3 sigma: 0.27 %


# ------------------------------------------------------------------ streamed AltProj passes


def test_altproj_row_passes_agree_across_thread_counts_and_blocks(monkeypatch):
    """The row-block passes (threads, block size) change only the rounding of sums."""
    import numba

    L0, S0 = planted(np.random.default_rng(7), 1500, 200, 6)
    M = L0 + S0
    ref = AltProj(rank=6).fit(M)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = AltProj(rank=6).fit(M)
    finally:
        numba.set_num_threads(threads)
    monkeypatch.setattr(_rpca_impl, "_PASS_BLOCK", 37)
    odd = AltProj(rank=6).fit(M)
    for other in (one, odd):
        assert other.n_iter_ == ref.n_iter_
        np.testing.assert_array_equal(other.sparse_ != 0, ref.sparse_ != 0)
        assert (np.linalg.norm(other.low_rank_ - ref.low_rank_)
                < 1e-9 * np.linalg.norm(ref.low_rank_))
    assert np.linalg.norm(ref.low_rank_ - L0) < 1e-3 * np.linalg.norm(L0)


def _fit_in_child(M, q):
    q.put(int(AltProj(rank=4).fit(M).rank_))


def test_altproj_works_in_a_forked_child():
    """The worker pool of the parent does not survive fork(): the child makes its own."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    L0, S0 = planted(np.random.default_rng(8), 1200, 200, 4)
    M = L0 + S0
    AltProj(rank=4).fit(M)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_fit_in_child, args=(M, q))
    p.start()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
        pytest.fail("AltProj hung in a forked child")
    assert p.exitcode == 0 and q.get(timeout=5) == 4
