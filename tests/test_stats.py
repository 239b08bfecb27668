"""The statistics merge: exact, associative, and the M-step of merged = M-step of whole."""

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_data
from hypothesis import given, settings
from hypothesis import strategies as st

from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics
from daskgmm.model.params import GaussianParams, compute_precision_cholesky, m_step
from daskgmm.model.statistics import SufficientStats, merge_stats

X_SMALL = make_data(n_samples=240, n_features=3, n_components=3, seed=5)


def params_for(covariance_type, X, n_components=3, seed=0):
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), n_components, replace=False)]
    n_features = X.shape[1]
    covariances = {
        "full": np.stack([np.eye(n_features) * (1 + k) for k in range(n_components)]),
        "tied": np.eye(n_features) * 2.0,
        "diag": np.ones((n_components, n_features)) * 1.5,
        "spherical": np.arange(1, n_components + 1, dtype=float),
    }[covariance_type]
    return GaussianParams(
        covariance_type,
        np.full(n_components, 1 / n_components),
        means,
        covariances,
        compute_precision_cholesky(covariances, covariance_type),
    )


def whole_and_parts(covariance_type, X, cuts, weights=None):
    params = params_for(covariance_type, X[: len(X_SMALL)])
    assigner = GaussianAssigner(params)
    k = params.n_components
    whole = chunk_statistics(X, weights, assigner, covariance_type, k)
    bounds = [0, *cuts, len(X)]
    parts = [
        chunk_statistics(
            X[a:b], None if weights is None else weights[a:b], assigner, covariance_type, k, row_offset=a
        )
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return whole, parts


def assert_stats_close(a, b, rtol=1e-10):
    scale = max(1.0, np.max(np.abs(b.scatter)))
    np.testing.assert_allclose(a.resp_sum, b.resp_sum, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=rtol * np.max(np.abs(b.means)))
    np.testing.assert_allclose(a.scatter, b.scatter, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=rtol)
    assert a.weight_sum == b.weight_sum and a.n_rows == b.n_rows


@settings(max_examples=40, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    cuts=st.lists(st.integers(1, len(X_SMALL) - 1), max_size=8, unique=True).map(sorted),
    order=st.randoms(use_true_random=False),
)
def test_any_chunking_and_merge_order_gives_the_same_statistics(covariance_type, cuts, order):
    whole, parts = whole_and_parts(covariance_type, X_SMALL, cuts)
    # merge in a random tree: repeatedly merge a random adjacent-or-not pair
    pool = list(parts)
    while len(pool) > 1:
        i, j = sorted(order.sample(range(len(pool)), 2))
        merged = pool[i] + pool[j]
        pool = [p for n, p in enumerate(pool) if n not in (i, j)] + [merged]
    assert_stats_close(pool[0], whole)
    params_whole = m_step(whole, 1e-6)
    params_merged = m_step(pool[0], 1e-6)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_allclose(
            getattr(params_merged, name), getattr(params_whole, name), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_statistics_match_the_direct_formulas(covariance_type):
    """Centred scatter equals sum_n r_nk (x - m_k)(x - m_k)^T computed naively."""
    X = X_SMALL
    params = params_for(covariance_type, X)
    from daskgmm.kernels.blocks import centre_block
    from daskgmm.kernels.densities import normalize_log_prob, weighted_log_prob

    resp, log_norm = normalize_log_prob(weighted_log_prob(centre_block(X), params))
    stats = chunk_statistics(X, None, GaussianAssigner(params), covariance_type, 3, block_rows=50)
    mass = resp.sum(0)
    means = resp.T @ X / mass[:, None]
    full = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(3)])
    expected = {
        "full": full,
        "tied": full.sum(0),
        "diag": np.stack([np.diag(s) for s in full]),
        "spherical": np.array([np.trace(s) for s in full]),
    }[covariance_type]
    np.testing.assert_allclose(stats.resp_sum, mass, rtol=1e-12)
    np.testing.assert_allclose(stats.means, means, rtol=1e-11)
    np.testing.assert_allclose(stats.scatter, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.log_likelihood, log_norm.sum(), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_merge_is_exact_far_from_the_origin(covariance_type):
    """Raw moments would cancel at 1e8; centred merges keep every digit that matters."""
    offset = 1e8
    near, parts_near = whole_and_parts(covariance_type, X_SMALL, [60, 61, 150])
    far, parts_far = whole_and_parts(covariance_type, X_SMALL + offset, [60, 61, 150])
    merged_far = merge_stats(*parts_far)
    np.testing.assert_allclose(merged_far.scatter, near.scatter, rtol=1e-6)
    np.testing.assert_allclose(merged_far.means - offset, near.means, atol=1e-6)


def test_weights_two_equal_a_duplicated_row():
    X = X_SMALL
    weights = np.ones(len(X))
    weights[:40] = 2.0
    weighted, _ = whole_and_parts("full", X, [], weights=weights)
    duplicated, _ = whole_and_parts("full", np.vstack([X, X[:40]]), [])
    np.testing.assert_allclose(weighted.scatter, duplicated.scatter, rtol=1e-10)
    np.testing.assert_allclose(weighted.means, duplicated.means, rtol=1e-12)
    np.testing.assert_allclose(weighted.log_likelihood, duplicated.log_likelihood, rtol=1e-12)
    assert weighted.weight_sum == duplicated.weight_sum


def test_empty_statistics_are_neutral():
    whole, _ = whole_and_parts("diag", X_SMALL, [])
    empty = SufficientStats.empty("diag", 3, 3)
    for merged in (whole + empty, empty + whole):
        assert_stats_close(merged, whole, rtol=0)


def test_non_finite_rows_are_counted_with_their_position():
    X = X_SMALL.copy()
    X[17, 1] = np.nan
    X[201, 0] = np.inf
    params = params_for("full", X_SMALL)
    stats = chunk_statistics(X[10:], None, GaussianAssigner(params), "full", 3, row_offset=10, block_rows=64)
    assert stats.n_nonfinite == 2 and stats.first_nonfinite == 17
    assert stats.n_rows == len(X) - 10
    assert np.isfinite(stats.scatter).all()
