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


class DenseGroup:
    """A full or tied model's E-step and M-step sums over the rows of a chunk that miss the same
    number ``r`` of coordinates, by the precision matrices ``P_k``.

    With ``x`` a row about the group's centre (0 where missing), ``m`` its missing coordinates and
    ``delta = x - mu_k`` on the observed ones (0 on ``m``): the marginal's Mahalanobis distance is
    ``delta' P delta - t' P_mm^-1 t`` with ``t = (P delta)_m``, ``log det Sigma_oo = log det Sigma +
    log det P_mm``, and the missing coordinates' conditional mean is ``mu_m - P_mm^-1 t``
    (conditional covariance ``P_mm^-1``). Expanded in ``x``, every term is a GEMM over the block's
    rows (``u = P_k x`` for all components in one) plus per-row gathers of ``r`` values and
    constants of the row's pattern: the small inverses ``P_mm^-1`` are made once per (pattern,
    component) for the whole group. The M-step sums of the completed rows
    ``x + sum_a e_ma z_a`` are GEMMs too, the completion's own products and the conditional
    covariances added per pattern once per group.
    """

    def __init__(self, X, missing, params: GaussianParams, precisions, log_det):
        K, D = params.n_components, X.shape[1]
        self.X, self.missing, self.n_components = X, missing, K
        self.observed = np.ones(X.shape, dtype=bool)
        self.observed[np.arange(len(X))[:, None], missing] = False
        self.centre = observed_centre(X, self.observed)
        self.means = params.means - self.centre  # about the centre
        self.stacked = np.ascontiguousarray(np.swapaxes(precisions, 0, 1).reshape(D, K * D))  # [P_1 ... P_K]
        self.precision_means = np.einsum("kde,ke->kd", precisions, self.means)
        self.offset = params.log_weights() - 0.5 * (log_det + (D - missing.shape[1]) * LOG_2PI)
        self.patterns, self.pattern_of_row = _patterns(missing, D)
        m = self.patterns  # (p, r)
        blocks = precisions[:, m[:, :, None], m[:, None, :]]  # (K, p, r, r)
        self.inverse = np.linalg.inv(blocks)
        means_m = self.means[:, m]  # (K, p, r)
        block_means = np.einsum("kpij,kpj->kpi", blocks, means_m)
        self.t_offset = self.precision_means[:, m] - block_means  # t = u_m - this
        self.quadratic_offset = (np.einsum("kd,kd->k", self.means, self.precision_means)[:, None]
                                 - 2 * np.einsum("kpi,kpi->kp", means_m, self.precision_means[:, m])
                                 + np.einsum("kpi,kpi->kp", means_m, block_means))  # (K, p)
        self.offset_per_pattern = self.offset[:, None] - 0.5 * np.linalg.slogdet(blocks)[1]  # (K, p)
        self.mass = np.zeros(K)
        self.first = np.zeros((K, D))
        self.second = np.zeros((K, D, D))
        self.pattern_products = np.zeros((len(m), K) + (m.shape[1],) * 2)  # sum w r z z' per pattern
        self.pattern_mass = np.zeros((len(m), K))  # sum w r per pattern (the conditional covariances' weights)

    def e_step(self, rows):
        """``(log_prob (n, K), (rows, values, completions))`` of the rows ``rows`` (a slice)."""
        values = np.where(self.observed[rows], self.X[rows] - self.centre, 0.0)
        n, K, D = len(values), self.n_components, values.shape[1]
        missing, pattern = self.missing[rows], self.pattern_of_row[rows]
        product = (values @ self.stacked).reshape(n, K, D)  # u_k = P_k x
        maha = np.einsum("nkd,nd->nk", product, values) - 2 * (values @ self.precision_means.T)
        gathered = np.take_along_axis(product, missing[:, None, :], axis=2)  # (n, K, r)
        means_m = np.swapaxes(self.means[:, missing], 0, 1)  # (n, K, r)
        maha += 2 * np.einsum("nkr,nkr->nk", gathered, means_m) + self.quadratic_offset[:, pattern].T
        t = gathered - np.swapaxes(self.t_offset[:, pattern], 0, 1)
        s = np.einsum("nkij,nkj->nki", np.swapaxes(self.inverse[:, pattern], 0, 1), t)
        maha -= np.einsum("nki,nki->nk", t, s)
        log_prob = self.offset_per_pattern[:, pattern].T - 0.5 * maha
        return log_prob, (rows, values, means_m - s)

    def add_sums(self, state, weighted_resp):
        """Adds the rows' M-step sums (``weighted_resp``: their weighted responsibilities)."""
        rows, values, completions = state
        n, K = weighted_resp.shape
        D = values.shape[1]
        missing, pattern = self.missing[rows], self.pattern_of_row[rows]
        self.mass += weighted_resp.sum(axis=0)
        weighted_completions = completions * weighted_resp[:, :, None]  # (n, K, r)
        placed = np.zeros((n, D, K))  # w r z at each row's missing coordinates
        placed[np.arange(n)[:, None], missing] = np.swapaxes(weighted_completions, 1, 2)
        self.first += weighted_resp.T @ values + placed.sum(axis=0).T
        scaled = (weighted_resp[:, :, None] * values[:, None, :]).reshape(n, K * D)
        cross = (values.T @ placed.reshape(n, D * K)).reshape(D, D, K)  # sum w r x z' at the missing columns
        cross = np.moveaxis(cross, 2, 0)
        self.second += (scaled.T @ values).reshape(K, D, D) + cross + np.swapaxes(cross, 1, 2)
        products = weighted_completions[:, :, :, None] * completions[:, :, None, :]  # (n, K, r, r)
        self.pattern_products += _sum_by(pattern, products, len(self.patterns))
        self.pattern_mass += _sum_by(pattern, weighted_resp, len(self.patterns))

    def statistics(self, covariance_type) -> SufficientStats:
        """The group's :class:`SufficientStats` (after :meth:`add_sums` of every block)."""
        K, D = self.first.shape
        products = self.pattern_products + self.pattern_mass[:, :, None, None] * np.swapaxes(self.inverse, 0, 1)
        m = self.patterns
        index = (np.arange(K)[None, :, None, None] * D * D + m[:, None, :, None] * D + m[:, None, None, :])
        second = self.second + np.bincount(np.broadcast_to(index, products.shape).ravel(), products.ravel(),
                                           minlength=K * D * D).reshape(K, D, D)
        safe = np.where(self.mass > 0, self.mass, 1.0)
        means = self.first / safe[:, None]
        scatter = second - self.first[:, :, None] * means[:, None, :]
        means = np.where(self.mass[:, None] > 0, means + self.centre, 0.0)
        return SufficientStats(covariance_type, self.mass, means,
                               scatter.sum(axis=0) if covariance_type == "tied" else scatter)


