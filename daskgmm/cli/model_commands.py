"""The commands on a saved model: ``daskgmm predict``, ``score`` and ``info``.

They load a model directory (or, for ``info``, only read its files) and stream data through it;
:mod:`daskgmm.cli.main` registers them beside the commands that fit.
"""

from __future__ import annotations

import time

import click
import numpy as np

from .common import (
    cluster_context,
    cluster_options,
    echo_json,
    existing_directory,
    handle_errors,
    json_option,
    open_source,
    overwrite_option,
    say_what_runs,
    source_options,
)


@click.command()
@click.argument("model")
@click.argument("data")
@source_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Zarr store for the result.")
@overwrite_option
@click.option("--proba", is_flag=True, help="Write probabilities (n x K) instead of labels.")
@cluster_options
@click.option("-q", "--quiet", is_flag=True, help="Only the closing line.")
@handle_errors
def predict(model, data, dataset, columns, chunk_bytes, flatten, out, overwrite, proba, scheduler, cluster_config,
            local_cluster, quiet):
    """Write the labels (or probabilities) of every row of DATA to a Zarr store, chunk by chunk.

    Labels are stored in the smallest integer type that holds K; with --flatten they keep the
    samples' shape (an H x W x C image gives H x W labels, or H x W x K probabilities).

    \b
    Example:
      daskgmm predict model/ frames.zarr --out labels.zarr
    """
    from ..io.outputs import check_output, mark_labels
    from ..mixture.loading import load_model

    check_output(out, "labels", overwrite=overwrite, inputs=[data, ("the model", model)], what="--out")
    gmm = load_model(existing_directory(model, "model"))
    with cluster_context(scheduler, cluster_config, local_cluster) as client:
        X, sample_shape = open_source(data, dataset, columns, chunk_bytes, flatten, with_sample_shape=True)
        say_what_runs(X, client, quiet)
        started = time.perf_counter()
        if proba:
            result = gmm.predict_proba(X).reshape(sample_shape + (gmm.n_components,))
        else:
            result = gmm.predict(X).astype(np.min_scalar_type(gmm.n_components - 1)).reshape(sample_shape)
        result.to_zarr(out, overwrite=True)
        mark_labels(out, "probabilities" if proba else "labels", model=model, data=data)
    click.echo(f"wrote {'probabilities' if proba else 'labels'} of {X.shape[0]:,} rows to {out} "
               f"(shape {result.shape}, {result.dtype}) in {time.perf_counter() - started:.1f} s")


@click.command()
@click.argument("model")
@click.argument("data")
@source_options
@cluster_options
@click.option("-q", "--quiet", is_flag=True, help="Only the result line.")
@json_option
@handle_errors
def score(model, data, dataset, columns, chunk_bytes, flatten, scheduler, cluster_config, local_cluster, quiet,
          as_json):
    """Mean log-likelihood, BIC and AIC of DATA under MODEL (no BIC/AIC for a Bayesian mixture).

    \b
    Example:
      daskgmm score model/ held_out.zarr
    """
    from ..mixture.loading import load_model
    from ..model.params import information_criteria

    gmm = load_model(existing_directory(model, "model"))
    with cluster_context(scheduler, cluster_config, local_cluster) as client:
        X = open_source(data, dataset, columns, chunk_bytes, flatten)
        say_what_runs(X, client, quiet)
        mean = gmm.score(X)
    n = X.shape[0]
    if not hasattr(gmm, "_n_parameters"):  # a variational mixture: no BIC/AIC, as in scikit-learn
        if as_json:
            echo_json(dict(rows=n, mean_log_likelihood=mean))
            return
        click.echo(f"rows: {n}  mean log-likelihood: {mean:.6f}  (a Bayesian mixture: no BIC/AIC)")
        return
    bic, aic = information_criteria(mean, n, gmm._n_parameters())
    if as_json:
        echo_json(dict(rows=n, mean_log_likelihood=mean, bic=bic, aic=aic))
        return
    click.echo(f"rows: {n}  mean log-likelihood: {mean:.6f}  BIC: {bic:,.1f}  AIC: {aic:,.1f}")


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON (for scripts).")
@handle_errors
def info(model, as_json):
    """Describe a saved model: size, fit settings, outcome, and every component's weight, mean and
    spread (square roots of the covariance diagonal). Reads the files only (no scikit-learn, no Dask).

    \b
    Example:
      daskgmm info model/
      daskgmm info model/ --json
    """
    import json

    from ..mixture.model_files import describe_model

    description = describe_model(existing_directory(model, "model"))
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    bayesian = description["model"] == "BayesianGaussianMixture"
    click.echo(f"{description['n_components']} components, {description['covariance_type']} covariances, "
               f"{description['n_features']} features ({description['dtype']}), "
               f"{description['n_parameters']} free parameters"
               + (f"; Bayesian: {description['n_active_components']} components carry weight" if bayesian else ""))
    click.echo("fit settings: " + ", ".join(f"{name}={value}" for name, value in description["settings"].items()))
    click.echo(f"iterations: {description['n_iter']}, converged: {description['converged']}, "
               + ("lower bound" if bayesian else "mean log-likelihood") + f": {description['lower_bound']:.6f}")
    fitted_on = description["data"]
    if fitted_on is not None:
        click.echo(f"fitted on: {fitted_on['source']} ({fitted_on['n_samples']:,} rows x {fitted_on['n_features']} "
                   f"features, {fitted_on['dtype']}{', weighted' if fitted_on['weighted'] else ''})")
    if description["feature_names"] is not None:
        click.echo("features: " + ", ".join(map(str, description["feature_names"])))
    for k, component in enumerate(description["components"]):
        click.echo(f"  component {k}: weight {component['weight']:.4f}  mean ["
                   + ", ".join(f"{m:.4g}" for m in component["mean"]) + "]  spread ["
                   + ", ".join(f"{v:.4g}" for v in component["spread"]) + "]")
