"""Synthetic Gaussian-mixture data as lazy Dask arrays (for the demo, tests and benchmarks).

Each chunk is drawn from a generator seeded by ``(seed, chunk index)``, so the
array is reproducible and can be generated on the workers, in parallel,
without ever existing on the driver.
"""

from __future__ import annotations

import dask.array as da
import numpy as np


def random_mixture(n_components, n_features, *, separation=6.0, random_state=0):
    """Weights, means and full covariances of a random, well-separated mixture.

    Returns
    -------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
        Spread so that typical centre distances are ``separation`` standard deviations.
    covariances : ndarray of shape (K, D, D)
        Random positive-definite matrices with eigenvalues in [0.25, 1.5].
    """
    rng = np.random.default_rng(random_state)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(scale=separation / np.sqrt(2), size=(n_components, n_features))
    covariances = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        rotation, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
        scales = rng.uniform(0.25, 1.5, size=n_features)
        covariances[k] = (rotation * scales) @ rotation.T
    return weights, means, covariances


def _mixture_chunk(block_info, weights, means, chol, seed, out_dtype):
    info = block_info[None]
    (start, stop), _ = info["array-location"]
    rng = np.random.default_rng([seed, info["chunk-location"][0]])
    labels = rng.choice(len(weights), size=stop - start, p=weights)
    noise = rng.standard_normal(size=(stop - start, means.shape[1]))
    X = means[labels] + np.einsum("nd,ned->ne", noise, chol[labels])
    return X.astype(out_dtype)


def make_mixture(
    n_samples,
    weights,
    means,
    covariances,
    *,
    chunk_rows=250_000,
    random_state=0,
    dtype=np.float64,
):
    """A lazy ``(n_samples, D)`` Dask array of draws from a full-covariance mixture."""
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    chol = np.linalg.cholesky(np.asarray(covariances, dtype=np.float64))
    n_features = means.shape[1]
    chunks = (da.core.normalize_chunks(chunk_rows, (n_samples,))[0], (n_features,))
    return da.map_blocks(
        _mixture_chunk,
        weights=weights,
        means=means,
        chol=chol,
        seed=random_state,
        out_dtype=dtype,
        dtype=dtype,
        chunks=chunks,
        meta=np.empty((0, 0), dtype=dtype),
    )


def awkward_datasets(random_state=0):
    """Small in-memory datasets of the shapes that break careless GMM numerics.

    Each is what a user meets: clusters far apart relative to their spread,
    components that collapse onto duplicated rows (silence frames among MFCCs),
    data far from the origin, tiny and huge scales, and features whose spreads
    differ by orders of magnitude. Used by the tests and ``benchmarks/parity.py``.

    Returns
    -------
    dict of name -> ndarray of shape (n_samples, n_features), float64
    """
    rng = np.random.default_rng(random_state)
    blobs = rng.normal(size=(3000, 2)) + np.array([[0.0, 0.0], [1.5, 0.0], [6.0, 3.0]])[rng.integers(3, size=3000)]
    far = blobs.copy()
    far[blobs[:, 0] > 4] += 1e4 - 6.0  # the third cluster, 10^4 standard deviations away
    frames = np.concatenate([rng.normal(-20, 10, size=(3500, 13)),
                             np.tile(rng.normal(-20, 10, size=(1, 13)), (400, 1))])
    spreads = np.array([1e-3, 1.0, 1e3])
    return {
        "far cluster": far,
        "duplicated rows": frames[rng.permutation(len(frames))],
        "offset 1e6": np.column_stack([blobs, rng.normal(scale=0.5, size=3000)]) + 1e6,
        "tiny scale": blobs * 1e-5,
        "huge scale": blobs * 1e5,
        "mixed spreads": np.column_stack([blobs, rng.normal(size=3000)]) * spreads,
    }
