"""Out-of-core fit: a Zarr dataset several times larger than the cluster's memory.

Run (about 10 minutes on 2 cores with the defaults)::

    .venv/bin/python benchmarks/out_of_core.py --gib 10 --workers 2 --worker-memory 1GiB

What it does, in one run:
1. writes (once, cached under ``data/``) a synthetic mixture as an uncompressed
   Zarr array of ``--gib`` GiB (float64, D=16), chunked 128 MiB in rows;
2. starts a LocalCluster of ``--workers`` processes with ``--worker-memory`` each;
3. measures the read rate of the store (one pass that only reads) and the
   compute rate of the E+M kernel (one chunk on one worker), from which the
   cost model's limit per iteration is ``max(bytes / read rate,
   rows / (compute rate x workers))``;
4. fits GaussianMixture(K=8, full) from a fixed start (tol=0, ``--iterations``)
   while sampling every worker's RSS, and checks that no worker restarted and
   nothing was spilled;
5. optionally (``--compare``) fits the same data from the same start in
   memory with the threaded scheduler and reports the largest deviation.

Results are printed and written to ``benchmarks/results/out_of_core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

from daskgmm import GaussianMixture, open_array
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels import GaussianAssigner, chunk_statistics
from daskgmm.params import GaussianParams, compute_precision_cholesky

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES, N_COMPONENTS = 16, 8


def dataset(gib: float, path: Path):
    n_samples = int(gib * 2**30 // (N_FEATURES * 8))
    weights, means, covariances = random_mixture(N_COMPONENTS, N_FEATURES, separation=4.0, random_state=0)
    marker = path / ".complete"
    if not marker.exists():
        print(f"writing {n_samples:,} rows ({gib} GiB) to {path} ...", flush=True)
        started = time.perf_counter()
        rows = 2**27 // (N_FEATURES * 8)  # 128 MiB chunks
        X = make_mixture(n_samples, weights, means, covariances, chunk_rows=rows, random_state=1)
        store = zarr.create_array(path, shape=X.shape, chunks=(rows, N_FEATURES), dtype="f8",
                                  compressors=None, overwrite=True)
        da.store(X, store, lock=False)
        marker.write_text("ok")
        print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
    return weights, means, covariances


class MemoryWatch:
    """Samples every worker's RSS on a background thread."""

    def __init__(self, client, interval=0.25):
        self.client, self.interval = client, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                sizes = self.client.run(lambda: psutil.Process().memory_info().rss)
            except Exception:  # a worker going away shows up in the restart check
                sizes = {}
            for worker, size in sizes.items():
                self.peak[worker] = max(self.peak.get(worker, 0), size)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def worker_state(client):
    def state(dask_worker):
        import psutil

        spilled = dask_worker.data.spilled_total if hasattr(dask_worker.data, "spilled_total") else (0, 0)
        io = psutil.Process().io_counters()
        return {"pid": os.getpid(), "spilled_bytes": int(spilled[0]), "read_chars": io.read_chars}

    return client.run(state)


def read_rate(array):
    """Bytes per second of a pass that reads every chunk and does nothing else."""
    started = time.perf_counter()
    array.map_blocks(lambda b: np.zeros((1, 1)), chunks=(1, 1), dtype=float).sum().compute()
    return array.nbytes / (time.perf_counter() - started)


