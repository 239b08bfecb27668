"""The main job on the embedded default: ``make demo`` / ``daskgmm demo``.

Generates once (cached under ``data/``) a synthetic mixture as a Zarr array
larger than the demo cluster's total memory limit, starts a local Dask cluster
bound to 127.0.0.1 (nothing to install, nothing reachable from outside), fits
it with the data re-read from disk every iteration, and prints the fitted
model against the truth with timings; writes plots of the convergence and of
the components (when matplotlib is installed).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..datasets import make_mixture, random_mixture
from ..io.stores import open_array
from ..mixture.gaussian import GaussianMixture


def _match_components(true_means, fitted_means):
    """Order of fitted components that best matches the true ones."""
    cost = np.linalg.norm(true_means[:, None, :] - fitted_means[None, :, :], axis=2)
    _, order = linear_sum_assignment(cost)
    return order


def _dataset(path, n, weights, means, covariances):
    """The demo's Zarr array, written on first use."""
    if not (path / ".complete").exists():
        import zarr

        started = time.perf_counter()
        rows = 1_000_000
        X = make_mixture(n, weights, means, covariances, chunk_rows=rows, random_state=1)
        store = zarr.create_array(path, shape=X.shape, chunks=(rows, X.shape[1]), dtype="f8",
                                  compressors=None, overwrite=True)
        X.store(store, lock=False)
        (path / ".complete").write_text("ok")
        print(f"wrote {X.nbytes / 2**20:,.0f} MiB to {path} in {time.perf_counter() - started:.1f} s (once)")


def _plots(gmm, X, folder):
    from ..plot import file_pyplot, plot_components, plot_convergence

    plt = file_pyplot()
    if plt is None:
        return

    for name, draw in (("convergence", plot_convergence), ("components", None)):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if draw is None:
            plot_components(gmm, X, ax=ax)
        else:
            draw(gmm, ax=ax)
        fig.tight_layout()
        fig.savefig(folder / f"demo_{name}.png", dpi=100)
        plt.close(fig)
        print(f"plot: {folder / f'demo_{name}.png'}")


def run_demo(n_samples=24_000_000, n_features=8, n_components=6, workers=2, worker_memory="600MiB",
             data_dir="data"):
    """The demo (``daskgmm demo``; see the module docstring)."""
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    n, d, k = n_samples, n_features, n_components
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    weights, means, covariances = random_mixture(k, d, separation=3.0, random_state=1)
    print(f"daskgmm demo: {n:,} rows x {d} features drawn from a {k}-component mixture")
    _dataset(folder / f"demo_{n}x{d}.zarr", n, weights, means, covariances)
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit=worker_memory,
    ) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        X = open_array(folder / f"demo_{n}x{d}.zarr")
        total = workers * parse_bytes(worker_memory)
        print(f"local cluster: {workers} workers on {cluster.scheduler_address}, "
              f"dashboard {client.dashboard_link}")
        print(f"data {X.nbytes / 2**20:,.0f} MiB in {X.numblocks[0]} chunks; cluster memory limit "
              f"{total / 2**20:,.0f} MiB ({X.nbytes / total:.1f}x); re-read from disk every iteration")

        gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=0, verbose=2,
                              verbose_interval=1)
        started = time.perf_counter()
        gmm.fit(X)
        fit_seconds = time.perf_counter() - started
        bic = gmm.bic(X)
        _plots(gmm, X, folder)

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
