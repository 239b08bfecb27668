"""Faults and determinism: a worker killed mid-fit changes nothing; same seed, same model."""

import os
import signal
import time
import warnings

import dask
import numpy as np
import pytest
import zarr
from conftest import FITTED_ARRAYS, make_data
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

from daskgmm import GaussianMixture, open_array

SETTINGS = dict(n_components=4, random_state=0, tol=0, max_iter=12)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    X = make_data(n_samples=24_000, n_features=4, n_components=4, seed=9)
    path = tmp_path_factory.mktemp("faults") / "x.zarr"
    zarr.create_array(path, shape=X.shape, chunks=(2000, 4), dtype="f8")[:] = X
    return path, X


def slowly(array, seconds=0.03):
    def read(block):
        time.sleep(seconds)
        return block

    return array.map_blocks(read, dtype=array.dtype)


def fit(X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**SETTINGS, **kwargs).fit(X)


def assert_identical(a, b):
    for name in FITTED_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_


@pytest.mark.parametrize("persist, algorithm", [(False, "batch"), (True, "batch"), (False, "incremental"),
                                                (False, "coarse-to-fine")])
def test_a_worker_killed_mid_fit_changes_nothing(store, persist, algorithm):
    path, X = store
    mode = dict(algorithm=algorithm, waves=3, init_sample_size=4000)  # a sample smaller than the data
    reference = fit(open_array(path, chunk_bytes=2000 * 4 * 8), persist=False, **mode)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        victim = next(iter(client.run(os.getpid).items()))

        class KillAfterThirdPass:  # mid-fit whatever the machine's speed (a timer raced fast fits)
            passes = 0

            def pass_end(self, seconds):
                self.passes += 1
                if self.passes == 3:
                    os.kill(victim[1], signal.SIGKILL)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            survived = GaussianMixture(**SETTINGS, persist=persist, **mode).fit(
                slowly(open_array(path, chunk_bytes=2000 * 4 * 8)), progress=KillAfterThirdPass())
        client.wait_for_workers(2, timeout=60)
        assert victim[1] not in client.run(os.getpid).values(), "the worker was not killed during the fit"
    assert_identical(survived, reference)


@pytest.mark.parametrize("estimator", ["GaussianMixture", "BayesianGaussianMixture"])
def test_a_worker_killed_during_partial_fit_changes_nothing(store, tmp_path, estimator):
    """Online EM's steps over a chunk are one pure task: the worker running chunk 5's dies in the
    middle of it, another reruns it, and the model is the one without a failure."""
    from worker_probe import die_once_at

    import daskgmm

    path, X = store
    model = getattr(daskgmm, estimator)
    source = open_array(path, chunk_bytes=2000 * 4 * 8)
    reference = model(n_components=4, random_state=0).partial_fit(source)
    flag = tmp_path / "died"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        survived = model(n_components=4, random_state=0).partial_fit(
            source.map_blocks(die_once_at, str(flag), 5, dtype=source.dtype))
    assert flag.exists(), "no worker died"
    assert survived.n_steps_ == reference.n_steps_
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(survived, name), getattr(reference, name), err_msg=name)


def test_same_seed_same_model_on_every_scheduler(store):
    path, X = store
    source = open_array(path, chunk_bytes=3000 * 4 * 8)
    threaded = fit(source)
    with dask.config.set(scheduler="synchronous"):
        synchronous = fit(source)
    assert_identical(synchronous, threaded)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster):
            assert_identical(fit(source), threaded)
    assert_identical(fit(source), threaded)  # and again, run after run


def test_chunks_no_worker_can_hold_are_refused_before_any_work():
    """1.2 GiB chunks on 700 MiB workers: one line at the start that says what worker memory it
    needs and what chunk size would do, not a KilledWorker minutes later."""
    import dask.array as da

    from daskgmm.runtime.resources import WorkerMemoryError

    with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="700MiB", processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        X = da.random.random((40_000_000, 8), chunks=(20_000_000, 8))  # 1.2 GiB chunks
        gmm = GaussianMixture(2, covariance_type="diag", max_iter=2, persist=False)
        with pytest.raises(WorkerMemoryError) as caught:
            gmm.fit(X)
    message = str(caught.value)
    assert "chunks of 1,221 MiB need about 2,713 MiB per worker with 1 thread(s)" in message
    assert "272 MiB for the worker itself and the compiled diag/spherical kernels" in message
    assert "a worker has 700 MiB. Use chunks of at most 196 MiB" in message
    assert not hasattr(gmm, "means_")  # no half-fitted state


def test_workers_that_run_out_of_memory_are_explained_in_one_message():
    """A chunk step that needs more memory than the worker has: the nanny kills the worker;
    instead of Dask's KilledWorker the user reads what happened, the limit, the chunk size and
    what to change."""
    import dask.array as da
    from worker_probe import hog_memory

    from daskgmm.runtime.resources import WorkerMemoryError

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="700MiB", processes=True,
                         dashboard_address=None) as cluster, Client(cluster):
        X = da.random.random((400_000, 8), chunks=(100_000, 8)).map_blocks(hog_memory)
        gmm = GaussianMixture(2, covariance_type="diag", max_iter=2, persist=False)
        with pytest.raises(WorkerMemoryError) as caught:
            gmm.fit(X)
    message = str(caught.value)
    assert "ran out of memory (700 MiB per worker)" in message and "chunks of 6 MiB" in message
    assert "smaller chunks (chunk_rows=, --chunk-bytes)" in message
    assert not hasattr(gmm, "means_")  # no half-fitted state
