"""The variational Gaussian mixture (scikit-learn's ``BayesianGaussianMixture``) on merged statistics.

Priors, parameters, the variational M-step, the E-step's per-component terms and the lower
bound, as pure float64 NumPy on the driver, following
``sklearn/mixture/_bayesian_mixture.py`` formula by formula so that fits agree with
scikit-learn to round-off.

Everything a variational iteration needs from the data is in the chunk statistics a
maximum-likelihood pass already computes (:class:`~daskgmm.model.statistics.SufficientStats`):

- the M-step consumes the component masses, means and centred scatters;
- the E-step is the Gaussian log-density of ``(means, precisions_cholesky)`` with other
  per-component terms than ``log w_k`` (expected log-weights, the Wishart and mean-precision
  terms): :class:`~daskgmm.model.params.ExpectedGaussianParams`, run by the unchanged kernels;
- the lower bound needs the responsibilities' entropy ``sum_n w_n sum_k r_nk log r_nk``. Since
  ``log r_nk = log p_nk - log p(x_n)`` and ``log p_nk`` is a per-component constant minus half
  a Mahalanobis distance, the entropy is ``sum_k N_k c_k - 1/2 sum_k M_k - log-likelihood``,
  where ``M_k = sum_n w_n r_nk (x_n - mu_k)^T P_k (x_n - mu_k) = tr(P_k S_k) + N_k d_k^T P_k
  d_k`` follows from the centred scatter ``S_k`` and ``d_k = m_k - mu_k`` exactly. So the
  variational family reads the data once per iteration with the same kernels, on CPU and GPU.
- The data-dependent default priors (``mean_prior`` the data's mean, ``covariance_prior`` their
  covariance) are the pooled moments of any pass whose responsibilities sum to one per row
  (:func:`~daskgmm.model.statistics.pooled`): the initialisation pass supplies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import betaln, digamma, gammaln

from .params import (
    ExpectedGaussianParams,
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    log_det_cholesky,
    precisions_from_cholesky,
    responsibility_entropy,
)
from .statistics import SufficientStats, pooled

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


@dataclass(frozen=True)
class Priors:
    """The priors of a variational mixture (scikit-learn's ``*_prior_`` attributes).

    ``covariance_prior`` is ``(D, D)`` for full and tied, ``(D,)`` for diag, a scalar for spherical.
    """

    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray
    degrees_of_freedom_prior: float
    covariance_prior: np.ndarray


@dataclass(frozen=True)
class PriorSettings:
    """The priors as the user gave them: None where scikit-learn derives one from the data."""

    weight_concentration_prior_type: str = "dirichlet_process"
    weight_concentration_prior: float | None = None
    mean_precision_prior: float | None = None
    mean_prior: np.ndarray | None = None
    degrees_of_freedom_prior: float | None = None
    covariance_prior: np.ndarray | None = None

    def needs_data(self) -> bool:
        """Whether a prior comes from the data's moments."""
        return self.mean_prior is None or self.covariance_prior is None

    def resolve(self, stats: SufficientStats | None, n_components: int, n_features: int) -> Priors:
        """The priors, defaults filled in as scikit-learn fills them (``stats``: a pass whose
        responsibilities sum to one per row, needed only when :meth:`needs_data`)."""
        mean_prior, covariance_prior = self.mean_prior, self.covariance_prior
        if self.needs_data():
            mass, mean, scatter = pooled(stats)
            rows = stats.n_rows - stats.n_nonfinite
            # np.cov's ddof=1, in units of the average row weight (unit weights: n - 1), so
            # that the prior does not change when all weights are scaled alike
            covariance = scatter / (mass - mass / rows)
            if stats.covariance_type == "spherical":
                covariance = covariance / n_features
            mean_prior = mean if mean_prior is None else mean_prior
            covariance_prior = covariance if covariance_prior is None else covariance_prior
        return Priors(
            self.weight_concentration_prior_type,
            1.0 / n_components if self.weight_concentration_prior is None else float(self.weight_concentration_prior),
            1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior),
            np.asarray(mean_prior, dtype=np.float64),
            float(n_features) if self.degrees_of_freedom_prior is None else float(self.degrees_of_freedom_prior),
            np.asarray(covariance_prior, dtype=np.float64),
        )