def _patterns(missing, n_features):
    """``(patterns (p, r), pattern of each row)`` of rows' missing coordinates (sorted per row)."""
    if n_features < 63:  # a pattern as the bits of one integer: a fast unique
        keys = np.bitwise_or.reduce(np.left_shift(1, missing.astype(np.int64)), axis=1) if missing.shape[1] else \
            np.zeros(len(missing), dtype=np.int64)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return missing[first], inverse.ravel()
    patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    return patterns, inverse.ravel()


def _sum_by(groups, values, n_groups):
    """``values`` (n, ...) summed by group label ``groups`` (n,): (n_groups, ...)."""
    onehot = scipy.sparse.csr_matrix((np.ones(len(groups)), (groups, np.arange(len(groups)))),
                                     shape=(n_groups, len(groups)))
    return (onehot @ values.reshape(len(groups), -1)).reshape((n_groups,) + values.shape[1:])


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
            block = SeparableBlock(X[rows], params)
            yield rows, block.log_prob(), block
        return
    X = np.asarray(X, dtype=np.float64)
    precisions, log_det = dense_precisions(params)
    observed = ~np.isnan(X)
    n_missing = X.shape[1] - observed.sum(axis=1)
    for r in np.unique(n_missing):
        rows = np.flatnonzero(n_missing == r)
        group = DenseGroup(X[rows], np.nonzero(~observed[rows])[1].reshape(len(rows), r), params, precisions,
                           log_det)
        for start in range(0, rows.size, step):
            block = slice(start, start + step)
            log_prob, state = group.e_step(block)
            yield rows[block], log_prob, (group, state)


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
    groups = {}  # a full or tied model's sums are its row groups' (DenseGroup), finished at the end
    for rows, log_prob, state in _blocks(X, params):
        w = weights[rows]
        if isinstance(state, SeparableBlock):
            total = total + state.statistics(w, covariance_type, scores_only)
            continue
        resp, log_norm = normalize_log_prob(log_prob)
        total = total + SufficientStats(covariance_type, np.zeros(K), np.zeros((K, D)), np.zeros_like(total.scatter),
                                        float(w @ log_norm), float(w.sum()), len(w))
        if not scores_only:
            group, block = state
            group.add_sums(block, resp * w[:, None])
            groups[id(group)] = group
    for group in groups.values():
        total = total + group.statistics(covariance_type)
    return total


