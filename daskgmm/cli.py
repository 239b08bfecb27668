"""The ``daskgmm`` command: fit, predict, score, info, demo.

Errors print one line on stderr and exit with status 1 (``--debug`` shows the
traceback); usage errors exit with 2.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
import warnings
from contextlib import nullcontext

import click
import numpy as np

EXAMPLES_FIT = """
\b
Examples:
  daskgmm fit frames.zarr -k 16 --covariance-type diag --out model/
  daskgmm fit features.h5 --dataset mfcc -k 32 --cluster-config cluster_configs/slurm.yaml --out model/
  daskgmm fit table/ --columns r,g,b -k 5 --scheduler tcp://10.0.0.5:8786 --checkpoint ck/ --out model/
"""


class Progress:
    """Engine reporter: one line per EM pass with each running start's mean log-likelihood and
    its change against ``tol`` (the convergence test), and the pass's time."""

    def __init__(self, tol, n_init, quiet=False):
        self.tol, self.several, self.quiet = tol, n_init > 1, quiet
        self.pass_seconds, self.latest, self.ended = [], {}, {}

    def init_begin(self, init_index):
        pass

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        self.latest[init_index] = (n_iter, change, lower_bound)

    def init_end(self, init_index, lower_bound, converged):
        self.ended[init_index] = (lower_bound, converged)

    def pass_end(self, seconds):
        self.pass_seconds.append(seconds)
        if self.quiet or not self.latest:
            return
        n_iter = max(n for n, _, _ in self.latest.values())
        if self.several:
            best = max(self.latest, key=lambda i: self.latest[i][2])
            running = [i for i in self.latest if i not in self.ended]
            change = max((abs(self.latest[i][1]) for i in running), default=0.0)
            state = (f"largest change {change:.2e} (tol {self.tol:g}), {len(running)} of "
                     f"{len(self.latest)} starts still running") if running else "all converged or done"
            line = f"best mean log-likelihood {self.latest[best][2]: .6f} (start {best + 1}), {state}"
        else:
            (_, change, lower_bound), = self.latest.values()
            state = "converged" if self.ended.get(0, (0, False))[1] else f"change {change:.2e} (tol {self.tol:g})"
            line = f"mean log-likelihood {lower_bound: .6f}  {state}"
        self.latest.clear()
        click.echo(f"  iteration {n_iter:>3}  {line}  {seconds:.2f} s", err=True)

    def winner(self):
        """Which start the fit keeps (scikit-learn's rule: the first with the largest lower
        bound), or None for a single start."""
        if not (self.several and self.ended):
            return None
        best = max(sorted(self.ended), key=lambda i: self.ended[i][0])
        return f"best of {len(self.ended)} starts: start {best + 1}"

    def pass_time(self):
        if not self.pass_seconds:
            return "no EM pass ran"
        median = f"{np.median(self.pass_seconds):.3f} s per"
        if self.several:
            return f"{median} pass, median of {len(self.pass_seconds)} (the starts share each pass)"
        return f"{median} iteration, median of {len(self.pass_seconds)}"


