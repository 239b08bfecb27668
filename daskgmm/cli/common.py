"""What the ``daskgmm`` commands share: one-line errors, argument checks, the options every
command takes, the cluster a command runs on, progress lines and JSON output."""

from __future__ import annotations

import functools
import resource
import sys
from contextlib import contextmanager

import click


def live_line(text):
    """A line a terminal rewrites in place (the chunks done within a pass)."""
    click.echo(f"\r{text}\033[K", nl=False, err=True)


def terminal_line(text):
    """A progress line on stderr, over any live line."""
    click.echo(f"\r{text}\033[K" if sys.stderr.isatty() else text, err=True)


def log_decisions():
    """``-v``: daskgmm's own decisions (persist or not, chunking) on stderr; Dask's logs stay out
    (see :func:`cluster_context`)."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("daskgmm: %(message)s"))
    logging.getLogger("daskgmm").addHandler(handler)
    logging.getLogger("daskgmm").setLevel(logging.INFO)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as JSON on stdout (for scripts); progress stays on stderr.")


def echo_json(value):
    """``value`` as strict JSON (NaN and infinities as null, NumPy numbers as numbers)."""
    import json
    import math

    def plain(v):
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    click.echo(json.dumps(plain(value), indent=2, allow_nan=False))


def say_what_runs(X, client, quiet, plan=None):
    """The cluster, the data and (optionally) the plan, on stderr, before the long part starts."""
    if quiet:
        return
    if client is not None:
        click.echo(f"cluster: {len(client.scheduler_info()['workers'])} workers, "
                   f"dashboard {client.dashboard_link}", err=True)
    click.echo(f"data: {X.shape[0]:,} rows x {X.shape[1]} features ({X.dtype}), "
               f"{X.nbytes / 2**20:,.1f} MiB in {X.numblocks[0]} chunks", err=True)
    if plan:
        click.echo(plan, err=True)


class CandidatesProgress:
    """``select``'s reporter: one line per EM pass, how many candidates still run."""

    def __init__(self, count, tol, quiet=False):
        self.count, self.tol, self.quiet = count, tol, quiet
        self.iterated, self.finished, self.passes = 0, set(), 0

    def iteration_end(self, index, n_iter, change, lower_bound):
        self.iterated += 1
        if abs(change) < self.tol:
            self.finished.add(index)

    def pass_end(self, seconds):
        self.passes += 1
        if not self.quiet:
            click.echo(f"  EM pass {self.passes:>3}: {self.iterated} of {self.count} candidates still iterating, "
                       f"{len(self.finished)} converged  {seconds:.2f} s", err=True)
        self.iterated = 0


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
            # errors that know the command line's words for what to do say it in them
            message = str(getattr(error, "command_line_message", error))
            message = message.replace("fit GaussianMixture(missing='em')", "pass --missing em")
            message = message.replace("With missing='em'", "With --missing em")
            click.echo(f"daskgmm: error: {message}", err=True)
            sys.exit(1)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


def source_options(command):
    command = click.option("--dataset", help="Array inside a Zarr group or HDF5 file.")(command)
    command = click.option("--columns", help="Comma-separated Parquet/CSV columns to use.")(command)
    command = click.option("--chunk-bytes", type=click.IntRange(min=1), help="Target bytes per row chunk (default 128 MiB).")(command)
    command = click.option("--flatten", is_flag=True, help="Treat every leading dimension as samples (images).")(command)
    return command


overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace an output that daskgmm wrote before (never anything else).")
missing_option = click.option(
    "--missing", type=click.Choice(["raise", "em"]), default="raise", show_default=True,
    help="What a NaN in the data means. raise: an error. em: a missing value; EM uses every observed value "
         "(exact when values are missing at random), and the saved model predicts and scores rows with NaN too.")


TLS_OPTIONS = {"--tls-ca-file": "tls_ca_file", "--tls-cert": "tls_client_cert", "--tls-key": "tls_client_key"}


def _remember_tls_file(context, parameter, value):
    # kept on the context, not passed to every command: only cluster_context uses them
    if value is not None:
        context.meta.setdefault("daskgmm.tls", {})[TLS_OPTIONS[parameter.opts[0]]] = value
    return value


def cluster_options(command):
    for option, what in reversed([("--tls-ca-file", "the CA certificate"), ("--tls-cert", "this client's certificate"),
                                  ("--tls-key", "this client's private key")]):
        command = click.option(option, type=click.Path(dir_okay=False), expose_value=False, callback=_remember_tls_file,
                               help=f"For a tls:// --scheduler: {what} (PEM), as `dask worker` takes it.")(command)
    command = click.option("--scheduler", metavar="ADDRESS",
                           help="Connect to a running scheduler (tcp://host:8786; tls://host:8786 with --tls-*).")(command)
    command = click.option("--cluster-config", type=click.Path(dir_okay=False), help="Start a cluster from a YAML config.")(command)
    command = click.option("--local", "local_cluster", is_flag=True,
                           help="Start a local cluster on 127.0.0.1 (default: Dask's threaded scheduler).")(command)
    return command


