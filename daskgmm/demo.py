"""The main job on the embedded default: ``make demo`` / ``python -m daskgmm.demo``.

Starts a local Dask cluster bound to 127.0.0.1 (nothing to install, nothing
reachable from outside), generates a synthetic mixture on the workers, fits it
with daskgmm and prints the fitted model, how close it is to the truth, and
the timings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from .datasets import make_mixture, random_mixture
from .estimator import GaussianMixture


def _match_components(true_means, fitted_means):
    """Order of fitted components that best matches the true ones."""
    cost = np.linalg.norm(true_means[:, None, :] - fitted_means[None, :, :], axis=2)
    _, order = linear_sum_assignment(cost)
    return order


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    n, d, k = args.n_samples, args.n_features, args.n_components
    weights, means, covariances = random_mixture(k, d, random_state=1)
    print(f"daskgmm demo: {n:,} rows x {d} features drawn from a {k}-component mixture")
    with LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="3GiB",
    ) as cluster, Client(cluster) as client:
        print(f"local cluster: {args.workers} workers on {cluster.scheduler_address}, "
              f"dashboard {client.dashboard_link}")
        started = time.perf_counter()
        X = make_mixture(n, weights, means, covariances, chunk_rows=250_000).persist()
        client.wait_for_workers(args.workers)
        X.sum().compute()
        print(f"generated {X.nbytes / 2**20:,.0f} MiB in {X.numblocks[0]} chunks "
              f"in {time.perf_counter() - started:.1f} s")

        gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=0, verbose=2,
                              verbose_interval=5)
        started = time.perf_counter()
        gmm.fit(X)
        fit_seconds = time.perf_counter() - started
        bic = gmm.bic(X)

    order = _match_components(means, gmm.means_)
    print()
    print(f"converged: {gmm.converged_} after {gmm.n_iter_} iterations, "
          f"mean log-likelihood {gmm.lower_bound_:.4f}, BIC {bic:,.1f}")
    print(f"fit time {fit_seconds:.1f} s (init included), "
          f"{fit_seconds / max(gmm.n_iter_, 1):.2f} s per iteration on average")
    print("component  true weight  fitted weight  |mean error|  |cov error| (Frobenius)")
    for true_k, fitted_k in enumerate(order):
        mean_error = np.linalg.norm(gmm.means_[fitted_k] - means[true_k])
        cov_error = np.linalg.norm(gmm.covariances_[fitted_k] - covariances[true_k])
        print(f"{true_k:9d}  {weights[true_k]:11.4f}  {gmm.weights_[fitted_k]:13.4f}  "
              f"{mean_error:12.4f}  {cov_error:11.4f}")


if __name__ == "__main__":
    main()
