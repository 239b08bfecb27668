"""Chunk math on a CUDA GPU through CuPy: the E-step and statistics of one chunk.

The same contract as :func:`daskgmm.kernels.chunk.chunk_statistics` (NumPy in,
:class:`~daskgmm.model.statistics.SufficientStats` out), for ``GaussianMixture(...,
device="cuda")``: every task copies its chunk to the GPU, computes there and
returns only the statistics, so the Dask graph, the merge tree and the M-step
are those of the CPU path. CuPy is optional; nothing here is imported unless
``device="cuda"`` is asked for.

The numerics follow the CPU kernels' exact paths everywhere: every block of
rows is centred on its own mean in float64 (exactly, for float32 data), each
component's differences ``x - mu_k`` are formed in float64 and rounded once to
the data's dtype, distances are whitened differences ``(x - mu) U`` as in
scikit-learn, and scatters are two-pass sums about each component's block mean
(the GPU has the flops to spare, so no expanded form and no guard are needed).
Products run in the data's dtype, sums in float64.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..model.params import GaussianParams, log_prob_offset
from ..model.statistics import SufficientStats
from .chunk import new_per_row_output, worst_explained
from .missing import MISSING_ON_CPU_ONLY

# Rows per block on the GPU: the largest temporaries are K x rows x D; this many
# bytes of them keep several tasks' blocks well inside any current GPU's memory.
GPU_BLOCK_BYTES = 256 * 2**20


# In-memory input is cut in chunks of about this size for the GPU, with no
# chunks-per-core rule: measured on an H100 (1M x 16, K=16 full), 32 chunks of
# 4 MiB took 0.26 s per iteration and 4 chunks of 32 MiB 0.08 s (16 Dask threads
# feeding one GPU spend their time in Python between small kernels).
GPU_CHUNK_BYTES = 64 * 2**20


def default_chunk_rows(n_samples, n_features, itemsize):
    """Rows per chunk of in-memory input for ``device='cuda'``: about ``GPU_CHUNK_BYTES``."""
    return int(max(1, min(n_samples, GPU_CHUNK_BYTES // max(1, n_features * itemsize))))


def cupy_or_error():
    """The ``cupy`` module, or a ValueError that says what ``device='cuda'`` needs."""
    try:
        import cupy
    except ImportError as error:
        raise ValueError(
            "device='cuda' needs CuPy and a CUDA GPU: install the CuPy wheel for your CUDA "
            "(e.g. pip install cupy-cuda12x), or use device='cpu'."
        ) from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        raise ValueError(f"device='cuda' found no usable CUDA GPU ({error}); use device='cpu'.") from error
    if count == 0:
        raise ValueError("device='cuda' found no CUDA GPU on this machine; use device='cpu'.")
    return cupy


def _block_rows(n_components, n_features):
    # the largest temporaries are float64 differences, K x rows x D
    return max(1024, GPU_BLOCK_BYTES // max(1, n_components * n_features * 8))


def _device_params(cp, params: GaussianParams, dtype):
    """The parameters as device arrays of ``dtype`` (means in float64: they are shifted per block)."""
    offset = log_prob_offset(params, params.means.shape[1])
    return dict(
        means=cp.asarray(params.means, dtype=np.float64),
        chol=cp.asarray(params.precisions_cholesky, dtype=dtype),
        offset=cp.asarray(offset, dtype=dtype),
    )


def _centre(cp, block):
    """``(block - shift in float64, shift)``, the shift its column mean rounded to the block's
    dtype: exact for float32 blocks (the difference of two float32 numbers is a float64 one)."""
    shift = cp.mean(block, axis=0, dtype=np.float64).astype(block.dtype).astype(np.float64)
    return block.astype(np.float64) - shift, shift


def _differences(rows64, means_c, dtype):
    """``x - mu_k`` for every component, shape (K, n, D): formed in float64 from exactly
    centred rows, then rounded once to the data's dtype (a relative error only), so a
    component far from the block's centre, or collapsed, keeps its digits."""
    return (rows64[None] - means_c[:, None, :]).astype(dtype)


def _weighted_log_prob(cp, rows64, means_c, device_params, covariance_type, dtype):
    """``log w_k + log N(x | mu_k, Sigma_k)`` of centred rows on the GPU, shape (n, K)."""
    chol = device_params["chol"]
    diff = _differences(rows64, means_c, dtype)
    if covariance_type == "full":  # (K, n, D): every component's whitened rows, one batched GEMM
        y = cp.matmul(diff, chol)
        maha = cp.sum(y * y, axis=2).T
    elif covariance_type == "tied":
        y = cp.matmul(diff, chol)
        maha = cp.sum(y * y, axis=2).T
    elif covariance_type == "diag":
        maha = cp.sum((diff * chol[:, None, :]) ** 2, axis=2).T
    else:
        maha = cp.sum(diff * diff, axis=2).T * (chol**2)[None]
    return device_params["offset"][None] - 0.5 * maha


def _normalise(cp, log_prob):
    """Responsibilities and ``log p(x)`` (log-sum-exp over components)."""
    top = cp.max(log_prob, axis=1)
    top = cp.where(cp.isfinite(top), top, 0)
    resp = cp.exp(log_prob - top[:, None])
    total = cp.sum(resp, axis=1)
    resp /= total[:, None]
    return resp, cp.log(total) + top


