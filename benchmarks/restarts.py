"""n_init restarts with and without a watcher, on data re-read from Zarr every pass: restarts
share each pass, so verbose=1 costs about what a silent fit does (before 2026-11-30 it made
them run one by one). Fastest of --repeat runs each, in seconds.

Run: ``.venv/bin/python benchmarks/restarts.py`` (writes ``data/restarts_bench.zarr`` once).
Measured 2026-11-30, 2 cores: single 4.83 s, n_init=4 verbose 10.5 s, n_init=4 10.6 s
(the one-by-one code took 15.2 s with verbose).
"""

import argparse
import contextlib
import io
import os
import time
import warnings

import dask.array as da

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--path", default="data/restarts_bench.zarr")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if not os.path.exists(args.path):
        weights, means, covariances = random_mixture(6, 8, separation=3.0, random_state=0)
        make_mixture(1_000_000, weights, means, covariances, chunk_rows=100_000).to_zarr(args.path)
    X = da.from_zarr(args.path)
    for label, extra in [("single", dict(n_init=1)), ("n_init=4 verbose=1", dict(n_init=4, verbose=1)),
                         ("n_init=4", dict(n_init=4))]:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                gmm = GaussianMixture(6, covariance_type="diag", init_params="random_from_data", random_state=1,
                                      tol=1e-4, max_iter=60, persist=False, **extra).fit(X)
            best = min(best, time.perf_counter() - started)
        print(f"{label:<20} {best:6.2f} s  ({gmm.n_iter_} iterations)", flush=True)


if __name__ == "__main__":
    main()
