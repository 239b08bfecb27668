"""Numerics that matter: offsets, float32, regularisation."""

import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, fit_quietly, make_data, relative_deviation, starting_point

from daskgmm import GaussianMixture

K = 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [1e6, -3e7])
def test_adding_a_constant_does_not_change_the_fit(covariance_type, offset):
    X = make_data(n_samples=3000, n_components=K, seed=4)
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=1e-8, max_iter=300, chunk_rows=700)
    centred = fit_quietly(GaussianMixture(K, **settings, **start), X)
    shifted_start = dict(start, means_init=start["means_init"] + offset)
    shifted = fit_quietly(GaussianMixture(K, **settings, **shifted_start), X + offset)
    assert shifted.n_iter_ == centred.n_iter_
    np.testing.assert_allclose(shifted.covariances_, centred.covariances_, rtol=1e-6)
    np.testing.assert_allclose(shifted.weights_, centred.weights_, rtol=1e-6)
    np.testing.assert_allclose(shifted.means_ - offset, centred.means_, atol=1e-6)
    np.testing.assert_allclose(shifted.lower_bounds_, centred.lower_bounds_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_far_from_origin_matches_float64(covariance_type):
    """float32 blocks are centred before any product, so an offset costs only the data's own rounding."""
    X32 = (make_data(n_samples=3000, n_components=K, seed=4) + 1e3).astype(np.float32)
    X64 = X32.astype(np.float64)
    start = starting_point(X64, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=0, max_iter=20, **start)
    ours32 = fit_quietly(GaussianMixture(K, **settings), da.from_array(X32, chunks=900))
    ours64 = fit_quietly(GaussianMixture(K, **settings), X64)
    assert ours32.covariances_.dtype == np.float32
    assert relative_deviation(ours32.covariances_, ours64.covariances_) < 1e-4
    assert relative_deviation(ours32.means_, ours64.means_) < 1e-6


def test_duplicated_points_with_reg_covar_stay_finite():
    X = np.repeat(make_data(n_samples=20, n_components=2, seed=1), 50, axis=0)
    gmm = fit_quietly(GaussianMixture(4, random_state=0), da.from_array(X, chunks=300))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gmm, name)))
    assert np.isfinite(gmm.score(X))


