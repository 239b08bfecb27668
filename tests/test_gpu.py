"""device="cuda": the CuPy kernels against scikit-learn and the CPU kernels.

The GPU tests need CuPy and a CUDA GPU and are skipped (with that reason) on
machines without them, CI included; they were run on an H100 (see the README).
Where there is no GPU, asking for one must fail clearly and change nothing.
"""

import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, assert_same_model, fit_quietly, make_data, relative_deviation, starting_point
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import GaussianMixture

K = 4


def gpu_available():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device
        return False


HAVE_GPU = gpu_available()
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs CuPy and a CUDA GPU")


@pytest.mark.skipif(HAVE_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_clearly_and_changes_nothing(X):
    gmm = GaussianMixture(2, device="cuda")
    with pytest.raises(ValueError, match="device='cuda'.*device='cpu'"):
        gmm.fit(X)
    assert not hasattr(gmm, "means_")
    fitted = GaussianMixture(2, random_state=0).fit(X)
    fitted.set_params(device="cuda")
    with pytest.raises(ValueError, match="device='cuda'"):
        fitted.predict(X)


@needs_gpu
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gpu_float64_parity_with_scikit_learn(X, covariance_type):
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=1e-6, max_iter=300, **start)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), X)
    ours = fit_quietly(GaussianMixture(K, chunk_rows=317, device="cuda", **settings), X)
    assert_same_model(ours, reference, 1e-9)
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    assert relative_deviation(ours.predict_proba(X), reference.predict_proba(X)) < 1e-9
    assert relative_deviation(ours.score_samples(X), reference.score_samples(X)) < 1e-9


@needs_gpu
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gpu_matches_cpu_on_float32_far_from_the_origin_with_weights(covariance_type):
    X32 = (make_data(n_samples=3000, n_components=K, seed=4) + 1e3).astype(np.float32)
    weights = np.random.default_rng(0).uniform(0, 2, size=len(X32))
    start = starting_point(X32.astype(np.float64), K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=0, max_iter=15, **start)
    cpu = fit_quietly(GaussianMixture(K, **settings), da.from_array(X32, chunks=900), sample_weight=weights)
    gpu = fit_quietly(GaussianMixture(K, device="cuda", **settings), da.from_array(X32, chunks=900),
                      sample_weight=weights)
    assert gpu.covariances_.dtype == np.float32
    assert relative_deviation(gpu.covariances_, cpu.covariances_) < 1e-4
    assert relative_deviation(gpu.means_, cpu.means_) < 1e-6
    np.testing.assert_allclose(gpu.lower_bounds_, cpu.lower_bounds_, rtol=1e-5)


@needs_gpu
def test_gpu_reports_non_finite_rows_like_the_cpu(X):
    bad = X.copy()
    bad[1234, 1] = np.nan  # in a Dask array: found by the chunk kernels, not by up-front validation
    gmm = GaussianMixture(K, device="cuda", **starting_point(X, K, "full"))
    with pytest.raises(ValueError, match=r"NaN or infinity in 1 of 2000 rows \(the first at row 1234\)"):
        gmm.fit(da.from_array(bad, chunks=500))
    assert not hasattr(gmm, "means_")


@needs_gpu
def test_gpu_reseeding_and_a_process_cluster_give_the_cpu_fit(X):
    from distributed import Client, LocalCluster

    settings = dict(covariance_type="full", random_state=0, max_iter=30, reseed_collapsed=True)
    cpu = fit_quietly(GaussianMixture(6, **settings), X)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        gpu = fit_quietly(GaussianMixture(6, device="cuda", chunk_rows=500, **settings), X)
    assert gpu.n_iter_ == cpu.n_iter_
    assert relative_deviation(gpu.means_, cpu.means_) < 1e-9
    assert relative_deviation(gpu.covariances_, cpu.covariances_) < 1e-9


