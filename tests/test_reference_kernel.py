"""The fast chunk kernel held to the obviously correct one (daskgmm.kernels.reference), on random shapes."""

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskgmm.kernels import chunk as kernels
from daskgmm.kernels import reference
from daskgmm.kernels.chunk import GaussianAssigner, chunk_predict, chunk_predict_proba, chunk_score_samples, chunk_statistics
from daskgmm.model.params import GaussianParams, compute_precision_cholesky


def random_model(rng, covariance_type, n_components, n_features, centres, spread):
    covariances = {
        "full": np.stack([(a @ a.T / n_features + 0.3 * np.eye(n_features)) * spread**2
                          for a in rng.normal(size=(n_components, n_features, n_features))]),
        "tied": np.eye(n_features) * spread**2,
        "diag": rng.uniform(0.3, 2.0, size=(n_components, n_features)) * spread**2,
        "spherical": rng.uniform(0.3, 2.0, size=n_components) * spread**2,
    }[covariance_type]
    means = centres + rng.normal(scale=0.3 * spread, size=centres.shape)
    return GaussianParams(covariance_type, rng.dirichlet(np.full(n_components, 2.0)), means, covariances,
                          compute_precision_cholesky(covariances, covariance_type))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    shape=st.tuples(st.integers(1, 1500), st.integers(1, 10), st.integers(1, 5)),
    dtype=st.sampled_from([np.float64, np.float32]),
    weighted=st.booleans(),
    offset=st.sampled_from([0.0, 1e5]),
    drifting=st.booleans(),
    block_rows=st.sampled_from([64, 500, None]),
    separation=st.sampled_from([3.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_fast_kernel_equals_the_reference(covariance_type, shape, dtype, weighted, offset, drifting, block_rows,
                                          separation, seed):
    n, n_features, n_components = shape
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(n_components, n_features)) + offset
    labels = rng.integers(n_components, size=n)
    X = centres[labels] + rng.normal(size=(n, n_features))
    if drifting:  # rows sorted along the chunk: later blocks far from the first block's centre
        X = X[np.argsort(X[:, 0])]
    X = X.astype(dtype)
    params = random_model(rng, covariance_type, n_components, n_features, centres, 1.0)
    weights = rng.uniform(0, 3, size=n) if weighted else None

    assert_statistics_equal_the_reference(X, weights, params, block_rows, offset)
    tolerance = 1e-9 if dtype == np.float64 else 2e-5
    labels_exact, proba_exact, log_norm_exact = reference.per_row(X, params)
    np.testing.assert_allclose(chunk_score_samples(X, params), log_norm_exact, rtol=tolerance,
                               atol=tolerance * 10)
    np.testing.assert_allclose(chunk_predict_proba(X, params), proba_exact, atol=tolerance * 10)
    decided = np.sort(proba_exact, axis=1)[:, -1] - (np.sort(proba_exact, axis=1)[:, -2]
                                                     if n_components > 1 else 0) > 1e-3
    np.testing.assert_array_equal(chunk_predict(X, params)[decided], labels_exact[decided])


@pytest.mark.parametrize("quadratic", [False, True], ids=["whitening", "quadratic columns"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["offset 1e5", "far components", "one collapsed", "weighted"])
def test_both_full_forms_equal_the_reference(monkeypatch, quadratic, dtype, case):
    """Full statistics by whitening and by the quadratic columns (each forced, whatever the
    model's width) against the reference: far components and collapsed ones take the exact paths."""
    monkeypatch.setattr(kernels, "uses_quadratic_form", lambda *args: quadratic)
    rng = np.random.default_rng(7)
    n_components, n_features = 4, 5
    centres = rng.normal(scale=1e3 if case == "far components" else 3.0, size=(n_components, n_features))
    offset = 1e5 if case == "offset 1e5" else 0.0
    centres += offset
    X = centres[rng.integers(n_components, size=3000)] + rng.normal(size=(3000, n_features))
    params = random_model(rng, "full", n_components, n_features, centres, 1.0)
    if case == "one collapsed":  # a component 1e-4 wide on a run of duplicated rows
        X[:300] = X[0]
        covariances = params.covariances.copy()
        covariances[0] = np.eye(n_features) * 1e-8
        params = GaussianParams("full", params.weights, np.vstack([X[:1], params.means[1:]]), covariances,
                                compute_precision_cholesky(covariances, "full"))
    weights = rng.uniform(0, 3, size=len(X)) if case == "weighted" else None
    assert_statistics_equal_the_reference(X.astype(dtype), weights, params, 500, offset)


def assert_statistics_equal_the_reference(X, weights, params, block_rows, offset):
    covariance_type, n_components, dtype = params.covariance_type, params.n_components, X.dtype
    ours = chunk_statistics(X, weights, GaussianAssigner(params), covariance_type, n_components,
                            block_rows=block_rows)
    exact = reference.statistics(X, params, weights)
    tolerance = 1e-9 if dtype == np.float64 else 2e-5
    total = exact.weight_sum
    np.testing.assert_allclose(ours.weight_sum, total, rtol=1e-12)
    np.testing.assert_allclose(ours.log_likelihood, exact.log_likelihood, rtol=tolerance,
                               atol=tolerance * total)
    np.testing.assert_allclose(ours.resp_sum, exact.resp_sum, rtol=tolerance, atol=tolerance * total)
    present = exact.resp_sum > 1e-6 * total  # components with weight enough to have a mean
    sd = 1.0
    np.testing.assert_allclose(ours.means[present], exact.means[present], rtol=0,
                               atol=tolerance * sd * 10 + 4 * np.finfo(dtype).eps * abs(offset))
    if covariance_type in ("full", "diag", "spherical"):
        axes = tuple(range(1, exact.scatter.ndim))
        scale = np.max(np.abs(exact.scatter), axis=axes, keepdims=True) if axes else np.abs(exact.scatter)
        error = np.abs(ours.scatter - exact.scatter)[present]
        assert np.all(error <= 10 * tolerance * (scale[present] + total * 1e-12)), error.max()
    else:
        assert np.all(np.abs(ours.scatter - exact.scatter) <= 10 * tolerance * np.abs(exact.scatter).max())