def kernel_rate(client, array, params):
    """Rows per second of the E+M kernel on one chunk, on one worker (data already in memory)."""
    block = array.blocks[0].persist()
    dask.compute(block)

    def timed(x):
        started = time.perf_counter()
        chunk_statistics(x, None, GaussianAssigner(params), params.covariance_type, params.n_components)
        return time.perf_counter() - started

    seconds = client.compute(dask.delayed(timed)(block)).result()
    return block.shape[0] / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="1GiB")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also fit in memory and compare")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from distributed import Client, LocalCluster
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    path = Path(args.data_dir) / f"mixture_{args.gib:g}gib.zarr"
    weights, means, covariances = dataset(args.gib, path)
    sample = zarr.open_array(path, mode="r")[:200_000]
    start = SklearnGaussianMixture(N_COMPONENTS, max_iter=0, random_state=0).fit(sample)
    settings = dict(weights_init=start.weights_ / start.weights_.sum(), means_init=start.means_,
                    precisions_init=start.precisions_, tol=0, max_iter=args.iterations)
    params = GaussianParams("full", settings["weights_init"], start.means_, start.covariances_,
                            compute_precision_cholesky(start.covariances_, "full"))

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.worker_memory,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        X = open_array(path)  # chunk size follows the workers' memory
        print(f"data: {X.shape[0]:,} x {X.shape[1]} float64 = {X.nbytes / 2**30:.2f} GiB, "
              f"{X.numblocks[0]} chunks of {X.chunks[0][0] * X.shape[1] * 8 / 2**20:.0f} MiB")
        result = {"rows": X.shape[0], "features": N_FEATURES, "components": N_COMPONENTS,
                  "bytes": X.nbytes, "workers": args.workers, "worker_memory": args.worker_memory}
        limit_bytes = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
        print(f"cluster: {args.workers} workers x {args.worker_memory} "
              f"(data = {X.nbytes / limit_bytes:.1f}x total memory limit)")
        rate_read = read_rate(X)
        rate_kernel = kernel_rate(client, X, params)
        read_bound = X.nbytes / rate_read
        compute_bound = X.shape[0] / (rate_kernel * args.workers)
        print(f"read rate {rate_read / 2**30:.2f} GiB/s -> {read_bound:.1f} s per pass; kernel "
              f"{rate_kernel / 1e6:.2f} M rows/s per worker -> {compute_bound:.1f} s per pass")

        before = worker_state(client)
        gmm = GaussianMixture(N_COMPONENTS, **settings)
        with MemoryWatch(client) as watch:
            started = time.perf_counter()
            gmm.fit(X)
            seconds = time.perf_counter() - started
        after = worker_state(client)

    per_iteration = seconds / gmm.n_iter_
    limit = max(read_bound, compute_bound)
    restarted = sorted(set(before) ^ set(after)) or [
        w for w in before if before[w]["pid"] != after[w]["pid"]]
    spilled = sum(state["spilled_bytes"] for state in after.values())
    read_per_iteration = sum(after[w]["read_chars"] - before[w]["read_chars"] for w in after if w in before)
    read_per_iteration /= gmm.n_iter_
    peak = {w: v / 2**20 for w, v in watch.peak.items()}
    result.update(
        seconds_per_iteration=per_iteration, read_bound_s=read_bound, compute_bound_s=compute_bound,
        ratio_to_limit=per_iteration / limit, read_bytes_per_second=rate_read,
        kernel_rows_per_second_per_worker=rate_kernel, bytes_read_per_iteration=read_per_iteration,
        peak_rss_mib=peak, restarted_workers=restarted, spilled_bytes=spilled, n_iter=gmm.n_iter_,
    )
    print(f"fit: {gmm.n_iter_} iterations, {per_iteration:.1f} s per iteration = "
          f"{per_iteration / limit:.2f}x max(read-bound, compute-bound)")
    print(f"bytes read per iteration (all workers): {read_per_iteration / 2**30:.2f} GiB "
          f"(data {X.nbytes / 2**30:.2f} GiB)")
    print("peak RSS per worker: " + ", ".join(f"{v:.0f} MiB" for v in peak.values())
          + f" (limit {args.worker_memory}); restarted workers: {restarted or 'none'}; "
          f"spilled: {spilled} bytes")

    if args.compare:
        started = time.perf_counter()
        in_memory = GaussianMixture(N_COMPONENTS, persist=True, **settings).fit(X)
        deviation = max(
            float(np.max(np.abs(getattr(gmm, a) - getattr(in_memory, a))) / np.max(np.abs(getattr(in_memory, a))))
            for a in ("weights_", "means_", "covariances_"))
        result.update(in_memory_max_relative_deviation=deviation,
                      in_memory_seconds_per_iteration=(time.perf_counter() - started) / in_memory.n_iter_)
        print(f"in-memory fit (threaded scheduler, same start): max relative deviation {deviation:.2e}")

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "out_of_core.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
