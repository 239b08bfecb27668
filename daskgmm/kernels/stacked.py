"""Several diagonal and spherical models on one block: all their E-steps as one GEMM, all their
M-step sums as another. No Dask in here.

Both steps of these covariance types are linear in the per-row moment columns ``[x, x^2, 1]``
(:func:`~daskgmm.kernels.densities.moment_columns`): a model's weighted log-probabilities are those
columns times a (2D+1, K) matrix, its sums of ``r``, ``r x`` and ``r x^2`` the transposed product
with its responsibilities. Models that read the same block (``select_model``'s candidates)
stack their matrices side by side (a spherical model's quadratic weight written on every
``x_d^2`` column), so K=1, 2, 4 and 8 make one GEMM of 30 columns instead of four thin ones,
and their responsibilities are normalised segment by segment in one component-major array.
Models wanting only their log-likelihood (the final scores) skip the M-step GEMM.

The k-means starts of those candidates (one set of centres per K, shared by the covariance
types) are assigned in one compiled walk over the rows that also sums them
(:func:`~daskgmm.kernels.numba_loops.nearest_centre_blocks`): a hard assignment has no use for GEMMs.

Each model keeps its exactness paths: components whose fast log-probability would carry too
much round-off are recomputed exactly centred (:func:`~daskgmm.kernels.densities.weighted_log_prob`),
and components whose expanded scatter would lose digits are summed exactly centred
(:func:`~daskgmm.kernels.sums.separable_sums`). Results equal the models' lone walks up to
round-off (the order of additions differs), not bit for bit.
"""

from __future__ import annotations

import numpy as np

from .densities import _exact_log_prob, _quadratic_weights, _separable_weights, quadratic_columns, unsafe_components
from .numba_loops import nearest_centre_blocks, normalize_component_major
from .sums import log_likelihood_sums, quadratic_sums, separable_sums


class StackedModels:
    """Several diag/spherical models read together: their stacked E-steps and M-step sums, and
    their nearest-centre assignments (compiled, :func:`~daskgmm.kernels.numba_loops.nearest_centre_blocks`).

    Parameters
    ----------
    models : list
        Per model, its :class:`~daskgmm.model.params.GaussianParams` (responsibilities from the
        E-step) or an ndarray of centres (K, D) (one-hot responsibilities to the nearest centre).
        The same object given twice is assigned once, its sums made for both covariance types.
    covariance_types : list of {'diag', 'spherical'}
        The statistics each model's sums are for.
    score_only : list of bool, optional
        Models whose rows' log-likelihood is all that is wanted (no M-step sums).
    """

    def __init__(self, models, covariance_types, score_only=None):
        self.covariance_types = list(covariance_types)
        score_only = list(score_only) if score_only is not None else [False] * len(self.covariance_types)
        # centres (one set given for several covariance types is assigned once), then parameters
        # with sums, then scored parameters: the M-step GEMM takes the stacked rows before those
        self.centres, self.params, self.unique_of = [], [], [None] * len(models)
        for kind in ("hard", "summed", "scored"):
            for m, (model, score) in enumerate(zip(models, score_only)):
                if kind != ("hard" if isinstance(model, np.ndarray) else "scored" if score else "summed"):
                    continue
                if kind == "hard":
                    same = [u for u, centres in enumerate(self.centres) if centres is model]
                    self.unique_of[m] = (True, same[0] if same else len(self.centres))
                    if not same:
                        self.centres.append(model)
                else:
                    self.unique_of[m] = (False, len(self.params))
                    self.params.append(model)
            if kind == "summed":
                self.summed = len(self.params)
        self.edges = np.concatenate([[0], np.cumsum([p.n_components for p in self.params])]).astype(np.intp)

    def _prepared(self, shift):
        """The stacked (2D+1, sum K) E-step weights and each model's unsafe components, about ``shift``."""
        return prepared_weights(self.params, shift, _separable_columns)

    def block_sums(self, block, sample_weight, ws):
        """Every model's :class:`~daskgmm.kernels.sums.MomentSums` of ``block`` and its rows' ``log p(x)``
        (None for nearest-centre models)."""
        n_features = block.raw.shape[1]
        hard = soft = []
        if self.centres:
            hard = nearest_centre_blocks(block, self.centres, sample_weight, ws)
        if self.params:
            soft = self._soft_sums(block, sample_weight, ws)
        results = []
        for (is_hard, u), covariance_type in zip(self.unique_of, self.covariance_types):
            resp, sums, log_norm = hard[u] + (None,) if is_hard else soft[u]
            if resp is None:  # scored only
                block_sums = log_likelihood_sums(log_norm, sample_weight, covariance_type,
                                                 self.params[u].n_components, n_features)
            else:
                block_sums = separable_sums(block, resp, sums, log_norm, sample_weight, covariance_type, ws)
            results.append((block_sums, log_norm))
        return results

    def _soft_sums(self, block, sample_weight, ws):
        """Per parameters, ``(resp (n, K) or None where scored, sums (K, 2D+1), log p(x))``."""
        prepared = ws.memo("stacked", self, block.shift.tobytes(), lambda: self._prepared(block.shift))
        return stacked_e_and_m_steps(block, moment_rows(block, ws), prepared, self.params, self.edges, self.summed,
                                     sample_weight, ws)


