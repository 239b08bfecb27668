"""Fitting on a SLURM cluster (or any cluster a config in cluster_configs/ describes).

Run, on the cluster's login node (``pip install 'daskgmm[jobqueue]'``):

    python examples/cluster.py --config cluster_configs/slurm.yaml --data /shared/frames.zarr
    python examples/cluster.py --config cluster_configs/slurm.yaml --dry-run   # starts nothing
    daskgmm certificates        # the TLS files the configs name, in ~/.daskgmm/tls (once)

and on a laptop, with the same code: ``--config cluster_configs/local.yaml``.

What happens: the config starts a Dask scheduler here and submits batch jobs
that start the workers (8 jobs x 4 workers in slurm.yaml, TLS-encrypted);
the data are opened lazily where the workers can read them (a shared file
system or object storage: the path must mean the same file on every node);
each EM iteration runs one task per chunk on the workers, and only the
sufficient statistics travel back. The model is saved at the end, and a
checkpoint after every iteration lets a fit that loses its jobs to the
walltime resume where it stopped.
"""

import argparse
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from daskgmm import GaussianMixture, open_array
from daskgmm.cluster import ClusterConfigError, connect, dry_run, load_config


def example_data(folder):
    """A small synthetic Zarr dataset for trying the example without data of your own."""
    from daskgmm.datasets import make_mixture, random_mixture

    path = folder / "cluster_example.zarr"
    if not path.exists():
        weights, means, covariances = random_mixture(4, 6, random_state=0)
        make_mixture(400_000, weights, means, covariances, chunk_rows=100_000).to_zarr(str(path))
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="cluster_configs/slurm.yaml")
    parser.add_argument("--data", help="a Zarr/HDF5/... source every worker can read (default: synthetic)")
    parser.add_argument("-k", "--components", type=int, default=4)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--workers", type=int, default=1, help="wait for this many workers before fitting")
    parser.add_argument("--out", default="data", help="folder for the model and its checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would start (the batch job script) and what is missing; start nothing")
    args = parser.parse_args()

    try:
        config = load_config(args.config)
    except (ClusterConfigError, FileNotFoundError) as error:
        raise SystemExit(f"cluster.py: {error}") from None
    if args.dry_run:
        print(dry_run(config))  # what would start (the job script), and what is missing
        return
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    source = args.data or example_data(folder)

    with ExitStack() as stack:
        try:
            client = stack.enter_context(connect(args.config))
        except (ClusterConfigError, OSError) as error:  # a missing certificate or package, a scheduler that did not start
            raise SystemExit(f"cluster.py: {error}") from None
        print(f"{config.type} cluster from {args.config}; dashboard: {client.dashboard_link}")
        client.wait_for_workers(args.workers, timeout=600)  # batch jobs may queue for a while
        print(f"{len(client.scheduler_info()['workers'])} workers")
        X = open_array(source)
        print(f"data: {source}, {X.shape[0]:,} x {X.shape[1]} in {X.numblocks[0]} chunks")
        started = time.perf_counter()
        gmm = GaussianMixture(args.components, covariance_type=args.covariance_type, random_state=0,
                              checkpoint=folder / "cluster_example.checkpoint").fit(X)
        seconds = time.perf_counter() - started
        print(f"fitted in {seconds:.1f} s ({seconds / gmm.n_iter_:.2f} s per iteration): "
              f"{gmm.n_iter_} iterations, converged {gmm.converged_}, BIC {gmm.bic(X):.6g}")
    gmm.save(folder / "cluster_example_model")
    shutil.rmtree(folder / "cluster_example.checkpoint")  # done: the next run starts afresh
    print(f"model saved to {folder / 'cluster_example_model'}")


if __name__ == "__main__":
    main()