@pytest.mark.parametrize("n_features", [5, 40])  # 40: scatters computed in four triangle groups
@pytest.mark.parametrize("separation", [0.5, 3.0, 1e5])
def test_full_scatter_is_exact_near_and_far_from_the_block_centre(separation, n_features):
    """Full scatters use the one-GEMM expanded form only while it keeps ~13 digits.

    A component 1e5 sigma from the block's centre would lose ~10 digits in the
    expanded form; it is recomputed exactly centred. The reference is NumPy's
    two-pass weighted covariance of the same rows.
    """
    from daskgmm.kernels.blocks import centre_block
    from daskgmm.kernels.sums import moment_sums

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(3000, n_features)), rng.normal(size=(3000, n_features)) * 0.01 + separation])
    Xc = X - X.mean(axis=0)
    resp = rng.dirichlet([1.0, 1.0, 1.0], size=len(X))
    resp[3000:] = [0.0, 0.0, 1.0]  # the far, narrow cluster is component 2's alone
    resp[:3000, 2] = 0.0
    resp[:3000] /= resp[:3000].sum(axis=1, keepdims=True)
    mass = resp.sum(axis=0)
    block = centre_block(Xc, shift=np.zeros(n_features))
    stats = moment_sums(block, resp.copy(), None, None, "full", block._workspace).statistics("full", block.shift)
    np.testing.assert_allclose(stats.resp_sum, mass, rtol=1e-13)
    for k in range(3):
        mean = resp[:, k] @ Xc / mass[k]
        diff = Xc - mean
        expected = (diff * resp[:, k, None]).T @ diff
        np.testing.assert_allclose(stats.means[k], mean, rtol=1e-12, atol=1e-14)
        # the expanded form may cost up to 3 digits more than the two-pass reference (~1e-11 of
        # the diagonal, measured 4e-12 at separation 0.5); the far case, expanded, would lose 10
        np.testing.assert_allclose(stats.scatter[k], expected, rtol=1e-10, atol=2e-11 * np.abs(expected).max())


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
@pytest.mark.parametrize("drift", [0.0, 1e5])
def test_chunk_moments_stay_exact_when_rows_drift_along_the_chunk(covariance_type, drift):
    """Blocks share the chunk's first block's centre unless that would cost digits.

    With rows sorted so the chunk's second half sits 1e5 sigma away, the shared
    centre would lose ~10 digits: tied/diag/spherical chunks are then redone with
    per-block centres, full components computed exactly centred per block.
    The reference is a two-pass weighted computation in float64.
    """
    from daskgmm.kernels.chunk import NearestCentreAssigner, chunk_statistics

    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3)) + drift])
    centres = np.array([[0.0, 0, 0], [drift, drift, drift]]) + [[0.5, 0, 0], [0, 0, 0]]
    stats = chunk_statistics(X, None, NearestCentreAssigner(centres), covariance_type, 2, block_rows=1000)
    labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    scatters = []
    for k in range(2):
        rows = X[labels == k]
        mean = rows.mean(axis=0)
        np.testing.assert_allclose(stats.means[k], mean, rtol=1e-12)
        scatters.append((rows - mean).T @ (rows - mean))
    expected = {"full": np.array(scatters), "tied": scatters[0] + scatters[1],
                "diag": np.array([np.diag(s) for s in scatters]),
                "spherical": np.array([np.trace(s) for s in scatters])}[covariance_type]
    np.testing.assert_allclose(stats.scatter, expected, rtol=1e-9)


@pytest.mark.parametrize("n_features", [5, 16, 40, 64])
def test_grouped_full_whitening_equals_the_direct_mahalanobis_distance(n_features):
    """Whitening in column groups (D >= 16) skips only zeros of the triangular factors."""
    from daskgmm.kernels.densities import squared_mahalanobis

    rng = np.random.default_rng(n_features)
    K = 3
    X = rng.normal(size=(500, n_features))
    means = rng.normal(size=(K, n_features))
    factors = rng.normal(size=(K, n_features, n_features))
    covariances = factors @ factors.transpose(0, 2, 1) / n_features + np.eye(n_features)
    precisions = np.linalg.inv(covariances)
    precisions_cholesky = np.linalg.cholesky(precisions[:, ::-1, ::-1])[:, ::-1, ::-1]  # upper, P = U U^T
    np.testing.assert_allclose(precisions_cholesky @ precisions_cholesky.transpose(0, 2, 1), precisions,
                               rtol=1e-10, atol=1e-12)
    assert np.allclose(np.tril(precisions_cholesky[0], -1), 0)
    got = squared_mahalanobis(X, means, precisions_cholesky, "full").copy()
    diff = X[:, None, :] - means[None]
    expected = np.einsum("nkd,kde,nke->nk", diff, precisions, diff)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_whitening_with_lower_triangular_or_dense_factors_is_still_exact():
    """Any U with U U^T = P gives the same distance: factors that are not upper triangular use one GEMM."""
    from daskgmm.kernels.densities import squared_mahalanobis

    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 40))
    means = rng.normal(size=(2, 40))
    factors = rng.normal(size=(2, 40, 40)) / 40 + np.eye(40)  # dense, P = F F^T
    lower = np.linalg.cholesky(factors @ factors.transpose(0, 2, 1))
    diff = X[:, None, :] - means[None]
    for chol in (factors, lower):
        precisions = chol @ chol.transpose(0, 2, 1)
        expected = np.einsum("nkd,kde,nke->nk", diff, precisions, diff)
        np.testing.assert_allclose(squared_mahalanobis(X, means, chol, "full"), expected, rtol=1e-10)
