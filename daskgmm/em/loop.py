"""The EM loop over a row-chunked Dask array. Knows Dask, not scikit-learn.

One loop (:func:`advance_runs`) serves every fit: a single run, ``n_init`` restarts,
``select_model``'s candidates; batch EM, or incremental EM in waves of chunks. One iteration is
one pass for all runs still going (:func:`daskgmm.em.passes.statistics_pass_many`: every chunk read
once, the statistics of every run merged); on the driver each run's model family
(:mod:`daskgmm.em.families`) makes its M-step and lower bound. Also here: whether the data stay in
memory for the fit (:func:`place_data`), restarts and checkpoints (:func:`fit_mixture`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import dask
import numpy as np

from ..io.inputs import RowData
from ..model.records import DEFAULT_SPLIT_EVERY, FitResult
from ..model.statistics import merge_stats
from ..runtime.resources import active_client, memory_budget
from .families import ModelFamily
from .passes import statistics_pass_many
from .progress import Reporter, SilentReporter

logger = logging.getLogger("daskgmm")


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
        return replace(data, X=X)
    X, weights = dask.persist(data.X, data.sample_weight)
    return replace(data, X=X, sample_weight=weights)


class Run:
    """One EM run in progress: its result so far, or the error that ended it; ``index`` is its
    place among the starts of a fit (``n_init``); ``waves`` what incremental EM keeps of it."""

    def __init__(self, result: FitResult, error: str | None = None, index: int = 0, waves=None):
        self.result, self.error, self.index = result, error, index
        # incremental EM: each wave's latest statistics and their sum r log r (None: not yet seen)
        self.waves = waves


def running(run, max_iter: int) -> bool:
    """Whether ``run`` (anything with ``result`` and ``error``) takes part in the next pass."""
    return run.error is None and not run.result.converged and run.result.n_iter < max_iter


def advance_runs(
    data: RowData,
    runs: list,
    family: ModelFamily,
    *,
    tol: float,
    max_iter: int,
    split_every: int = DEFAULT_SPLIT_EVERY,
    device: str = "cpu",
    fail_soft: bool = False,
    on_iteration=None,
    on_pass=None,
    on_chunk=None,
    waves: int = 1,
    stack: bool = False,
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
    family : ModelFamily
        The model: each run's E-step, M-step and lower bound (:mod:`daskgmm.em.families`).
    fail_soft : bool
        A failing M-step ends that run (its ``error`` says why), not the others; otherwise it raises.
    on_iteration : callable ``(run, change)``, optional
        Called after every iteration of every run.
    on_pass : callable ``(seconds)``, optional
        Called after every pass, once all runs have been updated (checkpoints: a consistent state).
    on_chunk : callable ``(done, total)``, optional
        Chunks finished within a pass (see :func:`statistics_pass_many`).
    device : {"cpu", "cuda"}
        Where the chunks' statistics are computed (:func:`statistics_kernel`).
    waves : int
        1: batch EM. More: incremental EM (:func:`_advance_incrementally`), the chunks in this
        many waves with an M-step after each.
    stack : bool
        Runs of different models (``select_model``'s candidates) stack their diag/spherical
        GEMMs (:mod:`daskgmm.kernels.stacked`): faster, equal to lone runs up to round-off. False keeps
        every run bit for bit what it would be alone (restarts).
    """
    if waves > 1 and data.X.numblocks[0] > 1:
        return _advance_incrementally(data, runs, family, tol=tol, max_iter=max_iter, waves=waves,
                                      split_every=split_every, device=device, fail_soft=fail_soft,
                                      on_iteration=on_iteration, on_pass=on_pass, on_chunk=on_chunk, stack=stack)
    passes = 0
    while True:
        active = [run for run in runs if running(run, max_iter)]
        if not active:
            return passes
        started = time.perf_counter()
        models = [run.result.params for run in active]
        stats_list = statistics_pass_many(
            data, [family.assigner(params) for params in models], [p.covariance_type for p in models],
            [p.n_components for p in models], split_every, device,
            track_worst=[family.rows_to_track(params) for params in models], on_chunk=on_chunk, stack=stack,
        )
        passes += 1
        for run, stats in zip(active, stats_list):
            result = run.result
            n_iter = result.n_iter + 1
            try:
                params = family.m_step(stats, result.params, n_iter)
            except ValueError as error:
                if not fail_soft:
                    raise
                run.error = str(error)
                continue
            lower_bound = family.lower_bound(stats, result.params, params)
            change = lower_bound - result.lower_bound
            run.result = FitResult(params, lower_bound, result.lower_bounds + [lower_bound], n_iter,
                                   abs(change) < tol)
            if on_iteration is not None:
                on_iteration(run, change)
        if on_pass is not None:
            on_pass(time.perf_counter() - started)