def handle_errors(command):
    """One clear line and exit status 1 for any error, unless --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug", False)
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                raise
            click.echo(f"daskgmm: error: {error}", err=True)
            sys.exit(1)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


def source_options(command):
    command = click.option("--dataset", help="Array inside a Zarr group or HDF5 file.")(command)
    command = click.option("--columns", help="Comma-separated Parquet/CSV columns to use.")(command)
    command = click.option("--chunk-bytes", type=int, help="Target bytes per row chunk (default 128 MiB).")(command)
    command = click.option("--flatten", is_flag=True, help="Treat every leading dimension as samples (images).")(command)
    return command


overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace an output that daskgmm wrote before (never anything else).")


def cluster_options(command):
    command = click.option("--scheduler", metavar="ADDRESS", help="Connect to a running scheduler (tcp://host:8786).")(command)
    command = click.option("--cluster-config", type=click.Path(dir_okay=False), help="Start a cluster from a YAML config.")(command)
    command = click.option("--local", "local_cluster", is_flag=True,
                           help="Start a local cluster on 127.0.0.1 (default: Dask's threaded scheduler).")(command)
    return command


def open_source(data, dataset, columns, chunk_bytes, flatten):
    from .io import open_array

    return open_array(data, dataset=dataset, columns=columns.split(",") if columns else None,
                      chunk_bytes=chunk_bytes, flatten=flatten)


def cluster_context(scheduler, cluster_config, local_cluster):
    if sum(bool(x) for x in (scheduler, cluster_config, local_cluster)) > 1:
        raise click.UsageError("use only one of --scheduler, --cluster-config and --local")
    if not (scheduler or cluster_config or local_cluster):
        return nullcontext(None)
    from .cluster import connect

    return connect(scheduler or cluster_config)


def peak_memory_mib(client):
    """Peak resident memory of this process and of every worker, in MiB."""
    # ru_maxrss is in KiB on Linux
    peaks = {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if client is not None:
        worker_peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        peaks.update({f"worker {address}": value for address, value in worker_peaks.items()})
    return peaks


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskgmm")
def main():
    """Gaussian mixture models fitted by EM on Dask, for data larger than memory."""


@main.command(epilog=EXAMPLES_FIT)
@click.argument("data")
@source_options
@click.option("-k", "--n-components", type=int, default=1, show_default=True, help="Number of components.")
@click.option("--covariance-type", type=click.Choice(["full", "tied", "diag", "spherical"]), default="full", show_default=True)
@click.option("--max-iter", type=int, default=100, show_default=True)
@click.option("--tol", type=float, default=1e-3, show_default=True)
@click.option("--reg-covar", type=float, default=1e-6, show_default=True)
@click.option("--init", "init_params", type=click.Choice(["kmeans", "k-means++", "random", "random_from_data"]),
              default="kmeans", show_default=True)
@click.option("--n-init", type=int, default=1, show_default=True)
@click.option("--random-state", type=int, default=None)
@click.option("--persist", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Keep the data in memory for the fit, or re-read them every iteration.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Compute the EM passes on the CPU or on a CUDA GPU (needs CuPy).")
@cluster_options
@click.option("--checkpoint", type=click.Path(file_okay=False), help="Resumable state, saved after every iteration.")
@click.option("--out", type=click.Path(file_okay=False), help="Write the fitted model to this directory.")
@overwrite_option
@click.option("-q", "--quiet", is_flag=True, help="Only the summary.")
@click.option("-v", "--verbose", is_flag=True, help="Also log what daskgmm decides (persist, chunking).")
@handle_errors
def fit(data, dataset, columns, chunk_bytes, flatten, n_components, covariance_type, max_iter, tol, reg_covar,
        init_params, n_init, random_state, persist, device, scheduler, cluster_config, local_cluster, checkpoint,
        out, overwrite, quiet, verbose):
    """Fit a Gaussian mixture to DATA (Zarr, HDF5, .npy, Parquet or CSV; local path or URL)."""
    import logging

    from .estimator import GaussianMixture
    from .outputs import check_output
    from .params import information_criteria

    if out:
        check_output(out, "model", overwrite=overwrite,
                     inputs=[data] + ([("the --checkpoint", checkpoint)] if checkpoint else []), what="--out")
    if checkpoint:
        check_output(checkpoint, "checkpoint", overwrite=True, inputs=[data], what="--checkpoint")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="daskgmm: %(message)s")
    with cluster_context(scheduler, cluster_config, local_cluster) as client:
        if client is not None and not quiet:
            click.echo(f"cluster: {len(client.scheduler_info()['workers'])} workers, "
                       f"dashboard {client.dashboard_link}", err=True)
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        if not quiet:
            click.echo(f"data: {X.shape[0]:,} rows x {X.shape[1]} features ({X.dtype}), "
                       f"{X.nbytes / 2**20:,.1f} MiB in {X.numblocks[0]} chunks", err=True)
        gmm = GaussianMixture(
            n_components, covariance_type=covariance_type, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
            init_params=init_params, n_init=n_init, random_state=random_state,
            persist={"auto": "auto", "yes": True, "no": False}[persist], checkpoint=checkpoint, device=device,
        )
        if not quiet:
            click.echo(f"EM: until the mean log-likelihood changes by less than {tol:g} in an iteration "
                       f"(at most {max_iter})" + (f", {n_init} starts advancing together" if n_init > 1 else ""),
                       err=True)
        progress = Progress(tol, n_init, quiet)
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gmm.fit(X, progress=progress)
        fit_seconds = time.perf_counter() - started
        bic, aic = information_criteria(gmm.score(X), X.shape[0], gmm._n_parameters())
        peaks = peak_memory_mib(client)
        dashboard = client.dashboard_link if client is not None else None
    if out:
        gmm.save(out, overwrite=overwrite)
    click.echo(f"components: {n_components} ({covariance_type}), iterations: {gmm.n_iter_}, "
               f"converged: {gmm.converged_}")
    click.echo(f"mean log-likelihood: {gmm.lower_bound_:.6f}  BIC: {bic:.6g}  AIC: {aic:.6g}")
    click.echo("weights: " + " ".join(f"{w:.4f}" for w in gmm.weights_))
    if progress.winner():
        click.echo(progress.winner())
    click.echo(f"time: {fit_seconds:.2f} s in all, {progress.pass_time()}")
    click.echo("peak memory: " + ", ".join(f"{name} {value:,.0f} MiB" for name, value in peaks.items()))
    if dashboard:
        click.echo(f"dashboard (while it ran): {dashboard}")
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    if out:
        click.echo(f"model written to {out}")


@main.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("data")
@source_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Zarr store for the result.")
@overwrite_option
@click.option("--proba", is_flag=True, help="Write probabilities (n x K) instead of labels.")
@cluster_options
@handle_errors
def predict(model, data, dataset, columns, chunk_bytes, flatten, out, overwrite, proba, scheduler, cluster_config,
            local_cluster):
    """Write the labels (or probabilities) of every row of DATA to a Zarr store, chunk by chunk.

    \b
    Example:
      daskgmm predict model/ frames.zarr --out labels.zarr
    """
    from .fitted import load_model
    from .outputs import check_output, mark_labels

    check_output(out, "labels", overwrite=overwrite, inputs=[data, ("the model", model)], what="--out")
    gmm = load_model(model)
    with cluster_context(scheduler, cluster_config, local_cluster):
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        result = gmm.predict_proba(X) if proba else gmm.predict(X)
        result.to_zarr(out, overwrite=True)
        mark_labels(out, "probabilities" if proba else "labels", model=model, data=data)
    click.echo(f"wrote {'probabilities' if proba else 'labels'} of {X.shape[0]:,} rows to {out}")


@main.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("data")
@source_options
@cluster_options
@handle_errors
def score(model, data, dataset, columns, chunk_bytes, flatten, scheduler, cluster_config, local_cluster):
    """Mean log-likelihood, BIC and AIC of DATA under MODEL.

    \b
    Example:
      daskgmm score model/ held_out.zarr
    """
    from .fitted import load_model
    from .params import information_criteria

    gmm = load_model(model)
    with cluster_context(scheduler, cluster_config, local_cluster):
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        mean = gmm.score(X)
    n = X.shape[0]
    bic, aic = information_criteria(mean, n, gmm._n_parameters())
    click.echo(f"rows: {n}  mean log-likelihood: {mean:.6f}  BIC: {bic:.6g}  AIC: {aic:.6g}")


@main.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@handle_errors
def info(model):
    """Describe a saved model.

    \b
    Example:
      daskgmm info model/
    """
    from .fitted import load_model

    gmm = load_model(model)
    click.echo(f"{gmm.n_components} components, {gmm.covariance_type} covariances, "
               f"{gmm.n_features_in_} features, {gmm._n_parameters()} free parameters")
    click.echo(f"iterations: {gmm.n_iter_}, converged: {gmm.converged_}, "
               f"mean log-likelihood: {gmm.lower_bound_:.6f}")
    names = getattr(gmm, "feature_names_in_", None)
    if names is not None:
        click.echo("features: " + ", ".join(map(str, names)))
    for k, (weight, mean) in enumerate(zip(gmm.weights_, gmm.means_)):
        click.echo(f"  component {k}: weight {weight:.4f}  mean [" + ", ".join(f"{m:.4g}" for m in mean) + "]")


@main.command()
@click.argument("data")
@source_options
@click.option("-k", "--k-range", default="1:10", show_default=True, help="K_MIN:K_MAX, both included.")
@click.option("--covariance-types", default="full,tied,diag,spherical", show_default=True)
@click.option("--criterion", type=click.Choice(["bic", "aic"]), default="bic", show_default=True)
@click.option("--n-init", type=int, default=1, show_default=True, help="Restarts per K, type and init method.")
@click.option("--init", "init_params", default="kmeans", show_default=True,
              help="Init method, or several separated by commas (each starts its own candidates): "
                   "kmeans, k-means++, random, random_from_data.")
@click.option("--max-iter", type=int, default=100, show_default=True)
@click.option("--tol", type=float, default=1e-3, show_default=True)
@click.option("--random-state", type=int, default=None)
@cluster_options
@click.option("--out", type=click.Path(file_okay=False), help="Write the best model to this directory.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), help="Write the table as CSV.")
@overwrite_option
@handle_errors
def select(data, dataset, columns, chunk_bytes, flatten, k_range, covariance_types, criterion, n_init,
           init_params, max_iter, tol, random_state, scheduler, cluster_config, local_cluster, out, table_path,
           overwrite):
    """Fit every K and covariance type in shared passes and keep the lowest BIC (or AIC).

    \b
    Example:
      daskgmm select frames.zarr -k 1:16 --covariance-types full,diag --out best/
      daskgmm select stretched.zarr -k 1:8 --init kmeans,random_from_data --n-init 3
    """
    from .outputs import check_output
    from .selection import select_model

    if out:
        check_output(out, "model", overwrite=overwrite, inputs=[data], what="--out")
    if table_path:
        check_output(table_path, "table", overwrite=overwrite,
                     inputs=[data] + ([("the --out", out)] if out else []), what="--table")
    try:
        k_min, k_max = (int(v) for v in k_range.split(":"))
    except ValueError:
        raise click.BadParameter("use K_MIN:K_MAX, e.g. 1:10", param_hint="--k-range") from None
    with cluster_context(scheduler, cluster_config, local_cluster):
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        started = time.perf_counter()
        result = select_model(X, range(k_min, k_max + 1), tuple(covariance_types.split(",")),
                              criterion=criterion, n_init=n_init, init_params=tuple(init_params.split(",")),
                              max_iter=max_iter, tol=tol, random_state=random_state)
        seconds = time.perf_counter() - started
    click.echo(f"{'K':>3} {'covariance':>10} {'init':>16} {'restart':>7} {'BIC':>14} {'AIC':>14} {'iterations':>10}")
    for row in result.table:
        click.echo(f"{row['n_components']:>3} {row['covariance_type']:>10} {row['init_params']:>16} {row['restart']:>7} "
                   f"{row['bic']:>14.6g} {row['aic']:>14.6g} {row['n_iter']:>10}"
                   + (f"  failed: {row['error']}" if row["error"] else ""))
    best = result.best_estimator_
    click.echo(f"best by {criterion.upper()}: K={best.n_components}, {best.covariance_type}; "
               f"{len(result.candidates)} candidates in {result.passes} reads of the data, {seconds:.1f} s")
    if table_path:
        import csv

        with open(table_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.table[0]))
            writer.writeheader()
            writer.writerows(result.table)
    if out:
        best.save(out, overwrite=overwrite)
        click.echo(f"best model written to {out}")


@main.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args):
    """The main job on a local cluster (see `daskgmm demo --help`)."""
    from .demo import main as demo_main

    demo_main(list(args))


if __name__ == "__main__":
    main()
