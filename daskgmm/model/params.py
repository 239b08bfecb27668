"""Mixture parameters as a value type, the M-step, and covariance/precision conversions.

Everything here is float64 NumPy on the driver: parameters are small
(``O(K D^2)``) whatever the size of the data. The numerics follow
``sklearn/mixture/_gaussian_mixture.py`` (the same ``10 * eps`` guard on the
component masses, in units of the weights; the same error for ill-defined
covariances) so that fits agree
with scikit-learn to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from .statistics import SufficientStats, scatter_shape

LOG_2PI = math.log(2 * math.pi)

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


PARAM_FIELDS = ("weights", "means", "covariances", "precisions_cholesky")


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

    def log_weights(self) -> np.ndarray:
        """The per-component term the E-step adds to each log-density: ``log w_k`` here."""
        with np.errstate(divide="ignore"):
            return np.log(self.weights)

    def precisions(self) -> np.ndarray:
        """The precision matrices (inverse covariances) in the covariance layout."""
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    def to_arrays(self) -> dict:
        """The parameters as named arrays (checkpoints)."""
        return {name: np.asarray(getattr(self, name)) for name in PARAM_FIELDS}

    @classmethod
    def from_arrays(cls, covariance_type: str, arrays: dict) -> "GaussianParams":
        """The inverse of :meth:`to_arrays`; ``KeyError``/``ValueError`` for arrays that do not fit."""
        params = cls(covariance_type, *(arrays[name] for name in PARAM_FIELDS))
        check_shapes(params)
        return params

    def astype(self, dtype) -> "GaussianParams":
        """The same parameters with every array cast to ``dtype``."""
        return replace(
            self,
            weights=np.asarray(self.weights, dtype=dtype),
            means=np.asarray(self.means, dtype=dtype),
            covariances=np.asarray(self.covariances, dtype=dtype),
            precisions_cholesky=np.asarray(self.precisions_cholesky, dtype=dtype),
        )


@dataclass(frozen=True)
class ExpectedGaussianParams(GaussianParams):
    """Gaussian log-densities with other per-component terms than ``log w_k``: the E-step of a
    variational mixture (:mod:`daskgmm.model.variational`), which the chunk kernels run unchanged.

    ``log_weight_terms`` (K,) replaces ``log w_k`` in every log-density; ``weights`` are the
    mixture's (normalised) weights, for display only.
    """

    log_weight_terms: np.ndarray = None

    def log_weights(self) -> np.ndarray:
        return np.asarray(self.log_weight_terms, dtype=np.float64)


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """Precision matrices ``U U^T`` (full, tied) or ``U**2`` (diag, spherical)."""
    chol = precisions_cholesky
    if covariance_type == "full":
        return np.matmul(chol, np.swapaxes(chol, 1, 2))
    if covariance_type == "tied":
        return chol @ chol.T
    return chol**2


def check_shapes(params):
    """``ValueError`` when the arrays of ``params`` do not fit one model, or are not finite."""
    k, d = params.means.shape
    expected = scatter_shape(params.covariance_type, k, d)
    if params.weights.shape != (k,) or params.covariances.shape != expected \
            or params.precisions_cholesky.shape != expected:
        raise ValueError(f"array shapes do not fit a {params.covariance_type} model of {k} components")
    if not all(np.all(np.isfinite(a)) for a in (params.weights, params.means, params.covariances)):
        raise ValueError("non-finite parameters")


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


def log_prob_offset(params: GaussianParams, n_features):
    """``log w_k + log det U_k - D/2 log(2 pi)`` per component (float64; ``log w_k`` is
    :meth:`~daskgmm.model.params.GaussianParams.log_weights`, which a variational E-step replaces)."""
    log_det = log_det_cholesky(params.precisions_cholesky, params.covariance_type, n_features)
    return log_det + params.log_weights() - 0.5 * n_features * LOG_2PI


def mass_guard(stats: SufficientStats, data_dtype=np.float64) -> float:
    """scikit-learn's ``10 * finfo(dtype).eps``, added to every component mass, in units of the weights.

    scikit-learn counts rows (mass 1 each); with ``sample_weight`` a row's mass
    is its weight, so the guard is scaled by the average weight: results do not
    depend on the scale of the weights, and unit weights give scikit-learn's.
    """
    rows = stats.n_rows - stats.n_nonfinite
    average_weight = stats.weight_sum / rows if rows > 0 and stats.weight_sum > 0 else 1.0
    return 10 * np.finfo(data_dtype).eps * average_weight


def estimate_gaussian_parameters(stats: SufficientStats, reg_covar: float, data_dtype=np.float64):
    """Component masses, means and covariances from merged statistics.

    scikit-learn's formulas, evaluated on exactly centred scatters: the guard
    :func:`mass_guard` is added to every component mass (an empty component
    gets mean 0 and covariance ``reg_covar`` exactly as in scikit-learn), and
    diag/spherical variances are at least :func:`resolution_floor` before
    ``reg_covar`` is added.
    """
    covariance_type = stats.covariance_type
    mass = stats.resp_sum + mass_guard(stats, data_dtype)
    # scikit-learn divides the weighted sums by the guarded mass, which pulls every mean
    # towards the origin by guard / N of itself: invisible in float64, but in float32 a
    # mean 1e6 from the origin moves by ~1e-3 / N per iteration. The statistics' means are
    # the weighted means (0 for an empty component, as in scikit-learn) and are kept.
    means = stats.means
    scatter = stats.scatter
    n_features = stats.n_features
    if covariance_type == "full":
        covariances = scatter / mass[:, None, None]
        covariances = covariances + reg_covar * np.eye(n_features)
    elif covariance_type == "tied":
        covariances = scatter / np.sum(mass) + reg_covar * np.eye(n_features)
    elif covariance_type == "diag":
        covariances = np.maximum(scatter / mass[:, None], resolution_floor(means)) + reg_covar
    else:
        floor = resolution_floor(means).mean(axis=1)
        covariances = np.maximum(scatter / (mass * n_features), floor) + reg_covar
    return mass, means, covariances


def resolution_floor(means):
    """``(eps |mu_kd|)^2`` (float64's eps): below it no variance of float data near ``mu`` is resolved.

    A diag or spherical component whose rows are all one point (a singleton,
    or duplicated rows) has an exact scatter of zero. scikit-learn's expanded
    variance ``E[x^2] - E[x]^2`` leaves such a component a round-off value
    of about ``eps |mu|^2``, positive or not by chance, so with ``reg_covar=0``
    it completes or raises by chance (it completes for a singleton, its test
    for #18216, and raises at 0 exactly). daskgmm gives it this floor
    instead: it completes unless the point is the origin, and the component
    counts as collapsed (:func:`collapsed_components`, for
    ``reseed_collapsed``). The floor is far below any variance float32 or
    float64 data can show, so it changes no other fit, whatever the offset.
    """
    return (np.finfo(np.float64).eps * np.asarray(means, dtype=np.float64)) ** 2


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
    mass, means, covariances = estimate_gaussian_parameters(stats, reg_covar, data_dtype)
    if normalize_weights:
        weights = mass / np.sum(mass)
    else:
        weights = mass / stats.weight_sum
    precisions_cholesky = compute_precision_cholesky(
        covariances, stats.covariance_type, data_dtype
    )
    return GaussianParams(stats.covariance_type, weights, means, covariances, precisions_cholesky)


def weighted_mahalanobis_total(stats: SufficientStats, means, precisions_cholesky) -> float:
    """``sum_k sum_n w_n r_nk |U_k^T (x_n - mu_k)|^2`` from the centred statistics:
    ``tr(U_k^T S_k U_k) + N_k |U_k^T (m_k - mu_k)|^2`` summed over the components."""
    covariance_type = stats.covariance_type
    chol = np.asarray(precisions_cholesky, dtype=np.float64)
    delta = stats.means - means
    if covariance_type == "full":
        within = np.einsum("kde,kdf,kef->", stats.scatter, chol, chol)
        between = np.sum(np.einsum("kd,kde->ke", delta, chol) ** 2, axis=1)
    elif covariance_type == "tied":  # one scatter, summed over the components
        within = np.einsum("de,df,ef->", stats.scatter, chol, chol)
        between = np.sum((delta @ chol) ** 2, axis=1)
    elif covariance_type == "diag":
        within = np.sum(stats.scatter * chol**2)
        between = np.sum((delta * chol) ** 2, axis=1)
    else:
        within = np.sum(stats.scatter * chol**2)
        between = chol**2 * np.sum(delta**2, axis=1)
    return float(within + stats.resp_sum @ between)


def expected_log_density(stats: SufficientStats, params: GaussianParams) -> float:
    """``sum_n w_n sum_k r_nk log p_k(x_n)`` (``log p_k`` the E-step's per-component term plus
    log-density under ``params``) for the responsibilities behind ``stats``, from the centred
    statistics alone: exact, since ``log p_k`` is a constant minus half a Mahalanobis distance."""
    n_features = stats.n_features
    constant = log_prob_offset(params, n_features)
    used = stats.resp_sum > 0  # an empty component adds nothing, even with a term of -inf
    return float(np.sum(stats.resp_sum[used] * constant[used]) - 0.5 * weighted_mahalanobis_total(
        stats, params.means, params.precisions_cholesky))


def responsibility_entropy(stats: SufficientStats, params: GaussianParams) -> float:
    """``sum_n w_n sum_k r_nk log r_nk`` of the pass that produced ``stats`` under ``params``
    (the E-step's: ``log r_nk = log p_k(x_n) - log p(x_n)``)."""
    return expected_log_density(stats, params) - stats.log_likelihood



class CollapsedComponentWarning(UserWarning):
    """A component lost its points or became singular and was re-seeded."""


def collapsed_components(stats: SufficientStats, reg_covar: float, data_dtype=np.float64) -> list:
    """Components that lost their points (less mass than an average row), whose
    covariance is not positive definite, or (diag, spherical) whose rows are all
    one point (a variance no larger than :func:`resolution_floor`)."""
    mass, means, covariances = estimate_gaussian_parameters(stats, reg_covar, data_dtype)
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
        floor = resolution_floor(means)
        if stats.covariance_type == "spherical":
            floor = floor.mean(axis=1, keepdims=True)
        unresolved = np.any(flat - reg_covar <= floor, axis=1)
        bad.update(np.flatnonzero(~np.all(np.isfinite(flat) & (flat > 0), axis=1) | unresolved).tolist())
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
    bad = collapsed_components(stats, reg_covar, data_dtype)
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


def n_parameters(n_components, n_features, covariance_type) -> int:
    """Free parameters of a mixture, as scikit-learn counts them."""
    covariance = {"full": n_components * n_features * (n_features + 1) / 2, "diag": n_components * n_features,
                  "tied": n_features * (n_features + 1) / 2, "spherical": n_components}[covariance_type]
    return int(covariance + n_features * n_components + n_components - 1)


def information_criteria(mean_log_likelihood, n_samples, n_parameters):
    """``(BIC, AIC)`` from the (weighted) mean log-likelihood per sample.

    ``n_samples`` is the number of rows, or their total weight: a row of
    weight 2 is two rows, in the likelihood and in the BIC's ``log n``.
    """
    log_likelihood = mean_log_likelihood * n_samples
    return (float(-2 * log_likelihood + n_parameters * np.log(n_samples)),
            float(-2 * log_likelihood + 2 * n_parameters))


def check_representable(params: GaussianParams, stored: GaussianParams):
    """A clear error when the fitted parameters do not survive the cast to the data's dtype.

    float32 data can give a model float32 cannot hold: covariances beyond its
    range, or precisions of components collapsed below its smallest variance.
    """
    dtype = stored.means.dtype
    problems = []
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        value = getattr(stored, name)
        if not np.all(np.isfinite(value)):
            problems.append(f"{name} reach {np.max(np.abs(getattr(params, name))):.3g}")
    with np.errstate(over="ignore"):
        if not problems and not np.all(np.isfinite(stored.precisions())):
            problems.append(f"precisions reach {np.max(np.abs(params.precisions())):.3g}")
    if stored.covariance_type in ("diag", "spherical") and np.any(stored.covariances <= 0):
        problems.append(f"covariances fall to {np.min(params.covariances):.3g}")
    if problems:
        raise ValueError(
            f"The fitted parameters do not fit in {dtype.name} ({'; '.join(problems)}). "
            "Pass float64 data, or rescale it."
        )
