"""Sufficient statistics of one E-step over part of the data, and their merge.

A :class:`SufficientStats` holds what the M-step needs from a set of rows: per
component the responsibility mass ``N_k``, the responsibility-weighted mean and
the *centred* scatter about that mean (full: ``K x D x D``, tied: one ``D x D``
summed over components, diag: ``K x D``, spherical: ``K``, the trace of diag),
plus the log-likelihood of the rows under the parameters that produced the
responsibilities.

Merging uses the pairwise update of Chan, Golub & LeVeque (the same update as
``moment_combine`` in ``dask/array/reductions.py``): counts add, means are
combined by weight and the scatter gains ``N_a N_b / N * delta delta^T``.
Nothing is ever expressed as a raw second moment ``sum r x x^T``, so data far
from the origin lose no precision, and any tree of merges gives the same
result up to round-off.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from functools import reduce

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# The end of every "X contains NaN" error of a model that refuses missing values.
MISSING_HINT = ", or fit GaussianMixture(missing='em'), whose EM uses every observed value."


def scatter_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of the centred scatter kept for ``covariance_type``."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


@dataclass(frozen=True)
class SufficientStats:
    """Mergeable E-step statistics of a set of rows (all float64).

    Attributes
    ----------
    covariance_type : str
    resp_sum : ndarray of shape (K,)
        ``N_k = sum_n w_n r_nk``.
    means : ndarray of shape (K, D)
        Responsibility-weighted mean of each component (0 where ``N_k == 0``).
    scatter : ndarray
        Centred scatter ``sum_n w_n r_nk (x_n - m_k)(x_n - m_k)^T`` in the
        layout of :func:`scatter_shape`.
    log_likelihood : float
        ``sum_n w_n log p(x_n)`` under the parameters used for the E-step.
    weight_sum : float
        ``sum_n w_n`` (the number of rows when unweighted).
    n_rows : int
        Rows seen, including rows skipped as non-finite.
    n_nonfinite : int
        Rows containing NaN or infinity (skipped, reported by the engine).
    first_nonfinite : int
        Global index of the first non-finite row, or -1.
    worst_log_prob, worst_rows, worst_index : ndarrays of shape (m,), (m, D), (m,)
        The ``m`` rows with the lowest log-likelihood (the worst explained),
        kept only when asked for (re-seeding collapsed components); empty
        otherwise. Ties are broken by row index, so merges are deterministic.
    """

    covariance_type: str
    resp_sum: np.ndarray
    means: np.ndarray
    scatter: np.ndarray
    log_likelihood: float = 0.0
    weight_sum: float = 0.0
    n_rows: int = 0
    n_nonfinite: int = 0
    first_nonfinite: int = -1
    worst_log_prob: np.ndarray = field(default_factory=lambda: np.empty(0))
    worst_rows: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    worst_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @classmethod
    def empty(cls, covariance_type: str, n_components: int, n_features: int):
        """The neutral element of ``+``: statistics of no rows."""
        return cls(
            covariance_type,
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(scatter_shape(covariance_type, n_components, n_features)),
        )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def to_arrays(self) -> dict:
        """Every field but the covariance type as arrays (checkpoints of incremental EM)."""
        return {name: np.asarray(getattr(self, name)) for name in STATS_FIELDS}

    @classmethod
    def from_arrays(cls, covariance_type: str, arrays: dict) -> "SufficientStats":
        scalars = {"log_likelihood": float, "weight_sum": float, "n_rows": int, "n_nonfinite": int,
                   "first_nonfinite": int}
        return cls(covariance_type, **{name: scalars[name](arrays[name]) if name in scalars else arrays[name]
                                       for name in STATS_FIELDS})

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def __add__(self, other: "SufficientStats") -> "SufficientStats":
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.covariance_type != self.covariance_type or other.means.shape != self.means.shape:
            raise ValueError("cannot merge statistics of different models")
        total = self.resp_sum + other.resp_sum
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(total > 0, other.resp_sum / total, 0.0)
        delta = other.means - self.means
        means = self.means + fraction[:, None] * delta
        # N_a * N_b / (N_a + N_b), zero when either side is empty.
        coef = self.resp_sum * fraction
        correction = _scatter_correction(self.covariance_type, coef, delta)
        first = [i for i in (self.first_nonfinite, other.first_nonfinite) if i >= 0]
        worst = merge_worst(self, other)
        return SufficientStats(
            self.covariance_type,
            total,
            means,
            self.scatter + other.scatter + correction,
            self.log_likelihood + other.log_likelihood,
            self.weight_sum + other.weight_sum,
            self.n_rows + other.n_rows,
            self.n_nonfinite + other.n_nonfinite,
            min(first) if first else -1,
            *worst,
        )


STATS_FIELDS = ("resp_sum", "means", "scatter", "log_likelihood", "weight_sum", "n_rows", "n_nonfinite",
                "first_nonfinite", "worst_log_prob", "worst_rows", "worst_index")


def scaled(stats: SufficientStats, factor: float) -> SufficientStats:
    """The statistics with every row's weight multiplied by ``factor`` (means unchanged): the
    stochastic approximation of online EM mixes ``scaled(old, 1 - step) + scaled(new, step)``."""
    return replace(stats, resp_sum=stats.resp_sum * factor, scatter=stats.scatter * factor,
                   log_likelihood=stats.log_likelihood * factor, weight_sum=stats.weight_sum * factor)


def check_finite(stats: SufficientStats):
    """scikit-learn's kind of error when the rows behind ``stats`` held NaN or infinity."""
    if stats.n_nonfinite:
        raise nonfinite_rows_error(stats.n_nonfinite, stats.n_rows, stats.first_nonfinite)


