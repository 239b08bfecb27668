"""Chunk math: pure NumPy functions of one chunk of rows. No Dask in here.

A chunk is walked in row blocks (``block_rows``) so temporaries stay in cache.
Rows are centred before any product: Gaussian distances and scatters are then
computed on numbers of the size of the data's spread, not of its offset, so
adding a constant to the data changes nothing (the shift is added back to the
means, in float64, in the returned statistics).

All blocks of a chunk are centred on the first block's mean, so their moment
sums add and the chunk yields one set of statistics:

- full: per block, GEMMs of the responsibility-weighted rows give the upper
  triangles of every component's second moment (packed); a component whose
  expanded form would cost more than 3 digits in that block is computed exactly
  centred on its block mean instead and merged pairwise.
- tied, diag, spherical: both of their EM steps are single GEMMs over per-row
  moment columns ``[x, x^2, 1]``. A chunk whose rows drift so far that the
  shared centre would cost more than 6 digits is redone with per-block centres.

Per-block arithmetic runs in the data's dtype (float32 data: float32 GEMMs);
everything that is summed across blocks is float64.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .params import GaussianParams, log_det_cholesky
from .stats import SufficientStats

LOG_2PI = math.log(2 * math.pi)
# Relative size below which an expanded (second moment - mean^2) scatter is round-off.
ROUNDOFF_FLOOR = 64 * np.finfo(np.float64).eps
# Temporaries of a block are kept near this size. Measured here (2 threads, K=16,
# D=16): full runs best in blocks of ~4k rows (n x K x D = 8 MiB), 1.3x faster than
# 2k and 16k; smaller blocks mean more short NumPy calls, which serialise threads
# on the GIL. tied/diag/spherical temporaries are n x (D + K)-sized; ~4-8k rows
# are best for them (2k: 1.3x slower with 2 threads).
BLOCK_TEMPORARY_BYTES = 8 * 2**20
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 1024, 16384
# Full-covariance whitening and scatters run in feature groups of at least this
# many features (at most 4 groups), each a GEMM over only the part of a triangle
# it needs: 2 groups do 3/4 of the flops, 4 groups 5/8. Measured per chunk (K=16,
# one thread) against one GEMM each: 7% faster at D=16 (2 groups), 3% at D=32 and
# 16% at D=64 (4 groups); 8 groups at D=64 were no faster than 4 (smaller GEMMs
# run at a lower rate).
FEATURES_PER_GROUP = 8


def feature_groups(group_features, n_features):
    """``(low, high)`` feature ranges: one per ``FEATURES_PER_GROUP`` of ``group_features``, at most 4."""
    parts = max(1, min(4, group_features // FEATURES_PER_GROUP))
    edges = np.linspace(0, n_features, parts + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def default_block_rows(n_components, n_features, itemsize=8, covariance_type="full"):
    """Rows per block so that a block's largest temporaries take about 8 MiB."""
    width = n_components * n_features if covariance_type == "full" else 4 * (n_components + n_features)
    rows = BLOCK_TEMPORARY_BYTES // max(1, width * itemsize)
    return int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows)))


# Rows per block of the counter-based generator behind 'random' initialisation:
# the random responsibilities of a row depend on its index only, not on the chunking.
RANDOM_BLOCK_ROWS = 4096
# float32 blocks whose centred values exceed this are computed in float64: their
# squares (in distances and scatters) would overflow float32 (max ~3.4e38).
FLOAT32_SAFE_MAGNITUDE = 1e16


class Workspace:
    """Scratch arrays reused by every block of a chunk instead of allocated per block.

    Why: distributed's Nanny starts workers with ``MALLOC_TRIM_THRESHOLD_``
    set, which makes glibc hand every large temporary back to the OS and
    page-fault it in again on the next allocation; measured here, that made
    a kernel that allocated per block 2-4x slower inside workers than in a
    plain process.
    """

    def __init__(self):
        self._buffers = {}
        self.cache = {}  # values derived from one block, reused by later steps on the same block

    def get(self, name, shape, dtype):
        """An uninitialised array of ``shape`` backed by the buffer called ``name``."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        buffer = self._buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name, dtype] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


def squared_mahalanobis(Xc, means_c, precisions_cholesky, covariance_type, workspace=None):
    """Squared Mahalanobis distance of every row to every component, shape (n, K).

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
        for group, (high, stacked) in enumerate(_whitening_matrices(means_c, precisions_cholesky, dtype, ws)):
            y = ws.get(f"whitened{group}", (n_samples, stacked.shape[1]), dtype)
            np.matmul(augmented[:, : high + 1], stacked, out=y)
            y = y.reshape(n_samples, n_components, -1)
            if group == 0:
                np.einsum("nkd,nkd->nk", y, y, out=out)
            else:
                out += np.einsum("nkd,nkd->nk", y, y)
        return out
    cross = ws.get("cross", (n_samples, n_components), dtype)
    if covariance_type == "tied":
        chol = np.asarray(precisions_cholesky, dtype=dtype)
        # One shared whitening, then |y - m_k|^2 = |y|^2 - 2 y.m_k + |m_k|^2 with one
        # more GEMM (rows are centred on the block mean, so the expansion is benign).
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