class CommandLineError(Exception):
    """An error whose message is all the user needs (printed as one ``daskgmm: error:`` line)."""


def existing_directory(path, what):
    """``path`` if it is a directory; else one clear line naming what was expected there."""
    from pathlib import Path

    if not Path(path).exists():
        raise CommandLineError(f"{what} directory {path} does not exist")
    if not Path(path).is_dir():
        raise CommandLineError(f"{path} is a file, not a {what} directory (as written by `daskgmm fit --out`)")
    return path


COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def choices_list(choices):
    """A click callback that parses a comma-separated list of ``choices`` (each kept once, in order)
    and names the first value that is not one of them."""

    def parse(ctx, param, text):
        values = list(dict.fromkeys(value.strip() for value in text.split(",")))
        for value in values:
            if value not in choices:
                raise click.BadParameter(f"{value!r} is not one of {', '.join(choices)} (separate several by "
                                         "commas)", ctx=ctx, param=param)
        return values

    return parse


def parse_k_values(ctx, param, text):
    """``-k`` of ``select`` (a click callback): "3:8" (both included), "1,2,4,8" or "5", as a sorted
    list of K >= 1."""
    try:
        if ":" in text:
            low, high = (int(v) for v in text.split(":"))
            if low > high:
                raise click.BadParameter(f"{text}: the range is empty (K_MIN {low} > K_MAX {high}); "
                                         f"did you mean {high}:{low}?", param_hint="'-k' / '--k-range'")
            values = list(range(low, high + 1))
        else:
            values = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise click.BadParameter(f"{text!r}: use K_MIN:K_MAX (1:10), a list (1,2,4,8) or one K (5)",
                                 param_hint="'-k' / '--k-range'") from None
    if values[0] < 1:
        raise click.BadParameter(f"{text}: every K must be at least 1", param_hint="'-k' / '--k-range'")
    return values


def source_words(data, dataset, columns, flatten):
    """The data as the command line named them (a model file records it for ``info``)."""
    options = [f"--dataset {dataset}" if dataset else "", f"--columns {columns}" if columns else "",
               "--flatten" if flatten else ""]
    return " ".join([data] + [option for option in options if option])


def open_source(data, dataset, columns, chunk_bytes, flatten, with_sample_shape=False):
    """The data as rows (and, if asked, the samples' shape before --flatten, e.g. an image's (H, W))."""
    from pathlib import Path

    if "://" not in data and not any(ch in data for ch in "*?[") and not Path(data).exists():
        raise CommandLineError(f"{data}: no such file or directory. Check the path.")  # before importing Dask
    from ..io.stores import open_samples

    rows, sample_shape = open_samples(data, dataset=dataset, columns=columns.split(",") if columns else None,
                                      chunk_bytes=chunk_bytes, flatten=flatten)
    return (rows, sample_shape) if with_sample_shape else rows


@contextmanager
def cluster_context(scheduler, cluster_config, local_cluster):
    """The client of the cluster the options ask for (None: Dask's threaded scheduler). Dask's own
    log lines (worker restarts, failed tasks) are kept out: what went wrong comes as one
    daskgmm error line (--debug adds the traceback)."""
    import logging

    from ..runtime.resources import worker_deaths_explained

    if sum(bool(x) for x in (scheduler, cluster_config, local_cluster)) > 1:
        raise click.UsageError("use only one of --scheduler, --cluster-config and --local")
    tls_files = click.get_current_context().meta.get("daskgmm.tls", {})
    if tls_files and not (scheduler or "").startswith("tls://"):
        raise click.UsageError("--tls-ca-file, --tls-cert and --tls-key are for a tls:// --scheduler "
                               "(a --cluster-config names its certificates under security:)")
    if not (scheduler or cluster_config or local_cluster):
        yield None
        return
    from ..cluster import connect

    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with connect(scheduler or cluster_config, tls_files=tls_files) as client, worker_deaths_explained():
        yield client


def peak_memory_mib(client):
    """Peak resident memory of this process and of every worker, in MiB."""
    # ru_maxrss is in KiB on Linux
    peaks = {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if client is not None:
        worker_peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        peaks.update({f"worker {address}": value for address, value in worker_peaks.items()})
    return peaks


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that what is running stops the same way (a checkpoint
    keeps its last finished iteration)."""


def raise_terminated(signum, frame):
    raise Terminated()