def _advance_incrementally(data, runs, family, *, tol, max_iter, waves, split_every, device, fail_soft,
                           on_iteration, on_pass, on_chunk, stack) -> int:
    """Incremental EM (Neal & Hinton, 1998): the chunks in ``waves`` groups; after the first full
    pass (a batch E-step), each wave's statistics are renewed under the current parameters and
    the M-step runs on the merge of every wave's latest statistics, so the parameters move
    ``waves`` times per pass. Every step is exact: the free energy (the expected complete-data
    log-likelihood plus the responsibilities' entropy, both from the statistics) never decreases,
    and a fixed point is a fixed point of batch EM. One *cycle* (a read of every chunk) counts as
    one iteration; its lower bound is the free energy at the cycle's end
    (:meth:`ModelFamily.bound_from_entropy`), which is at most the log-likelihood of its
    parameters and equal to it at convergence.
    """
    parts = data.in_waves(waves)
    n_chunks = data.X.numblocks[0]
    rows_per_wave = [part.n_samples for part in parts]
    for run in runs:  # statistics resumed from a checkpoint of other waves (chunking, threads) are dropped
        if run.waves is not None and [None if s is None else s.n_rows for s in run.waves[0]] != rows_per_wave:
            run.waves = None
    passes = 0
    while True:
        active = [run for run in runs if running(run, max_iter)]
        if not active:
            return passes
        started, chunks_before = time.perf_counter(), 0
        for w, part in enumerate(parts):
            going = [run for run in active if run.error is None]
            if not going:
                break
            models = [run.result.params for run in going]
            tell = None if on_chunk is None else (lambda done, total, base=chunks_before: on_chunk(base + done, n_chunks))
            stats_list = statistics_pass_many(
                part, [family.assigner(params) for params in models], [p.covariance_type for p in models],
                [p.n_components for p in models], split_every, device,
                track_worst=[family.rows_to_track(params) for params in models], on_chunk=tell, stack=stack,
            )
            chunks_before += part.X.numblocks[0]
            for run, params, stats in zip(going, models, stats_list):
                if run.waves is None:  # kept on the run: a checkpoint resumes with them
                    run.waves = ([None] * len(parts), [0.0] * len(parts))
                wave_stats, entropies = run.waves
                wave_stats[w], entropies[w] = stats, family.entropy(stats, params)
                if any(previous is None for previous in wave_stats):
                    continue  # the first pass: a batch E-step
                try:
                    new_params = family.m_step(merge_stats(*wave_stats), params, run.result.n_iter + 1)
                except ValueError as error:
                    if not fail_soft:
                        raise
                    run.error = str(error)
                    continue
                run.result = replace(run.result, params=new_params)
        passes += 1
        for run in active:
            if run.error is not None:
                continue
            wave_stats, entropies = run.waves
            result = run.result
            lower_bound = family.bound_from_entropy(merge_stats(*wave_stats), sum(entropies), result.params)
            change = lower_bound - result.lower_bound
            run.result = FitResult(result.params, lower_bound, result.lower_bounds + [lower_bound],
                                   result.n_iter + 1, abs(change) < tol)
            if on_iteration is not None:
                on_iteration(run, change)
        if on_pass is not None:
            on_pass(time.perf_counter() - started)