class _NumPyAsCuPy:
    """The part of CuPy's API that daskgmm.kernels.gpu calls, answered by NumPy: runs the GPU
    module's math (not its device transfers) on machines without a GPU, CI included."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def asnumpy(array):
        return np.asarray(array)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gpu_math_keeps_far_and_collapsed_components_exact(monkeypatch, covariance_type):
    """The GPU kernels' arithmetic, run through NumPy, on float32 data with a cluster 10^4
    standard deviations away and a run of duplicated rows: the CPU kernel's statistics."""
    from daskgmm.kernels import gpu
    from daskgmm.kernels.chunk import GaussianAssigner, chunk_predict_proba, chunk_score_samples, chunk_statistics
    from daskgmm.model.params import GaussianParams, compute_precision_cholesky

    monkeypatch.setattr(gpu, "cupy_or_error", lambda: _NumPyAsCuPy())
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + 1e4,
                        np.tile([[3.0, -2.0]], (300, 1))]).astype(np.float32)
    means = np.array([[0.0, 0.0], [1e4, 1e4], [3.0, -2.0]])
    covariances = {"full": np.stack([np.eye(2), np.eye(2), 1e-6 * np.eye(2)]), "tied": np.eye(2),
                   "diag": np.array([[1.0, 1.0], [1.0, 1.0], [1e-6, 1e-6]]),
                   "spherical": np.array([1.0, 1.0, 1e-6])}[covariance_type]
    params = GaussianParams(covariance_type, np.array([0.4, 0.4, 0.2]), means, covariances,
                            compute_precision_cholesky(covariances, covariance_type))
    ours = gpu.chunk_statistics(X, None, GaussianAssigner(params))
    cpu = chunk_statistics(X.astype(np.float64), None, GaussianAssigner(params), covariance_type, 3)
    np.testing.assert_allclose(ours.resp_sum, cpu.resp_sum, rtol=1e-6)
    np.testing.assert_allclose(ours.means, cpu.means, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(ours.scatter, cpu.scatter, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.log_likelihood, cpu.log_likelihood, rtol=1e-6)
    for output, cpu_kernel in (("proba", chunk_predict_proba), ("log_norm", chunk_score_samples)):
        got = gpu.per_row(X, params, output)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, cpu_kernel(X.astype(np.float64), params), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_device_cuda_is_wired_through_the_engine_and_the_estimator(monkeypatch, X, covariance_type):
    """GaussianMixture(device="cuda") end to end with NumPy standing in for CuPy: the engine builds
    its passes from gpu.chunk_statistics (restarts together too), the per-row outputs from
    gpu.per_row; the fit is the CPU fit."""
    from daskgmm.kernels import gpu

    monkeypatch.setattr(gpu, "cupy_or_error", lambda: _NumPyAsCuPy())
    settings = dict(covariance_type=covariance_type, random_state=0, n_init=2, max_iter=20)
    cpu = fit_quietly(GaussianMixture(K, **settings), X)
    on_gpu = fit_quietly(GaussianMixture(K, device="cuda", **settings), da.from_array(X, chunks=700))
    assert on_gpu.n_iter_ == cpu.n_iter_
    assert relative_deviation(on_gpu.covariances_, cpu.covariances_) < 1e-9
    np.testing.assert_array_equal(on_gpu.predict(X), cpu.predict(X))
    assert relative_deviation(on_gpu.predict_proba(X), cpu.predict_proba(X)) < 1e-9
    assert relative_deviation(on_gpu.score_samples(X), cpu.score_samples(X)) < 1e-9


@needs_gpu
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gpu_bayesian_mixture_parity_with_scikit_learn(covariance_type):
    from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture

    from daskgmm import BayesianGaussianMixture

    X = make_data(n_samples=1500, n_components=4, offset=50.0, seed=3)
    settings = dict(n_components=6, covariance_type=covariance_type, max_iter=40, random_state=0)
    reference = fit_quietly(SklearnBayesianGaussianMixture(**settings), X)
    ours = fit_quietly(BayesianGaussianMixture(**settings, chunk_rows=400, device="cuda"), X)
    for name in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(reference, name), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.lower_bound_, np.ravel(reference.lower_bound_)[0], rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-9)


@needs_gpu
def test_gpu_fewer_passes_and_online_em_match_the_cpu():
    X = make_data(n_samples=30_000, n_components=4, offset=20.0, seed=5)
    for mode in (dict(algorithm="incremental", waves=3), dict(algorithm="coarse-to-fine", init_sample_size=5000)):
        settings = dict(n_components=4, random_state=0, chunk_rows=3000, max_iter=20, tol=0, **mode)
        cpu = fit_quietly(GaussianMixture(**settings), X)
        gpu = fit_quietly(GaussianMixture(**settings, device="cuda"), X)
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-9, atol=1e-9, err_msg=name)
    chunks = da.from_array(X, chunks=6000)
    cpu = GaussianMixture(4, random_state=0, batch_size=2000).partial_fit(chunks)
    gpu = GaussianMixture(4, random_state=0, batch_size=2000, device="cuda").partial_fit(chunks)
    assert gpu.n_steps_ == cpu.n_steps_ == 15
    np.testing.assert_allclose(gpu.means_, cpu.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gpu.covariances_, cpu.covariances_, rtol=1e-9, atol=1e-9)
