"""Several diagonal and spherical models on one block: all their E-steps as one GEMM, all their
M-step sums as another. Pure NumPy, no Dask in here.

Both steps of these covariance types are linear in the per-row moment columns ``[x, x^2, 1]``
(:func:`~daskgmm.densities.moment_columns`): a model's weighted log-probabilities are those
columns times a (2D+1, K) matrix, its sums of ``r``, ``r x`` and ``r x^2`` the transposed product
with its responsibilities. Models that read the same block (``select_model``'s candidates)
stack their matrices side by side (a spherical model's quadratic weight written on every
``x_d^2`` column), so K=1, 2, 4 and 8 make one GEMM of 30 columns instead of four thin ones,
and their responsibilities are normalised segment by segment in one component-major array.
Each model keeps its exactness paths: components whose fast log-probability would carry too
much round-off are recomputed exactly centred (:func:`~daskgmm.densities.weighted_log_prob`),
and components whose expanded scatter would lose digits are summed exactly centred
(:func:`~daskgmm.moments.separable_sums`). Results equal the models' lone walks up to
round-off (the order of additions differs), not bit for bit.
"""

from __future__ import annotations

import numpy as np

from .densities import _exact_log_prob, _separable_weights, clamped_exp, moment_columns, unsafe_components
from .moments import separable_sums

STACKABLE_TYPES = ("diag", "spherical")


class StackedModels:
    """The parameters of several diag/spherical models read together, and their stacked E-step."""

    def __init__(self, params_list):
        self.params = list(params_list)
        sizes = [p.n_components for p in self.params]
        self.edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        self.indicator = np.zeros((len(sizes), self.edges[-1]))
        for m, (low, high) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            self.indicator[m, low:high] = 1

    def _prepared(self, shift):
        """The stacked (2D+1, sum K) E-step weights and each model's unsafe components, about ``shift``."""
        columns, unsafe, centred_means = [], [], []
        for params in self.params:
            means_c = np.asarray(params.means, dtype=np.float64) - shift
            weights = _separable_weights(means_c, params, np.float64)
            if params.covariance_type == "spherical":  # [x, |x|^2, 1] -> [x, x^2 (each), 1]
                n_features = means_c.shape[1]
                weights = np.vstack([weights[:n_features], np.repeat(weights[n_features:n_features + 1], n_features,
                                                                      axis=0), weights[n_features + 1:]])
            columns.append(weights)
            unsafe.append(np.flatnonzero(unsafe_components(params, means_c, np.float64)))
            centred_means.append(means_c)
        return np.hstack(columns), unsafe, centred_means

    def block_sums(self, block, sample_weight, ws):
        """Every model's :class:`~daskgmm.moments.MomentSums` of ``block`` and its rows' ``log p(x)``."""
        rows64 = block.exact()
        columns = moment_columns(rows64, "diag", ws)
        weights, unsafe, centred_means = ws.memo("stacked", self, block.shift.tobytes(),
                                                 lambda: self._prepared(block.shift))
        # component-major (sum K, n): each model's rows of it are contiguous for the log-sum-exp
        resp_t = ws.get("stacked_resp", (self.edges[-1], rows64.shape[0]), np.float64)
        np.matmul(weights.T, columns.T, out=resp_t)
        for m, params in enumerate(self.params):
            if unsafe[m].size:
                low, high = self.edges[m], self.edges[m + 1]
                _exact_log_prob(block, centred_means[m], params, unsafe[m], resp_t[low:high].T, ws)
        log_norms = normalize_segments(resp_t, self.edges, self.indicator)
        if sample_weight is not None:
            resp_t *= sample_weight.astype(np.float64)[None, :]
        sums = resp_t @ columns  # (sum K, 2D+1): every model's sums of r, r x, r x^2
        results = []
        for m, params in enumerate(self.params):
            low, high = self.edges[m], self.edges[m + 1]
            results.append((separable_sums(block, resp_t[low:high].T, sums[low:high], log_norms[m], sample_weight,
                                           params.covariance_type, ws), log_norms[m]))
        return results


def normalize_segments(values, edges, indicator):
    """Each model's responsibilities, in place of its stacked weighted log-probabilities
    ``values[edges[m]:edges[m+1]]`` (component-major, shape (sum K, n)), and its rows'
    ``log p(x)``, shape (M, n): the log-sum-exp of :func:`~daskgmm.densities.normalize_log_prob`
    per model. ``indicator`` (M, sum K) marks each model's components: the sums are one GEMM."""
    top = np.empty((len(edges) - 1, values.shape[1]))
    for m, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        np.max(values[low:high], axis=0, out=top[m])  # over contiguous rows: vectorised
        top[m, ~np.isfinite(top[m])] = 0
        values[low:high] -= top[m]
    clamped_exp(values)
    total = indicator @ values
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 1 / total
        for m, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
            values[low:high] *= scale[m]
        log_norm = np.log(total)
    log_norm += top
    return log_norm
