"""Fits that need fewer full passes: algorithm="coarse-to-fine" and algorithm="incremental"."""

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import counting_reads, fit_quietly, interrupting, make_data, run

from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture


@pytest.fixture(scope="module")
def overlapping():
    """Overlapping components: batch EM needs dozens of iterations on them."""
    weights, means, covariances = random_mixture(6, 4, separation=1.5, random_state=3)
    return make_mixture(24_000, weights, means, covariances, chunk_rows=24_000).compute()


def test_incremental_bound_never_decreases_and_ends_at_a_fixed_point_of_batch_em(overlapping):
    settings = dict(n_components=6, random_state=0, tol=1e-6, max_iter=500)
    model = fit_quietly(GaussianMixture(**settings, algorithm="incremental", waves=4),
                        da.from_array(overlapping, chunks=3000))
    assert model.converged_
    bounds = np.asarray(model.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    # the free energy is a lower bound of the log-likelihood, equal to it at the fixed point
    assert model.lower_bound_ <= model.score(overlapping) + 1e-9
    assert model.score(overlapping) - model.lower_bound_ < 1e-5
    # one batch EM iteration from the result moves nothing that matters
    step = GaussianMixture(**{**settings, "max_iter": 1}, warm_start=True)
    step.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    before = model.score(overlapping)
    fit_quietly(step, overlapping)
    assert abs(step.score(overlapping) - before) < 1e-6
    np.testing.assert_allclose(step.means_, model.means_, atol=1e-3)


def test_incremental_results_do_not_depend_on_the_scheduler(overlapping):
    from distributed import Client, LocalCluster

    settings = dict(n_components=6, random_state=0, max_iter=20, tol=0, algorithm="incremental", waves=3)
    X = da.from_array(overlapping, chunks=4000)
    threads = fit_quietly(GaussianMixture(**settings), X)
    with dask.config.set(scheduler="synchronous"):
        synchronous = fit_quietly(GaussianMixture(**settings), X)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        distributed = fit_quietly(GaussianMixture(**settings), X)
    for other in (synchronous, distributed):
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(other, name), getattr(threads, name), rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(other.lower_bounds_, threads.lower_bounds_, rtol=1e-12)


def test_incremental_weights_of_any_scale_and_float32(overlapping):
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 4, size=len(overlapping)).astype(float)
    settings = dict(n_components=6, random_state=0, max_iter=15, tol=0, algorithm="incremental", waves=4,
                    chunk_rows=3000)
    fits = [fit_quietly(GaussianMixture(**settings), overlapping, sample_weight=weights * scale)
            for scale in (1.0, 1e-5)]
    np.testing.assert_allclose(fits[1].means_, fits[0].means_, rtol=1e-9)
    np.testing.assert_allclose(fits[1].lower_bounds_, fits[0].lower_bounds_, rtol=1e-9)
    single = fit_quietly(GaussianMixture(**settings), overlapping.astype(np.float32), sample_weight=weights)
    assert single.means_.dtype == np.float32
    np.testing.assert_allclose(single.means_, fits[0].means_, atol=1e-3)


def test_coarse_to_fine_needs_a_few_full_reads_for_the_same_model():
    X = make_data(n_samples=60_000, n_features=3, n_components=6, seed=2)  # batch EM: 20 iterations
    settings = dict(n_components=6, random_state=0, init_sample_size=10_000, persist=False)
    dx, reads = counting_reads(X, 6000)
    batch = fit_quietly(GaussianMixture(**settings), dx)
    batch_reads = len(reads)
    reads.clear()
    coarse = fit_quietly(GaussianMixture(**settings, algorithm="coarse-to-fine"), dx)
    assert coarse.converged_ and coarse.n_iter_ * 4 <= batch.n_iter_, (coarse.n_iter_, batch.n_iter_)
    # reads: the sample (every chunk holds sampled rows), the k-means pass, then one per iteration
    chunks = dx.numblocks[0]
    assert len(reads) == (2 + coarse.n_iter_) * chunks and batch_reads == (2 + batch.n_iter_) * chunks
    assert abs(coarse.score(X) - batch.score(X)) < 1e-3


def test_coarse_to_fine_from_random_starts_and_for_the_bayesian_mixture(overlapping):
    random_start = fit_quietly(GaussianMixture(6, init_params="random", random_state=0, init_sample_size=3000,
                                               algorithm="coarse-to-fine"), overlapping)
    assert random_start.converged_
    bayesian = fit_quietly(BayesianGaussianMixture(n_components=8, random_state=0, init_sample_size=3000,
                                                   algorithm="coarse-to-fine", tol_per_row=True, max_iter=300),
                           da.from_array(overlapping, chunks=3000))
    plain = fit_quietly(BayesianGaussianMixture(n_components=8, random_state=0, tol_per_row=True, max_iter=300),
                        da.from_array(overlapping, chunks=3000))
    assert bayesian.converged_ and bayesian.n_iter_ < plain.n_iter_
    assert bayesian.lower_bound_ >= plain.lower_bound_ - 1e-3 * len(overlapping)


def test_command_line_algorithms(tmp_path):
    import zarr


    X = make_data(n_samples=60_000, n_features=3, n_components=6, seed=2)
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(6000, 3), dtype="f8")[:] = X
    coarse = run("fit", tmp_path / "x.zarr", "-k", 6, "--algorithm", "coarse-to-fine", "--random-state", 0)
    assert "EM (coarse-to-fine): until" in coarse.stderr and "converged: True" in coarse.stdout
    reference = fit_quietly(GaussianMixture(6, random_state=0, algorithm="coarse-to-fine"), X)
    assert f"iterations: {reference.n_iter_}," in coarse.stdout
    online = run("fit", tmp_path / "x.zarr", "-k", 6, "--algorithm", "online", "--random-state", 0,
                 "--out", tmp_path / "model")
    # the command reads two storage chunks per task here (its data line says so)
    assert "in 5 chunks" in online.stderr
    assert "online EM: one pass over the data (5 chunks)" in online.stderr
    reference = GaussianMixture(6, random_state=0).partial_fit(da.from_array(X, chunks=12_000))
    # 256-row steps (the "auto" minimum): 47 per 12,000-row chunk
    assert reference.n_steps_ == 5 * 47 and "online EM: 235 steps in one pass" in online.stdout
    import daskgmm

    np.testing.assert_allclose(daskgmm.load(tmp_path / "model").means_, reference.means_, rtol=1e-10)
    wrong = run("fit", tmp_path / "x.zarr", "--algorithm", "online", "--checkpoint", tmp_path / "ck", check=False)
    assert wrong.returncode == 2 and "--algorithm online makes one pass" in wrong.stderr


def test_incremental_checkpoint_resumes_exactly(overlapping, tmp_path):

    settings = dict(n_components=6, random_state=0, max_iter=12, tol=0, algorithm="incremental", waves=3,
                    n_init=2, persist=False)
    X = overlapping[:12_000]  # 24 chunks of 500
    whole = fit_quietly(GaussianMixture(**settings), da.from_array(X, chunks=500))
    resumed = GaussianMixture(**settings, checkpoint=tmp_path / "ck")
    with pytest.raises(KeyboardInterrupt):  # in the middle of the fifth pass, after the init's two
        fit_quietly(resumed, interrupting(X, 24 * 6 + 10))
    fit_quietly(resumed, da.from_array(X, chunks=500))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    assert resumed.lower_bounds_ == whole.lower_bounds_
