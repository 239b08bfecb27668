"""The EM loop over a row-chunked Dask array. Knows Dask, not scikit-learn.

One iteration is one pass: a task per chunk computes the log-likelihood under
the current parameters and the statistics for the next M-step
(:func:`daskgmm.kernels.chunk_statistics`); the statistics are merged in a
tree of fan-in ``split_every``; the driver runs the M-step. The parameters
enter the graph once per pass as a single key, so each worker receives them
once, whatever the number of chunks.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import dask
import numpy as np

from .data import RowData
from .kernels import GaussianAssigner, chunk_statistics, chunk_statistics_many
from .params import CollapsedComponentWarning, GaussianParams, m_step, reseed_collapsed
from .runtime import active_client, blas_threads_for, memory_budget
from .stats import SufficientStats, merge_stats, merge_stats_lists

DEFAULT_SPLIT_EVERY = 16
logger = logging.getLogger("daskgmm")


class Reporter(Protocol):
    """Receives progress of a fit (the estimator prints scikit-learn's verbose lines)."""

    def init_begin(self, init_index: int) -> None: ...

    def iteration_end(self, n_iter: int, change: float, lower_bound: float) -> None: ...

    def init_end(self, lower_bound: float, converged: bool) -> None: ...


class SilentReporter:
    def init_begin(self, init_index):
        pass

    def iteration_end(self, n_iter, change, lower_bound):
        pass

    def init_end(self, lower_bound, converged):
        pass


@dataclass
class FitResult:
    """Outcome of one EM run (or the best of several)."""

    params: GaussianParams
    lower_bound: float
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def place_data(data: RowData, persist="auto") -> RowData:
    """Decide, once per fit, whether the data are kept in memory or re-read every pass.

    - In-memory (NumPy) input on a distributed cluster is sent to the workers
      once, instead of inside every pass's graph; locally it is already there.
    - Dask input is persisted when ``persist`` is True, or when it is
      "auto" and the data fit comfortably in the memory there is
      (:func:`memory_budget`); otherwise every pass reads it from its source,
      chunk by chunk, and memory stays flat.
    """
    client = active_client()
    if data.in_memory:
        if client is None:
            return data
        persist = True
    elif persist == "auto":
        nbytes = data.X.nbytes + (0 if data.sample_weight is None else data.sample_weight.nbytes)
        chunk_bytes = max(data.X.chunks[0]) * data.n_features * data.dtype.itemsize
        persist = nbytes <= memory_budget(client, chunk_bytes)
    if not persist:
        logger.info("reading %.1f MiB from the source in every pass", data.X.nbytes / 2**20)
        return data
    logger.info("keeping %.1f MiB in memory for the fit", data.X.nbytes / 2**20)
    # dask.persist uses the active scheduler: a distributed Client if there is one.
    if data.sample_weight is None:
        (X,) = dask.persist(data.X)
        return RowData(X, None, in_memory=data.in_memory)
    X, weights = dask.persist(data.X, data.sample_weight)
    return RowData(X, weights, in_memory=data.in_memory)


def tree_merge(parts, split_every=DEFAULT_SPLIT_EVERY, merge=merge_stats):
    """Merge delayed partial results in a tree of fan-in ``split_every``."""
    split_every = max(2, int(split_every))
    while len(parts) > 1:
        parts = [
            dask.delayed(merge, pure=True)(*parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    return parts[0]


def _chunk_tasks(data: RowData, make_task):
    """``make_task(x_block, w_block, row_offset)`` for every chunk of the data."""
    x_blocks = data.X.to_delayed().ravel()
    if data.sample_weight is None:
        w_blocks = [None] * len(x_blocks)
    else:
        w_blocks = data.sample_weight.to_delayed().ravel()
    return [make_task(x, w, offset) for x, w, offset in zip(x_blocks, w_blocks, data.row_offsets)]


def _check_finite(stats: SufficientStats):
    if stats.n_nonfinite:
        raise ValueError(
            f"Input X contains NaN or infinity in {stats.n_nonfinite} of {stats.n_rows} "
            f"rows (the first at row {stats.first_nonfinite}). GaussianMixture cannot "
            "fit non-finite values: drop or impute those rows first."
        )


def statistics_kernel(device: str = "cpu"):
    """The chunk task of a pass: :func:`daskgmm.kernels.chunk_statistics`, or its CuPy twin
    :func:`daskgmm.gpu.chunk_statistics` for ``device="cuda"`` (same signature and result)."""
    if device == "cuda":
        from . import gpu

        return gpu.chunk_statistics
    return chunk_statistics


def per_row_pass(X, params: GaussianParams, output: str, device: str = "cpu"):
    """Every row's ``output`` ("label", "proba" or "log_norm") as a lazy Dask array with ``X``'s
    row chunks: :func:`daskgmm.kernels.per_row` per chunk, or its GPU twin for ``device="cuda"``.
    The parameters enter the graph once, as one key."""
    if device == "cuda":
        from . import gpu as backend
    else:
        from . import kernels as backend
    params_key = dask.delayed(params, pure=True)
    if output == "proba":
        return X.map_blocks(backend.per_row, params_key, output,
                            chunks=(X.chunks[0], (params.n_components,)), dtype=X.dtype)
    return X.map_blocks(backend.per_row, params_key, output, drop_axis=1,
                        dtype=np.int64 if output == "label" else X.dtype)


def pass_graph(
    data: RowData,
    assigner,
    covariance_type: str,
    n_components: int,
    split_every: int = DEFAULT_SPLIT_EVERY,
    block_rows: int | None = None,
    track_worst: int = 0,
    device: str = "cpu",
):
    """The graph of one pass: a statistics task per chunk, merged in a tree.

    Returns a ``Delayed`` of the merged :class:`SufficientStats`.
    """
    # One key for the assigner (it carries the parameters): sent once per worker.
    assigner_key = dask.delayed(assigner, pure=True)
    kernel = statistics_kernel(device)
    parts = _chunk_tasks(
        data,
        lambda x, w, offset: dask.delayed(kernel, pure=True)(
            x, w, assigner_key, covariance_type, n_components, offset, block_rows, track_worst
        ),
    )
    return tree_merge(parts, split_every)


def statistics_pass_many(
    data: RowData,
    assigners: list,
    covariance_types: list,
    n_components: list,
    split_every: int = DEFAULT_SPLIT_EVERY,
    device: str = "cpu",
    track_worst: list | None = None,
) -> list:
    """One read of every chunk for several models; their merged statistics, in order.

    ``track_worst`` (one count per model) keeps that many worst-explained rows (re-seeding).
    """
    models = dask.delayed(list(assigners), pure=True)
    kernel = statistics_kernel(device)
    worst = list(track_worst) if track_worst is not None else [0] * len(assigners)
    parts = _chunk_tasks(
        data,
        lambda x, w, offset: dask.delayed(chunk_statistics_many, pure=True)(
            x, w, models, list(covariance_types), list(n_components), offset, kernel, worst
        ),
    )
    with blas_threads_for(data.X.numblocks[0]):
        (stats_list,) = dask.compute(tree_merge(parts, split_every, merge_stats_lists))
    for stats in stats_list:
        _check_finite(stats)
    return stats_list


class Run:
    """One EM run in progress: its result so far, or the error that ended it."""

    def __init__(self, result: FitResult, error: str | None = None):
        self.result, self.error = result, error


def advance_runs(
    data: RowData,
    runs: list,
    *,
    tol: float,
    max_iter: int,
    reg_covar: float,
    split_every: int = DEFAULT_SPLIT_EVERY,
    device: str = "cpu",
    reseed: bool = False,
    fail_soft: bool = False,
    on_iteration=None,
) -> int:
    """The EM loop: advance every run by one shared read of the data per iteration until each
    has converged, failed or done ``max_iter`` iterations. Returns the passes made.

    ``runs`` are objects with ``result`` (a :class:`FitResult`: the start, or a run in progress,
    e.g. from a checkpoint) and ``error`` (None while it runs), updated in place. As in
    scikit-learn, the lower bound recorded at iteration ``t`` is the mean log-likelihood of the
    parameters *before* that iteration's M-step: it comes from the same pass that yields the
    statistics, so each iteration reads the data once, for all runs. Every run follows exactly
    the iterations it would follow alone (same statistics, same merge tree).

    Parameters
    ----------
    reseed : bool
        Components that collapse are re-seeded at the worst-explained rows of the pass (with a
        :class:`~daskgmm.params.CollapsedComponentWarning`) instead of stopping the run.
    fail_soft : bool
        A failing M-step ends that run (its ``error`` says why), not the others; otherwise it raises.
    on_iteration : callable ``(run, change)``, optional
        Called after every iteration of every run.
    device : {"cpu", "cuda"}
        Where the chunks' statistics are computed (:func:`statistics_kernel`).
    """
    passes = 0
    while True:
        active = [run for run in runs
                  if run.error is None and not run.result.converged and run.result.n_iter < max_iter]
        if not active:
            return passes
        models = [run.result.params for run in active]
        stats_list = statistics_pass_many(
            data, [GaussianAssigner(params) for params in models], [p.covariance_type for p in models],
            [p.n_components for p in models], split_every, device,
            track_worst=[p.n_components if reseed else 0 for p in models],
        )
        passes += 1
        for run, stats in zip(active, stats_list):
            result = run.result
            n_iter = result.n_iter + 1
            lower_bound = stats.log_likelihood / stats.weight_sum
            try:
                if reseed:
                    stats = _reseeded(stats, reg_covar, data.dtype, n_iter)
                params = m_step(stats, reg_covar, data.dtype)
            except ValueError as error:
                if not fail_soft:
                    raise
                run.error = str(error)
                continue
            change = lower_bound - result.lower_bound
            run.result = FitResult(params, lower_bound, result.lower_bounds + [lower_bound], n_iter,
                                   abs(change) < tol)
            if on_iteration is not None:
                on_iteration(run, change)


def _reseeded(stats, reg_covar, dtype, n_iter):
    stats, reseeded = reseed_collapsed(stats, reg_covar, dtype)
    if reseeded:
        warnings.warn(
            f"Component(s) {reseeded} lost their points or became singular at iteration "
            f"{n_iter}; re-seeded at the worst-explained rows of that pass.",
            CollapsedComponentWarning,
        )
    return stats


def run_em(
    data: RowData,
    start: FitResult,
    *,
    tol: float,
    max_iter: int,
    reg_covar: float,
    split_every: int = DEFAULT_SPLIT_EVERY,
    reporter: Reporter | None = None,
    on_iteration=None,
    reseed: bool = False,
    device: str = "cpu",
) -> FitResult:
    """One run of :func:`advance_runs` from ``start``, reported to ``reporter`` and passed to
    ``on_iteration(result)`` after every iteration (checkpoints)."""
    reporter = reporter or SilentReporter()

    def after_iteration(run, change):
        reporter.iteration_end(run.result.n_iter, change, run.result.lower_bound)
        if on_iteration is not None:
            on_iteration(run.result)

    run = Run(start)
    advance_runs(data, [run], tol=tol, max_iter=max_iter, reg_covar=reg_covar, split_every=split_every,
                 device=device, reseed=reseed, on_iteration=after_iteration)
    return run.result


@dataclass
class EMState:
    """Everything needed to resume a fit after any iteration (what a checkpoint holds)."""

    init_index: int
    run: FitResult
    best: FitResult | None
    rng_state: tuple | None
    finished: bool = False  # the fit ended: a new fit does not resume it


def fit_mixture(
    data: RowData,
    initialise,
    *,
    n_init: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    warm_start: FitResult | None = None,
    split_every: int = DEFAULT_SPLIT_EVERY,
    persist="auto",
    reporter: Reporter | None = None,
    random_state: np.random.RandomState | None = None,
    checkpoint=None,
    reseed: bool = False,
    together: bool = False,
    device: str = "cpu",
) -> FitResult:
    """Run ``n_init`` EM fits and keep the one with the highest final lower bound.

    Parameters
    ----------
    initialise : callable ``(RowData, count) -> list of GaussianParams``
        Draws ``count`` fresh starting points from the data as placed for the
        fit (in memory or not), using ``random_state``, as ``count`` calls
        for one start each would (restarts run together get theirs at once,
        sharing the initialisation pass).
    warm_start : FitResult, optional
        Continue from these parameters and lower bound (one run, no init).
    persist : {"auto", True, False}
        Keep the data in memory for the fit, or re-read them every pass; see
        :func:`place_data`.
    random_state : RandomState, optional
        The generator ``initialise`` draws from; its state is checkpointed so
        that a resumed fit draws the same later restarts.
    checkpoint : object with ``load() -> EMState | None`` and ``save(EMState)``
        Saved after every iteration; a fit started with a checkpoint that
        holds a state resumes from it and ends as if never interrupted.
    reseed : bool
        Re-seed collapsed components instead of failing (see :func:`run_em`).
    together : bool
        Run the ``n_init`` restarts together, one read of the data per
        iteration for all (:func:`advance_runs`); same results. Used when
        no per-iteration reporting or checkpoint is asked for.
    device : {"cpu", "cuda"}
        Where the EM passes compute (initialisation always runs on the CPU).
    """
    reporter = reporter or SilentReporter()
    data = place_data(data, persist)
    if together and n_init > 1 and max_iter > 0 and warm_start is None and checkpoint is None:
        # Starts are drawn in the same order as one after another (EM draws no random
        # numbers), so the restarts and the winner are the same as sequentially.
        runs = [Run(FitResult(params, -np.inf)) for params in initialise(data, n_init)]
        advance_runs(data, runs, tol=tol, max_iter=max_iter, reg_covar=reg_covar, split_every=split_every,
                     device=device, reseed=reseed)
        runs = [run.result for run in runs]
        best = None
        for result in runs:
            if best is None or result.lower_bound > best.lower_bound or best.lower_bound == -np.inf:
                best = result
        return best
    resume = checkpoint.load() if checkpoint is not None else None
    best = resume.best if resume else None
    for init_index in range(resume.init_index if resume else 0, 1 if warm_start else n_init):
        reporter.init_begin(init_index)
        if resume is not None and init_index == resume.init_index:
            start = resume.run
            if random_state is not None and resume.rng_state is not None:
                random_state.set_state(resume.rng_state)
        elif warm_start is not None:
            start = FitResult(warm_start.params, warm_start.lower_bound)
        else:
            start = FitResult(initialise(data, 1)[0], -np.inf)
        if max_iter == 0:
            # scikit-learn keeps the last start and reports no lower bound.
            best = FitResult(start.params, -np.inf)
            continue
        rng_state = random_state.get_state() if random_state is not None else None

        def save(run, init_index=init_index, best=best, rng_state=rng_state):
            checkpoint.save(EMState(init_index, run, best, rng_state))

        result = run_em(
            data,
            start,
            tol=tol,
            max_iter=max_iter,
            reg_covar=reg_covar,
            split_every=split_every,
            reporter=reporter,
            on_iteration=save if checkpoint is not None else None,
            reseed=reseed,
            device=device,
        )
        reporter.init_end(result.lower_bound, result.converged)
        if best is None or result.lower_bound > best.lower_bound or best.lower_bound == -np.inf:
            best = result
    if checkpoint is not None and best is not None:
        checkpoint.save(EMState(max(n_init - 1, 0), best, best, None, finished=True))
    return best
