"""The chunk driver: pure NumPy functions of one chunk of rows. No Dask in here.

A chunk is walked in row blocks (:func:`~daskgmm.kernels.blocks.default_block_rows`)
so temporaries stay in cache. Every block is centred (:mod:`daskgmm.kernels.blocks`);
an *assigner* gives its responsibilities (the E-step, :mod:`daskgmm.kernels.densities`,
or an initialisation's hard or random ones); :mod:`daskgmm.kernels.sums` turns them
into sums that add over the blocks sharing a centre. Diag and spherical E-steps
and their sums run as compiled loops instead (:mod:`daskgmm.kernels.numba_loops`), which
cost a chunk less than reading it does. Per-block arithmetic runs
in the data's dtype where that keeps the digits that matter, and in float64
where it would not; everything summed across blocks is float64.
"""

from __future__ import annotations

import numpy as np

from ..model.params import GaussianParams
from ..model.statistics import SufficientStats
from .blocks import SharedCentre, Workspace, block_mean, centre_block, default_block_rows, uses_quadratic_form
from .densities import normalize_log_prob, weighted_log_prob
from .missing import MISSING_ON_CPU_ONLY, check_incomplete_rows, filled_hard_statistics, missing_statistics, observed_log_prob
from .sums import log_likelihood_sums, moment_sums, separable_sums

# Covariance types whose Gaussian E-step and sums run as compiled loops (daskgmm.kernels.numba_loops).
COMPILED_TYPES = ("diag", "spherical")
# Diag/spherical E-steps stacked into one GEMM (select_model) only from this many models on: fewer
# run as fast or faster as compiled walks of their own (one 262k x 16 float32 chunk, one thread,
# stacked against walked: 2 models of K=8 35 against 34 ms, 4 of K=1..8 45 against 40 ms, 4 of
# K=4, 8 55 against 55 ms, 8 of K=1..8 71 against 80 ms).
MIN_STACKED_E_STEPS = 6
# Rows per block of the counter-based generator behind 'random' initialisation:
# the random responsibilities of a row depend on its index only, not on the chunking.
RANDOM_BLOCK_ROWS = 4096


class GaussianAssigner:
    """E-step responsibilities under the current mixture parameters.

    ``compiled``: whether a diag or spherical model's statistics run as the compiled loops of
    :mod:`daskgmm.kernels.numba_loops` (the default, faster) or by NumPy's GEMM forms (``False``: what the
    tests hold the loops to); full and tied models have only NumPy's forms.
    """

    def __init__(self, params: GaussianParams, compiled=True):
        self.params = params
        self.compiled = bool(compiled) and params.covariance_type in COMPILED_TYPES

    def assign(self, block, rows, workspace=None, quadratic=False):
        return normalize_log_prob(weighted_log_prob(block, self.params, workspace, quadratic), workspace)

    def incomplete_statistics(self, X, sample_weight, covariance_type):
        """The E-step's statistics of rows with missing values (:mod:`daskgmm.kernels.missing`)."""
        return missing_statistics(X, sample_weight, self.params, covariance_type)


class GaussianScorer(GaussianAssigner):
    """Only the rows' log-likelihood under the parameters: no responsibilities kept, no M-step
    sums (the statistics carry ``log_likelihood`` and ``weight_sum``; their sums are zero). The
    scoring pass of ``select_model``, which needs every candidate's final log-likelihood."""

    def incomplete_statistics(self, X, sample_weight, covariance_type):
        return missing_statistics(X, sample_weight, self.params, covariance_type, scores_only=True)


class NearestCentreAssigner:
    """Hard responsibilities to the nearest centre (k-means labels).

    Distances are expanded about the block's shift in float64 (from exactly
    centred rows), so far or tight clusters of float32 data keep their labels.
    ``compiled``: diag and spherical starts are assigned by one compiled walk
    (:func:`~daskgmm.kernels.numba_loops.nearest_centre_blocks`) unless ``False``.
    """

    def __init__(self, centres, compiled=True):
        self.centres = np.asarray(centres, dtype=np.float64)
        self.compiled = bool(compiled)

    def assign(self, block, rows, workspace=None, quadratic=False):
        centres = self.centres - block.shift
        distances = np.sum(centres**2, axis=1) - 2 * (block.exact() @ centres.T)
        labels = np.argmin(distances, axis=1)
        resp = np.zeros((labels.size, centres.shape[0]), dtype=block.dtype)
        resp[np.arange(labels.size), labels] = 1
        return resp, None

    def incomplete_statistics(self, X, sample_weight, covariance_type):
        """Rows with missing values go to the nearest centre over their observed coordinates, and
        take their missing ones from it (:func:`~daskgmm.kernels.missing.filled_hard_statistics`)."""
        return filled_hard_statistics(X, sample_weight, self.centres, covariance_type)