def _whitening_matrices(means_c, precisions_cholesky, dtype, ws):
    """``[(high, [[-mu_k U_k], [U_k]] for the group's columns)]`` per feature group, cached per parameters and shift.

    Blocks centred on one shift share them (a chunk computes them once).
    """
    key = (means_c.tobytes(), np.dtype(dtype).str)
    cached = ws.cache.get("whitening")
    if cached is not None and cached[0] is precisions_cholesky and cached[1] == key:
        return cached[2]
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
    # the factors are held (not just their id) so the identity test cannot match a new array
    ws.cache["whitening"] = (precisions_cholesky, key, matrices)
    return matrices


def moment_columns(Xc, covariance_type, workspace=None):
    """Per-row ``[x, x*x, 1]`` (diag) or ``[x, |x|^2, 1]`` (spherical), shape (n, 2D+1) / (n, D+2).

    Both the E-step and the M-step of these covariance types are linear in
    these columns: one GEMM with them gives every weighted log-probability,
    one more every statistic (sums of r, r x and r x^2). Built once per block
    and kept in ``workspace`` for the block's M-step.
    """
    ws = workspace or Workspace()
    cached = ws.cache.get("moments")
    if cached is not None and cached[0] is Xc and cached[1] == covariance_type:
        return cached[2]
    n_samples, n_features = Xc.shape
    width = 2 * n_features + 1 if covariance_type == "diag" else n_features + 2
    columns = ws.get("moments", (n_samples, width), Xc.dtype)
    columns[:, :n_features] = Xc
    if covariance_type == "diag":
        np.multiply(Xc, Xc, out=columns[:, n_features : 2 * n_features])
    else:
        np.einsum("nd,nd->n", Xc, Xc, out=columns[:, n_features])
    columns[:, -1] = 1
    ws.cache["moments"] = (Xc, covariance_type, columns)
    return columns


def _separable_log_prob(Xc, means_c, params: GaussianParams, workspace):
    """Weighted log-probabilities of diag/spherical mixtures as one GEMM over the moment columns.

    The GEMM's right-hand side depends only on the parameters and the shift,
    so blocks centred on the same shift share it (cached in ``workspace``).
    """
    ws = workspace or Workspace()
    key = (id(params), means_c.tobytes(), Xc.dtype.str)
    cached = ws.cache.get("separable_weights")
    if cached is None or cached[0] != key:
        n_features = Xc.shape[1]
        log_det = log_det_cholesky(params.precisions_cholesky, params.covariance_type, n_features)
        with np.errstate(divide="ignore"):
            offset = log_det + np.log(params.weights) - 0.5 * n_features * LOG_2PI
        precisions = np.asarray(params.precisions_cholesky, dtype=np.float64) ** 2  # (K, D) or (K,)
        if params.covariance_type == "spherical":
            precisions = np.broadcast_to(precisions[:, None], means_c.shape)
        # log N = -1/2 sum_d p_d x_d^2 + sum_d p_d mu_d x_d - 1/2 sum_d p_d mu_d^2 + const
        linear = (precisions * means_c).T
        quadratic = -0.5 * (precisions.T if params.covariance_type == "diag" else precisions[:, :1].T)
        constant = offset - 0.5 * np.sum(precisions * means_c**2, axis=1)
        cached = (key, np.vstack([linear, quadratic, constant[None, :]]).astype(Xc.dtype))
        ws.cache["separable_weights"] = cached
    columns = moment_columns(Xc, params.covariance_type, ws)
    out = ws.get("log_prob", (Xc.shape[0], means_c.shape[0]), Xc.dtype)
    return np.matmul(columns, cached[1], out=out)