class StackedFullModels:
    """Several full models read together (``select_model``'s full candidates, together wide
    enough for :func:`~daskgmm.kernels.blocks.uses_quadratic_form`): their E-steps as one GEMM of the block's quadratic
    columns (:func:`~daskgmm.kernels.densities.quadratic_columns`, built once for all of them) with
    their weights side by side, their M-step sums as another. One K=1..8 sweep makes two GEMMs of
    36 columns per block instead of sixteen of 1 to 8 (measured, 250k x 16 float32 chunk, one
    thread, K=1..8: 720 ms as lone walks sharing the columns, see the module's note).

    Parameters
    ----------
    params : list of GaussianParams
    score_only : list of bool
        Models whose rows' log-likelihood is all that is wanted (no M-step sums).
    """

    def __init__(self, models, score_only):
        # k-means centres (hard responsibilities), then parameters with sums, then scored ones
        kinds = ["hard" if isinstance(model, np.ndarray) else "scored" if score else "summed"
                 for model, score in zip(models, score_only)]
        self.centres = [model for model, kind in zip(models, kinds) if kind == "hard"]
        order = sorted((m for m, kind in enumerate(kinds) if kind != "hard"), key=lambda m: kinds[m] == "scored")
        self.params = [models[m] for m in order]
        self.position_of = {m: ("soft", u) for u, m in enumerate(order)}
        self.position_of.update({m: ("hard", u) for u, m in enumerate(m for m, k in enumerate(kinds) if k == "hard")})
        self.summed = kinds.count("summed")
        self.edges = np.concatenate([[0], np.cumsum([p.n_components for p in self.params])]).astype(np.intp)
        self.centre_edges = np.concatenate([[0], np.cumsum([len(c) for c in self.centres])]).astype(np.intp)

    def _prepared(self, shift):
        return prepared_weights(self.params, shift, _quadratic_weights, quadratic=True)

    def block_sums(self, block, sample_weight, ws):
        """Every model's ``(MomentSums, log p(x))`` of ``block`` (log p(x) None for centres), in
        the order given."""
        n_features = block.raw.shape[1]
        columns_t = quadratic_columns(block.exact(), ws)
        soft = hard = []
        if self.params:
            prepared = ws.memo("stacked-full", self, block.shift.tobytes(), lambda: self._prepared(block.shift))
            soft = stacked_e_and_m_steps(block, columns_t, prepared, self.params, self.edges, self.summed,
                                         sample_weight, ws)
        if self.centres:
            hard = self._hard_sums(block, columns_t, sample_weight, ws)
        results = []
        for m in range(len(self.position_of)):
            kind, u = self.position_of[m]
            resp, sums, log_norm = soft[u] if kind == "soft" else hard[u]
            if resp is None:
                block_sums = log_likelihood_sums(log_norm, sample_weight, "full", self.params[u].n_components,
                                                 n_features)
            else:
                block_sums = quadratic_sums(block, resp, sums, log_norm, sample_weight, ws)
            results.append((block_sums, log_norm))
        return results

    def _hard_sums(self, block, columns_t, sample_weight, ws):
        """Per set of centres, ``(one-hot resp (n, K), sums (K, columns), None)``: each row to its
        nearest centre (distances expanded about the shift in float64 from exactly centred rows,
        as :class:`~daskgmm.kernels.chunk.NearestCentreAssigner` does), all sets' sums in one GEMM."""
        rows = block.exact()
        centres = np.vstack(self.centres) - block.shift
        distances = np.sum(centres**2, axis=1) - 2 * (rows @ centres.T)
        resp_t = ws.get("stacked_hard_resp", (self.centre_edges[-1], block.n_rows), np.float64)
        resp_t[...] = 0
        weight = 1.0 if sample_weight is None else sample_weight.astype(np.float64)
        everyone = np.arange(block.n_rows)
        for low, high in zip(self.centre_edges[:-1], self.centre_edges[1:]):
            resp_t[low + np.argmin(distances[:, low:high], axis=1), everyone] = weight
        sums = resp_t @ columns_t.T
        return [(resp_t[low:high].T, sums[low:high], None)
                for low, high in zip(self.centre_edges[:-1], self.centre_edges[1:])]


