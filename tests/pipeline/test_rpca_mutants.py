"""Robust PCA internals pinned where mutation testing found them unchecked (issue 17).

Pins:

- PCP's inexact ALM *path*, not only its fixed point: every iteration's rank,
  threshold ``lam / mu``, relative change of ``S`` and relative residual, the
  iteration count and the final ``L``, ``S`` equal a plain numpy reference IALM
  (Lin, Chen & Ma 2010, Algorithm 5, with full SVDs) on a planted low-rank + sparse
  matrix, for the default and for explicit ``mu`` / ``rho`` (with the ``mu`` cap);
- the threaded row-block kernel (several blocks, the last one partial) gives the
  same iteration as the reference;
- ``pcp_ialm``'s own defaults (``lam = 1 / sqrt(max(m, n))``, ``rho``, ``tol``);
- ``_trivial``: the numerical-rank tolerance ``sqrt(eps) * max(m, n) * sigma_1`` of the
  dtype, the factors of an exact low-rank matrix, and the empty factors, shapes,
  threshold and history of an all-zero input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from pipeline import _rpca_impl
from pipeline.rpca import PCP, AltProj


def reference_ialm(M, lam, mu=None, rho=1.5, tol=1e-7, max_iter=500):
    """Inexact ALM for PCP in plain numpy (Lin, Chen & Ma 2010, Algorithm 5).

    ``Y0 = M / max(||M||_2, ||M||_inf / lam)``, ``mu0 = 1.25 / ||M||_2`` (default),
    ``mu`` grows by ``rho`` up to ``1e7 mu0``; per iteration ``L = SVT_{1/mu}(M - S +
    Y/mu)``, ``S = soft_{lam/mu}(M - L + Y/mu)``, ``Y += mu (M - L - S)``.
    """
    norm_m = np.linalg.norm(M)
    norm_two = np.linalg.norm(M, 2)
    Y = M / max(norm_two, np.abs(M).max() / lam)
    mu = 1.25 / norm_two if mu is None else mu
    mu_bar = mu * 1e7
    S = np.zeros_like(M)
    hist = {"rank": [], "threshold": [], "rel_change": [], "rel_residual": []}
    for _ in range(max_iter):
        U, s, Vt = np.linalg.svd(M - S + Y / mu, full_matrices=False)
        r = int(np.sum(s > 1.0 / mu))
        L = (U[:, :r] * (s[:r] - 1.0 / mu)) @ Vt[:r]
        V = M - L + Y / mu
        S_new = np.sign(V) * np.maximum(np.abs(V) - lam / mu, 0.0)
        Z = M - L - S_new
        hist["rank"].append(r)
        hist["threshold"].append(lam / mu)
        hist["rel_change"].append(np.linalg.norm(S_new - S) / norm_m)
        hist["rel_residual"].append(np.linalg.norm(Z) / norm_m)
        S = S_new
        Y = Y + mu * Z
        mu = min(mu * rho, mu_bar)
        if hist["rel_residual"][-1] <= tol:
            break
    return L, S, hist


@pytest.fixture(scope="module")
def planted():
    """97 x 12, rank 2, ~5 % gross corruptions: ||M||_inf / lam > ||M||_2 (Y0 uses it)."""
    rng = np.random.default_rng(3)
    m, n = 97, 12
    L0 = rng.standard_normal((m, 2)) @ rng.standard_normal((2, n))
    mask = rng.random((m, n)) < 0.05
    S0 = np.zeros((m, n))
    S0[mask] = rng.choice([-1.0, 1.0], mask.sum()) * rng.uniform(3.0, 8.0, mask.sum())
    M = L0 + S0
    assert np.abs(M).max() * math.sqrt(m) > 2 * np.linalg.norm(M, 2)
    return M


def _same_path(est_or_res, ref, n_iter=None):
    L, S, hist = ref
    h = est_or_res.history_ if hasattr(est_or_res, "history_") else est_or_res.history
    assert h["rank"] == hist["rank"]
    np.testing.assert_allclose(h["threshold"], hist["threshold"], rtol=1e-12)
    for key in ("rel_change", "rel_residual"):
        np.testing.assert_allclose(h[key], hist[key], rtol=1e-4, atol=1e-12, err_msg=key)
    low = getattr(est_or_res, "low_rank_", None)
    low = est_or_res.low_rank if low is None else low
    sparse = getattr(est_or_res, "sparse_", None)
    sparse = est_or_res.sparse if sparse is None else sparse
    np.testing.assert_allclose(low, L, atol=1e-8)
    np.testing.assert_allclose(sparse, S, atol=1e-8)


def test_pcp_iteration_matches_reference_ialm(planted):
    M = planted
    lam = 1.0 / math.sqrt(97)
    ref = reference_ialm(M, lam)
    est = PCP().fit(M)
    assert est.converged_ is True
    assert est.n_iter_ == len(ref[2]["rank"]) == len(est.history_["rank"])
    _same_path(est, ref)
    # the last residual is that of the returned decomposition
    assert est.history_["rel_residual"][-1] == pytest.approx(
        np.linalg.norm(M - est.low_rank_ - est.sparse_) / np.linalg.norm(M), rel=1e-3)
    assert est.threshold_ == pytest.approx(ref[2]["threshold"][-1], rel=1e-12)


def test_pcp_explicit_mu_and_rho_with_the_mu_cap(planted):
    M = planted
    lam = 1.0 / math.sqrt(97)
    # explicit mu: used instead of 1.25 / ||M||_2
    ref = reference_ialm(M, lam, mu=0.01, max_iter=8)
    with pytest.warns(ConvergenceWarning):
        est = PCP(mu=0.01, max_iter=8).fit(M)
    assert est.n_iter_ == 8
    _same_path(est, ref)
    # rho = 1e3: mu reaches its cap 1e7 mu0 in the third iteration and stays there
    ref = reference_ialm(M, lam, rho=1e3, tol=1e-300, max_iter=5)
    with pytest.warns(ConvergenceWarning):
        est = PCP(rho=1e3, tol=1e-300, max_iter=5).fit(M)
    mu0 = 1.25 / np.linalg.norm(M, 2)
    np.testing.assert_allclose(est.history_["threshold"],
                               lam / (mu0 * np.array([1.0, 1e3, 1e6, 1e7, 1e7])), rtol=1e-12)
    _same_path(est, ref)


def test_pcp_threaded_row_blocks_match_reference(planted, monkeypatch):
    """Threaded kernel path with blocks of 16 rows: 97 = 6 x 16 + 1 (a 1-row last block)."""
    M = planted
    monkeypatch.setattr(_rpca_impl, "_PARALLEL_MIN_SIZE", 1)
    monkeypatch.setattr(_rpca_impl, "_ROW_BLOCK", 16)
    assert _rpca_impl._use_threads(M)
    ref = reference_ialm(M, 1.0 / math.sqrt(97))
    est = PCP().fit(M)
    assert est.n_iter_ == len(ref[2]["rank"])
    _same_path(est, ref)


def test_pcp_ialm_defaults_and_result_fields(planted):
    M = planted
    ref = reference_ialm(M, 1.0 / math.sqrt(97), rho=1.5, tol=1e-7)
    res = _rpca_impl.pcp_ialm(M)  # lam = 1 / sqrt(max(m, n)), rho 1.5, tol 1e-7
    assert res.converged is True and res.n_iter == len(ref[2]["rank"])
    _same_path(res, ref)
    # a wide call (the estimator transposes; the function takes max(m, n) itself)
    wide = _rpca_impl.pcp_ialm(np.ascontiguousarray(M[:12]))
    again = _rpca_impl.pcp_ialm(np.ascontiguousarray(M[:12]), lam=1.0 / math.sqrt(12))
    assert wide.history == again.history
    stopped = _rpca_impl.pcp_ialm(M, max_iter=2)
    assert stopped.converged is False and stopped.n_iter == 2
    assert stopped.history["rank"] == ref[2]["rank"][:2]


# ------------------------------------------------------------------------------ _trivial


def test_trivial_factors_of_an_exact_low_rank_matrix():
    rng = np.random.default_rng(5)
    U0, _ = np.linalg.qr(rng.standard_normal((40, 2)))
    V0, _ = np.linalg.qr(rng.standard_normal((10, 2)))
    L = (U0 * [3.0, 1.0]) @ V0.T
    S = rng.standard_normal((40, 10))
    res = _rpca_impl._trivial(L + S, L, S)
    assert res.rank == 2 and res.n_iter == 0 and res.converged is True
    assert res.threshold == 0.0 and res.history == {}
    assert res.low_rank is L and res.sparse is S
    np.testing.assert_allclose(res.singular_values, [3.0, 1.0], rtol=1e-10)
    assert res.left.shape == (40, 2) and res.components.shape == (2, 10)
    np.testing.assert_allclose(res.left.T @ res.left, np.eye(2), atol=1e-10)
    np.testing.assert_allclose(res.components @ res.components.T, np.eye(2), atol=1e-10)
    np.testing.assert_allclose((res.left * res.singular_values) @ res.components, L,
                               atol=1e-12)
    assert _rpca_impl._trivial(L, L, S, threshold=2.5).threshold == 2.5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_trivial_rank_tolerance_is_sqrt_eps_max_shape_sigma1(dtype):
    """Singular values 1, 0.3, 2 t, t / 2 with t = sqrt(eps) * max(m, n): rank 3."""
    rng = np.random.default_rng(6)
    m, n = 40, 10
    t = math.sqrt(np.finfo(dtype).eps) * m
    U0, _ = np.linalg.qr(rng.standard_normal((m, 4)))
    V0, _ = np.linalg.qr(rng.standard_normal((n, 4)))
    L = ((U0 * [1.0, 0.3, 2 * t, t / 2]) @ V0.T).astype(dtype)
    res = _rpca_impl._trivial(L, L, np.zeros_like(L))
    assert res.rank == 3
    np.testing.assert_allclose(res.singular_values[:2], [1.0, 0.3], rtol=1e-3)
    assert res.singular_values[2] == pytest.approx(2 * t, rel=0.1)
    # AltProj with rank >= n returns this result: L = M, S = 0
    est = AltProj(rank=n).fit(L)
    assert est.rank_ == 3 and est.n_iter_ == 0
    np.testing.assert_array_equal(est.low_rank_, L)


@pytest.mark.parametrize("name", ["pcp", "altproj"])
def test_all_zero_wide_input_gives_empty_factors(name):
    est = (PCP() if name == "pcp" else AltProj(rank=3)).fit(np.zeros((20, 50)))
    assert est.rank_ == 0 and est.converged_ and est.n_iter_ == 0
    assert est.low_rank_.shape == est.sparse_.shape == (20, 50)
    assert est.low_rank_.dtype == est.sparse_.dtype == np.float64
    assert not est.low_rank_.any() and not est.sparse_.any()
    assert est.singular_values_.shape == (0,)
    assert est.components_.shape == (0, 50)  # from the left factor (50 x 0) of M.T
    assert est.threshold_ == 0.0 and est.history_ == {}
    res = _rpca_impl.pcp_ialm(np.zeros((50, 20)))
    assert res.left.shape == (50, 0) and res.components.shape == (0, 20)



def test_pcp_explicit_lam_is_used(planted):
    M = planted
    ref = reference_ialm(M, 0.2)
    est = PCP(lam=0.2).fit(M)
    assert est.lambda_ == 0.2
    _same_path(est, ref)
    _same_path(_rpca_impl.pcp_ialm(M, lam=0.2), ref)


@pytest.mark.parametrize(("params", "message"), [
    ({"lam": 0}, "lam must be a number > 0 or None, got 0"),
    ({"mu": 0.0}, "mu must be a number > 0 or None, got 0.0"),
    ({"mu": "1"}, "mu must be a number > 0 or None, got '1'"),
    ({"rho": 1}, "rho must be a number > 1, got 1"),
    ({"tol": 0}, "tol must be a number > 0, got 0"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
])
def test_pcp_parameter_messages(planted, params, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        PCP(**params).fit(planted)


def test_pcp_smallest_valid_parameters_are_accepted(planted):
    est = PCP(lam=0.5, max_iter=1)
    with pytest.warns(ConvergenceWarning):
        est.fit(planted)
    assert est.n_iter_ == 1 and est.lambda_ == 0.5


def test_gram_of_float32_is_accumulated_in_float64_by_blocks(monkeypatch):
    """float32 input: X.T X in float64 over row blocks (here of 7 rows: 40 = 5 x 7 + 5)."""
    X = np.random.default_rng(8).standard_normal((40, 5)).astype(np.float32) * 1e3 + 1e4
    exact = X.astype(np.float64).T @ X.astype(np.float64)
    monkeypatch.setattr(_rpca_impl, "_GRAM_BLOCK", 7)
    G = _rpca_impl._gram(X)
    assert G.dtype == np.float64
    np.testing.assert_allclose(G, exact, rtol=1e-13)
    X64 = X.astype(np.float64)
    np.testing.assert_array_equal(_rpca_impl._gram(X64), X64.T @ X64)


def test_pcp_threaded_kernel_writes_only_its_rows():
    """_pcp_parallel on row views of padded arrays: the padding rows stay untouched and
    the rows agree with the serial kernel (97 rows in blocks of 16)."""
    rng = np.random.default_rng(9)
    m, n, pad = 97, 12, 20

    def padded(a):
        big = np.full((m + pad, a.shape[1]), 7.0)
        big[:m] = a
        return big

    M, LT, Y = (rng.standard_normal((m, n)) for _ in range(3))
    args = (0.5, 0.75, 0.1)
    bigs = [padded(a) for a in (M, LT, np.zeros((m, n)), Y, np.zeros((m, 2)))]
    _rpca_impl._pcp_parallel(*(b[:m] for b in bigs[:4]), *args, bigs[4][:m], 16)
    ref = [M.copy(), LT.copy(), np.zeros((m, n)), Y.copy(), np.zeros((m, 2))]
    _rpca_impl._pcp_rows(*ref[:4], *args, ref[4], 0, m)
    for big, r in zip(bigs, ref, strict=True):
        assert (big[m:] == 7.0).all()
        np.testing.assert_array_equal(big[:m], r)


def test_altproj_is_scale_equivariant():
    """fit(c M) = c fit(M) for c = 2^-12 (exact in floating point), with max|L| < 1."""
    rng = np.random.default_rng(10)
    L0 = rng.standard_normal((150, 3)) @ rng.standard_normal((3, 40))
    mask = rng.random(L0.shape) < 0.05
    M = L0 + np.where(mask, rng.choice([-1.0, 1.0], L0.shape) * 8.0, 0.0)
    c = 2.0**-12
    a = AltProj(rank=3).fit(M)
    b = AltProj(rank=3).fit(M * c)
    assert np.abs(b.low_rank_).max() < 1.0 < np.abs(a.low_rank_).max()
    assert a.n_iter_ == b.n_iter_ and a.history_["rank"] == b.history_["rank"]
    np.testing.assert_allclose(np.array(b.history_["threshold"]) / c, a.history_["threshold"],
                               rtol=1e-9)
    np.testing.assert_allclose(b.low_rank_ / c, a.low_rank_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(b.sparse_ != 0, a.sparse_ != 0)


def test_altproj_objective_and_residual_history():
    """Last objective = ||M - L - S||^2 + sum over S's non-zeros of zeta_j^2; last
    residual = ||M - L - S|| / ||M|| (for the returned L, S and column thresholds)."""
    rng = np.random.default_rng(11)
    L0 = rng.standard_normal((200, 3)) @ rng.standard_normal((3, 50))
    mask = rng.random(L0.shape) < 0.05
    E = 0.01 * rng.standard_normal(L0.shape)
    M = L0 + E + np.where(mask, rng.choice([-1.0, 1.0], L0.shape) * 6.0, 0.0)
    est = AltProj(rank=3, tol=1e-6).fit(M)
    R = M - est.low_rank_ - est.sparse_
    nnz = (est.sparse_ != 0).sum(axis=0)
    assert nnz.sum() > 0
    objective = (R**2).sum() + (est.column_thresholds_**2 * nnz).sum()
    assert est.history_["objective"][-1] == pytest.approx(objective, rel=1e-8)
    assert est.history_["rel_residual"][-1] == pytest.approx(
        np.linalg.norm(R) / np.linalg.norm(M), rel=1e-8)
