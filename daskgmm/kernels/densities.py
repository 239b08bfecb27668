"""The E-step of one block: weighted log-probabilities ``log w_k + log N(x | mu_k, Sigma_k)``.

Fast forms, all GEMMs on rows centred on the block's shift:

- full, for statistics of a wide enough model (``quadratic``, see
  :func:`~daskgmm.kernels.blocks.uses_quadratic_form`): one GEMM over the per-row quadratic columns
  ``[x_i x_j (i <= j), x, 1]`` (:func:`quadratic_columns`), in float64; the M-step's sums are
  the same columns times the responsibilities, so a block's columns serve both steps and every
  full model that reads the block;
- full, otherwise: ``[1, x] @ [[-mu_k U_k], [U_k]]`` whitens every component at once, in the
  data's dtype;
- tied: one whitening, then ``|y|^2 - 2 y.m_k + |m_k|^2``;
- diag, spherical: one GEMM over the per-row moment columns ``[x, x^2, 1]``.

Each cancels terms as large as the whitened distance between the component and
the shift (squared for the expanded forms), so a component far from the shift
in units of its own spread, or collapsed to a tiny one, would be left with
round-off instead of its distances. :func:`unsafe_components` estimates that
round-off per component from the parameters and the shift, and the components
whose estimate exceeds ``LOG_PROB_ROUNDOFF_LIMIT`` are computed from exactly
centred differences ``x - mu_k`` (formed in float64) instead: scikit-learn's
whitened differences, without its offset problem.
"""

from __future__ import annotations

import math

import numpy as np

from ..model.params import GaussianParams, log_prob_offset
from .blocks import CentredBlock, Workspace

# Largest round-off (in nats, estimated as eps(dtype) x the size of the terms a
# fast form cancels) allowed in a component's log-probability. 1e-4 keeps
# responsibilities right to 1e-4 of themselves in float32 and lets almost every
# float64 component use the fast forms; in float32 a component takes the exact
# path once its mean is ~30 of its own standard deviations from the block's shift.
LOG_PROB_ROUNDOFF_LIMIT = 1e-4
# Full-covariance whitening runs in feature groups of at least this many features
# (at most 4 groups), each a GEMM over only the part of a triangle it needs: 2
# groups do 3/4 of the flops, 4 groups 5/8. Measured per chunk (K=16, one thread)
# against one GEMM each: 7% faster at D=16 (2 groups), 3% at D=32 and 16% at D=64
# (4 groups); 8 groups at D=64 were no faster than 4 (smaller GEMMs run slower).
FEATURES_PER_GROUP = 8