def nonfinite_rows_error(n_nonfinite, n_rows, first_nonfinite):
    """The ``ValueError`` for ``n_nonfinite`` of ``n_rows`` rows with NaN or infinity."""
    return ValueError(
        f"Input X contains NaN or infinity in {n_nonfinite} of {n_rows} "
        f"rows (the first at row {first_nonfinite}). GaussianMixture cannot "
        "fit non-finite values: drop or impute those rows first" + MISSING_HINT
    )


def merge_worst(a: SufficientStats, b: SufficientStats):
    """The ``max(m_a, m_b)`` worst-explained rows of both sides."""
    keep = max(a.worst_log_prob.size, b.worst_log_prob.size)
    if keep == 0:
        return a.worst_log_prob, a.worst_rows, a.worst_index
    values = np.concatenate([a.worst_log_prob, b.worst_log_prob])
    index = np.concatenate([a.worst_index, b.worst_index])
    rows = np.concatenate([r for r in (a.worst_rows, b.worst_rows) if r.size])
    order = np.lexsort((index, values))[:keep]
    return values[order], rows[order], index[order]


def _scatter_correction(covariance_type, coef, delta):
    """The ``sum N_a N_b / N delta delta^T`` term of the pairwise merge."""
    if covariance_type == "full":
        return coef[:, None, None] * delta[:, :, None] * delta[:, None, :]
    if covariance_type == "tied":
        return (delta * coef[:, None]).T @ delta
    if covariance_type == "diag":
        return coef[:, None] * delta**2
    return coef * np.sum(delta**2, axis=1)


def merge_stats(*parts: SufficientStats) -> SufficientStats:
    """Merge any number of partial statistics (one node of the reduction tree)."""
    return reduce(operator.add, parts)


def merge_stats_lists(*parts: list) -> list:
    """Merge per-model lists of statistics position by position (several models in one tree)."""
    return [merge_stats(*column) for column in zip(*parts)]


def pooled(stats: SufficientStats):
    """``(mass, mean, scatter)`` of all components' rows together: the data's own weighted
    moments when every row's responsibilities sum to one (an EM or initialisation pass).

    The scatter is centred on the pooled mean, in the layout of ``stats.covariance_type`` for one
    component: full and tied ``(D, D)``, diag ``(D,)``, spherical a scalar (the trace).
    """
    mass = float(np.sum(stats.resp_sum))
    mean = stats.resp_sum @ stats.means / mass
    delta = stats.means - mean
    between = _scatter_correction(stats.covariance_type, stats.resp_sum, delta)
    if stats.covariance_type == "tied":
        return mass, mean, stats.scatter + between
    return mass, mean, stats.scatter.sum(axis=0) + between.sum(axis=0)
