"""The M-step sums of one block: what its rows add to the next parameters, given their responsibilities.

Blocks centred on one shift add their moment sums (float64): ``N_k``,
``sum r x`` and the second moments the covariance type needs, so a chunk
yields one :class:`~daskgmm.model.statistics.SufficientStats`, not one per block. A scatter
from moments about the shift, ``sum r x x^T - N m m^T``, loses the digits by
which the second moment exceeds the scatter; per block, component and feature
that ratio is checked, and a component over ``EXPANSION_LOSS_LIMIT`` (far from
the shift relative to its spread, or collapsed) is computed exactly centred on
its block mean instead, from float64 differences, and merged pairwise. No
round-off floor is needed: what the expanded form keeps has at least 13 digits.

- full: one GEMM of the block's quadratic columns (:func:`~daskgmm.kernels.densities.quadratic_columns`,
  made for the E-step) with the responsibilities, for models wide enough for them
  (:func:`~daskgmm.kernels.blocks.uses_quadratic_form`); else one GEMM per feature group of the
  responsibility-weighted rows. Either gives the upper triangles of every component's second
  moment, in float64 for float32 data too (exactly centred rows; a float32 GEMM would keep too
  few digits of the expanded form, and K exactly centred float32 scatters, the earlier way,
  cost more than this: the float32 M-step was slower than float64's);
- diag, spherical: one GEMM over the moment columns ``[x, x^2, 1]``;
- tied: one weighted GEMM; where its per-feature check fails, per-component
  diagonal moments tell which components to compute exactly centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from ..model.statistics import SufficientStats
from .blocks import CentredBlock
from .densities import feature_groups, moment_columns, quadratic_columns

# A component's expanded second moment about the shift may exceed its scatter by
# at most this factor, per feature, for the expanded form to be used: float64 then
# keeps at least 13 of its 16 digits, and so does the sum over a chunk's blocks
# (its ratio is at most the largest block's).
EXPANSION_LOSS_LIMIT = 1e3


@dataclass
class MomentSums:
    """Sums over the blocks of a chunk centred on one shift; ``a + b`` adds them.

    Attributes
    ----------
    mass : ndarray (K,)
        ``sum w r`` of the components summed in expanded form (0 for the others).
    first : ndarray (K, D)
        ``sum w r x`` about the shift.
    second : ndarray
        Second moments about the shift: upper triangles, row by row (full, K x D(D+1)/2),
        ``sum_n w_n x x^T`` over the expanded
        components (tied), ``sum w r x^2`` (diag, K x D) or ``sum w r |x|^2``
        (spherical, K).
    log_likelihood, weight_sum : float
    n_rows : int
    exact : SufficientStats or None
        Statistics of the components computed exactly centred (None: none were).
    """

    mass: np.ndarray
    first: np.ndarray
    second: np.ndarray
    log_likelihood: float
    weight_sum: float
    n_rows: int
    exact: SufficientStats | None

    def __add__(self, other: "MomentSums") -> "MomentSums":
        return MomentSums(self.mass + other.mass, self.first + other.first, self.second + other.second,
                          self.log_likelihood + other.log_likelihood, self.weight_sum + other.weight_sum,
                          self.n_rows + other.n_rows, _add_optional(self.exact, other.exact))

    def statistics(self, covariance_type, shift) -> SufficientStats:
        """The sums as :class:`SufficientStats` (means about the origin, centred scatters)."""
        means_c = _means(self.first, self.mass)
        if covariance_type == "full":
            second = unpack_upper(self.second, self.first.shape[1])
            scatter = second - self.mass[:, None, None] * (means_c[:, :, None] * means_c[:, None, :])
        elif covariance_type == "tied":
            # sum_k sum_n r_nk (x - m_k)(x - m_k)^T = sum_n w_n x x^T - sum_k N_k m_k m_k^T
            scatter = self.second - (means_c * self.mass[:, None]).T @ means_c
        elif covariance_type == "diag":
            scatter = self.second - self.mass[:, None] * means_c**2
        else:
            scatter = self.second - self.mass * np.sum(means_c**2, axis=1)
        means = np.where(self.mass[:, None] > 0, means_c + shift, 0.0)
        expanded = SufficientStats(covariance_type, self.mass, means, scatter, self.log_likelihood,
                                   self.weight_sum, self.n_rows)
        return expanded if self.exact is None else expanded + self.exact

    def mean_offset(self, shift):
        """The (weighted) mean of the rows summed, relative to ``shift``; None when they weigh nothing."""
        total, first = self.mass.sum(), self.first.sum(axis=0)
        if self.exact is not None:
            total = total + self.exact.resp_sum.sum()
            first = first + self.exact.resp_sum @ (self.exact.means - shift)
        return first / total if total > 0 else None


def _add_optional(a, b):
    return b if a is None else a if b is None else a + b


def _means(first, mass):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass[:, None] > 0, first / mass[:, None], 0.0)


def moment_sums(block: CentredBlock, resp, log_norm, sample_weight, covariance_type, ws, quadratic=False) -> MomentSums:
    """The sums of one block given its responsibilities (``resp`` is scratch: it is weighted in
    place); ``quadratic``: a full model's by the block's quadratic columns."""
    resp, mass = _weighted_mass(resp, sample_weight)
    rows64 = block.exact()
    resp64 = resp if resp.dtype == np.float64 else resp.astype(np.float64)
    n_components, n_features = resp.shape[1], rows64.shape[1]
    if quadratic:
        sums = (quadratic_columns(rows64, ws) @ resp64).T  # K x (products, features, 1)
        return quadratic_sums(block, resp, sums, log_norm, sample_weight, ws, mass)
    if covariance_type == "full":
        first = resp64.T @ rows64
        second = packed_second_moment(rows64, resp64, ws)
        diagonal = second[:, diagonal_positions(n_features)]
    elif covariance_type == "tied":
        first = resp64.T @ rows64
        second = (rows64 * (resp64 @ np.ones(n_components))[:, None]).T @ rows64
        # the tied scatter is one sum: per feature, its expanded form loses what its total
        # second moment exceeds it by; only when that is too much are the components told apart
        centred_diagonal = np.diag(second) - np.einsum("kd,kd->d", first, _means(first, mass))
        with np.errstate(invalid="ignore"):
            fine = np.all(np.diag(second) <= EXPANSION_LOSS_LIMIT * centred_diagonal)
        diagonal = None if fine else resp64.T @ (rows64 * rows64)
    else:
        sums = (moment_columns(rows64, covariance_type, ws).T @ resp64).T  # this orientation: 25% faster
        second = sums[:, n_features : 2 * n_features] if covariance_type == "diag" else sums[:, n_features]
        diagonal = second if covariance_type == "diag" else second[:, None]
        first = sums[:, :n_features]
    return _finished_sums(block, resp, mass, first, second, diagonal, log_norm, sample_weight, covariance_type, ws)


def separable_sums(block: CentredBlock, resp, sums, log_norm, sample_weight, covariance_type, ws) -> MomentSums:
    """:func:`moment_sums` of a diag or spherical model whose GEMM is done: ``sums`` (K, 2D+1) are
    its weighted responsibilities ``resp`` (n, K) times the diag moment columns ``[x, x^2, 1]``
    (:mod:`daskgmm.kernels.stacked` makes them for several models at once)."""
    n_features = block.raw.shape[1]
    first, mass = sums[:, :n_features], sums[:, 2 * n_features]
    if covariance_type == "diag":
        second = diagonal = sums[:, n_features : 2 * n_features]
    else:
        second = sums[:, n_features : 2 * n_features].sum(axis=1)
        diagonal = second[:, None]
    return _finished_sums(block, resp, mass, first, second, diagonal, log_norm, sample_weight, covariance_type, ws)


def quadratic_sums(block: CentredBlock, resp, sums, log_norm, sample_weight, ws, mass=None) -> MomentSums:
    """:func:`moment_sums` of a full model whose GEMM is done: ``sums`` (K, D(D+1)/2 + D + 1) are
    its weighted responsibilities ``resp`` (n, K) times the quadratic columns ``[x_i x_j, x, 1]``
    (:func:`~daskgmm.kernels.densities.quadratic_columns`; :mod:`daskgmm.kernels.stacked` makes them for several
    models at once). ``mass``: the responsibilities' column sums, where already summed."""
    n_features = block.raw.shape[1]
    n_products = n_features * (n_features + 1) // 2
    second, first = sums[:, :n_products], sums[:, n_products : n_products + n_features]
    mass = sums[:, -1] if mass is None else mass
    return _finished_sums(block, resp, mass, first, second, second[:, diagonal_positions(n_features)], log_norm,
                          sample_weight, "full", ws)


