"""Starting parameters: 'kmeans', 'k-means++', 'random', 'random_from_data', user arrays.

Why k-means on a bounded uniform sample rather than k-means||
-------------------------------------------------------------
'kmeans' and 'k-means++' look at a uniform sample of at most
``sample_size`` rows (default 100 000), drawn by row index, so initialisation
costs one read of the sampled rows plus, for 'kmeans', one pass that assigns
every row to its nearest centre and turns those labels into weights, means
and covariances exactly as scikit-learn does with its k-means labels. That is
two passes in all, independent of the data's size or units. k-means||
(dask-ml's ``init_scalable``) needs ~5 passes plus a weighted re-clustering of
its candidates, and its round count depends on the data; EM refines the
centres anyway, so the sample's accuracy (centres within ``O(1/sqrt(m pi_k))``)
is enough except for components much rarer than ``1 / sample_size``, which a
larger ``init_sample_size`` addresses.

When the data have no more rows than ``sample_size`` the "sample" is all rows
in order, and every method except 'random' consumes ``random_state`` exactly
as scikit-learn does: the same ``random_state`` picks the same centres or
points, and gives the same start, except for one case. A 'tied' start from
'k-means++' or 'random_from_data' (K single points) differs: scikit-learn
takes ``(X^T X - sum x_i x_i^T) / K`` over all rows, uncentred, so it moves
with the origin; daskgmm takes the empirical tied covariance of the K points,
``reg_covar * I``, as for every other covariance type (the README's table).
'random' draws its responsibilities from a generator keyed by row index (see
:class:`daskgmm.kernels.chunk.RandomAssigner`) so it never materialises an n x K array.
"""

from __future__ import annotations

import dask
import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus

from ..io.inputs import RowData
from ..kernels.chunk import NearestCentreAssigner, RandomAssigner
from ..kernels.missing import check_incomplete_rows
from ..model.params import (
    GaussianParams,
    covariances_from_precision_cholesky,
    m_step,
    precision_cholesky_from_precisions,
)
from ..model.records import DEFAULT_SPLIT_EVERY
from ..model.statistics import MISSING_HINT, SufficientStats, scatter_shape
from .passes import statistics_pass_many

DEFAULT_INIT_SAMPLE_SIZE = 100_000


def draw_sample(data: RowData, sample_size: int, random_state: np.random.RandomState):
    """A uniform sample of rows (all rows, in order, when there are few enough).

    Returns ``(rows, weights or None)`` as NumPy arrays. Reads only the chunks
    that hold sampled rows.
    """
    n_samples = data.n_samples
    if n_samples <= sample_size:
        index = None
        X, weights = data.X, data.sample_weight
    else:
        generator = np.random.default_rng(random_state.randint(2**32, dtype=np.uint64))
        index = np.sort(generator.choice(n_samples, size=sample_size, replace=False))
        X = data.X[index]
        weights = None if data.sample_weight is None else data.sample_weight[index]
    X, weights = dask.compute(X, weights)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any() and data.missing:  # NaN is a missing value; infinity and empty rows are errors
        check_incomplete_rows(X[bad], np.flatnonzero(bad) if index is None else index[bad])
    elif bad.any():
        first = int(np.flatnonzero(bad)[0])
        first = first if index is None else int(index[first])
        raise ValueError(
            f"Input X contains NaN or infinity (the first at row {first}). "
            "GaussianMixture cannot fit non-finite values: drop or impute those rows first" + MISSING_HINT
        )
    return X, weights


def filled_sample(sample, weights):
    """The sample with every missing value (NaN) replaced by its column's (weighted) observed
    mean: what k-means, k-means++ and random_from_data look at when the data have missing values."""
    missing = np.isnan(sample)
    if not missing.any():
        return sample
    w = np.ones(len(sample)) if weights is None else np.asarray(weights, dtype=np.float64)
    observed_weight = w @ ~missing
    if not (observed_weight > 0).all():
        empty = int(np.flatnonzero(observed_weight <= 0)[0])
        raise ValueError(f"feature {empty} has no observed value (of positive weight) in the {len(sample)} rows "
                         "the initialisation looked at: drop it, or pass init arrays (means_init, ...).")
    means = (w @ np.where(missing, 0.0, sample)) / observed_weight
    return np.where(missing, means.astype(sample.dtype), sample)