def _separable_columns(means_c, params):
    """A diag or spherical model's E-step weights over the diag moment rows ``[x, x^2, 1]``."""
    weights = _separable_weights(means_c, params, np.float64)
    if params.covariance_type == "spherical":  # [x, |x|^2, 1] -> [x, x^2 (each), 1]
        n_features = means_c.shape[1]
        weights = np.vstack([weights[:n_features], np.repeat(weights[n_features:n_features + 1], n_features, axis=0),
                             weights[n_features + 1:]])
    return weights


def prepared_weights(params_list, shift, weights_of, quadratic=False):
    """``(weights side by side, each model's unsafe components, centred means)`` about ``shift``,
    ``weights_of(means_c, params)`` giving one model's E-step weights."""
    columns, unsafe, centred_means = [], [], []
    for params in params_list:
        means_c = np.asarray(params.means, dtype=np.float64) - shift
        columns.append(weights_of(means_c, params))
        unsafe.append(np.flatnonzero(unsafe_components(params, means_c, np.float64, quadratic)))
        centred_means.append(means_c)
    return np.hstack(columns), unsafe, centred_means


def stacked_e_and_m_steps(block, columns_t, prepared, params_list, edges, summed, sample_weight, ws):
    """The E-steps of models linear in the per-row ``columns_t`` (feature-major), as one GEMM
    with their ``prepared`` weights ``(weights (columns, sum K), unsafe components, centred
    means)``; the first ``summed`` models' M-step sums as another. Per model ``(resp (n, K) or
    None where scored, sums (K, columns), log p(x))``."""
    weights, unsafe, centred_means = prepared
    # component-major (sum K, n): each model's rows of it are contiguous for the log-sum-exp
    resp_t = ws.get("stacked_resp", (edges[-1], block.n_rows), np.float64)
    np.matmul(weights.T, columns_t, out=resp_t)
    for u, params in enumerate(params_list):
        if unsafe[u].size:
            low, high = edges[u], edges[u + 1]
            _exact_log_prob(block, centred_means[u], params, unsafe[u], resp_t[low:high].T, ws)
    segments = [(low, high, u < summed) for u, (low, high) in enumerate(zip(edges[:-1], edges[1:]))]
    log_norms = [normalize_component_major(resp_t[low:high], normalise, ws) for low, high, normalise in segments]
    summed_t = resp_t[:edges[summed]]
    if sample_weight is not None:
        summed_t *= sample_weight.astype(np.float64)[None, :]
    sums = summed_t @ columns_t.T  # every summed model's sums of r times each column
    return [(resp_t[low:high].T, sums[low:high], log_norm) if normalise else (None, None, log_norm)
            for (low, high, normalise), log_norm in zip(segments, log_norms)]


def moment_rows(block, ws):
    """The moment columns ``[x, x^2, 1]`` of :func:`~daskgmm.kernels.densities.moment_columns` as rows,
    shape (2D+1, n), float64, from the block's rows exactly centred: built row by row (twice as
    fast as columns), and both GEMMs take them as they are."""
    n_rows, n_features = block.raw.shape
    rows = ws.get("moment_rows", (2 * n_features + 1, n_rows), np.float64)
    np.subtract(block.raw.T, block.shift[:, None], out=rows[:n_features])
    np.multiply(rows[:n_features], rows[:n_features], out=rows[n_features:2 * n_features])
    rows[2 * n_features] = 1
    return rows
