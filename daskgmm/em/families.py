"""Model families: what the EM loop (:func:`daskgmm.em.loop.advance_runs`) asks of a model.

The loop knows runs, passes and convergence; a family knows its parameters. Per pass, the loop
asks the family for each run's E-step (an *assigner*: the per-component log-density the chunk
kernel evaluates, offsets included) and how many worst-explained rows to keep; after the pass,
for the new parameters (the M-step) and the lower bound of the iteration. A family also counts
its free parameters (BIC/AIC).

:class:`GaussianFamily` is scikit-learn's ``GaussianMixture`` (maximum likelihood).
:class:`VariationalFamily` is its ``BayesianGaussianMixture``: it consumes the same chunk
statistics, its E-step is the Gaussian log-density with other per-component terms (run by the
same kernels), its M-step and bound use the priors.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np

from ..kernels.chunk import GaussianAssigner
from ..model.params import (
    CollapsedComponentWarning,
    GaussianParams,
    expected_log_density,
    m_step,
    n_parameters,
    reseed_collapsed,
    responsibility_entropy,
)
from ..model.statistics import SufficientStats
from ..model.variational import Priors, PriorSettings, VariationalParams, lower_bound_from_entropy, variational_m_step
from ..model.variational import lower_bound as variational_lower_bound


class ModelFamily(Protocol):
    """What a model family supplies to the EM loop (parameters are the family's own type,
    with ``covariance_type`` and ``n_components``)."""

    def assigner(self, params):
        """The E-step of ``params`` for the chunk kernel (``log_prob(block)`` per row and component)."""

    def rows_to_track(self, params) -> int:
        """How many worst-explained rows a pass keeps for this run (0: none)."""

    def m_step(self, stats: SufficientStats, params, n_iter: int):
        """New parameters from the pass's merged statistics; ValueError when there are none."""

    def lower_bound(self, stats: SufficientStats, params, new_params) -> float:
        """The iteration's lower bound (what convergence is judged on), from the pass's
        statistics under ``params`` and the parameters ``new_params`` of its M-step."""

    def n_parameters(self, params) -> int:
        """Free parameters, for BIC/AIC."""

    def entropy(self, stats: SufficientStats, params) -> float:
        """``sum_n w_n sum_k r_nk log r_nk`` of the pass that produced ``stats`` under ``params``."""

    def bound_from_entropy(self, stats: SufficientStats, entropy: float, new_params) -> float:
        """The bound of incremental EM's cycle: of ``new_params`` (the M-step of ``stats``) and the
        responsibilities behind ``stats``, whose ``sum w r log r`` is ``entropy``; it never
        decreases from one partial E-step or M-step to the next."""


class GaussianFamily:
    """Gaussian mixtures fitted by maximum likelihood, as scikit-learn's ``GaussianMixture``.

    Parameters
    ----------
    reg_covar : float
        Added to the diagonal of every covariance.
    data_dtype : dtype
        The data's dtype (scikit-learn's ``10 * eps`` guard, float32 hints in errors).
    reseed : bool
        Components that collapse are re-seeded at the worst-explained rows of the pass (with a
        :class:`~daskgmm.model.params.CollapsedComponentWarning`) instead of ending the run.
    """

    def __init__(self, reg_covar: float, data_dtype=np.float64, reseed: bool = False):
        self.reg_covar, self.data_dtype, self.reseed = reg_covar, np.dtype(data_dtype), reseed

    def assigner(self, params: GaussianParams) -> GaussianAssigner:
        return GaussianAssigner(params)

    def rows_to_track(self, params: GaussianParams) -> int:
        return params.n_components if self.reseed else 0

    def m_step(self, stats: SufficientStats, params: GaussianParams, n_iter: int) -> GaussianParams:
        if self.reseed:
            stats, reseeded = reseed_collapsed(stats, self.reg_covar, self.data_dtype)
            if reseeded:
                warnings.warn(
                    f"Component(s) {reseeded} lost their points or became singular at iteration "
                    f"{n_iter}; re-seeded at the worst-explained rows of that pass.",
                    CollapsedComponentWarning,
                )
        return m_step(stats, self.reg_covar, self.data_dtype)

    def lower_bound(self, stats: SufficientStats, params: GaussianParams, new_params: GaussianParams) -> float:
        # the mean log-likelihood of the parameters the pass ran with, as scikit-learn records it
        return stats.log_likelihood / stats.weight_sum

    def n_parameters(self, params: GaussianParams) -> int:
        return n_parameters(params.n_components, params.n_features, params.covariance_type)

    def entropy(self, stats: SufficientStats, params: GaussianParams) -> float:
        return responsibility_entropy(stats, params)

    def bound_from_entropy(self, stats: SufficientStats, entropy: float, new_params: GaussianParams) -> float:
        # Neal & Hinton's free energy per row: the expected complete-data log-likelihood plus the
        # responsibilities' entropy; equal to the mean log-likelihood once they agree with the params
        return (expected_log_density(stats, new_params) - entropy) / stats.weight_sum


class VariationalFamily:
    """Variational Gaussian mixtures, as scikit-learn's ``BayesianGaussianMixture``
    (:mod:`daskgmm.model.variational`): the same chunk statistics and kernels, other E-step terms,
    M-step and bound.

    Parameters
    ----------
    prior_settings : PriorSettings
        The priors as given (data-derived ones are filled in from a pass: see :meth:`m_step`).
    reg_covar : float
    data_dtype : dtype
    """

    def __init__(self, prior_settings: PriorSettings, reg_covar: float, data_dtype=np.float64):
        self.prior_settings, self.reg_covar, self.data_dtype = prior_settings, reg_covar, np.dtype(data_dtype)

    def start(self, stats: SufficientStats, priors: Priors) -> VariationalParams:
        """Starting parameters from the statistics of initial responsibilities (scikit-learn's
        ``_initialize``)."""
        return variational_m_step(stats, priors, self.reg_covar, self.data_dtype)

    def assigner(self, params: VariationalParams) -> GaussianAssigner:
        return GaussianAssigner(params.e_step())

    def rows_to_track(self, params: VariationalParams) -> int:
        return 0

    def m_step(self, stats: SufficientStats, params: VariationalParams, n_iter: int) -> VariationalParams:
        priors = params.priors
        if priors is None:  # a warm start: scikit-learn takes the priors from the data anew
            priors = self.prior_settings.resolve(stats, params.n_components, params.n_features)
        return variational_m_step(stats, priors, self.reg_covar, self.data_dtype)

    def lower_bound(self, stats: SufficientStats, params: VariationalParams,
                    new_params: VariationalParams) -> float:
        return variational_lower_bound(stats, params.e_step(), new_params)

    def n_parameters(self, params: VariationalParams) -> int:
        return n_parameters(params.n_components, params.n_features, params.covariance_type)

    def entropy(self, stats: SufficientStats, params: VariationalParams) -> float:
        return responsibility_entropy(stats, params.e_step())

    def bound_from_entropy(self, stats: SufficientStats, entropy: float, new_params: VariationalParams) -> float:
        return lower_bound_from_entropy(entropy, new_params)