def stats_from_points(points, covariance_type, weight_sum, n_samples):
    """The statistics of scikit-learn's start from one data point per component (one-hot
    responsibilities on those rows only)."""
    n_components, n_features = points.shape
    return SufficientStats(
        covariance_type,
        np.ones(n_components),
        np.asarray(points, dtype=np.float64),
        np.zeros(scatter_shape(covariance_type, n_components, n_features)),
        weight_sum=float(weight_sum),
        n_rows=int(n_samples),
    )


def start_for(init_params, n_components, covariance_type, data: RowData, random_state, sample=None,
              weights=None):
    """One candidate's start: the statistics of its initial responsibilities directly, or an
    assigner whose pass yields them.

    'random' needs no sample; the other methods look at the ``(sample,
    weights)`` drawn by :func:`draw_sample`. Shared by single fits and by
    model selection, which draws one sample and runs one pass for many starts.
    """
    return starts_for(init_params, n_components, [covariance_type], data, random_state, sample, weights)[0]


def starts_for(init_params, n_components, covariance_types, data: RowData, random_state, sample=None,
               weights=None):
    """:func:`start_for` for several covariance types from one draw of ``random_state``: the
    same centres, points or random responsibilities for each (one k-means, one assigner object
    shared by the types), as separate calls from equal states would give."""
    if init_params == "random":
        start = RandomAssigner(int(random_state.randint(np.iinfo(np.int32).max)), n_components)
        return [start] * len(covariance_types)
    if sample is not None:
        sample = filled_sample(sample, weights)
    if init_params == "kmeans":
        kmeans = KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
        start = NearestCentreAssigner(kmeans.fit(sample, sample_weight=weights).cluster_centers_)
        return [start] * len(covariance_types)
    if init_params == "random_from_data":
        probabilities = None if weights is None else weights / weights.sum()
        if probabilities is not None and np.count_nonzero(probabilities) < n_components:
            raise ValueError(
                "init_params='random_from_data' needs at least n_components rows with a "
                "positive sample_weight in the initialisation sample."
            )
        index = random_state.choice(sample.shape[0], size=n_components, replace=False, p=probabilities)
    elif init_params == "k-means++":
        _, index = kmeans_plusplus(sample, n_components, random_state=random_state, sample_weight=weights)
    else:
        raise ValueError(f"Unknown init_params {init_params!r}")
    weight_sum = data.n_samples if data.sample_weight is None else float(data.sample_weight.sum().compute())
    return [stats_from_points(sample[index], covariance_type, weight_sum, data.n_samples)
            for covariance_type in covariance_types]


def starting_statistics(data: RowData, starts, covariance_types, n_components, split_every,
                        moments_type=None, stack=False):
    """The statistics of every start, the assigners among ``starts`` all in one shared pass.

    ``starts`` are what :func:`start_for` returned. With ``moments_type`` (a covariance type),
    the same pass also returns the data's own moments (the statistics of one component holding
    every row, for priors taken from the data); it is then made even when no start needs it.
    ``stack``: full starts' assignments stacked (:func:`~daskgmm.kernels.chunk.chunk_statistics_models`).
    Returns ``(statistics per start, moments or None)``.
    """
    starts = list(starts)
    pending = [i for i, start in enumerate(starts) if not isinstance(start, SufficientStats)]
    assigners = [starts[i] for i in pending]
    types, ks = [covariance_types[i] for i in pending], [n_components[i] for i in pending]
    if moments_type is not None:
        assigners.append(NearestCentreAssigner(np.zeros((1, data.n_features))))
        types.append(moments_type)
        ks.append(1)
    if not assigners:
        return starts, None
    stats = statistics_pass_many(data, assigners, types, ks, split_every, stack=stack)
    for i, pass_stats in zip(pending, stats):
        starts[i] = pass_stats
    return starts, stats[-1] if moments_type is not None else None


