"""Initialisation on data far larger than the sample it inspects, in a bounded number of passes."""

import dask.array as da
import numpy as np
import pytest
from conftest import counting_reads, fit_quietly
from scipy.optimize import linear_sum_assignment

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.em.starts import draw_sample
from daskgmm.io.inputs import RowData

K, D = 5, 4
N = 60_000
SAMPLE = 500  # the init sees under 1% of the rows


@pytest.fixture(scope="module")
def mixture():
    weights, means, covariances = random_mixture(K, D, separation=8.0, random_state=2)
    X = make_mixture(N, weights, means, covariances, chunk_rows=6000, random_state=3).compute()
    return X, weights, means


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_on_data_far_larger_than_its_sample(mixture, init_params):
    X, weights, means = mixture
    dx, reads = counting_reads(X, 6000)
    start = GaussianMixture(
        K, init_params=init_params, init_sample_size=SAMPLE, max_iter=0, random_state=0, persist=False
    ).fit(dx)
    # initialisation alone: at most two reads of each chunk (sample gather + one pass)
    assert max(np.bincount(reads)) <= 2
    assert np.all(np.isfinite(start.means_)) and start.weights_.shape == (K,)
    gmm = fit_quietly(
        GaussianMixture(K, init_params=init_params, init_sample_size=SAMPLE, n_init=3, random_state=0, max_iter=300),
        dx,
    )
    # EM never decreases the likelihood, whatever the start
    assert np.all(np.diff(gmm.lower_bounds_) > -1e-9)
    if init_params in ("kmeans", "k-means++"):
        # the sample-based k-means starts find the true components; the random ones
        # may need more restarts to escape local optima, as in scikit-learn
        cost = np.linalg.norm(means[:, None] - gmm.means_[None], axis=2)
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 0.1
        np.testing.assert_allclose(gmm.weights_[cols], weights, atol=0.01)


def test_sample_is_bounded_uniform_and_distinct(mixture):
    X = mixture[0]
    data = RowData(da.from_array(X, chunks=7000))
    sample, weights = draw_sample(data, 1000, np.random.RandomState(0))
    assert sample.shape == (1000, D) and weights is None
    assert len(np.unique(sample, axis=0)) == 1000
    # uniform: the sample mean is within a few standard errors of the data mean
    stderr = X.std(0) / np.sqrt(1000)
    assert np.all(np.abs(sample.mean(0) - X.mean(0)) < 5 * stderr)
    small, _ = draw_sample(data, N, np.random.RandomState(0))
    np.testing.assert_array_equal(small, X)  # no more rows than the sample size: all rows, in order


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_random_init_does_not_depend_on_chunking(mixture, covariance_type):
    X = mixture[0]
    starts = [
        GaussianMixture(K, covariance_type=covariance_type, init_params="random", max_iter=0, random_state=4)
        .fit(da.from_array(X, chunks=(rows, D)))
        for rows in (N, 4096, 7777)
    ]
    for other in starts[1:]:
        np.testing.assert_allclose(other.means_, starts[0].means_, rtol=1e-10)
        np.testing.assert_allclose(other.covariances_, starts[0].covariances_, rtol=1e-10)
    # random responsibilities: weights near 1/K, means near the global mean
    np.testing.assert_allclose(starts[0].weights_, 1 / K, atol=0.01)
    np.testing.assert_allclose(starts[0].means_, np.broadcast_to(X.mean(0), (K, D)), atol=0.1)


def test_same_random_state_same_result_across_runs(mixture):
    X = mixture[0]
    dx = da.from_array(X, chunks=5000)
    runs = [fit_quietly(GaussianMixture(K, init_sample_size=SAMPLE, random_state=11, max_iter=20), dx) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].means_, runs[1].means_)
    np.testing.assert_array_equal(runs[0].covariances_, runs[1].covariances_)


@pytest.mark.parametrize("init_params, small_data, passes", [
    ("kmeans", True, 2),       # all rows are the sample: read once for every restart, one shared assignment
    ("kmeans", False, 5 + 1),  # a sample per restart (sampled chunks only), one shared assignment
    ("random", True, 1),       # one shared pass of row-keyed random responsibilities
    ("random_from_data", True, 1),
])
def test_restart_starts_share_their_passes_and_equal_one_by_one_starts(mixture, init_params, small_data, passes):
    from daskgmm.em.starts import initial_parameters

    X = mixture[0][:3000] if small_data else mixture[0]
    dx, reads = counting_reads(X, 1000 if small_data else 6000)
    settings = dict(n_components=K, covariance_type="full", init_params=init_params, reg_covar=1e-6,
                    sample_size=5000 if small_data else SAMPLE)
    together = initial_parameters(RowData(dx, None, False), count=5, random_state=np.random.RandomState(7),
                                  **settings)
    chunks = dx.numblocks[0]
    if small_data:
        assert np.bincount(reads, minlength=chunks).tolist() == [passes] * chunks
    else:  # sample draws read only the chunks holding sampled rows
        assert max(np.bincount(reads)) <= passes
    rng = np.random.RandomState(7)
    one_by_one = [initial_parameters(RowData(dx, None, False), random_state=rng, **settings)[0] for _ in range(5)]
    for a, b in zip(together, one_by_one):
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.precisions_cholesky, b.precisions_cholesky)