def _finished_sums(block, resp, mass, first, second, diagonal, log_norm, sample_weight, covariance_type, ws):
    """The sums of the components the expanded form keeps, and the others' exactly centred."""
    n_rows, n_features = block.raw.shape
    n_components = resp.shape[1]
    if covariance_type == "tied" and diagonal is None:
        inexact = np.empty(0, dtype=np.intp)
    else:
        inexact = _inexact_components(mass, first, diagonal, covariance_type)
    if covariance_type == "tied" and inexact.size:
        kept = np.asarray(resp, dtype=np.float64) @ np.where(np.isin(np.arange(n_components), inexact), 0.0, 1.0)
        rows64 = block.exact()
        second = (rows64 * kept[:, None]).T @ rows64
    exact = exact_statistics(block, resp, inexact, first, mass, covariance_type, ws) if inexact.size else None
    if inexact.size:
        mass, first = mass.copy(), first.copy()
        mass[inexact] = first[inexact] = 0.0
        if covariance_type != "tied":
            second = second.copy()
            second[inexact] = 0.0
    return MomentSums(mass, first, second, _log_likelihood(log_norm, sample_weight),
                      _weight_sum(n_rows, sample_weight), n_rows, exact)


def log_likelihood_sums(log_norm, sample_weight, covariance_type, n_components, n_features) -> MomentSums:
    """Sums that carry only the rows' log-likelihood ``log_norm`` and weight: a scoring pass's
    (the final log-likelihoods of ``select_model``), no M-step sums."""
    second_shape = {"full": (n_components, n_features * (n_features + 1) // 2), "tied": (n_features, n_features),
                    "diag": (n_components, n_features), "spherical": n_components}[covariance_type]
    return MomentSums(np.zeros(n_components), np.zeros((n_components, n_features)), np.zeros(second_shape),
                      _log_likelihood(log_norm, sample_weight), _weight_sum(len(log_norm), sample_weight),
                      len(log_norm), None)


def _weight_sum(n_rows, sample_weight):
    return float(n_rows if sample_weight is None else np.sum(sample_weight, dtype=np.float64))


def _inexact_components(mass, first, diagonal, covariance_type):
    """Components with mass whose expanded scatter would lose more than ``EXPANSION_LOSS_LIMIT``
    in some feature (``diagonal``: their second moments about the shift, per feature)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = first**2 / mass[:, None]
        if covariance_type == "spherical":
            centred = centred.sum(axis=1, keepdims=True)
        scatter = diagonal - centred
        fine = np.all(diagonal <= EXPANSION_LOSS_LIMIT * scatter, axis=1)
    return np.flatnonzero((mass > 0) & ~fine)


def exact_statistics(block: CentredBlock, resp, components, first, mass, covariance_type, ws):
    """Statistics of ``components`` centred on their block means (the others empty); sums in float64.

    These components' rows sit far from the shift relative to their spread, or are all one
    point: the differences ``x - m_k`` are formed in float64 from exactly centred rows, with
    the corrected two-pass algorithm of Chan, Golub & LeVeque, and rounded once to the data's
    dtype. Products run in the data's dtype.
    """
    n_components, n_features = first.shape
    stats = SufficientStats.empty(covariance_type, n_components, n_features)
    dtype = block.dtype
    shape = block.raw.shape
    diff64 = ws.get("diff64", shape, np.float64)
    diff = diff64 if dtype == np.float64 else ws.get("diff", shape, dtype)
    weighted = ws.get("weighted_rows", shape, dtype)
    for k in components:
        mean_c = first[k] / mass[k]
        np.subtract(block.exact(), mean_c, out=diff64)
        # the mean's own rounding, measured and taken out: rows that are all one
        # point then have a scatter of zero, not the square of that rounding
        correction = (resp[:, k].astype(np.float64) @ diff64) / mass[k]
        diff64 -= correction
        mean_c = mean_c + correction
        if diff is not diff64:
            diff[...] = diff64
        if covariance_type in ("full", "tied"):
            scatter = _weighted_scatter(diff, resp[:, k], weighted)
            if covariance_type == "full":
                stats.scatter[k] = scatter
            else:
                stats.scatter[...] += scatter
        else:
            np.multiply(diff, resp[:, k, None], out=weighted)
            per_feature = np.einsum("nd,nd->d", weighted, diff, dtype=np.float64)
            stats.scatter[k] = per_feature if covariance_type == "diag" else per_feature.sum()
        stats.means[k] = mean_c + block.shift
        stats.resp_sum[k] = mass[k]
    return stats


def _weighted_scatter(diff, weights, scratch):
    """``sum_n w_n d_n d_n^T`` in float64, as one symmetric rank-k update (half a GEMM's flops)."""
    np.multiply(diff, np.sqrt(weights)[:, None], out=scratch)
    syrk = blas.dsyrk if scratch.dtype == np.float64 else blas.ssyrk
    upper = syrk(1.0, scratch.T, trans=0).astype(np.float64)  # scratch.T is Fortran-ordered: no copy
    return np.triu(upper) + np.triu(upper, 1).T


def diagonal_positions(n_features):
    """Where the diagonal entries sit in an upper triangle stored row by row."""
    return np.cumsum(np.r_[0, np.arange(n_features, 1, -1)])


def unpack_upper(upper, n_features):
    """The (K, D, D) symmetric matrices of upper triangles stored row by row, (K, D(D+1)/2)."""
    rows, columns = np.triu_indices(n_features)
    full = np.zeros((upper.shape[0], n_features, n_features))
    full[:, rows, columns] = upper
    full[:, columns, rows] = upper
    return full


def packed_second_moment(Xc, resp, ws):
    """``sum_n r_nk x_n x_n^T`` of every component as upper triangles row by row, (K, D(D+1)/2)
    (float64 rows and responsibilities; for models too narrow for the quadratic columns).

    Per feature group (rows ``low:high``) only columns ``low:`` (the upper
    triangle's) are computed: one GEMM of the responsibility-weighted rows,
    feature- and component-major so the weighting's inner loop runs over rows,
    with the weighted copy only one group wide (it stays in cache).
    """
    n_samples, n_features = Xc.shape
    n_components = resp.shape[1]
    rows_t, resp_t = np.ascontiguousarray(Xc.T), np.ascontiguousarray(resp.T)
    upper = np.empty((n_components, n_features * (n_features + 1) // 2))
    starts = diagonal_positions(n_features)
    for low, high in feature_groups(n_features, n_features):
        width = (high - low) * n_components
        weighted = ws.get("weighted", (high - low, n_components, n_samples), Xc.dtype)
        np.multiply(rows_t[low:high, None, :], resp_t[None], out=weighted)
        part = (weighted.reshape(width, n_samples) @ Xc[:, low:]).reshape(high - low, n_components, n_features - low)
        for row in range(low, high):  # row ``row`` of each triangle: its columns ``row:``
            upper[:, starts[row] : starts[row] + n_features - row] = part[row - low, :, row - low :]
    return upper


def _weighted_mass(resp, sample_weight):
    if sample_weight is not None:
        resp *= sample_weight.astype(resp.dtype)[:, None]  # resp is scratch: weight it in place
    if resp.dtype == np.float64:  # a GEMV: column sums of a C-ordered array are slow in NumPy
        return resp, np.ones(resp.shape[0]) @ resp
    return resp, resp.sum(axis=0, dtype=np.float64)


def _log_likelihood(log_norm, sample_weight):
    if log_norm is None:
        return 0.0
    if sample_weight is None:
        return float(np.sum(log_norm, dtype=np.float64))
    used = sample_weight > 0
    return float(np.sum(sample_weight[used] * log_norm[used].astype(np.float64)))
