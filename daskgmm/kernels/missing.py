"""Missing values (NaN) in EM: every row contributes the coordinates it has.

Exact EM when values are missing at random. The E-step scores a row under each component's
*marginal* Gaussian of the row's observed coordinates ``o``:
``log w_k + log N(x_o | mu_ko, Sigma_k,oo)``. The M-step sums use, per row and component, the
conditional expectation of the missing coordinates ``m``,
``x_m = mu_km + B_k (x_o - mu_ko)`` with ``B_k = Sigma_k,mo Sigma_k,oo^-1``, and add the
conditional covariance ``C_k = Sigma_k,mm - B_k Sigma_k,om`` to the scatter: the statistics keep
the shape of :class:`~daskgmm.model.statistics.SufficientStats`, so the tree merge and the
M-step are unchanged.

A full or tied model works with its precisions ``P_k``: a row's marginal, conditional mean and
conditional covariance need only the small block ``P_k,mm`` at its missing coordinates
(:class:`DenseBlock`), inverted once per (pattern, component) for all the chunk's rows of that
pattern (:class:`MissingPatterns`); the rest are products over a block's rows at once. Diag and
spherical models need nothing of the kind (their coordinates are independent given the
component): a compiled walk that skips each row's NaN, and GEMMs. Everything here is float64, on
rows centred on their block's observed means. Rows without NaN never come here: the chunk
driver sends them through the usual kernels, so data without NaN give what they give without
``missing="em"``, bit for bit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from ..model.params import LOG_2PI, GaussianParams
from ..model.statistics import SufficientStats
from .densities import normalize_log_prob

# Rows per block of the n x K x D temporaries (whitened differences, masked products): ~4 MiB
# at K = D = 16, as the complete rows' blocks.
BLOCK_ELEMENTS = 1 << 19
MISSING_ON_CPU_ONLY = "missing='em' runs on the CPU only: use device='cpu'."


def nonfinite_message(kind, n_rows, first_row):
    """The error for rows that missing-value EM cannot use (infinity, or nothing observed)."""
    return (f"X has a row with {kind}: row {first_row} ({n_rows} such row(s) in its chunk). With missing='em', "
            "NaN marks a missing value, every other value must be finite and each row needs at least one observed "
            "value: drop those rows or fix their values.")


def check_incomplete_rows(X, rows):
    """Refuse rows with infinity or with no observed value, naming the first by global index ``rows``."""
    infinite = np.isinf(X).any(axis=1)
    if infinite.any():
        raise ValueError(nonfinite_message("infinity", int(infinite.sum()), int(rows[infinite][0])))
    empty = np.isnan(X).all(axis=1)
    if empty.any():
        raise ValueError(nonfinite_message("no observed value", int(empty.sum()), int(rows[empty][0])))


def observed_centre(X, observed):
    """Each column's mean over its observed values (0 for a column with none): a block's centre."""
    counts = observed.sum(axis=0)
    return np.where(observed, X, 0).sum(axis=0, dtype=np.float64) / np.maximum(counts, 1)


def dense_precisions(params: GaussianParams):
    """``(precisions (K, D, D), log det Sigma_k (K,))`` of a full or tied model, from its precision
    Cholesky factors (a view of one matrix for tied)."""
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    K = params.n_components
    if params.covariance_type == "tied":
        precision = chol @ chol.T
        return np.broadcast_to(precision, (K,) + precision.shape), np.full(K, -2 * np.sum(np.log(np.diag(chol))))
    return chol @ np.swapaxes(chol, 1, 2), -2 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)


class MissingPatterns:
    """The rows of a chunk that miss ``r`` coordinates (one ``r`` per instance), with what a full or
    tied model needs of each pattern among them: the block ``P_k,mm`` of every precision at the
    missing coordinates ``m``, inverted (``(K, patterns, r, r)``), and its log-determinant. Made
    once per chunk and model, so a pattern costs one small inversion per component, however
    many of its rows there are and whichever row block they fall in."""

    def __init__(self, rows, missing, precisions):
        self.rows = rows
        self.patterns, pattern_of_row = np.unique(missing, axis=0, return_inverse=True)
        self.pattern_of_row = pattern_of_row.ravel()
        self.missing = missing
        blocks = precisions[:, self.patterns[:, :, None], self.patterns[:, None, :]]
        self.inverse = np.linalg.inv(blocks)
        self.log_det = np.linalg.slogdet(blocks)[1]

    @classmethod
    def of_rows(cls, observed, precisions):
        """One instance per number of missing coordinates among rows ``observed`` (a bool mask)."""
        n_missing = (~observed).sum(axis=1)
        groups = []
        for r in np.unique(n_missing):
            rows = np.flatnonzero(n_missing == r)
            groups.append(cls(rows, np.nonzero(~observed[rows])[1].reshape(len(rows), r), precisions))
        return groups


class DenseBlock:
    """A full or tied model's E-step over a block of rows that miss the same number ``r`` of
    coordinates, by the precision matrices ``P_k``: with ``delta`` a row's differences to
    ``mu_k`` (0 where missing) and ``t = (P_k delta)_m``, the marginal's Mahalanobis distance is
    ``delta' P_k delta - t' P_k,mm^-1 t``, ``log det Sigma_k,oo = log det Sigma_k + log det P_k,mm``,
    and the missing coordinates' conditional expectation is ``mu_km - P_k,mm^-1 t`` (conditional
    covariance ``P_k,mm^-1``). Everything is a product over the block's rows at once but the
    small inverses, which come per pattern from :class:`MissingPatterns`.
    """

    def __init__(self, X, params: GaussianParams, precisions, log_det, group: MissingPatterns, block):
        observed = ~np.isnan(X)
        self.centre = observed_centre(X, observed)
        means = params.means - self.centre  # about the centre
        values = np.where(observed, X - self.centre, 0.0)
        delta = values[None] - means[:, None] * observed  # (K, n, D), 0 where missing
        product = delta @ precisions
        maha = np.sum(delta * product, axis=2)
        log_det_marginal = np.repeat(log_det[:, None], len(X), axis=1)
        self.completed = np.repeat(values[None], len(means), axis=0)  # (K, n, D): the rows completed per component
        self.group, self.pattern_of_row = group, group.pattern_of_row[block]
        missing = group.missing[block]
        if missing.shape[1]:
            t = np.take_along_axis(product, missing[None], axis=2)  # (K, n, r)
            s = np.einsum("knij,knj->kni", group.inverse[:, self.pattern_of_row], t)
            maha -= np.sum(t * s, axis=2)
            log_det_marginal += group.log_det[:, self.pattern_of_row]
            completion = means[np.arange(len(means))[:, None, None], missing[None]] - s
            np.put_along_axis(self.completed, np.broadcast_to(missing[None], completion.shape), completion, axis=2)
        self.log_prob = (params.log_weights()[:, None]
                         - 0.5 * (maha + log_det_marginal + observed.sum(axis=1) * LOG_2PI)).T  # (n, K)

    def sums(self, weighted_resp, covariance_type):
        """The M-step sums of the block's rows: :class:`SufficientStats` of the completed rows, the
        conditional covariances added (per pattern: its rows' mass times ``P_k,mm^-1``)."""
        K, _, D = self.completed.shape
        mass = weighted_resp.sum(axis=0)
        safe = np.where(mass > 0, mass, 1.0)
        weighted = self.completed * weighted_resp.T[:, :, None]
        first = weighted.sum(axis=1)
        means = first / safe[:, None]
        scatter = np.swapaxes(weighted, 1, 2) @ self.completed - first[:, :, None] * means[:, None, :]
        patterns = self.group.patterns
        if patterns.shape[1]:
            rows = len(self.pattern_of_row)
            pattern_mass = scipy.sparse.csr_matrix((np.ones(rows), (self.pattern_of_row, np.arange(rows))),
                                                   shape=(len(patterns), rows)) @ weighted_resp  # (p, K)
            np.add.at(scatter, (np.arange(K)[:, None, None, None], patterns[None, :, :, None], patterns[None, :, None, :]),
                      pattern_mass.T[:, :, None, None] * self.group.inverse)
        means = np.where(mass[:, None] > 0, means + self.centre, 0.0)
        return SufficientStats(covariance_type, mass, means, scatter.sum(axis=0) if covariance_type == "tied" else scatter)


def rows_per_block(n_components, n_features, covariance_type):
    """Rows per block: a full or tied model's temporaries are K x n x D, a separable model's n x K."""
    width = n_components * n_features if covariance_type in ("full", "tied") else max(n_components, n_features)
    return max(256, BLOCK_ELEMENTS // max(1, width))


def _blocks(X, params: GaussianParams):
    """``(rows, log_prob (n, K), what the M-step sums need)`` of the rows of ``X`` block by block:
    a diag or spherical model's blocks by a compiled walk, a full or tied model's by the rows'
    number of missing coordinates (:class:`DenseBlock`)."""
    step = rows_per_block(params.n_components, params.n_features, params.covariance_type)
    if params.covariance_type in ("diag", "spherical"):
        for start in range(0, X.shape[0], step):
            rows = slice(start, start + step)
            yield (rows, *_separable_log_prob(X[rows], params))
        return
    X = np.asarray(X, dtype=np.float64)
    precisions, log_det = dense_precisions(params)
    for group in MissingPatterns.of_rows(~np.isnan(X), precisions):
        for start in range(0, group.rows.size, step):
            block = slice(start, start + step)
            rows = group.rows[block]
            state = DenseBlock(X[rows], params, precisions, log_det, group, block)
            yield rows, state.log_prob, state


def observed_log_prob(X, params: GaussianParams):
    """``log w_k + log N(x_o | mu_ko, Sigma_k,oo)`` of every row over its observed coordinates,
    shape (n, K), float64 (rows without NaN get the usual log-density)."""
    out = np.empty((X.shape[0], params.n_components))
    for rows, log_prob, _ in _blocks(X, params):
        out[rows] = log_prob
    return out


def missing_statistics(X, sample_weight, params: GaussianParams, covariance_type, scores_only=False):
    """The statistics (:class:`SufficientStats`) of one E-step over rows with missing values.

    ``X`` holds the rows (NaN where a value is missing; at least one observed value per row,
    none infinite); ``sample_weight`` their weights or None. ``scores_only``: only the
    log-likelihood and weight sum (``select_model``'s scoring pass).
    """
    weights = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    K, D = params.n_components, X.shape[1]
    total = SufficientStats.empty(covariance_type, K, D)
    for rows, log_prob, state in _blocks(X, params):
        resp, log_norm = normalize_log_prob(log_prob)
        w = weights[rows]
        total = total + SufficientStats(covariance_type, np.zeros(K), np.zeros((K, D)), np.zeros_like(total.scatter),
                                        float(w @ log_norm), float(w.sum()), len(w))
        if not scores_only:
            weighted = resp * w[:, None]
            total = total + (state.sums(weighted, covariance_type) if covariance_type in ("full", "tied")
                             else _separable_sums(X[rows], weighted, params, covariance_type, state))
    return total


def _separable_log_prob(X, params: GaussianParams):
    """A diag or spherical model's ``(log_prob, centre)`` of a block, by the compiled walk that skips
    each row's missing coordinates (rows exactly centred on the block's mean)."""
    from .numba_loops import missing_log_prob  # numba on first use, as the chunk driver's loops

    X = np.ascontiguousarray(X)
    centre = observed_centre(X, ~np.isnan(X))
    variances = _variances(params, X.shape[1])
    factors = 1.0 / np.sqrt(variances)
    log_prob = np.empty((X.shape[0], params.n_components))
    missing_log_prob(X, centre, factors, factors * (params.means - centre), np.log(factors), params.log_weights(),
                     LOG_2PI, log_prob)
    return log_prob, centre


def _variances(params, n_features):
    variances = np.asarray(params.covariances, dtype=np.float64)
    return np.repeat(variances[:, None], n_features, axis=1) if params.covariance_type == "spherical" else variances


def _separable_sums(X, weighted_resp, params, covariance_type, centre):
    """A diag or spherical model's M-step sums of a block by three GEMMs: observed coordinates
    as they are (about the centre), a missing one completed by the component's mean, with the
    component's variance added to its square."""
    observed = ~np.isnan(X)
    values = np.where(observed, X - centre, 0.0)
    means = params.means - centre
    missing_mass = weighted_resp.T @ (~observed).astype(np.float64)  # (K, D)
    mass = weighted_resp.sum(axis=0)
    first = weighted_resp.T @ values + missing_mass * means
    second = weighted_resp.T @ (values * values) + missing_mass * (means**2 + _variances(params, X.shape[1]))
    safe = np.where(mass > 0, mass, 1.0)[:, None]
    component_means = first / safe
    scatter = second - component_means * first
    component_means = np.where(mass[:, None] > 0, component_means + centre, 0.0)
    return SufficientStats(covariance_type, mass, component_means,
                           scatter.sum(axis=1) if covariance_type == "spherical" else scatter)


def filled_hard_statistics(X, sample_weight, centres, covariance_type):
    """k-means initialisation over rows with missing values: each row goes to the nearest centre
    over its observed coordinates, and its missing coordinates are taken from that centre; the
    statistics are those of the completed rows with one-hot responsibilities."""
    X = np.asarray(X, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    weights = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    observed = ~np.isnan(X)
    values = np.where(observed, X, 0.0)
    distances = (observed @ (centres**2).T) - 2 * values @ centres.T  # + sum of x_o^2, the same for every centre
    labels = np.argmin(distances, axis=1)
    completed = np.where(observed, X, centres[labels])
    K, D = centres.shape
    mass = np.bincount(labels, weights=weights, minlength=K).astype(np.float64)
    means, scatters = np.zeros((K, D)), np.zeros((K, D, D))
    for k in np.flatnonzero(mass > 0):
        rows, w = completed[labels == k], weights[labels == k]
        means[k] = w @ rows / mass[k]
        diff = rows - means[k]
        scatters[k] = (diff * w[:, None]).T @ diff
    scatter = {"full": scatters, "tied": scatters.sum(axis=0),
               "diag": np.diagonal(scatters, axis1=1, axis2=2).copy(),
               "spherical": np.trace(scatters, axis1=1, axis2=2)}[covariance_type]
    return SufficientStats(covariance_type, mass, means, scatter, 0.0, float(weights.sum()), len(X))
