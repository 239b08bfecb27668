"""A Zarr dataset larger than the cluster's memory, fitted on a local cluster.

Run: python examples/out_of_core.py [--rows 40000000]

Writes (once) a synthetic mixture to ``data/example.zarr``, starts a local
cluster on 127.0.0.1 whose workers together have less memory than the data,
fits with the data re-read from disk every iteration (``persist="auto"``
decides that by itself), and streams the labels back to Zarr.
"""

import argparse
import time
from pathlib import Path

import dask.array as da
import zarr
from distributed import Client, LocalCluster

from daskgmm import GaussianMixture, open_array
from daskgmm.datasets import make_mixture, random_mixture


def main():
    # Worker processes re-import this file: everything runs under main().
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000_000)
    parser.add_argument("--folder", default="data")
    args = parser.parse_args()

    folder = Path(args.folder)
    source = folder / f"example_{args.rows}.zarr"
    if not source.exists():
        weights, means, covariances = random_mixture(5, 8, random_state=0)
        X = make_mixture(args.rows, weights, means, covariances, chunk_rows=500_000)
        X.to_zarr(str(source))
    data_bytes = args.rows * 8 * 8

    # two workers with half the data's size in all (but at least what a worker process needs)
    worker_memory = max(512 * 2**20, data_bytes // 4)
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=worker_memory,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        print(f"data {data_bytes / 2**20:.0f} MiB, cluster memory {2 * worker_memory / 2**20:.0f} MiB; "
              f"dashboard {client.dashboard_link}")
        X = open_array(source)
        started = time.perf_counter()
        gmm = GaussianMixture(n_components=5, covariance_type="full", random_state=0).fit(X)
        print(f"fitted in {time.perf_counter() - started:.1f} s: {gmm.n_iter_} iterations, "
              f"converged {gmm.converged_}, mean log-likelihood {gmm.lower_bound_:.4f}")
        gmm.predict(X).to_zarr(str(folder / "example_labels.zarr"), overwrite=True)
        labels = zarr.open_array(folder / "example_labels.zarr", mode="r")
        print(f"labels written to {folder / 'example_labels.zarr'}: {labels.shape[0]:,} rows")
        print("rows per component:", da.bincount(da.from_zarr(labels), minlength=5).compute())


if __name__ == "__main__":
    main()