class RandomAssigner:
    """Uniform random responsibilities, normalised per row ('random' init).

    The values of row ``i`` come from a generator seeded by ``(seed, i //
    RANDOM_BLOCK_ROWS)``, so they do not depend on chunking or scheduling.
    """

    def __init__(self, seed: int, n_components: int):
        self.seed = seed
        self.n_components = n_components

    def assign(self, block, rows, workspace=None, quadratic=False):
        return random_responsibilities(self.seed, self.n_components, rows).astype(block.dtype), None

    def incomplete_statistics(self, X, sample_weight, covariance_type):
        raise ValueError(RANDOM_WITH_MISSING)


RANDOM_WITH_MISSING = ("init_params='random' cannot start a fit of data with missing values (random responsibilities "
                       "say nothing about the missing coordinates): use 'kmeans', 'k-means++' or 'random_from_data'.")


def random_responsibilities(seed, n_components, rows):
    """Row-normalised uniform responsibilities for global row indices ``rows``."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, n_components))
    block_ids = rows // RANDOM_BLOCK_ROWS
    for block in np.unique(block_ids):
        uniform = np.random.default_rng([seed, int(block)]).random(
            (RANDOM_BLOCK_ROWS, n_components)
        )
        selected = block_ids == block
        out[selected] = uniform[rows[selected] - block * RANDOM_BLOCK_ROWS]
    out /= out.sum(axis=1, keepdims=True)
    return out


def chunk_statistics(
    X,
    sample_weight,
    assigner,
    covariance_type,
    n_components,
    row_offset=0,
    block_rows=None,
    track_worst=0,
    missing=False,
):
    """Statistics of one chunk: the body of one task of an EM pass.

    Parameters
    ----------
    X : ndarray of shape (n, D), float32 or float64
    sample_weight : ndarray of shape (n,) or None
    assigner : object with ``assign(block, rows, workspace) -> (resp, log_norm or None)``
        Produces responsibilities for a :class:`~daskgmm.kernels.blocks.CentredBlock`
        whose global row indices are ``rows``; see the ``*Assigner`` classes.
    covariance_type : str
    n_components : int
    row_offset : int
        Global index of the chunk's first row (for error reports and the
        row-indexed random generator).
    block_rows : int, optional
        Rows processed at a time (default: :func:`default_block_rows`).
    track_worst : int
        Also keep this many worst-explained rows (for re-seeding collapsed
        components); 0 keeps none.
    missing : bool
        NaN marks a missing value: rows with NaN add what their observed values say
        (the assigner's ``incomplete_statistics``, :mod:`daskgmm.kernels.missing`), and a row
        with infinity or no observed value is an error. False: they are skipped and counted.

    Returns
    -------
    SufficientStats
        Only the statistics: responsibilities never leave this function.
        Rows with NaN/inf are skipped and counted in ``n_nonfinite`` (unless ``missing``).
    """
    return chunk_statistics_models(X, sample_weight, [assigner], [covariance_type], [n_components], row_offset,
                                   block_rows, [track_worst], missing=missing)[0]


def chunk_statistics_models(X, sample_weight, assigners, covariance_types, n_components, row_offset=0,
                            block_rows=None, track_worst=None, stack=False, missing=False):
    """:func:`chunk_statistics` of several models in one walk over the chunk's blocks.

    The models share what does not depend on them: the blocks, their centring (the centre
    follows the rows, not a model) and, through one :class:`~daskgmm.kernels.blocks.Workspace`, the
    per-row moment columns of every diag and spherical model. Blocks are sized for the most
    demanding model. Each model's statistics are those a walk for it alone gives with blocks of
    that size, bit for bit (diag and spherical k-means assignments share one compiled walk
    over the rows, which gives each what its own would), unless ``stack``: then
    ``MIN_STACKED_E_STEPS`` or more diag and spherical E-steps run as one GEMM and their M-step
    sums as another (:mod:`daskgmm.kernels.stacked`), equal to their lone walks up to round-off.
    ``missing``: see :func:`chunk_statistics` (the rows with NaN are set apart and each model adds
    their statistics, :func:`statistics_with_missing_values`).
    """
    X = np.asarray(X)
    # (a finite sum means finite rows, as below: data without NaN take the usual walk at once)
    if missing and not np.isfinite(np.ones(X.shape[0], X.dtype) @ X).all():
        return statistics_with_missing_values(X, sample_weight, assigners, covariance_types, n_components, row_offset,
                                              block_rows, track_worst, stack)
    n_models = len(assigners)
    worst = list(track_worst) if track_worst is not None else [0] * n_models
    stackable = [m for m in range(n_models) if covariance_types[m] in COMPILED_TYPES]
    # k-means assignments always go together (one compiled walk, each the same as alone); E-steps
    # only with ``stack`` and enough of them to beat their compiled walks (measured: 6 or more)
    hard = [m for m in stackable if isinstance(assigners[m], NearestCentreAssigner) and assigners[m].compiled]
    soft = [m for m in stackable if isinstance(assigners[m], GaussianAssigner) and assigners[m].compiled]
    stacked_index = hard + (soft if stack and len(soft) >= MIN_STACKED_E_STEPS else [])
    stacked = None
    if stacked_index:
        from .stacked import StackedModels  # its loops are compiled: see block_sums_of

        stacked = StackedModels([_stacked_model(assigners[m]) for m in stacked_index],
                                [covariance_types[m] for m in stacked_index],
                                [isinstance(assigners[m], GaussianScorer) for m in stacked_index])
    # full models' E-steps and k-means assignments stack from two models on, over the block's
    # quadratic columns, when together they are wide enough for them (there is no compiled walk)
    full_index = [m for m in range(n_models) if stack and covariance_types[m] == "full"
                  and isinstance(assigners[m], (GaussianAssigner, NearestCentreAssigner))]
    total_components = sum(n_components[m] for m in full_index)
    if len(full_index) < 2 or not uses_quadratic_form("full", X.shape[1], total_components, X.dtype.itemsize):
        full_index = []
    stacked_full = None
    if full_index:
        from .stacked import StackedFullModels

        stacked_full = StackedFullModels([_stacked_model(assigners[m]) for m in full_index],
                                         [isinstance(assigners[m], GaussianScorer) for m in full_index])
    lone = [m for m in range(n_models) if m not in stacked_index and m not in full_index]
    block_rows = block_rows or min([default_block_rows(k, X.shape[1], X.dtype.itemsize, covariance_type)
                                    for k, covariance_type in zip(n_components, covariance_types)]
                                   + [default_block_rows(total_components, X.shape[1], 8)] * bool(full_index))
    workspace = Workspace()
    centre = SharedCentre()
    observer = next((m for m in range(n_models) if not isinstance(assigners[m], GaussianScorer)), None)
    totals = [SufficientStats.empty(covariance_type, k, X.shape[1])
              for covariance_type, k in zip(covariance_types, n_components)]
    sums = [None] * n_models
    previous_shift = None  # the shift the open sums are about
    for start in range(0, X.shape[0], block_rows):
        raw = X[start : start + block_rows]
        weights = None if sample_weight is None else sample_weight[start : start + block_rows]
        rows = np.arange(row_offset + start, row_offset + start + raw.shape[0])
        # fast path: a finite sum means finite rows (an overflowing sum only sends us to the exact check)
        # (column sums by a GEMV: 2.5x faster than np.sum here)
        finite = None if np.isfinite(np.ones(raw.shape[0], raw.dtype) @ raw).all() else np.isfinite(raw).all(axis=1)
        if finite is not None and not finite.all():
            n_bad = int(raw.shape[0] - finite.sum())
            totals = [total + SufficientStats(total.covariance_type, *_zeros_like_stats(total), n_rows=n_bad,
                                              n_nonfinite=n_bad, first_nonfinite=int(rows[~finite][0]))
                      for total in totals]
        if finite is not None:
            raw, rows = raw[finite], rows[finite]
            weights = None if weights is None else weights[finite]
        if raw.shape[0] == 0:
            continue
        block, new_centre = centre.centre(raw, workspace)
        if new_centre:
            # Blocks add their moment sums only about one shift: close the previous one's.
            for m in range(n_models):
                if sums[m] is not None:
                    totals[m], sums[m] = totals[m] + sums[m].statistics(covariance_types[m], previous_shift), None
        previous_shift = block.shift
        if observer is None:  # scorers only: no sums tell the rows' mean
            centre.observe(block_mean(raw) - block.shift)
        block_results = {}
        if stacked is not None:
            block_results.update(zip(stacked_index, stacked.block_sums(block, weights, workspace)))
        if stacked_full is not None:
            block_results.update(zip(full_index, stacked_full.block_sums(block, weights, workspace)))
        for m in lone:
            block_results[m] = block_sums_of(assigners[m], block, rows, weights, covariance_types[m], n_components[m],
                                             workspace)
        for m in range(n_models):
            block_sums, log_norm = block_results[m]
            if worst[m] and log_norm is not None:
                totals[m] = totals[m] + SufficientStats(covariance_types[m], *_zeros_like_stats(totals[m]),
                                                        **worst_explained(raw, log_norm, rows, weights, worst[m]))
            if m == observer:  # the rows' mean (every model's responsibilities sum to one per row)
                centre.observe(block_sums.mean_offset(block.shift))
            sums[m] = block_sums if sums[m] is None else sums[m] + block_sums
    for m in range(n_models):
        if sums[m] is not None:
            totals[m] = totals[m] + sums[m].statistics(covariance_types[m], previous_shift)
    return totals


def statistics_with_missing_values(X, sample_weight, assigners, covariance_types, n_components, row_offset=0,
                                   block_rows=None, track_worst=None, stack=False):
    """:func:`chunk_statistics_models` of a chunk whose NaN are missing values: its complete rows
    take the usual walk, its rows with NaN each model's ``incomplete_statistics``
    (:mod:`daskgmm.kernels.missing`). Infinity, and a row with no observed value, are errors
    naming the row. (The complete rows are walked as one array: their worst-explained rows, kept
    for re-seeding, carry indices among them, which order ties only.)"""
    incomplete = ~np.isfinite(X).all(axis=1)
    rows = np.flatnonzero(incomplete)
    with_nan = X[rows]
    check_incomplete_rows(with_nan, row_offset + rows)
    weights = None if sample_weight is None else np.asarray(sample_weight)
    complete = ~incomplete
    totals = chunk_statistics_models(X[complete], None if weights is None else weights[complete], assigners,
                                     covariance_types, n_components, row_offset, block_rows, track_worst, stack)
    return [total + assigner.incomplete_statistics(with_nan, None if weights is None else weights[rows], covariance_type)
            for total, assigner, covariance_type in zip(totals, assigners, covariance_types)]


def _stacked_model(assigner):
    """What :class:`~daskgmm.kernels.stacked.StackedModels` takes for an assigner: parameters or centres."""
    return assigner.params if isinstance(assigner, GaussianAssigner) else assigner.centres


def block_sums_of(assigner, block, rows, sample_weight, covariance_type, n_components, workspace):
    """``(moment sums, log p(x) or None)`` of one block for one model: the compiled loops of
    :mod:`daskgmm.kernels.numba_loops` for an assigner that asks for them (``compiled``: diag and spherical
    E-steps by default), NumPy's GEMM forms for the rest (compiled diag and spherical k-means
    assignments go through :class:`~daskgmm.kernels.stacked.StackedModels`)."""
    if isinstance(assigner, GaussianScorer):
        if assigner.compiled:
            from .numba_loops import per_row_output

            log_norm = per_row_output(block, assigner.params, "log_norm", workspace)
        else:
            log_norm = normalize_log_prob(weighted_log_prob(block, assigner.params, workspace), workspace)[1]
        return log_likelihood_sums(log_norm, sample_weight, covariance_type, assigner.params.n_components,
                                   block.raw.shape[1]), log_norm
    if isinstance(assigner, GaussianAssigner) and assigner.compiled:
        # imported here, not above: numba costs a worker ~108 MiB, which full and tied fits never need
        from .numba_loops import separable_block

        resp, sums, log_norm = separable_block(block, assigner.params, sample_weight, workspace)
        return separable_sums(block, resp, sums, log_norm, sample_weight, covariance_type, workspace), log_norm
    quadratic = uses_quadratic_form(covariance_type, block.raw.shape[1], n_components, block.raw.dtype.itemsize)
    resp, log_norm = assigner.assign(block, rows, workspace, quadratic)
    return moment_sums(block, resp, log_norm, sample_weight, covariance_type, workspace, quadratic), log_norm


def chunk_statistics_many(X, sample_weight, assigners, covariance_types, n_components, row_offset=0,
                          kernel=chunk_statistics, track_worst=None, stack=False, missing=False):
    """Statistics of one chunk for several models at once: one read, one list of statistics.

    ``assigners``, ``covariance_types``, ``n_components`` and ``track_worst``
    are parallel lists, one entry per model (model selection and restarts
    share the pass); ``kernel`` is :func:`chunk_statistics` or its GPU twin; ``stack`` and
    ``missing``: see :func:`chunk_statistics_models` (``missing`` on the CPU only).
    """
    if kernel is chunk_statistics:  # one walk over the blocks for all models
        return chunk_statistics_models(X, sample_weight, assigners, covariance_types, n_components, row_offset,
                                       None, track_worst, stack, missing)
    if missing:
        raise ValueError(MISSING_ON_CPU_ONLY)
    worst = track_worst if track_worst is not None else [0] * len(assigners)
    return [
        kernel(X, sample_weight, assigner, covariance_type, k, row_offset, None, count)
        for assigner, covariance_type, k, count in zip(assigners, covariance_types, n_components, worst)
    ]


def worst_explained(block, log_norm, rows, weights, count):
    """The ``count`` rows of a block with the lowest log-likelihood (weighted rows only)."""
    candidates = np.arange(block.shape[0]) if weights is None else np.flatnonzero(weights > 0)
    values = log_norm[candidates].astype(np.float64)
    order = np.lexsort((rows[candidates], values))[:count]
    chosen = candidates[order]
    return dict(
        worst_log_prob=values[order],
        worst_rows=np.asarray(block[chosen], dtype=np.float64),
        worst_index=rows[chosen].astype(np.int64),
    )


def _zeros_like_stats(stats):
    return (
        np.zeros_like(stats.resp_sum),
        np.zeros_like(stats.means),
        np.zeros_like(stats.scatter),
    )


def per_row(X, params: GaussianParams, output, dtype=None, missing=False):
    """Every row's ``output``: "label" (most probable component), "proba" (posterior probabilities)
    or "log_norm" (``log p(x)``), computed block by block (no n x K temporaries); probabilities
    and log-likelihoods in ``dtype`` (default: ``X``'s). ``missing``: NaN marks a missing value,
    and a row with NaN gets the output of the marginal density of its observed values."""
    X = np.asarray(X)
    if missing:
        return _per_row_with_missing(X, params, output, dtype)
    out = new_per_row_output(len(X), params.n_components, dtype or X.dtype, output)
    per_block = {
        "label": lambda log_prob, ws: np.argmax(log_prob, axis=1),
        "proba": lambda log_prob, ws: normalize_log_prob(log_prob, ws)[0],
        "log_norm": lambda log_prob, ws: normalize_log_prob(log_prob, ws)[1],
    }[output]
    block_rows = default_block_rows(params.n_components, X.shape[1], X.dtype.itemsize,
                                    params.covariance_type, statistics=False)
    workspace = Workspace()
    if params.covariance_type in COMPILED_TYPES:
        from .numba_loops import per_row_output  # on first use: see block_sums_of

        block_output = lambda block: per_row_output(block, params, output, workspace)  # noqa: E731
    else:
        block_output = lambda block: per_block(weighted_log_prob(block, params, workspace), workspace)  # noqa: E731
    for start in range(0, X.shape[0], block_rows):
        block = centre_block(X[start : start + block_rows], workspace)
        out[start : start + block.n_rows] = block_output(block)
    return out


def _per_row_with_missing(X, params, output, dtype):
    incomplete = np.flatnonzero(np.isnan(X).any(axis=1))
    complete = np.setdiff1d(np.arange(X.shape[0]), incomplete)
    out = new_per_row_output(len(X), params.n_components, dtype or X.dtype, output)
    if complete.size:
        out[complete] = per_row(X[complete], params, output, dtype)
    if incomplete.size:
        check_incomplete_rows(X[incomplete], incomplete)
        log_prob = observed_log_prob(X[incomplete], params)
        out[incomplete] = (np.argmax(log_prob, axis=1) if output == "label"
                           else normalize_log_prob(log_prob)[0 if output == "proba" else 1])
    return out


def new_per_row_output(n_rows, n_components, dtype, output):
    """The array :func:`per_row` fills: int64 labels, (n, K) probabilities or (n,) log-likelihoods."""
    if output == "label":
        return np.empty(n_rows, dtype=np.int64)
    return np.empty((n_rows, n_components) if output == "proba" else n_rows, dtype=dtype)


def chunk_predict(X, params: GaussianParams):
    """Most probable component of every row."""
    return per_row(X, params, "label")


def chunk_predict_proba(X, params: GaussianParams):
    """Posterior probability of every component for every row."""
    return per_row(X, params, "proba")


def chunk_score_samples(X, params: GaussianParams):
    """``log p(x)`` of every row."""
    return per_row(X, params, "log_norm")
