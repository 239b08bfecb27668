"""A short, obviously correct E-step and M-step statistics: the yardstick for the fast kernels.

No blocks, no shared centres, no expanded forms, no guards: every row's
difference to every component, ``x - mu_k``, in float64, whitened with the
precision's Cholesky factor; responsibilities by log-sum-exp; means and
scatters by two passes about each component's weighted mean. Slow (a few
n x K x D temporaries) and meant for tests and for anyone checking
:mod:`daskgmm.kernels.chunk` on their own data.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..model.params import LOG_2PI, GaussianParams
from ..model.statistics import SufficientStats


def weighted_log_prob(X, params: GaussianParams):
    """``log w_k + log N(x | mu_k, Sigma_k)``, shape (n, K), float64."""
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    out = np.empty((X.shape[0], params.n_components))
    for k in range(params.n_components):
        diff = X - params.means[k]
        if params.covariance_type == "full":
            factor = chol[k]
        elif params.covariance_type == "tied":
            factor = chol
        elif params.covariance_type == "diag":
            factor = np.diag(chol[k])
        else:
            factor = chol[k] * np.eye(n_features)
        whitened = diff @ factor
        log_det = np.sum(np.log(np.diag(factor)))
        out[:, k] = params.log_weights()[k] + log_det - 0.5 * n_features * LOG_2PI \
            - 0.5 * np.sum(whitened**2, axis=1)
    return out


def per_row(X, params: GaussianParams):
    """``(labels, responsibilities, log p(x))`` of every row."""
    log_prob = weighted_log_prob(X, params)
    log_norm = logsumexp(log_prob, axis=1)
    return np.argmax(log_prob, axis=1), np.exp(log_prob - log_norm[:, None]), log_norm


def statistics(X, params: GaussianParams, sample_weight=None) -> SufficientStats:
    """What one E-step over the finite rows of ``X`` gives the M-step (see :class:`SufficientStats`)."""
    X = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(X).all(axis=1)
    weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    X, weights = X[finite], weights[finite]
    _, resp, log_norm = per_row(X, params)
    resp = resp * weights[:, None]
    mass = resp.sum(axis=0)
    K, D = params.n_components, X.shape[1]
    means = np.zeros((K, D))
    scatters = np.zeros((K, D, D))
    for k in range(K):
        if mass[k] > 0:
            means[k] = resp[:, k] @ X / mass[k]
            diff = X - means[k]
            means[k] += resp[:, k] @ diff / mass[k]  # the second pass's correction
            diff = X - means[k]
            scatters[k] = (diff * resp[:, k, None]).T @ diff
    scatter = {
        "full": scatters,
        "tied": scatters.sum(axis=0),
        "diag": np.diagonal(scatters, axis1=1, axis2=2).copy(),
        "spherical": np.trace(scatters, axis1=1, axis2=2),
    }[params.covariance_type]
    used = weights > 0
    n_bad = int((~finite).sum())
    return SufficientStats(params.covariance_type, mass, means, scatter,
                           float(np.sum(weights[used] * log_norm[used])), float(weights.sum()),
                           len(finite), n_bad, int(np.flatnonzero(~finite)[0]) if n_bad else -1)
