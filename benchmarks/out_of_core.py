"""Out of core at the read limit: EM passes over a Zarr store several times the cluster's memory.

Run (``make bench-out-of-core``; about 15 minutes on 2 cores with the defaults)::

    .venv/bin/python benchmarks/out_of_core.py --gib 7.5 --workers 2 --worker-memory 768MiB

What it does, in one run:
1. writes (once, cached under ``data/``) a synthetic mixture, float32, D=16, with
   ``dask.array.to_zarr`` and Zarr's default codec in ``--storage-rows`` row chunks
   (500k rows: 32 MB, as a user's first write would make them);
2. starts a LocalCluster of ``--workers`` processes x ``--worker-memory`` (one thread each);
3. measures a plain read pass, ``da.from_zarr(path).sum(axis=0)`` on the same cluster
   (fastest of one run before and one after the fits), and the E+M kernel's rate on one
   chunk held in memory, on one worker (the compute limit of a pass);
4. fits, from a fixed start and with ``tol=0``, a read-bound model (diag, K=4) and a
   compute-bound one (full, K=16) on ``open_array(path)``; per pass: its seconds; per
   worker: RSS after the first tasks and the peak (sampled every 0.25 s); per run: pauses
   (the workers' own "Pausing worker" log lines), restarts (worker pids) and spilled bytes;
5. prints seconds per iteration (median of the passes after the first), its ratio to the
   plain read pass and to max(read, compute), and writes ``benchmarks/results/out_of_core.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from results_files import machine_description, write_results

from daskgmm import GaussianMixture, open_array
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics
from daskgmm.model.params import GaussianParams, compute_precision_cholesky

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 16
MODELS = "diag:4,full:16"


def dataset(gib: float, storage_rows: int, path: Path):
    """The store at ``path`` (written once): float32 rows of a 16-component mixture."""
    n_samples = int(gib * 2**30 // (N_FEATURES * 4))
    marker = path / ".complete"
    if not marker.exists():
        print(f"writing {n_samples:,} rows ({gib} GiB) to {path} ...", flush=True)
        started = time.perf_counter()
        weights, means, covariances = random_mixture(16, N_FEATURES, separation=4.0, random_state=0)
        X = make_mixture(n_samples, weights, means, covariances, chunk_rows=storage_rows, random_state=1)
        with dask.config.set(scheduler="threads"):
            X.astype(np.float32).to_zarr(str(path), overwrite=True)
        marker.write_text("ok")
        print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)


class MemoryWatch:
    """Samples every worker's RSS on a background thread."""

    def __init__(self, client, interval=0.25):
        self.client, self.interval = client, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                sizes = worker_rss(self.client)
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


def worker_rss(client):
    import psutil

    return client.run(lambda: psutil.Process().memory_info().rss)


def worker_state(client):
    def state(dask_worker):
        spilled = dask_worker.data.spilled_total if hasattr(dask_worker.data, "spilled_total") else (0, 0)
        return {"pid": os.getpid(), "spilled_bytes": int(spilled[0])}

    return client.run(state)


def pauses(client):
    """Times any worker paused for memory, from the workers' own logs."""
    logs = client.get_worker_logs(n=10_000)
    return sum("Pausing worker" in message for lines in logs.values() for _, message in lines)


def read_pass(path):
    """Seconds of a plain Dask reduction over the store (the reading limit of a pass)."""
    started = time.perf_counter()
    da.from_zarr(str(path)).sum(axis=0).compute()
    return time.perf_counter() - started


def kernel_seconds(client, X, params):
    """Seconds of the E+M kernel on one chunk held in memory, on one worker."""
    block = X.blocks[0].persist()

    def timed(x):
        chunk_statistics(x, None, GaussianAssigner(params), params.covariance_type, params.n_components)
        started = time.perf_counter()
        chunk_statistics(x, None, GaussianAssigner(params), params.covariance_type, params.n_components)
        return time.perf_counter() - started

    return client.compute(dask.delayed(timed)(block)).result()


class PassTimes:
    """A fit's progress reporter that keeps every pass's seconds."""

    def __init__(self):
        self.seconds = []

    def pass_end(self, seconds):
        self.seconds.append(seconds)


def starting_point(path, covariance_type, n_components):
    """A fixed start: scikit-learn's k-means initialisation on the first 200k rows."""
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    sample = zarr.open_array(str(path), mode="r")[:200_000].astype(np.float64)
    start = SklearnGaussianMixture(n_components, covariance_type=covariance_type, max_iter=0,
                                   random_state=0).fit(sample)
    params = GaussianParams(covariance_type, start.weights_, start.means_, start.covariances_,
                            compute_precision_cholesky(start.covariances_, covariance_type))
    settings = dict(weights_init=start.weights_ / start.weights_.sum(), means_init=start.means_,
                    precisions_init=start.precisions_)
    return params, settings


