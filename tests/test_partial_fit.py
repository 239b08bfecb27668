"""partial_fit: online EM (Cappé & Moulines) over batches and over a Dask array's chunks."""

import dask.array as da
import numpy as np
import pytest
from conftest import counting_reads, fit_quietly

from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture


@pytest.fixture(scope="module")
def mixture():
    weights, means, covariances = random_mixture(5, 4, separation=3.0, random_state=2)
    X = make_mixture(100_000, weights, means, covariances, chunk_rows=100_000).compute()
    return X[np.random.default_rng(0).permutation(len(X))]


@pytest.mark.parametrize("estimator", [GaussianMixture, BayesianGaussianMixture])
def test_a_step_of_size_one_is_one_em_step(mixture, estimator):
    X = mixture[:20_000]
    stepped = fit_quietly(estimator(n_components=5, random_state=0, max_iter=3), X)
    reference = fit_quietly(estimator(n_components=5, random_state=0, max_iter=3), X)
    stepped.set_params(learning_decay=0, batch_size=None).partial_fit(X)
    fit_quietly(reference.set_params(warm_start=True, max_iter=1), X)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(stepped, name), getattr(reference, name), rtol=1e-10, atol=1e-12)
    assert stepped.n_steps_ == 1


def test_one_epoch_over_the_chunks_is_close_to_batch_em_and_reads_each_chunk_once(mixture):
    batch = fit_quietly(GaussianMixture(5, random_state=0), mixture)
    dx, reads = counting_reads(mixture, 5000)
    online = GaussianMixture(5, random_state=0).partial_fit(dx)
    # batch_size="auto": steps of max(256, 100_000 / 1000) rows, so 19 full steps per 5000-row chunk
    # and its last 136 rows (more than half a step) as a 20th
    assert online.n_steps_ == 20 * dx.numblocks[0] and online.n_iter_ == online.n_steps_ and not online.converged_
    # not worse than batch EM by more than 0.01 per row (here better: batch EM's k-means start
    # leads it to a poorer optimum)
    assert online.score(mixture) > batch.score(mixture) - 0.01
    # the first chunk also initialises (its sample and its k-means pass), every other is read once
    counts = np.bincount(reads, minlength=dx.numblocks[0])
    assert counts[0] == 3 and set(counts[1:]) == {1}
    # and a second epoch goes on from there
    online.partial_fit(dx)
    assert online.n_steps_ == 2 * 20 * dx.numblocks[0]
    assert online.score(mixture) > batch.score(mixture) - 0.01


def test_batch_size_none_makes_a_step_per_chunk_or_numpy_batch_and_auto_steps_inside_a_batch(mixture):
    dx = da.from_array(mixture[:40_000], chunks=4000)
    assert GaussianMixture(5, random_state=0, batch_size=None).partial_fit(dx).n_steps_ == 10
    assert GaussianMixture(5, random_state=0, batch_size=None).partial_fit(mixture[:40_000]).n_steps_ == 1
    assert GaussianMixture(5, random_state=0, batch_size=1000).partial_fit(mixture[:40_000]).n_steps_ == 40
    # "auto": steps of max(256, n / 1000) rows for a NumPy batch too (40_000 / 256: 156 steps)
    assert GaussianMixture(5, random_state=0).partial_fit(mixture[:40_000]).n_steps_ == 156
    assert GaussianMixture(5, random_state=0).partial_fit(mixture[:300]).n_steps_ == 1