def _scatter(cp, rows64, resp, means_c, covariance_type):
    """Scatters about each component's block mean, exactly centred, float64 sums."""
    diff = _differences(rows64, means_c, resp.dtype)  # (K, n, D)
    weighted = diff * resp.T[:, :, None]
    if covariance_type in ("full", "tied"):
        scatter = cp.matmul(weighted.transpose(0, 2, 1), diff).astype(np.float64)
        return scatter.sum(axis=0) if covariance_type == "tied" else scatter
    diag = cp.sum(weighted * diff, axis=1, dtype=np.float64)
    return diag if covariance_type == "diag" else diag.sum(axis=1)


def chunk_statistics(X, sample_weight, assigner, covariance_type=None, n_components=None, row_offset=0,
                     block_rows=None, track_worst=0, missing=False):
    """Statistics of one chunk under the assigner's parameters, computed on the GPU.

    The signature of :func:`daskgmm.kernels.chunk.chunk_statistics` (the engine
    picks one or the other where it builds the pass): ``covariance_type``,
    ``n_components`` and ``block_rows`` come from the parameters and the GPU.

    Parameters
    ----------
    X : ndarray of shape (n, D), float32 or float64 (host memory)
    sample_weight : ndarray of shape (n,) or None
    assigner : GaussianAssigner
        Carries the parameters (``assigner.params``).
    row_offset : int
        Global index of the chunk's first row (for the report of non-finite rows).
    track_worst : int
        Also keep this many worst-explained rows (for re-seeding collapsed
        components), as the CPU kernel does.

    Returns
    -------
    SufficientStats
        As :func:`daskgmm.kernels.chunk.chunk_statistics`: rows with NaN/inf are
        skipped and counted (``missing`` is the CPU's only).
    """
    if missing:
        raise ValueError(MISSING_ON_CPU_ONLY)
    cp = cupy_or_error()
    X = np.asarray(X)
    params = assigner.params
    covariance_type, n_components, n_features = params.covariance_type, params.n_components, X.shape[1]
    total = SufficientStats.empty(covariance_type, n_components, n_features)
    device_params = _device_params(cp, params, X.dtype)
    block_rows = _block_rows(n_components, n_features)
    for start in range(0, X.shape[0], block_rows):
        host_block = X[start : start + block_rows]
        host_weights = None if sample_weight is None else sample_weight[start : start + block_rows]
        rows = np.arange(row_offset + start, row_offset + start + host_block.shape[0])
        block = cp.asarray(host_block)
        finite = cp.all(cp.isfinite(block), axis=1)
        n_bad = int(block.shape[0] - int(cp.count_nonzero(finite)))
        if n_bad:
            keep = cp.asnumpy(finite)
            total = total + SufficientStats(covariance_type, *_zeros(total), n_rows=n_bad, n_nonfinite=n_bad,
                                            first_nonfinite=int(rows[~keep][0]))
            block, host_block, rows = block[finite], host_block[keep], rows[keep]
            host_weights = None if host_weights is None else host_weights[keep]
        weights = None if host_weights is None else cp.asarray(host_weights, dtype=np.float64)
        if block.shape[0] == 0:
            continue
        rows64, shift = _centre(cp, block)
        log_prob = _weighted_log_prob(cp, rows64, device_params["means"] - shift, device_params,
                                      covariance_type, X.dtype)
        resp, log_norm = _normalise(cp, log_prob)
        if weights is not None:
            resp *= weights[:, None].astype(resp.dtype)
            log_likelihood = float(cp.sum(weights * log_norm))
            weight_sum = float(cp.sum(weights))
        else:
            log_likelihood = float(cp.sum(log_norm, dtype=np.float64))
            weight_sum = float(block.shape[0])
        mass = cp.sum(resp, axis=0, dtype=np.float64)
        safe = cp.where(mass > 0, mass, 1.0)
        means_c = cp.where(mass[:, None] > 0, (resp.T.astype(np.float64) @ rows64) / safe[:, None], 0)
        scatter = _scatter(cp, rows64, resp, means_c, covariance_type)
        means = cp.where(mass[:, None] > 0, means_c + shift, 0)
        stats = SufficientStats(covariance_type, cp.asnumpy(mass), cp.asnumpy(means), cp.asnumpy(scatter),
                                log_likelihood, weight_sum, int(block.shape[0]))
        if track_worst:
            stats = replace(stats, **worst_explained(host_block, cp.asnumpy(log_norm), rows, host_weights,
                                                     track_worst))
        total = total + stats
    return total


def _zeros(stats):
    return np.zeros_like(stats.resp_sum), np.zeros_like(stats.means), np.zeros_like(stats.scatter)


def per_row(X, params: GaussianParams, output, dtype=None, missing=False):
    """Every row's ``output`` ("label", "proba" or "log_norm") computed on the GPU: the twin of
    :func:`daskgmm.kernels.chunk.per_row` (missing values are the CPU's only)."""
    if missing:
        raise ValueError(MISSING_ON_CPU_ONLY)
    reduce_block = {
        "label": lambda cp, log_prob: cp.argmax(log_prob, axis=1),
        "proba": lambda cp, log_prob: _normalise(cp, log_prob)[0],
        "log_norm": lambda cp, log_prob: _normalise(cp, log_prob)[1],
    }[output]
    cp = cupy_or_error()
    X = np.asarray(X)
    out = new_per_row_output(len(X), params.n_components, dtype or X.dtype, output)
    device_params = _device_params(cp, params, X.dtype)
    block_rows = _block_rows(params.n_components, X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = cp.asarray(X[start : start + block_rows])
        rows64, shift = _centre(cp, block)
        log_prob = _weighted_log_prob(cp, rows64, device_params["means"] - shift, device_params,
                                      params.covariance_type, X.dtype)
        out[start : start + block.shape[0]] = cp.asnumpy(reduce_block(cp, log_prob))
    return out