def best_run(results: list) -> FitResult:
    """scikit-learn's choice among restarts: the first with the largest final lower bound."""
    best = None
    for result in results:
        if best is None or result.lower_bound > best.lower_bound or best.lower_bound == -np.inf:
            best = result
    return best


@dataclass
class EMState:
    """Everything needed to resume a fit after any pass (what a checkpoint holds): every
    start's run, as far as it got."""

    runs: list
    finished: bool = False  # the fit ended: a new fit does not resume it


def fit_mixture(
    data: RowData,
    initialise,
    *,
    n_init: int,
    tol: float,
    max_iter: int,
    family: ModelFamily,
    warm_start: FitResult | None = None,
    split_every: int = DEFAULT_SPLIT_EVERY,
    persist="auto",
    reporter: Reporter | None = None,
    checkpoint=None,
    device: str = "cpu",
    warm_up=None,
    waves: int = 1,
) -> FitResult:
    """Run ``n_init`` EM fits together (one read of the data per iteration for all, through
    :func:`advance_runs`) and keep the one with the highest final lower bound.

    Every restart follows the iterations it would follow alone, and the starts are drawn in
    the order single fits would draw them (EM itself draws no random numbers), so the result
    is that of scikit-learn's one-after-another restarts.

    Parameters
    ----------
    family : ModelFamily
        The model fitted (:mod:`daskgmm.em.families`).
    initialise : callable ``(RowData, count) -> list of parameters``
        Draws ``count`` starting points from the data as placed for the fit (in memory or
        not), as ``count`` calls for one start each would, sharing one initialisation pass.
    warm_start : FitResult, optional
        Continue from these parameters and lower bound (one run, no init).
    persist : {"auto", True, False}
        Keep the data in memory for the fit, or re-read them every pass; see :func:`place_data`.
    reporter : Reporter, optional
        Told when each start begins and ends, after every iteration of each, and after every pass.
    checkpoint : object with ``load() -> EMState | None`` and ``save(EMState)``
        Saved after every pass; a fit started with a checkpoint that holds a state resumes
        from it and ends as if never interrupted.
    device : {"cpu", "cuda"}
        Where the EM passes compute (initialisation always runs on the CPU).
    warm_up : callable ``(list of parameters) -> list of parameters``, optional
        Applied to fresh starts before the first pass (coarse-to-fine: EM on a sample in memory).
    waves : int
        1: batch EM; more: incremental EM in this many waves of chunks (:func:`advance_runs`).
    """
    reporter = reporter or SilentReporter()
    data = place_data(data, persist)
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        runs = state.runs
    elif warm_start is not None:
        runs = [Run(FitResult(warm_start.params, warm_start.lower_bound))]
    else:
        starts = initialise(data, n_init)
        if warm_up is not None and max_iter > 0:
            starts = warm_up(starts)
        runs = [Run(FitResult(params, -np.inf), index=i) for i, params in enumerate(starts)]
    if max_iter == 0:
        # scikit-learn keeps the last start and reports no lower bound.
        best = FitResult(runs[-1].result.params, -np.inf)
    else:
        for run in runs:
            reporter.init_begin(run.index)
            if not running(run, max_iter):  # finished before an interruption
                reporter.init_end(run.index, run.result.lower_bound, run.result.converged)

        def after_iteration(run, change):
            result = run.result
            reporter.iteration_end(run.index, result.n_iter, change, result.lower_bound)
            if not running(run, max_iter):
                reporter.init_end(run.index, result.lower_bound, result.converged)

        def after_pass(seconds):
            reporter.pass_end(seconds)
            if checkpoint is not None:
                checkpoint.save(EMState(runs))

        advance_runs(data, runs, family, tol=tol, max_iter=max_iter, split_every=split_every, device=device,
                     on_iteration=after_iteration, on_pass=after_pass, on_chunk=reporter.chunk_listener(),
                     waves=waves)
        best = best_run([run.result for run in runs])
    if checkpoint is not None:
        checkpoint.save(EMState(runs, finished=True))
    return best