def feature_groups(group_features, n_features):
    """``(low, high)`` feature ranges: one per ``FEATURES_PER_GROUP`` of ``group_features``, at most 4."""
    parts = max(1, min(4, group_features // FEATURES_PER_GROUP))
    edges = np.linspace(0, n_features, parts + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def whitened_distance_squared(means_c, precisions_cholesky, covariance_type):
    """``|(mu_k - shift)|^2`` in each component's whitened units, shape (K,)."""
    chol = np.asarray(precisions_cholesky, dtype=np.float64)
    if covariance_type == "full":
        return np.sum(np.einsum("kd,kde->ke", means_c, chol) ** 2, axis=1)
    if covariance_type == "tied":
        return np.sum((means_c @ chol) ** 2, axis=1)
    if covariance_type == "diag":
        return np.sum((means_c * chol) ** 2, axis=1)
    return chol**2 * np.sum(means_c**2, axis=1)


def unsafe_components(params: GaussianParams, means_c, dtype, quadratic=False):
    """Boolean mask of the components whose fast log-probability would carry more
    than ``LOG_PROB_ROUNDOFF_LIMIT`` nats of round-off in ``dtype`` (``quadratic``: a full
    model's by its quadratic columns, an expanded form).

    For a row of component ``k`` the expanded forms (tied, diag, spherical)
    cancel terms of about ``s_k + D`` (``s_k`` the whitened squared distance
    of the mean from the shift); full whitening cancels whitened coordinates of
    about ``sqrt(s_k + D)``, which enter the distance multiplied by ``sqrt(D)``.
    """
    n_features = means_c.shape[1]
    size = whitened_distance_squared(means_c, params.precisions_cholesky, params.covariance_type) + n_features
    if params.covariance_type == "full" and not quadratic:
        size = np.sqrt(n_features * size)
    return ~(np.finfo(dtype).eps * size <= LOG_PROB_ROUNDOFF_LIMIT)


def squared_mahalanobis(Xc, means_c, precisions_cholesky, covariance_type, workspace=None):
    """Squared Mahalanobis distance of every row to every component by the fast forms, shape (n, K).

    ``Xc`` and ``means_c`` must be centred on the same point; all arithmetic
    is in ``Xc.dtype``. The result lives in ``workspace`` (if given) until
    its next use.
    """
    ws = workspace or Workspace()
    dtype = Xc.dtype
    n_samples, n_features = Xc.shape
    n_components = means_c.shape[0]
    means_c = np.asarray(means_c, dtype=dtype)
    out = ws.get("log_prob", (n_samples, n_components), dtype)
    if covariance_type == "full":
        # GEMMs whiten the block for all components and subtract the whitened
        # means: [1, X] @ [[-mu_1 U_1 ... -mu_K U_K], [U_1 ... U_K]]. U_k is upper
        # triangular, so whitened coordinate j needs features 0..j only: each group
        # of coordinates is one GEMM over the features it needs.
        augmented = ws.get("augmented", (n_samples, n_features + 1), dtype)
        augmented[:, 0] = 1
        augmented[:, 1:] = Xc
        matrices = ws.memo("whitening", precisions_cholesky, (means_c.tobytes(), dtype.str),
                           lambda: _whitening_matrices(means_c, precisions_cholesky, dtype))
        for group, (high, stacked) in enumerate(matrices):
            y = ws.get(f"whitened{group}", (n_samples, stacked.shape[1]), dtype)
            np.matmul(augmented[:, : high + 1], stacked, out=y)
            y = y.reshape(n_samples, n_components, -1)
            if group == 0:
                np.einsum("nkd,nkd->nk", y, y, out=out)
            else:
                out += np.einsum("nkd,nkd->nk", y, y)
        return out
    if covariance_type == "tied":
        cross = ws.get("cross", (n_samples, n_components), dtype)
        chol = np.asarray(precisions_cholesky, dtype=dtype)
        whitened = ws.get("tied", (n_samples, n_features), dtype)
        np.matmul(Xc, chol, out=whitened)
        means_w = means_c @ chol
        np.matmul(whitened, means_w.T, out=cross)
        cross *= -2
        cross += np.einsum("nd,nd->n", whitened, whitened)[:, None]
        cross += np.sum(means_w**2, axis=1)
        np.maximum(cross, 0, out=out)
        return out
    raise ValueError(f"squared_mahalanobis handles 'full' and 'tied', not {covariance_type!r}")


def _whitening_matrices(means_c, precisions_cholesky, dtype):
    """``[(high, [[-mu_k U_k], [U_k]] for the group's columns)]`` per feature group."""
    chol = np.asarray(precisions_cholesky, dtype=dtype)
    n_components, n_features = means_c.shape
    shifted = -np.einsum("kd,kde->ke", means_c, chol)  # (K, D)
    upper = not np.any(np.tril(chol, -1))  # scikit-learn's factors are; others get one GEMM
    matrices = []
    for low, high in feature_groups(n_features if upper else 1, n_features):
        stacked = np.empty((high + 1, n_components, high - low), dtype=dtype)
        stacked[0] = shifted[:, low:high]
        stacked[1:] = chol[:, :high, low:high].transpose(1, 0, 2)
        matrices.append((high, stacked.reshape(high + 1, -1)))
    return matrices


def moment_columns(Xc, covariance_type, workspace=None):
    """Per-row ``[x, x*x, 1]`` (diag) or ``[x, |x|^2, 1]`` (spherical), shape (n, 2D+1) / (n, D+2).

    Both the E-step and the M-step of these covariance types are linear in
    these columns: one GEMM with them gives every weighted log-probability,
    one more every statistic (sums of r, r x and r x^2). Kept in
    ``workspace`` for the block's M-step.
    """
    ws = workspace or Workspace()
    return ws.memo(f"moments{Xc.dtype.str}{covariance_type}", Xc, covariance_type,
                   lambda: _moment_columns(Xc, covariance_type, ws))


def _moment_columns(Xc, covariance_type, ws):
    n_samples, n_features = Xc.shape
    width = 2 * n_features + 1 if covariance_type == "diag" else n_features + 2
    columns = ws.get(f"moments-{covariance_type}", (n_samples, width), Xc.dtype)  # diag's and spherical's kept apart
    columns[:, :n_features] = Xc
    if covariance_type == "diag":
        np.multiply(Xc, Xc, out=columns[:, n_features : 2 * n_features])
    else:
        np.einsum("nd,nd->n", Xc, Xc, out=columns[:, n_features])
    columns[:, -1] = 1
    return columns


def quadratic_columns(Xc, workspace=None):
    """Per-row ``[x_i x_j for i <= j (row by row of the upper triangle), x, 1]``, feature-major:
    shape (D(D+1)/2 + D + 1, n), float64.

    A full model's E-step is linear in them (:func:`_quadratic_weights`), and so are its M-step
    sums: ``columns @ resp`` gives every component's ``sum r x_i x_j``, ``sum r x`` and ``sum r``.
    Feature-major, each product is one contiguous row (3x faster to build than row-major). Kept
    in ``workspace`` for the block's M-step and for the other full models reading the block.
    """
    ws = workspace or Workspace()
    return ws.memo("quadratic", Xc, None, lambda: _quadratic_columns(Xc, ws))


def _quadratic_columns(Xc, ws):
    n_samples, n_features = Xc.shape
    n_products = n_features * (n_features + 1) // 2
    rows_t = ws.get("rows_t", (n_features, n_samples), np.float64)
    rows_t[...] = Xc.T
    columns = ws.get("quadratic-columns", (n_products + n_features + 1, n_samples), np.float64)
    start = 0
    for i in range(n_features):
        np.multiply(rows_t[i], rows_t[i:], out=columns[start : start + n_features - i])
        start += n_features - i
    columns[n_products : n_products + n_features] = rows_t
    columns[-1] = 1
    return columns


def _quadratic_weights(means_c, params: GaussianParams):
    """The (D(D+1)/2 + D + 1, K) right-hand side of the full E-step over :func:`quadratic_columns`:
    ``log w_k + log N = -1/2 x^T P x + (P mu)^T x - 1/2 mu^T P mu + log det U + log w - D/2 log 2 pi``
    with ``P = U U^T`` (the off-diagonal products appear once, hence their weight ``-P_ij``)."""
    n_features = means_c.shape[1]
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    precisions = chol @ np.swapaxes(chol, 1, 2)
    upper = np.triu_indices(n_features)
    quadratic = precisions[:, upper[0], upper[1]] * np.where(upper[0] == upper[1], -0.5, -1.0)
    linear = np.einsum("kij,kj->ki", precisions, means_c)
    constant = log_prob_offset(params, n_features) - 0.5 * np.einsum("ki,ki->k", means_c, linear)
    return np.vstack([quadratic.T, linear.T, constant[None, :]])


def _separable_weights(means_c, params: GaussianParams, dtype):
    """The right-hand side of the diag/spherical E-step GEMM over :func:`moment_columns`."""
    n_features = means_c.shape[1]
    precisions = np.asarray(params.precisions_cholesky, dtype=np.float64) ** 2  # (K, D) or (K,)
    if params.covariance_type == "spherical":
        precisions = np.broadcast_to(precisions[:, None], means_c.shape)
    # log N = -1/2 sum_d p_d x_d^2 + sum_d p_d mu_d x_d - 1/2 sum_d p_d mu_d^2 + const
    linear = (precisions * means_c).T
    quadratic = -0.5 * (precisions.T if params.covariance_type == "diag" else precisions[:, :1].T)
    constant = log_prob_offset(params, n_features) - 0.5 * np.sum(precisions * means_c**2, axis=1)
    return np.vstack([linear, quadratic, constant[None, :]]).astype(dtype)


def _fast_log_prob(Xc, means_c, params: GaussianParams, ws, quadratic=False):
    """Weighted log-probabilities by the fast forms, in ``Xc.dtype``."""
    dtype = Xc.dtype
    key = (means_c.tobytes(), dtype.str)
    if quadratic:
        weights = ws.memo("quadratic-weights", params, key, lambda: _quadratic_weights(means_c, params))
        out = ws.get("log_prob", (Xc.shape[0], means_c.shape[0]), np.float64)
        return np.matmul(quadratic_columns(Xc, ws).T, weights, out=out)
    if params.covariance_type in ("diag", "spherical"):
        weights = ws.memo("separable", params, key, lambda: _separable_weights(means_c, params, dtype))
        out = ws.get("log_prob", (Xc.shape[0], means_c.shape[0]), dtype)
        return np.matmul(moment_columns(Xc, params.covariance_type, ws), weights, out=out)
    offset = np.asarray(log_prob_offset(params, Xc.shape[1]), dtype=dtype)
    maha = squared_mahalanobis(Xc, means_c, params.precisions_cholesky, params.covariance_type, ws)
    maha *= dtype.type(-0.5)
    maha += offset
    return maha


def _exact_log_prob(block: CentredBlock, means_c, params: GaussianParams, components, out, ws):
    """Columns ``components`` of ``out`` from exactly centred differences ``x - mu_k``.

    The differences are formed in float64 from the exactly centred rows, then
    rounded once to the data's dtype (a relative error only) for the products.
    """
    rows = block.exact()
    dtype = block.dtype
    offset = log_prob_offset(params, rows.shape[1])
    chol = params.precisions_cholesky
    diff64 = ws.get("diff64", rows.shape, np.float64)
    diff = diff64 if dtype == np.float64 else ws.get("diff", rows.shape, dtype)
    for k in components:
        np.subtract(rows, means_c[k], out=diff64)
        if diff is not diff64:
            diff[...] = diff64
        if params.covariance_type in ("full", "tied"):
            factor = chol[k] if params.covariance_type == "full" else chol
            whitened = diff @ np.asarray(factor, dtype=dtype)
            distance = np.einsum("nd,nd->n", whitened, whitened)
        elif params.covariance_type == "diag":
            diff *= np.asarray(chol[k], dtype=dtype)
            distance = np.einsum("nd,nd->n", diff, diff)
        else:
            distance = np.einsum("nd,nd->n", diff, diff) * dtype.type(chol[k] ** 2)
        out[:, k] = offset[k] - 0.5 * distance.astype(np.float64)
    return out


def weighted_log_prob(block: CentredBlock, params: GaussianParams, workspace=None, quadratic=False):
    """``log w_k + log N(x | mu_k, Sigma_k)`` for the rows of ``block``, shape (n, K).

    In the block's dtype for full covariances by whitening, in float64 for the others
    (``quadratic``: a full model by its quadratic columns, kept in ``workspace`` for the M-step).

    Fast forms for the components they compute to ``LOG_PROB_ROUNDOFF_LIMIT``
    nats, exactly centred differences for the others (see the module's
    docstring). The result lives in ``workspace`` until its next use.
    """
    ws = workspace or Workspace()
    means_c = np.asarray(params.means, dtype=np.float64) - block.shift
    # The expanded forms' round-off is systematic (a rounded constant per component
    # biases every row's log-probability alike, and so the lower bound), so they run in
    # float64 on the exactly centred rows that the M-step uses anyway; full whitening
    # errs per row, around zero, and keeps the data's dtype.
    rows = block.rows if params.covariance_type == "full" and not quadratic else block.exact()
    out = _fast_log_prob(rows, means_c, params, ws, quadratic)
    unsafe = ws.memo("unsafe", params, (means_c.tobytes(), rows.dtype.str, quadratic),
                     lambda: np.flatnonzero(unsafe_components(params, means_c, rows.dtype, quadratic)))
    if unsafe.size:
        _exact_log_prob(block, means_c, params, unsafe, out, ws)
    return out


def normalize_log_prob(log_prob, workspace=None):
    """Responsibilities and ``log p(x)`` from weighted log-probabilities (log-sum-exp)."""
    ws = workspace or Workspace()
    # Row reductions over a short axis are slow in NumPy (~40 ns a row here): the
    # row maximum runs on a component-major copy, the row sum is a GEMV.
    top = np.ascontiguousarray(log_prob.T).max(axis=0)
    top[~np.isfinite(top)] = 0
    resp = ws.get("resp", log_prob.shape, log_prob.dtype)
    np.subtract(log_prob, top[:, None], out=resp)
    clamped_exp(resp)
    total = resp @ np.ones(resp.shape[1], dtype=resp.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        resp *= (1 / total)[:, None]
        log_norm = np.log(total)
    log_norm += top
    return resp, log_norm


def clamped_exp(values):
    """``exp`` in place of log-probabilities relative to their row's largest, tiny ones made 0.

    Responsibilities below sqrt(smallest normal) of the row's largest are exactly zero: they
    change no sum, and left in they make subnormal numbers, on which exp and every later product
    run ~100x slower (measured: the D=64 diag M-step GEMM 5x slower). Clamp, exp, and subtract
    the clamp's value (a little more, so that it leaves exact zeros): 38 ns a row at K=16,
    against 99 for the bare exp and 170 for a masked assignment.
    """
    cutoff, floor = exp_clamp(values.dtype)
    np.maximum(values, cutoff, out=values)
    np.exp(values, out=values)
    values -= floor
    np.maximum(values, 0, out=values)
    return values


def exp_clamp(dtype):
    """:func:`clamped_exp`'s ``(cutoff, floor)``: ``max(exp(max(v, cutoff)) - floor, 0)``."""
    cutoff = 0.5 * math.log(np.finfo(dtype).tiny)
    return cutoff, np.dtype(dtype).type(math.exp(cutoff) * (1 + 16 * np.finfo(dtype).eps))
