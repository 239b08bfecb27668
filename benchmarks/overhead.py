"""What an EM iteration costs besides the chunk kernels, and what initialisation costs.

Run: ``make bench-overhead`` (or ``.venv/bin/python benchmarks/overhead.py [--quick]``).

For NumPy input at the default chunk size (the threaded scheduler, as a user
gets it), per shape and covariance type:

- ``iteration_s``: time per EM iteration, ``(t(max_iter=5) - t(max_iter=1)) / 4``;
- ``kernel_s``: the chunk kernels alone: every chunk's statistics computed in
  this process one after another (one BLAS thread), divided by the number of
  Dask threads, i.e. the iteration if scheduling were free and threads scaled
  perfectly;
- ``fixed_s``: time per iteration on the same number of chunks holding
  ``4 K`` rows each: graph building, scheduling, the reduction and the M-step,
  without the kernels' work. ``fixed_s / iteration_s`` is the Dask overhead
  (the issue's target: under 10%). What remains of ``iteration_s - kernel_s -
  fixed_s`` is threads not scaling perfectly (the GIL between NumPy calls,
  shared caches).

Initialisation: ``t(max_iter=1) - iteration_s`` with the default ``init_params``
('kmeans': k-means|| seeding and Lloyd iterations on Dask) and the others, in
units of one EM iteration, on the (1M, 16, 16) full shape.

Results: ``benchmarks/results/overhead.json`` and ``overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import dask
import numpy as np
from threadpoolctl import threadpool_limits

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics
from daskgmm.model.params import GaussianParams
from daskgmm.runtime.resources import default_chunk_rows

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(200_000, 8, 8), (1_000_000, 16, 16), (500_000, 64, 16)]
QUICK_SHAPES = [(20_000, 4, 3)]
INIT_SHAPE = (1_000_000, 16, 16)
INIT_METHODS = ("kmeans", "k-means++", "random_from_data", "random")


def fit_seconds(make_estimator, X, max_iter, repeat):
    """Fastest of ``repeat`` fits with ``max_iter`` iterations."""
    best = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 never converges
        for _ in range(repeat):
            started = time.perf_counter()
            make_estimator(max_iter).fit(X)
            best = min(best, time.perf_counter() - started)
    return best


def seconds_per_iteration(make_estimator, X, repeat):
    return (fit_seconds(make_estimator, X, 5, repeat) - fit_seconds(make_estimator, X, 1, repeat)) / 4


def kernel_seconds(X, params, chunk_rows, repeat):
    """Every chunk's kernel, one after another in this process, fastest of ``repeat``."""
    assigner = GaussianAssigner(params)
    best = np.inf
    with threadpool_limits(1, "blas"):
        for _ in range(repeat):
            started = time.perf_counter()
            for start in range(0, X.shape[0], chunk_rows):
                chunk_statistics(X[start : start + chunk_rows], None, assigner, params.covariance_type,
                                 params.n_components, start)
            best = min(best, time.perf_counter() - started)
    return best


def starting_parameters(X, k, covariance_type):
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    start = SklearnGaussianMixture(k, covariance_type=covariance_type, max_iter=0, random_state=0).fit(X[:20_000])
    settings = dict(covariance_type=covariance_type, tol=0, weights_init=start.weights_ / start.weights_.sum(),
                    means_init=start.means_, precisions_init=start.precisions_)
    params = GaussianParams(covariance_type, settings["weights_init"], start.means_, start.covariances_,
                            start.precisions_cholesky_)
    return settings, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    parser.add_argument("--types", default="full,diag", help="covariance types, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the fastest counts")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    threads = dask.system.CPU_COUNT
    rows = []
    for n, d, k in shapes:
        weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
        X = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
        chunk_rows = default_chunk_rows(n, d, X.dtype.itemsize)
        n_chunks = -(-n // chunk_rows)
        tiny = X[: n_chunks * 4 * k]
        for covariance_type in args.types.split(","):
            settings, params = starting_parameters(X, k, covariance_type)
            make = lambda m, rows_per_chunk=None: GaussianMixture(  # noqa: E731
                k, max_iter=m, chunk_rows=rows_per_chunk, **settings)
            iteration = seconds_per_iteration(make, X, args.repeat)
            fixed = seconds_per_iteration(lambda m: make(m, 4 * k), tiny, args.repeat)
            kernel = kernel_seconds(X, params, chunk_rows, args.repeat) / threads
            rows.append(dict(n=n, d=d, k=k, covariance_type=covariance_type, chunks=n_chunks,
                             chunk_rows=chunk_rows, iteration_s=iteration, kernel_s=kernel, fixed_s=fixed,
                             overhead=fixed / iteration))
            print(f"{n:>9} {d:3} {k:3} {covariance_type:>9}: {n_chunks} chunks, {iteration:.3f} s/it, "
                  f"kernels/{threads} threads {kernel:.3f} s, fixed {fixed * 1e3:.1f} ms "
                  f"({100 * fixed / iteration:.1f}% of the iteration)", flush=True)
    init_rows = []
    n, d, k = QUICK_SHAPES[0] if args.quick else INIT_SHAPE
    weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
    X = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
    settings, _ = starting_parameters(X, k, "full")
    iteration = seconds_per_iteration(lambda m: GaussianMixture(k, max_iter=m, **settings), X, args.repeat)
    for method in INIT_METHODS:
        first = fit_seconds(lambda m: GaussianMixture(k, max_iter=m, tol=0, init_params=method,
                                                      random_state=0), X, 1, args.repeat)
        init_rows.append(dict(init_params=method, seconds=first - iteration, iterations=(first - iteration) / iteration))
        print(f"init {method:>16} on {n:,} x {d}, K={k}: {first - iteration:.3f} s = "
              f"{(first - iteration) / iteration:.1f} EM iterations ({iteration:.3f} s/it)", flush=True)
    report = dict(machine=dict(cores=os.cpu_count(), dask_threads=threads), rows=rows,
                  init=dict(n=n, d=d, k=k, iteration_s=iteration, methods=init_rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "overhead_quick" if args.quick else "overhead"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = [f"{os.cpu_count()} cores, {threads} Dask threads, NumPy input at the default chunk size.", "",
             "| N | D | K | covariance | chunks | s/it | kernels / threads (s) | fixed per iteration (ms) | Dask overhead |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['d']} | {r['k']} | {r['covariance_type']} | {r['chunks']} | {r['iteration_s']:.3f} | "
              f"{r['kernel_s']:.3f} | {1e3 * r['fixed_s']:.1f} | {100 * r['overhead']:.1f}% |" for r in rows]
    lines += ["", f"Initialisation on {n:,} x {d}, K={k} (full; one EM iteration {iteration:.3f} s):", "",
              "| init_params | seconds | EM iterations |", "|---|---|---|"]
    lines += [f"| {r['init_params']} | {r['seconds']:.3f} | {r['iterations']:.1f} |" for r in init_rows]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
