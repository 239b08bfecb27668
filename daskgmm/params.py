"""Mixture parameters as a value type, the M-step, and covariance/precision conversions.

Everything here is float64 NumPy on the driver: parameters are small
(``O(K D^2)``) whatever the size of the data. The numerics follow
``sklearn/mixture/_gaussian_mixture.py`` (same ``10 * eps`` guard on the
component masses, same error for ill-defined covariances) so that fits agree
with scikit-learn to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from .stats import SufficientStats

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
FLOAT32_HINT = (
    " The numerical accuracy can also be improved by passing float64"
    " data instead of float32."
)


@dataclass(frozen=True)
class GaussianParams:
    """Parameters of a Gaussian mixture (scikit-learn's layout per covariance type).

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray
        'full': (K, D, D), 'tied': (D, D), 'diag': (K, D), 'spherical': (K,).
    precisions_cholesky : ndarray
        Upper-triangular ``U`` with ``precision = U U^T`` (full, tied), or
        ``1 / sqrt(covariance)`` (diag, spherical); same shapes as covariances.
    """

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def precisions(self) -> np.ndarray:
        """The precision matrices (inverse covariances) in the covariance layout."""
        chol = self.precisions_cholesky
        if self.covariance_type == "full":
            return np.matmul(chol, np.swapaxes(chol, 1, 2))
        if self.covariance_type == "tied":
            return chol @ chol.T
        return chol**2

    def astype(self, dtype) -> "GaussianParams":
        """The same parameters with every array cast to ``dtype``."""
        return replace(
            self,
            weights=np.asarray(self.weights, dtype=dtype),
            means=np.asarray(self.means, dtype=dtype),
            covariances=np.asarray(self.covariances, dtype=dtype),
            precisions_cholesky=np.asarray(self.precisions_cholesky, dtype=dtype),
        )


def compute_precision_cholesky(covariances, covariance_type, data_dtype=np.float64):
    """Cholesky factors of the precisions from covariances.

    Raises scikit-learn's ``ValueError`` when a covariance is not positive
    definite (``data_dtype`` float32 adds its hint about float64 input).
    """
    message = ILL_DEFINED_COVARIANCE
    if np.dtype(data_dtype) == np.float32:
        message += FLOAT32_HINT
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = covariances if covariance_type == "full" else covariances[None]
        n_features = stack.shape[-1]
        eye = np.eye(n_features)
        chols = np.empty_like(stack)
        for k, covariance in enumerate(stack):
            try:
                cov_chol = linalg.cholesky(covariance, lower=True)
            except linalg.LinAlgError:
                raise ValueError(message) from None
            chols[k] = linalg.solve_triangular(cov_chol, eye, lower=True).T
        return chols if covariance_type == "full" else chols[0]
    if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
        raise ValueError(message)
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper Cholesky factors ``U`` (``precision = U U^T``) of given precisions.

    As scikit-learn does: the Cholesky factor of the row/column-reversed
    precision, reversed back, is upper triangular with ``U U^T = precision``.
    """
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = precisions if covariance_type == "full" else precisions[None]
        chols = np.stack(
            [np.linalg.cholesky(p[::-1, ::-1])[::-1, ::-1] for p in stack]
        )
        return chols if covariance_type == "full" else chols[0]
    return np.sqrt(precisions)


def covariances_from_precision_cholesky(precisions_cholesky, covariance_type):
    """Covariances ``(U U^T)^{-1}`` from precision Cholesky factors."""
    chol = np.asarray(precisions_cholesky, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = chol if covariance_type == "full" else chol[None]
        eye = np.eye(stack.shape[-1])
        covs = []
        for u in stack:
            u_inv = linalg.solve_triangular(u, eye, lower=False)
            covs.append(u_inv.T @ u_inv)
        covs = np.stack(covs)
        return covs if covariance_type == "full" else covs[0]
    return 1.0 / chol**2


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """``log det U`` per component (``= -1/2 log det covariance``), shape (K,) or ()."""
    chol = precisions_cholesky
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(chol)))
    if covariance_type == "diag":
        return np.sum(np.log(chol), axis=1)
    return n_features * np.log(chol)