def fit_model(client, X, path, covariance_type, n_components, iterations, read_seconds, compare):
    n_components = int(n_components)
    params, settings = starting_point(path, covariance_type, n_components)
    chunks = X.numblocks[0]
    compute = kernel_seconds(client, X, params) * chunks / len(client.scheduler_info()["workers"])
    before, paused_before = worker_state(client), pauses(client)
    times = PassTimes()
    gmm = GaussianMixture(n_components, covariance_type=covariance_type, tol=0, max_iter=iterations,
                          persist=False, **settings)
    with MemoryWatch(client) as watch:
        gmm.fit(X, progress=times)
    after = worker_state(client)
    at_rest = sorted(round(v / 2**20) for v in worker_rss(client).values())
    restarted = sorted(set(before) ^ set(after)) or [w for w in before if before[w]["pid"] != after[w]["pid"]]
    per_iteration = statistics.median(times.seconds[1:] or times.seconds)
    deviation = None
    if compare:  # the same fit on the data held in the workers' memory
        in_memory = GaussianMixture(n_components, covariance_type=covariance_type, tol=0, max_iter=iterations,
                                    persist=True, **settings).fit(X)
        deviation = max(float(np.max(np.abs(getattr(gmm, a) - getattr(in_memory, a))
                                     / np.max(np.abs(getattr(in_memory, a)))))
                        for a in ("weights_", "means_", "covariances_"))
    return {
        "model": f"{covariance_type} K={n_components}",
        "pass_seconds": times.seconds,
        "seconds_per_iteration": per_iteration,
        "compute_seconds": compute,
        "ratio_to_read": per_iteration / read_seconds,
        "ratio_to_limit": per_iteration / max(read_seconds, compute),
        "peak_rss_mib": sorted(round(v / 2**20) for v in watch.peak.values()),
        "rss_after_fit_mib": at_rest,
        "pauses": pauses(client) - paused_before,
        "restarted_workers": restarted,
        "spilled_bytes": sum(state["spilled_bytes"] for state in after.values()),
        "in_memory_max_relative_deviation": deviation,
    }


def cluster_arguments(doc, gib):
    """The options the out-of-core benchmarks share: the data's size and storage, the cluster, where
    data and results go."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--gib", type=float, default=gib)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="768MiB")
    parser.add_argument("--storage-rows", type=int, default=500_000)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    return parser


def main(argv=None):
    parser = cluster_arguments(__doc__, gib=7.5)
    parser.add_argument("--models", default=MODELS, help="covariance_type:K, comma-separated (default: %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also fit each model on the data persisted in memory and report the largest deviation")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from distributed import Client, LocalCluster

    path = Path(args.data_dir) / f"mixture_{args.gib:g}gib_f32_{args.storage_rows}.zarr"
    dataset(args.gib, args.storage_rows, path)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.worker_memory,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        limit_bytes = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
        X = open_array(path)
        print(f"data: {X.shape[0]:,} x {X.shape[1]} float32 = {X.nbytes / 2**30:.2f} GiB "
              f"({X.nbytes / limit_bytes:.1f}x the cluster's memory), {X.numblocks[0]} tasks of "
              f"{X.chunks[0][0] * X.shape[1] * 4 / 2**20:.0f} MiB (storage chunks of {args.storage_rows:,} rows)")
        print(f"cluster: {args.workers} workers x {args.worker_memory}, 1 thread each", flush=True)
        reads = [read_pass(path)]
        rss_first_tasks = sorted(round(v / 2**20) for v in worker_rss(client).values())
        rows = [fit_model(client, X, path, covariance_type, k, args.iterations, reads[0], args.compare)
                for covariance_type, k in (model.split(":") for model in args.models.split(","))]
        reads.append(read_pass(path))
        read_seconds = min(reads)
        for row in rows:  # against the fastest read pass of the run
            row["read_seconds"] = read_seconds
            row["ratio_to_read"] = row["seconds_per_iteration"] / read_seconds
            row["ratio_to_limit"] = row["seconds_per_iteration"] / max(read_seconds, row["compute_seconds"])
    print(f"plain read pass: {', '.join(f'{s:.1f}' for s in reads)} s; worker RSS after the read "
          f"pass's tasks: {rss_first_tasks} MiB")
    for row in rows:
        print(f"{row['model']}: {row['seconds_per_iteration']:.1f} s per iteration "
              f"(passes {', '.join(f'{s:.1f}' for s in row['pass_seconds'])}) = {row['ratio_to_read']:.2f}x "
              f"the read pass, {row['ratio_to_limit']:.2f}x max(read, compute {row['compute_seconds']:.1f} s); "
              f"peak RSS {row['peak_rss_mib']} MiB of {args.worker_memory} ({row['rss_after_fit_mib']} after "
              f"the fit); pauses {row['pauses']}; "
              f"restarted {row['restarted_workers'] or 'none'}; spilled {row['spilled_bytes']} bytes")
        if args.compare:
            print(f"  in memory, same start: max relative deviation {row['in_memory_max_relative_deviation']:.2e}")
    machine = dict(machine_description(), workers=f"{args.workers} x {args.worker_memory}",
                   data_gib=round(X.nbytes / 2**30, 2), rss_after_first_tasks_mib=rss_first_tasks)
    columns = [("model", lambda r: r["model"]), ("s/iteration", lambda r: f"{r['seconds_per_iteration']:.2f}"),
               ("read pass s", lambda r: f"{r['read_seconds']:.2f}"), ("/ read", lambda r: f"{r['ratio_to_read']:.2f}x"),
               ("compute s", lambda r: f"{r['compute_seconds']:.2f}"),
               ("/ max(read, compute)", lambda r: f"{r['ratio_to_limit']:.2f}x"),
               ("peak RSS MiB", lambda r: str(r["peak_rss_mib"])), ("pauses", lambda r: str(r["pauses"])),
               ("restarts", lambda r: str(len(r["restarted_workers"]))), ("spilled bytes", lambda r: str(r["spilled_bytes"]))]
    write_results(Path(args.results), f"out_of_core_{args.worker_memory}", machine, rows, columns)
    return rows


if __name__ == "__main__":
    main()