@dataclass(frozen=True)
class VariationalParams:
    """The variational posterior of a Gaussian mixture, in scikit-learn's layout.

    Attributes
    ----------
    covariance_type : str
    weight_concentration : ndarray of shape (K,) or (2, K)
        Dirichlet parameters, or the Beta pairs of the stick-breaking weights ("dirichlet_process").
    mean_precision : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    degrees_of_freedom : ndarray of shape (K,), or () for tied covariances
    covariances, precisions_cholesky : ndarray
        As in :class:`~daskgmm.model.params.GaussianParams`.
    priors : Priors or None
        None only for a warm start, whose priors come from the data of its first pass.
    """

    covariance_type: str
    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    priors: Priors | None = None

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def weight_concentration_prior_type(self) -> str:
        return "dirichlet_process" if np.ndim(self.weight_concentration) == 2 else "dirichlet_distribution"

    @property
    def weights(self) -> np.ndarray:
        """The expected weights, normalised (scikit-learn's ``weights_``)."""
        concentration = self.weight_concentration
        if self.weight_concentration_prior_type == "dirichlet_process":
            total = concentration[0] + concentration[1]
            rest = concentration[1] / total
            weights = concentration[0] / total * np.hstack((1, np.cumprod(rest[:-1])))
            return weights / np.sum(weights)
        return concentration / np.sum(concentration)

    def precisions(self) -> np.ndarray:
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    def e_step(self) -> ExpectedGaussianParams:
        """The E-step as Gaussian log-densities with per-component terms (scikit-learn's
        ``_estimate_log_weights`` plus the Wishart and mean-precision terms of ``_estimate_log_prob``)."""
        n_features = self.n_features
        dof = self.degrees_of_freedom
        log_lambda = n_features * math.log(2.0) + np.sum(
            digamma(0.5 * (dof - np.arange(n_features)[:, None])), axis=0)
        terms = (expected_log_weights(self.weight_concentration, self.weight_concentration_prior_type)
                 + 0.5 * (log_lambda - n_features / self.mean_precision) - 0.5 * n_features * np.log(dof))
        return ExpectedGaussianParams(self.covariance_type, self.weights, self.means, self.covariances,
                                      self.precisions_cholesky, log_weight_terms=terms)

    def active_components(self, share=0.01) -> np.ndarray:
        """Components that hold at least ``share`` of an even share of the data's weight at the
        last iteration (their expected mass ``mean_precision - mean_precision_prior``)."""
        mass = self.mean_precision - self.priors.mean_precision_prior
        return np.flatnonzero(mass >= share * np.sum(mass) / self.n_components)

    def to_arrays(self) -> dict:
        """Named arrays, priors included (checkpoints)."""
        arrays = {name: np.asarray(getattr(self, name)) for name in VARIATIONAL_FIELDS}
        for name, value in vars(self.priors).items():
            arrays[f"prior_{name}"] = np.asarray(value)
        return arrays

    @classmethod
    def from_arrays(cls, covariance_type: str, arrays: dict) -> "VariationalParams":
        priors = Priors(**{name: arrays[f"prior_{name}"] for name in Priors.__dataclass_fields__})
        priors = replace(priors, weight_concentration_prior_type=str(priors.weight_concentration_prior_type),
                         **{name: float(getattr(priors, name)) for name in SCALAR_PRIORS})
        params = cls(covariance_type, *(arrays[name] for name in VARIATIONAL_FIELDS), priors=priors)
        k, d = params.means.shape
        if params.mean_precision.shape != (k,) or params.precisions_cholesky.shape != params.covariances.shape:
            raise ValueError(f"array shapes do not fit a {covariance_type} model of {k} components")
        return params


VARIATIONAL_FIELDS = ("weight_concentration", "mean_precision", "means", "degrees_of_freedom",
                      "covariances", "precisions_cholesky")
SCALAR_PRIORS = ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior")


def expected_log_weights(concentration, prior_type):
    """``E[log pi_k]`` under the Dirichlet (process) posterior."""
    if prior_type == "dirichlet_process":
        digamma_sum = digamma(concentration[0] + concentration[1])
        digamma_b = digamma(concentration[1])
        return (digamma(concentration[0]) - digamma_sum
                + np.hstack((0, np.cumsum(digamma_b - digamma_sum)[:-1])))
    return digamma(concentration) - digamma(np.sum(concentration))