class SeparableBlock:
    """A diag or spherical model over a block of rows with missing values: compiled walks that
    skip each row's missing coordinates (:func:`~daskgmm.kernels.numba_loops.missing_log_prob`,
    ``missing_moment_sums``), on the rows about the block's observed means in float64."""

    def __init__(self, X, params: GaussianParams):
        from .numba_loops import missing_log_prob  # numba on first use, as the chunk driver's loops

        observed = ~np.isnan(X)
        self.centre = observed_centre(X, observed)
        self.values = np.where(observed, X - self.centre, 0.0)
        self.mask = observed.astype(np.float64)
        self.params = params
        self.variances = _variances(params, X.shape[1])
        factors = 1.0 / np.sqrt(self.variances)
        offset = params.log_weights()
        log_prob, self.top = np.empty((len(X), params.n_components)), np.empty(len(X))
        missing_log_prob(self.values, self.mask, factors, factors * (params.means - self.centre),
                         np.log(factors) - 0.5 * LOG_2PI, offset, log_prob, self.top)
        self.relative = log_prob  # log_prob less each row's top, clamped

    def log_prob(self):
        return self.relative + self.top[:, None]

    def statistics(self, sample_weight, covariance_type, scores_only):
        """``SufficientStats`` of the block's rows (``scores_only``: their log-likelihood only)."""
        from .numba_loops import missing_moment_sums

        K, D = self.relative.shape[1], self.values.shape[1]
        resp = np.exp(self.relative)
        total = np.empty(len(resp))
        first, second, missing_mass, mass = np.zeros((K, D)), np.zeros((K, D)), np.zeros((K, D)), np.zeros(K)
        missing_moment_sums(self.values, self.mask, resp, sample_weight, total, first, second, missing_mass, mass)
        log_norm = np.log(total) + self.top
        scores = SufficientStats(covariance_type, np.zeros(K), np.zeros((K, D)),
                                 np.zeros(K) if covariance_type == "spherical" else np.zeros((K, D)),
                                 float(sample_weight @ log_norm), float(sample_weight.sum()), len(resp))
        if scores_only:
            return scores
        means = self.params.means - self.centre
        first += missing_mass * means
        second += missing_mass * (means**2 + self.variances)
        safe = np.where(mass > 0, mass, 1.0)[:, None]
        component_means = first / safe
        scatter = second - component_means * first
        component_means = np.where(mass[:, None] > 0, component_means + self.centre, 0.0)
        return scores + SufficientStats(covariance_type, mass, component_means,
                                        scatter.sum(axis=1) if covariance_type == "spherical" else scatter)


def _variances(params, n_features):
    variances = np.asarray(params.covariances, dtype=np.float64)
    return np.repeat(variances[:, None], n_features, axis=1) if params.covariance_type == "spherical" else variances


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
