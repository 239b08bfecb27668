"""The same fit whatever the chunking and whichever Dask scheduler runs it."""

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, FITTED_ARRAYS, counting_reads, fit_quietly, relative_deviation, starting_point
from distributed import Client, LocalCluster

from daskgmm import GaussianMixture

K = 4
UNEVEN_CHUNKS = (1, 199, 7, 600, 333, 860)  # sums to 2000


def fit(X, covariance_type, **extra):
    start = starting_point(X if isinstance(X, np.ndarray) else X.compute(), K, covariance_type)
    return fit_quietly(
        GaussianMixture(K, covariance_type=covariance_type, tol=1e-6, max_iter=200, **start, **extra), X
    )


def assert_equivalent(a, b, rtol=1e-10):
    for name in FITTED_ARRAYS:
        assert relative_deviation(getattr(a, name), getattr(b, name)) <= rtol, name
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)


@pytest.fixture(scope="module")
def process_cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunking_and_schedulers_do_not_change_the_fit(X, covariance_type, process_cluster):
    one_chunk = fit(da.from_array(X, chunks=X.shape), covariance_type)
    uneven = da.from_array(X, chunks=(UNEVEN_CHUNKS, 3))
    assert_equivalent(fit(uneven, covariance_type), one_chunk)
    with dask.config.set(scheduler="synchronous"):
        assert_equivalent(fit(uneven, covariance_type), one_chunk)
    with Client(process_cluster):
        on_cluster = fit(uneven, covariance_type)
        from_numpy_on_cluster = fit(X, covariance_type, chunk_rows=450)
    assert_equivalent(on_cluster, one_chunk)
    assert_equivalent(from_numpy_on_cluster, one_chunk)


def test_threaded_local_cluster_and_lazy_outputs(X):
    uneven = da.from_array(X, chunks=(UNEVEN_CHUNKS, 3))
    reference = fit(X, "full")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        ours = fit(uneven, "full")
        labels = ours.predict(uneven)
        proba = ours.predict_proba(uneven)
        scores = ours.score_samples(uneven)
        assert isinstance(labels, da.Array) and labels.chunks == (UNEVEN_CHUNKS,)
        assert proba.chunks == (UNEVEN_CHUNKS, (K,))
        assert scores.chunks == (UNEVEN_CHUNKS,)
        np.testing.assert_array_equal(labels.compute(), reference.predict(X))
        np.testing.assert_allclose(proba.compute(), reference.predict_proba(X), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.score(uneven), reference.score(X), rtol=1e-10)
    assert_equivalent(ours, reference)


def test_column_chunked_input_is_rechunked_to_whole_rows(X):
    split_columns = da.from_array(X, chunks=(500, 1))
    assert_equivalent(fit(split_columns, "diag"), fit(X, "diag"))


def test_unknown_chunk_sizes_are_resolved(X):
    dx = da.from_array(X, chunks=(400, 3))
    unknown = dx[dx[:, 0] > -np.inf]  # boolean mask: chunk sizes become nan
    assert np.isnan(unknown.shape[0])
    ours = fit(unknown, "spherical")
    assert_equivalent(ours, fit(X, "spherical"))
    assert np.isfinite(ours.bic(unknown))


def test_each_iteration_reads_every_chunk_exactly_once(X):
    """Count chunk reads: one per chunk per pass (EM iterations + the init pass)."""
    dx, reads = counting_reads(X, 250)
    start = starting_point(X, K, "full")
    gmm = fit_quietly(GaussianMixture(K, tol=1e-6, max_iter=7, persist=False, **start), dx)
    n_chunks = dx.numblocks[0]
    assert sorted(reads) == sorted(list(range(n_chunks)) * gmm.n_iter_)


def test_workers_import_only_what_chunk_tasks_use(X):
    """The chunk tasks need NumPy and SciPy: a worker that ran a fit and its predictions has not
    imported scikit-learn (~60 MiB of worker memory; the package imports lazily)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dx = da.from_array(X, chunks=500)
        gmm = fit(dx, "diag")
        gmm.predict_proba(dx).compute()
        from worker_probe import heavy_modules_imported

        assert list(client.run(heavy_modules_imported).values()) == [[]]