def variational_m_step(stats: SufficientStats, priors: Priors, reg_covar: float,
                       data_dtype=np.float64) -> VariationalParams:
    """The variational M-step from merged statistics (scikit-learn's ``_m_step``, also its
    ``_initialize`` from the statistics of the initial responsibilities)."""
    mass, means, covariances = estimate_gaussian_parameters(stats, reg_covar, data_dtype)
    covariance_type = stats.covariance_type
    n_components, n_features = means.shape
    if priors.weight_concentration_prior_type == "dirichlet_process":
        concentration = np.stack((1.0 + mass, priors.weight_concentration_prior
                                  + np.hstack((np.cumsum(mass[::-1])[-2::-1], 0))))
    else:
        concentration = priors.weight_concentration_prior + mass
    beta0, mean0 = priors.mean_precision_prior, priors.mean_prior
    mean_precision = beta0 + mass
    new_means = (beta0 * mean0 + mass[:, None] * means) / mean_precision[:, None]
    diff = means - mean0
    if covariance_type == "full":
        dof = priors.degrees_of_freedom_prior + mass
        spread = (mass * beta0 / mean_precision)[:, None, None] * diff[:, :, None] * diff[:, None, :]
        wishart = priors.covariance_prior + mass[:, None, None] * covariances + spread
        wishart = wishart / dof[:, None, None]
    elif covariance_type == "tied":
        dof = np.float64(priors.degrees_of_freedom_prior + mass.sum() / n_components)
        wishart = (priors.covariance_prior + covariances * mass.sum() / n_components
                   + beta0 / n_components * ((mass / mean_precision) * diff.T) @ diff)
        wishart = wishart / dof
    elif covariance_type == "diag":
        dof = priors.degrees_of_freedom_prior + mass
        wishart = priors.covariance_prior + mass[:, None] * (
            covariances + (beta0 / mean_precision)[:, None] * diff**2)
        wishart = wishart / dof[:, None]
    else:
        dof = priors.degrees_of_freedom_prior + mass
        wishart = priors.covariance_prior + mass * (
            covariances + beta0 / mean_precision * np.mean(diff**2, axis=1))
        wishart = wishart / dof
    precisions_cholesky = compute_precision_cholesky(wishart, covariance_type, data_dtype)
    return VariationalParams(covariance_type, concentration, mean_precision, new_means, dof, wishart,
                             precisions_cholesky, priors)


def _log_wishart_norm(dof, log_det_precisions_cholesky, n_features):
    return -(dof * log_det_precisions_cholesky + dof * n_features * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(n_features)[:, None])), axis=0))


def lower_bound(stats: SufficientStats, e_step: ExpectedGaussianParams, new: VariationalParams) -> float:
    """scikit-learn's ``_compute_lower_bound``: the variational lower bound (up to a constant),
    a total over the rows, of the parameters ``new`` after the pass that produced ``stats``."""
    return lower_bound_from_entropy(responsibility_entropy(stats, e_step), new)


def lower_bound_from_entropy(entropy: float, new: VariationalParams) -> float:
    """The lower bound of ``new`` given the responsibilities' ``sum w r log r`` (``entropy``)."""
    n_features = new.n_features
    log_det = (log_det_cholesky(new.precisions_cholesky, new.covariance_type, n_features)
               - 0.5 * n_features * np.log(new.degrees_of_freedom))
    log_wishart = np.sum(_log_wishart_norm(new.degrees_of_freedom, log_det, n_features))
    if new.covariance_type == "tied":
        log_wishart = new.n_components * log_wishart
    concentration = new.weight_concentration
    if new.weight_concentration_prior_type == "dirichlet_process":
        log_norm_weight = -np.sum(betaln(concentration[0], concentration[1]))
    else:
        log_norm_weight = gammaln(np.sum(concentration)) - np.sum(gammaln(concentration))
    return float(-entropy - log_wishart - log_norm_weight
                 - 0.5 * n_features * np.sum(np.log(new.mean_precision)))