def weighted_log_prob(Xc, means_c, params: GaussianParams, workspace=None):
    """``log w_k + log N(x | mu_k, Sigma_k)`` for centred rows, shape (n, K)."""
    if params.covariance_type in ("diag", "spherical"):
        return _separable_log_prob(Xc, np.asarray(means_c, dtype=np.float64), params, workspace)
    dtype = Xc.dtype
    n_features = Xc.shape[1]
    log_det = log_det_cholesky(params.precisions_cholesky, params.covariance_type, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    offset = np.asarray(log_det + log_weights - 0.5 * n_features * LOG_2PI, dtype=dtype)
    maha = squared_mahalanobis(
        Xc, means_c, params.precisions_cholesky, params.covariance_type, workspace
    )
    maha *= dtype.type(-0.5)
    maha += offset
    return maha


def normalize_log_prob(log_prob, workspace=None):
    """Responsibilities and ``log p(x)`` from weighted log-probabilities (log-sum-exp)."""
    ws = workspace or Workspace()
    # Row reductions over a short axis are slow in NumPy (~40 ns a row here): the
    # row maximum runs on a component-major copy, the row sum is a GEMV.
    top = np.ascontiguousarray(log_prob.T).max(axis=0)
    top[~np.isfinite(top)] = 0
    resp = ws.get("resp", log_prob.shape, log_prob.dtype)
    np.subtract(log_prob, top[:, None], out=resp)
    np.exp(resp, out=resp)
    total = resp @ np.ones(resp.shape[1], dtype=resp.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        resp *= (1 / total)[:, None]
        log_norm = np.log(total)
    log_norm += top
    return resp, log_norm


def centre_block(block, workspace=None, shift=None):
    """``(block - shift, shift)``; ``shift`` defaults to the column mean. Returned in float64.

    A given ``shift`` must be one this function returned for a block of the
    same dtype (then it is exact in that dtype).
    """
    ws = workspace or Workspace()
    if shift is not None:
        shift = shift.astype(block.dtype)
    elif block.dtype == np.float64:  # a GEMV: 5x faster than mean(axis=0); any shift near the mean works
        shift = (np.ones(block.shape[0]) @ block) / block.shape[0]
    else:
        shift = block.mean(axis=0, dtype=np.float64).astype(block.dtype)
    centred = np.subtract(block, shift, out=ws.get("centred", block.shape, block.dtype))
    if centred.dtype == np.float32 and centred.size and np.abs(centred).max() > FLOAT32_SAFE_MAGNITUDE:
        centred = block.astype(np.float64) - shift.astype(np.float64)
    return centred, shift.astype(np.float64)


class GaussianAssigner:
    """E-step responsibilities under the current mixture parameters.

    ``device="cuda"`` sends the chunks it meets to :mod:`daskgmm.gpu` (see
    :func:`chunk_statistics`).
    """

    def __init__(self, params: GaussianParams, device: str = "cpu"):
        self.params = params
        self.device = device

    def assign(self, Xc, shift, rows, workspace=None):
        log_prob = weighted_log_prob(Xc, self.params.means - shift, self.params, workspace)
        return normalize_log_prob(log_prob, workspace)


class NearestCentreAssigner:
    """Hard responsibilities to the nearest centre (k-means labels)."""

    def __init__(self, centres):
        self.centres = np.asarray(centres, dtype=np.float64)

    def assign(self, Xc, shift, rows, workspace=None):
        centres = (self.centres - shift).astype(Xc.dtype)
        distances = np.sum(centres**2, axis=1) - 2 * (Xc @ centres.T)
        labels = np.argmin(distances, axis=1)
        resp = np.zeros((Xc.shape[0], centres.shape[0]), dtype=Xc.dtype)
        resp[np.arange(Xc.shape[0]), labels] = 1
        return resp, None


class RandomAssigner:
    """Uniform random responsibilities, normalised per row ('random' init).

    The values of row ``i`` come from a generator seeded by ``(seed, i //
    RANDOM_BLOCK_ROWS)``, so they do not depend on chunking or scheduling.
    """

    def __init__(self, seed: int, n_components: int):
        self.seed = seed
        self.n_components = n_components

    def assign(self, Xc, shift, rows, workspace=None):
        resp = random_responsibilities(self.seed, self.n_components, rows)
        return resp.astype(Xc.dtype), None


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


# A full block's statistics come from the expanded form sum r x x^T - N m m^T
# (GEMMs for all components) when, for that component, the expanded moment's trace
# is at most this many times the scatter's: float64 then loses at most ~3 of its
# 16 digits, and so does the sum over a chunk's blocks (its ratio is at most the
# largest block's). Components farther from the shift, relative to their spread,
# are computed exactly centred on their block mean instead.
EXPANSION_LOSS_LIMIT = 1e3


def _second_moment_groups(n_components, n_features):
    """``(low, high, offset)`` of each feature group's part of a packed second moment, and the total size."""
    parts, offset = [], 0
    for low, high in feature_groups(n_features, n_features):
        parts.append((low, high, offset))
        offset += (high - low) * n_components * (n_features - low)
    return parts, offset


def _packed_second_moment(Xc, resp, ws):
    """``sum_n r_nk x_n x_n^T`` of every component, packed (float64 data only).

    Per feature group (rows ``low:high``) only columns ``low:`` (the upper
    triangle's) are computed: one GEMM of the responsibility-weighted rows,
    feature- and component-major so the weighting's inner loop runs over rows,
    with the weighted copy only one group wide (it stays in cache). The packed
    vector adds across blocks; :func:`_unpack_second_moment` mirrors it.
    """
    n_samples, n_features = Xc.shape
    n_components = resp.shape[1]
    rows_t, resp_t = np.ascontiguousarray(Xc.T), np.ascontiguousarray(resp.T)
    groups, size = _second_moment_groups(n_components, n_features)
    packed = np.empty(size)
    for low, high, offset in groups:
        width = (high - low) * n_components
        weighted = ws.get("weighted", (high - low, n_components, n_samples), Xc.dtype)
        np.multiply(rows_t[low:high, None, :], resp_t[None], out=weighted)
        part = packed[offset : offset + width * (n_features - low)].reshape(width, n_features - low)
        np.matmul(weighted.reshape(width, n_samples), Xc[:, low:], out=part)
    return packed


def _packed_parts(packed, n_components, n_features):
    """Views ``(low, high, part)`` of a packed second moment, ``part`` of shape (high - low, K, D - low)."""
    groups, _ = _second_moment_groups(n_components, n_features)
    for low, high, offset in groups:
        size = (high - low) * n_components * (n_features - low)
        yield low, high, packed[offset : offset + size].reshape(high - low, n_components, n_features - low)


def _packed_traces(packed, n_components, n_features):
    """Trace of every component's packed second moment, shape (K,)."""
    traces = np.zeros(n_components)
    for low, high, part in _packed_parts(packed, n_components, n_features):
        diagonal = np.arange(high - low)
        traces += part[diagonal, :, diagonal].sum(axis=0)
    return traces


def _unpack_second_moment(packed, n_components, n_features):
    """The (K, D, D) symmetric second moments of a packed vector."""
    second = np.zeros((n_components, n_features, n_features))
    for low, high, part in _packed_parts(packed, n_components, n_features):
        second[:, low:high, low:] = part.transpose(1, 0, 2)
    return np.triu(second) + np.swapaxes(np.triu(second, 1), 1, 2)


def _full_moment_sums(Xc, shift, resp, mass, ws):
    """``(N_k, sum_n r x, packed sum_n r x x^T, exact)`` of a full-covariance block, in float64.

    Components whose expanded form would cost more than 3 digits (far from the
    shift relative to their spread, or collapsed), and all components of float32
    data (whose products would lose too much), are left out of the sums and
    returned in ``exact``: statistics centred exactly on the component's block
    mean (None when there are none); their mass is then zero in ``N_k``.
    """
    n_samples, n_features = Xc.shape
    n_components = resp.shape[1]
    first = resp.T @ Xc
    if Xc.dtype == np.float64:
        packed = _packed_second_moment(Xc, resp, ws)
        moment = _packed_traces(packed, n_components, n_features)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = moment - np.sum(first**2, axis=1) / mass
        redo = np.flatnonzero((mass > 0) & ~(moment <= EXPANSION_LOSS_LIMIT * spread))
    else:
        packed = np.zeros(_second_moment_groups(n_components, n_features)[1])
        redo = np.flatnonzero(mass > 0)
    first = first.astype(np.float64)
    if redo.size == 0:
        return mass, first, packed, None
    exact = SufficientStats.empty("full", n_components, n_features)
    mass = mass.copy()
    diff = ws.get("diff", Xc.shape, Xc.dtype)
    weighted_rows = ws.get("weighted_rows", Xc.shape, Xc.dtype)
    for k in redo:  # exactly centred on the component's block mean: no cancellation
        mean_c = first[k] / mass[k]
        np.subtract(Xc, mean_c.astype(Xc.dtype), out=diff)
        np.multiply(diff, resp[:, k, None], out=weighted_rows)
        exact.scatter[k] = weighted_rows.T @ diff
        exact.means[k] = mean_c + shift
    exact.resp_sum[redo] = mass[redo]
    mass[redo] = first[redo] = 0.0
    for _, _, part in _packed_parts(packed, n_components, n_features):
        part[:, redo] = 0.0
    return mass, first, packed, exact


def _as_float64(*arrays):
    return [a if a.dtype == np.float64 else a.astype(np.float64) for a in arrays]


def _block_means(first_moments, mass):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass[:, None] > 0, first_moments / mass[:, None], 0.0)


def _moment_sums(Xc, resp, covariance_type, ws):
    """Moment sums of a centred tied/diag/spherical block, in float64.

    Returns ``(sum_n r x, second)`` with ``second`` = ``sum_n r x^2`` (diag,
    K x D), ``sum_n r |x|^2`` (spherical, K) or ``sum_n w_n x x^T`` (tied,
    D x D, ``w_n`` the row's total responsibility). Sums about one shift add
    across blocks.
    """
    Xc64, resp64 = _as_float64(Xc, resp)
    if covariance_type == "tied":
        weighted = Xc64 * (resp64 @ np.ones(resp64.shape[1]))[:, None]
        return resp64.T @ Xc64, weighted.T @ Xc64
    n_features = Xc.shape[1]
    # one GEMM for r x and r x^2 together (this orientation measured 25% faster than resp.T @ columns)
    sums = (moment_columns(Xc64, covariance_type, ws).T @ resp64).T
    second = sums[:, n_features : 2 * n_features] if covariance_type == "diag" else sums[:, n_features]
    return sums[:, :n_features], second


def _expanded_scatter(covariance_type, mass, first, second):
    """Means and scatters about them from moment sums (see :func:`_moment_sums`).

    The sums are float64 (also for float32 data, whose expansion would
    cancel), and what is below their round-off floor is zero: a collapsed
    component has exactly zero scatter.
    """
    means_c = _block_means(first, mass)
    if covariance_type == "full":
        n_components, n_features = first.shape
        second = _unpack_second_moment(second, n_components, n_features)
        scatter = second - mass[:, None, None] * (means_c[:, :, None] * means_c[:, None, :])
        diagonal = np.diagonal(second, axis1=1, axis2=2)
        floor = ROUNDOFF_FLOOR * np.sqrt(diagonal[:, :, None] * diagonal[:, None, :])
        return means_c, np.where(np.abs(scatter) <= floor, 0.0, scatter)
    if covariance_type == "tied":
        # sum_k sum_n r_nk (x - m_k)(x - m_k)^T = sum_n w_n x x^T - sum_k N_k m_k m_k^T
        scatter = second - (means_c * mass[:, None]).T @ means_c
        floor = ROUNDOFF_FLOOR * np.sqrt(np.outer(np.diag(second), np.diag(second)))
        return means_c, np.where(np.abs(scatter) <= floor, 0.0, scatter)
    if covariance_type == "diag":
        scatter = second - mass[:, None] * means_c**2
    else:
        scatter = second - mass * np.sum(means_c**2, axis=1)
    floor = ROUNDOFF_FLOOR * second
    return means_c, np.maximum(np.where(np.abs(scatter) <= floor, 0.0, scatter), 0.0)


def _block_sums(Xc, shift, resp, log_norm, sample_weight, covariance_type, ws):
    """Everything a block adds under a shared shift, as a tuple that adds (see :func:`_add_sums`).

    ``(mass, sum r x, second moments, log-likelihood, weight sum, rows, exact)``;
    ``exact`` holds full-covariance components computed exactly centred
    (see :func:`_full_moment_sums`), None for the others.
    """
    resp, mass = _weighted_mass(resp, sample_weight)
    if covariance_type == "full":
        mass, first, second, exact = _full_moment_sums(Xc, shift, resp, mass, ws)
    else:
        (first, second), exact = _moment_sums(Xc, resp, covariance_type, ws), None
    return (mass, first, second, _log_likelihood(log_norm, sample_weight),
            _weight_sum(Xc, sample_weight), Xc.shape[0], exact)


def _add_sums(a, b):
    """Element-wise sum of two :func:`_block_sums` tuples (None is nothing)."""
    if a is None:
        return b
    return tuple(x if y is None else y if x is None else x + y for x, y in zip(a, b))


def _stats_from_sums(covariance_type, shift, mass, first, second, log_likelihood, weight_sum, n_rows, exact):
    means_c, scatter = _expanded_scatter(covariance_type, mass, first, second)
    means = np.where(mass[:, None] > 0, means_c + shift, 0.0)
    stats = SufficientStats(covariance_type, mass, means, scatter, log_likelihood, weight_sum, n_rows)
    return stats if exact is None else stats + exact


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


def _weight_sum(Xc, sample_weight):
    return float(Xc.shape[0] if sample_weight is None else np.sum(sample_weight, dtype=np.float64))


def block_statistics(Xc, shift, resp, log_norm, sample_weight, covariance_type, workspace=None):
    """Sufficient statistics of one centred block given its responsibilities."""
    ws = workspace or Workspace()
    return _stats_from_sums(covariance_type, shift,
                            *_block_sums(Xc, shift, resp, log_norm, sample_weight, covariance_type, ws))


def chunk_statistics(
    X,
    sample_weight,
    assigner,
    covariance_type,
    n_components,
    row_offset=0,
    block_rows=None,
    track_worst=0,
):
    """Statistics of one chunk: the body of one task of an EM pass.

    Parameters
    ----------
    X : ndarray of shape (n, D), float32 or float64
    sample_weight : ndarray of shape (n,) or None
    assigner : object with ``assign(Xc, shift, rows) -> (resp, log_norm or None)``
        Produces responsibilities for a centred block; see the ``*Assigner``
        classes.
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

    Returns
    -------
    SufficientStats
        Only the statistics: responsibilities never leave this function.
        Rows with NaN/inf are skipped and counted in ``n_nonfinite``.
    """
    X = np.asarray(X)
    if getattr(assigner, "device", "cpu") == "cuda":
        from . import gpu

        return gpu.chunk_statistics(X, sample_weight, assigner.params, row_offset, track_worst)
    block_rows = block_rows or default_block_rows(n_components, X.shape[1], X.dtype.itemsize, covariance_type)
    # Every block is centred on the first block's mean, so their moment sums simply
    # add and the chunk makes one SufficientStats, not one per block (per-block
    # statistics and merges were a third of the work at D=16, and at D=64 full a
    # tenth). Full covariances guard their digits per block and component instead.
    shared_shift = not track_worst
    args = (X, sample_weight, assigner, covariance_type, n_components, row_offset, block_rows, track_worst)
    total, sums, shift = _chunk_pass(*args, shared_shift)
    if sums is not None:
        stats = _stats_from_sums(covariance_type, shift, *sums)
        # (full: already guarded per block and component, and a sum of blocks loses no more)
        if covariance_type == "full" or _expansion_loss(
            covariance_type, stats.resp_sum, sums[2], stats.scatter
        ) <= SHARED_SHIFT_LOSS_LIMIT:
            return total + stats
        # Some component sits far from the chunk's first block relative to its spread
        # (rows sorted or drifting along the chunk): centre every block on its own mean.
        total, _, _ = _chunk_pass(*args, shared_shift=False)
    return total


# Largest factor by which a component's expanded second moment (about the chunk's
# shift) may exceed its scatter before the chunk is redone with per-block centring:
# 1e6 leaves ~10 of float64's 16 digits (scikit-learn expands diag/spherical
# moments about the origin, which loses more).
SHARED_SHIFT_LOSS_LIMIT = 1e6


def _expansion_loss(covariance_type, mass, second, scatter):
    """Largest ratio of expanded second moment to scatter over the components with mass."""
    if covariance_type == "tied":
        moment, spread = np.trace(second), np.trace(scatter)
    elif covariance_type == "diag":
        moment, spread = second[mass > 0].sum(axis=1), scatter[mass > 0].sum(axis=1)
    else:
        moment, spread = second[mass > 0], scatter[mass > 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(moment > 0, moment / spread, 1.0)
    return float(np.max(ratio, initial=1.0))


def _chunk_pass(X, sample_weight, assigner, covariance_type, n_components, row_offset, block_rows,
                track_worst, shared_shift):
    """The block loop of :func:`chunk_statistics`: (merged statistics, shared-shift sums or None, shift)."""
    workspace = Workspace()
    total = SufficientStats.empty(covariance_type, n_components, X.shape[1])
    shift = sums = None
    for start in range(0, X.shape[0], block_rows):
        block = X[start : start + block_rows]
        weights = None if sample_weight is None else sample_weight[start : start + block_rows]
        rows = np.arange(row_offset + start, row_offset + start + block.shape[0])
        n_bad = 0
        first_bad = -1
        # fast path: a finite sum means finite rows (an overflowing sum only sends us to the exact check)
        finite = None if np.isfinite(np.sum(block)) else np.isfinite(block).all(axis=1)
        if finite is not None and not finite.all():
            n_bad = int(block.shape[0] - finite.sum())
            first_bad = int(rows[~finite][0])
            block, rows = block[finite], rows[finite]
            weights = None if weights is None else weights[finite]
        if block.shape[0] and shared_shift:
            Xc, shift = centre_block(block, workspace, shift)
            resp, log_norm = assigner.assign(Xc, shift, rows, workspace)
            sums = _add_sums(sums, _block_sums(Xc, shift, resp, log_norm, weights, covariance_type, workspace))
        elif block.shape[0]:
            Xc, shift = centre_block(block, workspace)
            resp, log_norm = assigner.assign(Xc, shift, rows, workspace)
            stats = block_statistics(Xc, shift, resp, log_norm, weights, covariance_type, workspace)
            if track_worst and log_norm is not None:
                stats = replace(stats, **worst_explained(block, log_norm, rows, weights, track_worst))
            total = total + stats
        if n_bad:
            total = total + SufficientStats(
                covariance_type,
                *_zeros_like_stats(total),
                n_rows=n_bad,
                n_nonfinite=n_bad,
                first_nonfinite=first_bad,
            )
    return total, sums, shift


def chunk_statistics_many(X, sample_weight, assigners, covariance_types, n_components, row_offset=0):
    """Statistics of one chunk for several models at once: one read, one list of statistics.

    ``assigners``, ``covariance_types`` and ``n_components`` are parallel lists,
    one entry per model (model selection and restarts share the pass).
    """
    return [
        chunk_statistics(X, sample_weight, assigner, covariance_type, k, row_offset)
        for assigner, covariance_type, k in zip(assigners, covariance_types, n_components)
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


def _per_row(X, params: GaussianParams, output, out, device):
    """Every row's ``output`` ("label", "proba" or "log_norm"), block by block into ``out`` (no n x K temporaries)."""
    if device == "cuda":
        from . import gpu

        return gpu.per_row(X, params, output, out)
    per_block = {
        "label": lambda log_prob, ws: np.argmax(log_prob, axis=1),
        "proba": lambda log_prob, ws: normalize_log_prob(log_prob, ws)[0],
        "log_norm": lambda log_prob, ws: normalize_log_prob(log_prob, ws)[1],
    }[output]
    X = np.asarray(X)
    block_rows = default_block_rows(params.n_components, X.shape[1], X.dtype.itemsize,
                                    params.covariance_type)
    workspace = Workspace()
    for start in range(0, X.shape[0], block_rows):
        Xc, shift = centre_block(X[start : start + block_rows], workspace)
        log_prob = weighted_log_prob(Xc, params.means - shift, params, workspace)
        out[start : start + Xc.shape[0]] = per_block(log_prob, workspace)
    return out


def chunk_predict(X, params: GaussianParams, device="cpu"):
    """Most probable component of every row (on the GPU for ``device="cuda"``)."""
    return _per_row(X, params, "label", np.empty(len(X), dtype=np.int64), device)


def chunk_predict_proba(X, params: GaussianParams, device="cpu"):
    """Posterior probability of every component for every row."""
    out = np.empty((len(X), params.n_components), dtype=np.asarray(X).dtype)
    return _per_row(X, params, "proba", out, device)


def chunk_score_samples(X, params: GaussianParams, device="cpu"):
    """``log p(x)`` of every row."""
    return _per_row(X, params, "log_norm", np.empty(len(X), dtype=np.asarray(X).dtype), device)
