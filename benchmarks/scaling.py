"""Measures the terms of the per-iteration cost model on this machine (docs/scaling.md).

Run: ``.venv/bin/python benchmarks/scaling.py``. It measures, on LocalClusters
bound to 127.0.0.1:

- the distributed scheduler's overhead per task (a reduction over 5 000 tiny chunks)
  and the driver's time to build one pass's graph, per chunk;
- the E+M kernel's rate on one core (rows per second, full covariance, D=16, K=8);
- the latency of one EM pass's statistics reduction (tiny tasks, tree of fan-in 16);
- time per EM iteration with 1 and 2 worker processes on the same data
  (in memory, and re-read from an uncompressed Zarr store).

Results go to ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

from daskgmm import GaussianMixture, open_array
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics
from daskgmm.model.params import GaussianParams, compute_precision_cholesky

ROOT = Path(__file__).resolve().parents[1]
N, D, K = 4_000_000, 16, 8


def per_task_overhead(client, n_chunks=5_000):
    """Scheduler cost per task: a reduction over many tiny chunks, wall time / tasks run."""
    x = da.ones(n_chunks, chunks=1).map_blocks(np.negative)
    x.sum().compute()  # warm up
    n_tasks = len(dict(dask.optimize(x.sum())[0].__dask_graph__()))
    started = time.perf_counter()
    x.sum().compute()
    return (time.perf_counter() - started) / n_tasks


def graph_seconds_per_chunk(n_chunks=10_000):
    """Driver time to build one EM pass's graph, per chunk."""
    from daskgmm.em.passes import pass_graph
    from daskgmm.io.inputs import RowData

    X = da.zeros((n_chunks * 10, D), chunks=(10, D))
    weights = np.full(K, 1 / K)
    params = GaussianParams("diag", weights, np.zeros((K, D)), np.ones((K, D)), np.ones((K, D)))
    started = time.perf_counter()
    pass_graph(RowData(X), [GaussianAssigner(params)], ["diag"], [K])
    return (time.perf_counter() - started) / n_chunks


def kernel_rate(X, params, rows=1_000_000):
    block = np.ascontiguousarray(X[:rows])
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        chunk_statistics(block[:50_000], None, GaussianAssigner(params), "full", K)
        started = time.perf_counter()
        chunk_statistics(block, None, GaussianAssigner(params), "full", K)
    return rows / (time.perf_counter() - started)


def seconds_per_iteration(source, settings, iterations=3, **extra):
    gmm = GaussianMixture(K, **settings, max_iter=1, **extra).fit(source)  # warm-up (and persist)
    gmm = GaussianMixture(K, **settings, max_iter=iterations, **extra)
    started = time.perf_counter()
    gmm.fit(source)
    return (time.perf_counter() - started) / iterations


def main():
    warnings.simplefilter("ignore")
    from distributed import Client, LocalCluster
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    weights, means, covariances = random_mixture(K, D, separation=4.0, random_state=0)
    X = make_mixture(N, weights, means, covariances, chunk_rows=500_000).compute()
    start = SklearnGaussianMixture(K, max_iter=0, random_state=0).fit(X[:100_000])
    settings = dict(weights_init=start.weights_ / start.weights_.sum(), means_init=start.means_,
                    precisions_init=start.precisions_, tol=0)
    params = GaussianParams("full", settings["weights_init"], start.means_, start.covariances_,
                            compute_precision_cholesky(start.covariances_, "full"))
    result = {"rows": N, "features": D, "components": K, "bytes": X.nbytes}
    result["kernel_rows_per_second_one_core"] = kernel_rate(X, params)
    print(f"kernel: {result['kernel_rows_per_second_one_core'] / 1e6:.2f} M rows/s on one core "
          f"(full, D={D}, K={K})")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.zarr"
        store = zarr.create_array(path, shape=X.shape, chunks=(500_000, D), dtype="f8", compressors=None)
        store[:] = X
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                              dashboard_address="127.0.0.1:0", memory_limit="4GiB") as cluster, \
                    Client(cluster) as client:
                client.wait_for_workers(workers)
                if workers == 1:
                    result["scheduler_seconds_per_task"] = per_task_overhead(client)
                    result["graph_build_seconds_per_chunk"] = graph_seconds_per_chunk()
                    print(f"scheduler overhead: {result['scheduler_seconds_per_task'] * 1e3:.2f} ms per task; "
                          f"building a pass's graph: {result['graph_build_seconds_per_chunk'] * 1e3:.3f} ms "
                          "per chunk")
                dx = da.from_array(X, chunks=(500_000, D))
                in_memory = seconds_per_iteration(dx, settings, persist=True)
                from_zarr = seconds_per_iteration(open_array(path, chunk_bytes=500_000 * D * 8), settings,
                                                  persist=False)
                result[f"seconds_per_iteration_{workers}_workers_in_memory"] = in_memory
                result[f"seconds_per_iteration_{workers}_workers_zarr"] = from_zarr
                print(f"{workers} worker(s): {in_memory:.2f} s per iteration in memory, "
                      f"{from_zarr:.2f} s re-read from Zarr ({N / 1e6:.0f}M x {D}, K={K} full, 8 chunks)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
