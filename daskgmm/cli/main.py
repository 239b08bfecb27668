"""The ``daskgmm`` command: fit, select, cluster, certificates, demo here; predict, score and
info (the commands on a saved model) in :mod:`daskgmm.cli.model_commands`; what they share in
:mod:`daskgmm.cli.common`.

Errors print one line on stderr and exit with status 1 (``--debug`` shows the
traceback); usage errors exit with 2.
"""

from __future__ import annotations

import sys
import time
import warnings

import click

from ..em.progress import TextProgress
from .common import (
    COVARIANCE_TYPES,
    INIT_METHODS,
    CandidatesProgress,
    Terminated,
    choices_list,
    cluster_context,
    cluster_options,
    echo_json,
    handle_errors,
    json_option,
    live_line,
    log_decisions,
    missing_option,
    open_source,
    overwrite_option,
    parse_k_values,
    peak_memory_mib,
    raise_terminated,
    say_what_runs,
    source_options,
    source_words,
    terminal_line,
)
from .model_commands import info, predict, score

EXAMPLES_FIT = """
\b
Examples:
  daskgmm fit frames.zarr -k 16 --covariance-type diag --out model/
  daskgmm fit features.h5 --dataset mfcc -k 32 --cluster-config cluster_configs/slurm.yaml --out model/
  daskgmm fit table/ --columns r,g,b -k 5 --scheduler tcp://10.0.0.5:8786 --checkpoint ck/ --out model/
  daskgmm fit frames.zarr -k 20 --bayesian --out model/      # the prior switches off what is not needed
  daskgmm fit frames.zarr -k 16 --algorithm coarse-to-fine   # a few full passes instead of dozens
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskgmm")
def commands():
    """Gaussian mixture models fitted by EM on Dask, for data larger than memory."""


for _command in (predict, score, info):  # the commands on a saved model (cli_model.py)
    commands.add_command(_command)


def main(args=None):
    """The ``daskgmm`` command: click's commands, with every usage error as one
    ``daskgmm: error:`` line (exit status 2), Ctrl-C and SIGTERM as one line each (exit status
    130 and 143)."""
    import signal

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return commands.main(args, prog_name="daskgmm", standalone_mode=False)
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "daskgmm"
        click.echo(f"daskgmm: error: {error.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"daskgmm: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt) as error:
        terminated = isinstance(error, Terminated) or isinstance(error.__cause__, Terminated)
        click.echo(f"daskgmm: {'terminated (SIGTERM)' if terminated else 'interrupted'}", err=True)
        sys.exit(143 if terminated else 130)


@commands.command(epilog=EXAMPLES_FIT)
@click.argument("data")
@source_options
@click.option("-k", "--n-components", type=click.IntRange(min=1), default=1, show_default=True, help="Number of components.")
@click.option("--covariance-type", type=click.Choice(COVARIANCE_TYPES), default="full", show_default=True)
@click.option("--max-iter", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-3, show_default=True)
@click.option("--reg-covar", type=click.FloatRange(min=0), default=1e-6, show_default=True)
@click.option("--init", "init_params", type=click.Choice(INIT_METHODS),
              default="kmeans", show_default=True)
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--random-state", type=int, default=None)
@click.option("--persist", type=click.Choice(["auto", "true", "false", "yes", "no"], case_sensitive=False),
              default="auto", show_default=True,
              help="Keep the data in memory for the fit (true), or re-read them every iteration (false); "
                   "auto: keep them when they fit comfortably. Python: persist=True/False/'auto'.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Compute the EM passes on the CPU or on a CUDA GPU (needs CuPy).")
@click.option("--algorithm", type=click.Choice(["batch", "coarse-to-fine", "incremental", "online"]), default="batch",
              show_default=True,
              help="How EM passes over the data. batch: scikit-learn's EM. coarse-to-fine: EM on the initialisation "
                   "sample in memory first, then a few full passes. incremental: an M-step after each wave of "
                   "chunks. online: one pass, about 1000 online-EM steps (data too large to pass over often).")
@click.option("--bayesian", "weight_prior", is_flag=False, flag_value="dirichlet_process", default=None,
              type=click.Choice(["dirichlet_process", "dirichlet_distribution"]),
              help="Fit a variational Bayesian mixture (BayesianGaussianMixture) whose weight prior switches off "
                   "the components the data do not need: give a generous -k. The prior: dirichlet_process "
                   "(the default with a bare --bayesian) or dirichlet_distribution.")
@click.option("--weight-concentration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --bayesian: the weight prior's concentration (default 1/k); smaller switches off more.")
@click.option("--tol-per-row", is_flag=True,
              help="With --bayesian: judge --tol on the lower bound per row (scikit-learn's total asks for a "
                   "relative change of tol/n, needlessly strict on many rows).")
@missing_option
@cluster_options
@click.option("--checkpoint", type=click.Path(file_okay=False), help="Resumable state, saved after every iteration.")
@click.option("--out", type=click.Path(file_okay=False), help="Write the fitted model to this directory.")
@overwrite_option
@click.option("-q", "--quiet", is_flag=True, help="Only the summary.")
@click.option("-v", "--verbose", is_flag=True, help="Also log what daskgmm decides (persist, chunking).")
@json_option
@handle_errors
def fit(data, dataset, columns, chunk_bytes, flatten, n_components, covariance_type, max_iter, tol, reg_covar,
        init_params, n_init, random_state, persist, device, algorithm, weight_prior, weight_concentration, tol_per_row,
        missing, scheduler, cluster_config, local_cluster, checkpoint, out, overwrite, quiet, verbose, as_json):
    """Fit a Gaussian mixture to DATA (Zarr, HDF5, .npy, Parquet or CSV; local path or URL)."""
    from ..io.outputs import check_output

    if weight_prior is None and (weight_concentration is not None or tol_per_row):
        raise click.UsageError("--weight-concentration and --tol-per-row need --bayesian")
    if weight_prior is not None and missing != "raise":
        raise click.UsageError("--missing em is GaussianMixture's: it does not combine with --bayesian")
    if algorithm == "online" and (checkpoint or n_init > 1):
        raise click.UsageError("--algorithm online makes one pass: it takes neither --checkpoint nor --n-init")
    if out:
        check_output(out, "model", overwrite=overwrite,
                     inputs=[data] + ([("the --checkpoint", checkpoint)] if checkpoint else []), what="--out")
    if checkpoint:
        check_output(checkpoint, "checkpoint", overwrite=True, inputs=[data], what="--checkpoint")
    if verbose:
        log_decisions()
    with cluster_context(scheduler, cluster_config, local_cluster) as client:
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        say_what_runs(X, client, quiet)
        settings = dict(
            n_components=n_components, covariance_type=covariance_type, max_iter=max_iter, tol=tol,
            reg_covar=reg_covar, init_params=init_params, n_init=n_init, random_state=random_state,
            persist={"auto": "auto", "true": True, "yes": True, "false": False, "no": False}[persist.lower()],
            checkpoint=checkpoint, device=device, algorithm="batch" if algorithm == "online" else algorithm,
        )
        # scikit-learn: imported once the data are found
        if weight_prior is None:
            from ..mixture.gaussian import GaussianMixture

            gmm, bound = GaussianMixture(**settings, missing=missing), "mean log-likelihood"
        else:
            from ..mixture.bayesian import BayesianGaussianMixture

            gmm = BayesianGaussianMixture(**settings, weight_concentration_prior_type=weight_prior,
                                          weight_concentration_prior=weight_concentration, tol_per_row=tol_per_row)
            bound = "lower bound" + (" per row" if tol_per_row else " (a total over the rows)")
        if not quiet and algorithm == "online":
            click.echo(f"online EM: one pass over the data ({X.numblocks[0]} chunks)", err=True)
        elif not quiet:
            click.echo(f"EM ({algorithm}): until the {bound} changes by less than {tol:g} in an iteration "
                       f"(at most {max_iter})" + (f", {n_init} starts advancing together" if n_init > 1 else ""),
                       err=True)
        # the change shown is the total's: so is the tolerance beside it
        progress = TextProgress(tol * X.shape[0] if tol_per_row else tol, n_init,
                                write=None if quiet else terminal_line,
                                live=None if quiet or not sys.stderr.isatty() else live_line,
                                quantity=gmm._bound_name)
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if algorithm == "online":
                    gmm.partial_fit(X)
                else:
                    gmm.fit(X, progress=progress)
            except KeyboardInterrupt:
                if checkpoint:
                    click.echo(f"daskgmm: stopped. {checkpoint} holds every start up to its last finished "
                               "iteration: run the same command again to resume from there.", err=True)
                raise
        fit_seconds = time.perf_counter() - started
        if weight_prior is None:  # one more pass: BIC and AIC need the final parameters' likelihood
            from ..model.params import information_criteria

            bic, aic = information_criteria(gmm.score(X), X.shape[0], gmm._n_parameters())
        peaks = peak_memory_mib(client)
        dashboard = client.dashboard_link if client is not None else None
    if out:
        gmm._data_source["source"] = source_words(data, dataset, columns, flatten)
        gmm.save(out, overwrite=overwrite)
    if as_json:
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        model = (dict(mean_log_likelihood=gmm.lower_bound_, bic=bic, aic=aic) if weight_prior is None else
                 dict(estimator="BayesianGaussianMixture", weight_concentration_prior_type=weight_prior,
                      lower_bound=gmm.lower_bound_, n_active_components=gmm.n_active_components_))
        echo_json(dict(n_components=n_components, covariance_type=covariance_type, n_iter=gmm.n_iter_,
                       converged=gmm.converged_, **model,
                       weights=gmm.weights_.tolist(), means=gmm.means_.tolist(), best_start=progress.best_start(),
                       fit_seconds=fit_seconds, pass_seconds=progress.pass_seconds, peak_memory_mib=peaks,
                       model=out, warnings=[str(w.message) for w in caught]))
        return
    click.echo(f"components: {n_components} ({covariance_type}), " + (
        f"online EM: {gmm.n_steps_} steps in one pass" if algorithm == "online" else
        f"iterations: {gmm.n_iter_}, converged: {gmm.converged_}"))
    if weight_prior is None:
        click.echo(f"mean log-likelihood: {gmm.lower_bound_:.6f}  BIC: {bic:,.1f}  AIC: {aic:,.1f}")
    else:
        click.echo(f"Bayesian ({weight_prior}): {gmm.n_active_components_} of {n_components} components carry "
                   f"weight (the prior switched off {n_components - gmm.n_active_components_})  "
                   f"lower bound: {gmm.lower_bound_:.6f}")
    click.echo("weights: " + " ".join(f"{w:.4f}" for w in gmm.weights_))
    if progress.winner():
        click.echo(progress.winner())
    click.echo(f"time: {fit_seconds:.2f} s in all" + ("" if algorithm == "online" else f", {progress.pass_time()}"))
    click.echo("peak memory: " + ", ".join(f"{name} {value:,.0f} MiB" for name, value in peaks.items()))
    if dashboard:
        click.echo(f"dashboard (while it ran): {dashboard}")
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    if out:
        click.echo(f"model written to {out}")


@commands.command()
@click.argument("data")
@source_options
@click.option("-k", "--k-range", "ks", default="1:10", show_default=True, callback=parse_k_values,
              help="The K to try: K_MIN:K_MAX (both included), a list (1,2,4,8) or one K (5).")
@click.option("--covariance-types", "types", default="full,tied,diag,spherical", show_default=True,
              callback=choices_list(COVARIANCE_TYPES))
@click.option("--criterion", type=click.Choice(["bic", "aic"]), default="bic", show_default=True)
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True, help="Restarts per K, type and init method.")
@click.option("--init", "methods", default="kmeans", show_default=True, callback=choices_list(INIT_METHODS),
              help="Init method, or several separated by commas (each starts its own candidates): "
                   "kmeans, k-means++, random, random_from_data.")
@click.option("--max-iter", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-3, show_default=True)
@click.option("--random-state", type=int, default=None)
@missing_option
@cluster_options
@click.option("--out", type=click.Path(file_okay=False), help="Write the best model to this directory.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), help="Write the table as CSV.")
@overwrite_option
@click.option("-q", "--quiet", is_flag=True, help="Only the table and the choice.")
@click.option("-v", "--verbose", is_flag=True, help="Also log what daskgmm decides (persist, chunking).")
@json_option
@handle_errors
def select(data, dataset, columns, chunk_bytes, flatten, ks, types, criterion, n_init, methods, max_iter, tol,
           random_state, missing, scheduler, cluster_config, local_cluster, out, table_path, overwrite, quiet, verbose, as_json):
    """Fit every K and covariance type in shared passes and keep the lowest BIC (or AIC).

    \b
    Example:
      daskgmm select frames.zarr -k 1:16 --covariance-types full,diag --out best/
      daskgmm select stretched.zarr -k 1:8 --init kmeans,random_from_data --n-init 3
    """
    from ..io.outputs import check_output

    if out:
        check_output(out, "model", overwrite=overwrite, inputs=[data], what="--out")
    if table_path:
        check_output(table_path, "table", overwrite=overwrite,
                     inputs=[data] + ([("the --out", out)] if out else []), what="--table")
    # the usage is checked (click's callbacks parsed -k and the lists): now the heavy imports
    from ..mixture.selection import select_model

    if verbose:
        log_decisions()
    with cluster_context(scheduler, cluster_config, local_cluster) as client:
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        count = len(ks) * len(types) * len(methods) * n_init
        say_what_runs(X, client, quiet, f"{count} candidates (K {ks[0]}..{ks[-1]} x {len(types)} covariance "
                                         f"types x {len(methods)} init methods x {n_init} restarts) in shared passes")
        started = time.perf_counter()
        result = select_model(X, ks, tuple(types), criterion=criterion, n_init=n_init, init_params=tuple(methods),
                              max_iter=max_iter, tol=tol, random_state=random_state, missing=missing,
                              progress=CandidatesProgress(count, tol, quiet))
        seconds = time.perf_counter() - started
    best = result.best_estimator_
    if as_json:
        echo_json(dict(criterion=criterion, best=dict(n_components=best.n_components,
                                                      covariance_type=best.covariance_type),
                       passes=result.passes, seconds=seconds, table=result.table, model=out))
    else:
        click.echo(result.format_table())
    if not as_json:
        click.echo(f"best by {criterion.upper()}: K={best.n_components}, {best.covariance_type}; "
                   f"{len(result.candidates)} candidates in {result.passes} reads of the data, {seconds:.1f} s")
    if table_path:
        import csv

        with open(table_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.table[0]))
            writer.writeheader()
            writer.writerows(result.table)
    if out:
        from ..io.inputs import describe_input

        best._data_source = describe_input(source_words(data, dataset, columns, flatten), X, None)
        best.save(out, overwrite=overwrite)
        if not as_json:
            click.echo(f"best model written to {out}")


@commands.command()
@click.argument("config")
@handle_errors
def cluster(config):
    """Check a cluster config and show what it would start, starting nothing (a dry run).

    Needs neither the certificates nor a scheduler: for slurm and pbs it prints the batch job
    script, and it names whatever is missing to really start it (a package, a TLS file).

    \b
    Example:
      daskgmm cluster cluster_configs/slurm.yaml
    """
    from ..cluster import dry_run, load_config

    click.echo(dry_run(load_config(config)))


@commands.command()
@click.argument("folder", default="~/.daskgmm/tls")
@handle_errors
def certificates(folder):
    """Make a private CA and a certificate it signs in FOLDER (default ~/.daskgmm/tls, the folder
    cluster_configs/ name), for TLS between client, scheduler and workers. Replaces nothing.

    \b
    Example:
      daskgmm certificates                 # then copy ~/.daskgmm/tls to every host of the cluster
    """
    from ..runtime.certificates import make_certificates

    written = make_certificates(folder)
    click.echo(f"wrote {', '.join(str(path) for path in written)}")
    click.echo("Keep the keys private (mode 0600); copy the folder to every host that runs workers.")


@commands.command()
@click.option("--n-samples", type=click.IntRange(min=1000), default=24_000_000, show_default=True,
              help="Rows of the synthetic mixture (written once to Zarr, then re-read every pass).")
@click.option("--n-features", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--n-components", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Local workers (1 thread each).")
@click.option("--worker-memory", default="600MiB", show_default=True, help="Memory limit per worker.")
@click.option("--data-dir", default="data", show_default=True, help="Where the data and the plots go.")
@handle_errors
def demo(n_samples, n_features, n_components, workers, worker_memory, data_dir):
    """The main job on the embedded default: fit a synthetic mixture larger than the local
    cluster's memory, re-read from Zarr every pass, and compare the model with the truth.

    \b
    Example:
      daskgmm demo                                  # what `make demo` runs (about a minute)
      daskgmm demo --n-samples 2000000 --workers 1  # a smaller one
    """
    from .demo import run_demo

    run_demo(n_samples, n_features, n_components, workers, worker_memory, data_dir)


if __name__ == "__main__":
    main()