def estimate_gaussian_parameters(stats: SufficientStats, reg_covar: float, eps: float):
    """Component masses, means and covariances from merged statistics.

    ``eps`` is scikit-learn's ``10 * finfo(dtype).eps`` guard added to every
    component mass, so an empty component gets mean 0 and covariance
    ``reg_covar`` exactly as in scikit-learn.
    """
    covariance_type = stats.covariance_type
    mass = stats.resp_sum + eps
    means = stats.means * (stats.resp_sum / mass)[:, None]
    scatter = stats.scatter
    n_features = stats.n_features
    if covariance_type == "full":
        covariances = scatter / mass[:, None, None]
        covariances = covariances + reg_covar * np.eye(n_features)
    elif covariance_type == "tied":
        covariances = scatter / np.sum(mass) + reg_covar * np.eye(n_features)
    elif covariance_type == "diag":
        covariances = scatter / mass[:, None] + reg_covar
    else:
        covariances = scatter / (mass * n_features) + reg_covar
    return mass, means, covariances


def m_step(
    stats: SufficientStats,
    reg_covar: float,
    data_dtype=np.float64,
    normalize_weights: bool = True,
) -> GaussianParams:
    """The M-step: new parameters from merged statistics.

    Parameters
    ----------
    stats : SufficientStats
        Statistics merged over the whole data set.
    reg_covar : float
        Added to the diagonal of every covariance.
    data_dtype : dtype
        dtype of the data, for scikit-learn's ``10 * eps`` guard and error text.
    normalize_weights : bool
        True in EM iterations. scikit-learn's initialisation divides the
        masses by the number of samples instead (``False``), which differs
        only for 'random_from_data' and 'k-means++' starts.
    """
    eps = 10 * np.finfo(data_dtype).eps
    mass, means, covariances = estimate_gaussian_parameters(stats, reg_covar, eps)
    if normalize_weights:
        weights = mass / np.sum(mass)
    else:
        weights = mass / stats.weight_sum
    precisions_cholesky = compute_precision_cholesky(
        covariances, stats.covariance_type, data_dtype
    )
    return GaussianParams(stats.covariance_type, weights, means, covariances, precisions_cholesky)


class CollapsedComponentWarning(UserWarning):
    """A component lost its points or became singular and was re-seeded."""


def collapsed_components(stats: SufficientStats, reg_covar: float, eps: float) -> list:
    """Components that lost their points (less mass than an average row) or whose
    covariance is not positive definite."""
    mass, _, covariances = estimate_gaussian_parameters(stats, reg_covar, eps)
    rows = max(stats.n_rows - stats.n_nonfinite, 1)
    bad = set(np.flatnonzero(stats.resp_sum < stats.weight_sum / rows).tolist())
    if stats.covariance_type == "full":
        for k, covariance in enumerate(covariances):
            try:
                linalg.cholesky(covariance, lower=True)
            except linalg.LinAlgError:
                bad.add(k)
    elif stats.covariance_type in ("diag", "spherical"):
        flat = covariances.reshape(len(mass), -1)
        bad.update(np.flatnonzero(~np.all(np.isfinite(flat) & (flat > 0), axis=1)).tolist())
    return sorted(bad)


def reseed_collapsed(stats: SufficientStats, reg_covar: float, data_dtype=np.float64):
    """Statistics in which collapsed components start afresh at the worst-explained rows.

    A re-seeded component gets the mean of one of the rows the mixture
    explains worst (a different row each), the pooled covariance of the
    healthy components and the mass of the smallest healthy one. Returns
    ``(stats, reseeded_components)``; raises scikit-learn's ill-defined
    covariance error when nothing can be re-seeded (no healthy component,
    too few tracked rows, or a singular *tied* covariance).
    """
    eps = 10 * np.finfo(data_dtype).eps
    bad = collapsed_components(stats, reg_covar, eps)
    if not bad:
        return stats, []
    good = [k for k in range(stats.n_components) if k not in bad]
    if not good or stats.covariance_type == "tied" or stats.worst_log_prob.size < len(bad):
        message = ILL_DEFINED_COVARIANCE + (FLOAT32_HINT if np.dtype(data_dtype) == np.float32 else "")
        raise ValueError(message)
    resp_sum, means, scatter = stats.resp_sum.copy(), stats.means.copy(), stats.scatter.copy()
    seed_mass = resp_sum[good].min()
    pooled = scatter[good].sum(axis=0) / resp_sum[good].sum()
    for k, row in zip(bad, stats.worst_rows):
        resp_sum[k], means[k], scatter[k] = seed_mass, row, pooled * seed_mass
    return replace(stats, resp_sum=resp_sum, means=means, scatter=scatter), bad