def finish_starts(data: RowData, starts, covariance_types, n_components, reg_covar, split_every, stack=False):
    """Every start as ``GaussianParams`` (scikit-learn's initial M-step), the assigners among
    ``starts`` in one shared pass (``stack``: see :func:`starting_statistics`). A start whose
    M-step fails becomes the ``ValueError`` it raised, for the caller to raise or record."""
    stats, _ = starting_statistics(data, starts, covariance_types, n_components, split_every, stack=stack)
    return [_initial_m_step(start_stats, reg_covar, data.dtype) for start_stats in stats]


def _initial_m_step(stats, reg_covar, dtype):
    try:
        return m_step(stats, reg_covar, dtype, normalize_weights=False)
    except ValueError as error:
        return error


def draw_starts(data: RowData, *, count, n_components, covariance_type, init_params, random_state,
                sample_size=DEFAULT_INIT_SAMPLE_SIZE, samples=None):
    """``count`` starts as :func:`start_for` returns them, consuming ``random_state`` in the same
    order as ``count`` separate initialisations (so restarts run together begin where one-by-one
    restarts would). The sample is read once when it is all the rows; a list ``samples``
    receives every sample drawn from more rows (for EM on the sample: coarse-to-fine)."""
    starts, all_rows = [], None
    for _ in range(count):
        sample = weights = None
        if init_params != "random":
            if data.n_samples > sample_size:
                sample, weights = draw_sample(data, sample_size, random_state)
                if samples is not None:
                    samples.append((sample, weights))
            else:  # the "sample" is every row, drawn without random numbers: read it once
                all_rows = all_rows or draw_sample(data, sample_size, random_state)
                sample, weights = all_rows
        starts.append(start_for(init_params, n_components, covariance_type, data, random_state, sample, weights))
    return starts


def initial_parameters(
    data: RowData,
    *,
    n_components: int,
    covariance_type: str,
    init_params: str,
    reg_covar: float,
    random_state: np.random.RandomState,
    count: int = 1,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    sample_size: int = DEFAULT_INIT_SAMPLE_SIZE,
    split_every: int = DEFAULT_SPLIT_EVERY,
    samples: list | None = None,
) -> list:
    """``count`` starting parameters, as scikit-learn builds them, as a list.

    The starts are drawn by :func:`draw_starts`; their assignment passes ('kmeans', 'random')
    are one shared pass. User arrays (already validated) replace the corresponding part of each
    start; when all three are given, no pass over the data is made.
    """
    if weights_init is not None and means_init is not None and precisions_init is not None:
        starts = [None] * count
    else:
        starts = draw_starts(data, count=count, n_components=n_components, covariance_type=covariance_type,
                             init_params=init_params, random_state=random_state, sample_size=sample_size,
                             samples=samples)
        starts = finish_starts(data, starts, [covariance_type] * count, [n_components] * count,
                               reg_covar, split_every)
        for start in starts:
            if isinstance(start, ValueError):
                raise start
    return [_with_user_arrays(start, covariance_type, weights_init, means_init, precisions_init)
            for start in starts]


def _with_user_arrays(start, covariance_type, weights_init, means_init, precisions_init):
    if start is not None:
        weights, means = start.weights, start.means
        covariances, precisions_cholesky = start.covariances, start.precisions_cholesky
    if weights_init is not None:
        weights = np.asarray(weights_init, dtype=np.float64)
    if means_init is not None:
        means = np.asarray(means_init, dtype=np.float64)
    if precisions_init is not None:
        precisions_cholesky = precision_cholesky_from_precisions(precisions_init, covariance_type)
        covariances = covariances_from_precision_cholesky(precisions_cholesky, covariance_type)
    return GaussianParams(covariance_type, weights, means, covariances, precisions_cholesky)