def test_one_epoch_of_numpy_batches_lands_near_batch_em():
    """The user's loop of MiniBatchKMeans.partial_fit: shuffled image pixels (china.jpg), one
    partial_fit per NumPy batch, one epoch. A step per batch ended 0.24 per row below batch EM
    here (0.125 with K=16 on all 273k pixels in 20k batches); "auto" steps inside each batch."""
    from sklearn.datasets import load_sample_image

    pixels = load_sample_image("china.jpg").reshape(-1, 3).astype(np.float64) / 255
    X = pixels[np.random.default_rng(0).permutation(len(pixels))][:100_000]
    batch = fit_quietly(GaussianMixture(8, random_state=0), X)
    online = GaussianMixture(8, random_state=0)
    for start in range(0, len(X), 10_000):
        online.partial_fit(X[start : start + 10_000])
    assert online.n_steps_ == 10 * 39  # 10_000 / 256: 39 steps and a rest of 16 rows, shared out
    assert online.score(X) >= batch.score(X) - 0.01


def test_online_em_follows_a_drifting_mixture():
    rng = np.random.default_rng(1)
    model = GaussianMixture(2, covariance_type="spherical", random_state=0, learning_decay=0.3)
    for t in np.linspace(0, 1, 30):
        centres = np.array([[0.0, 0.0], [6.0, 6.0]]) + np.array([4.0, 0.0]) * t
        batch = np.vstack([c + rng.normal(size=(500, 2)) for c in centres])
        model.partial_fit(batch)
    final = np.array([[4.0, 0.0], [10.0, 6.0]])
    means = model.means_[np.argsort(model.means_[:, 0])]
    np.testing.assert_allclose(means, final, atol=0.5)


def test_partial_fit_does_not_depend_on_the_scheduler(mixture):
    from distributed import Client, LocalCluster

    X = da.from_array(mixture[:40_000], chunks=4000)
    threads = BayesianGaussianMixture(n_components=6, random_state=0).partial_fit(X)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        distributed = BayesianGaussianMixture(n_components=6, random_state=0).partial_fit(X)
    for name in ("weights_", "means_", "covariances_", "mean_precision_"):
        np.testing.assert_allclose(getattr(distributed, name), getattr(threads, name), rtol=1e-10, err_msg=name)


def test_partial_fit_checks_its_batches(mixture):
    model = GaussianMixture(5, random_state=0)
    with pytest.raises(ValueError, match="n_samples >= n_components in the first batch"):
        model.partial_fit(mixture[:3])
    assert not hasattr(model, "means_")
    model.partial_fit(mixture[:1000])
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(mixture[:1000, :3])
    weights = np.ones(1000)
    model.partial_fit(mixture[1000:2000], sample_weight=weights)
    assert model.n_steps_ == 2 * 4  # 1000 rows: steps of 250 (256 a step, and a rest of 232 is more than half)


def test_weights_float32_and_bad_rows_in_partial_fit(mixture):
    X = mixture[:30_000]
    counts = np.random.default_rng(3).integers(1, 4, size=len(X)).astype(float)
    chunks = dict(chunks=5000)
    weighted = GaussianMixture(5, random_state=0).partial_fit(da.from_array(X, **chunks),
                                                               sample_weight=da.from_array(counts, **chunks))
    rescaled = GaussianMixture(5, random_state=0).partial_fit(da.from_array(X, **chunks),
                                                               sample_weight=da.from_array(counts * 1e-4, **chunks))
    np.testing.assert_allclose(rescaled.means_, weighted.means_, rtol=1e-9)  # the weights' scale changes nothing
    single = GaussianMixture(5, random_state=0).partial_fit(da.from_array(X.astype(np.float32), **chunks))
    double = GaussianMixture(5, random_state=0).partial_fit(da.from_array(X, **chunks))
    assert single.means_.dtype == np.float32
    np.testing.assert_allclose(single.means_, double.means_, atol=1e-3)
    broken = X.copy()
    broken[12_345, 2] = np.nan
    model = GaussianMixture(5, random_state=0).partial_fit(X[:5000])
    before = model.means_.copy()
    with pytest.raises(ValueError, match="NaN or infinity .*row 12345"):
        model.partial_fit(da.from_array(broken, **chunks))
    np.testing.assert_array_equal(model.means_, before)  # a failed call changes nothing
