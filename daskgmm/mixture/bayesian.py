"""The scikit-learn face of the variational mixture: ``daskgmm.BayesianGaussianMixture``.

It *is* a :class:`sklearn.mixture.BayesianGaussianMixture` (same constructor parameters,
validation, messages, attributes, ``sample``, ``get_params``) whose fitting and per-row
methods run on row-chunked Dask arrays through the same engine, kernels and statistics as
:class:`daskgmm.GaussianMixture` (:mod:`daskgmm.model.variational`): one read of the data per
iteration.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import BayesianGaussianMixture as _SklearnBayesianGaussianMixture

from ..em.families import VariationalFamily
from ..em.starts import DEFAULT_INIT_SAMPLE_SIZE, draw_starts, starting_statistics
from ..model.params import GaussianParams, check_representable
from ..model.records import DEFAULT_SPLIT_EVERY, FitResult
from ..model.validation import check_priors
from ..model.variational import Priors, PriorSettings, VariationalParams
from .dask_mixture import DASK_PARAMETER_CONSTRAINTS, DaskMixtureMixin


class BayesianGaussianMixture(DaskMixtureMixin, _SklearnBayesianGaussianMixture):
    """Variational Bayesian Gaussian mixture fitted on Dask arrays, larger than memory if need be.

    A drop-in replacement for :class:`sklearn.mixture.BayesianGaussianMixture`: the same
    parameters, defaults, attributes and methods, for NumPy arrays, array-likes, pandas
    DataFrames, Dask arrays and stored arrays. A Dirichlet-process (or Dirichlet) prior on the
    weights lets the fit switch off the components the data do not need: fit with a generous
    ``n_components`` and read :attr:`n_active_components_`. Each iteration reads every chunk of
    the data once (the variational E-step is a Gaussian log-density with other per-component
    terms; its lower bound comes from the same statistics as the M-step). The data-dependent
    default priors (``mean_prior``: the data's mean, ``covariance_prior``: their covariance)
    are taken in the initialisation's pass, not an extra one.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, \
weight_concentration_prior_type, weight_concentration_prior, mean_precision_prior, mean_prior, \
degrees_of_freedom_prior, covariance_prior, random_state, warm_start, verbose, verbose_interval
        As in :class:`sklearn.mixture.BayesianGaussianMixture`; the initialisations as in
        :class:`daskgmm.GaussianMixture`. ``sample_weight`` (which scikit-learn's estimator
        lacks) counts rows: a weight of 2 is a duplicated row, and the weights' total is the
        evidence the posterior weighs against the priors (weights of 1e-6 are almost no data).
        The default priors are the weighted mean and covariance, the covariance's ``ddof=1``
        counted in units of the average weight, so that they do not depend on the weights' scale.
    tol_per_row : bool, default=False
        scikit-learn's lower bound is a total over the rows, so ``tol=1e-3`` asks for a relative
        change of ~1e-12 on 10^9 rows (many more iterations than the fit needs, and in float32
        more than round-off allows). True judges convergence on the change of the lower bound
        per row (divided by the total sample weight), as ``GaussianMixture``'s mean
        log-likelihood is judged. ``lower_bound_`` stays the total either way. Components
        that the prior is still switching off change the bound little per row: a per-row
        tolerance can end the fit before they are gone (check ``n_active_components_``).
    chunk_rows, split_every, init_sample_size, persist, checkpoint, device, algorithm, waves, \
learning_decay, learning_offset, batch_size
        As in :class:`daskgmm.GaussianMixture` (``partial_fit`` too).

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, weight_concentration_, \
weight_concentration_prior_, mean_precision_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_, degrees_of_freedom_prior_, covariance_prior_, converged_, n_iter_, \
lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
        As in :class:`sklearn.mixture.BayesianGaussianMixture`; ``weights_``, ``means_``,
        ``covariances_`` and the precisions have the data's dtype.
    n_active_components_ : int
        Components that hold at least 1% of an even share (``1 / n_components``) of the data's
        weight at the last iteration: those the prior did not switch off.

    Examples
    --------
    >>> import numpy as np
    >>> from daskgmm import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(8, 1, (500, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=6, random_state=0).fit(X)
    >>> bgm.n_active_components_
    2
    """

    _parameter_constraints: dict = {
        **_SklearnBayesianGaussianMixture._parameter_constraints,
        **DASK_PARAMETER_CONSTRAINTS,
        "tol_per_row": ["boolean"],
    }
    _fit_settings = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                     "init_params", "init_sample_size", "weight_concentration_prior_type",
                     "weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior",
                     "tol_per_row", "algorithm", "waves")
    _fit_arrays = ("mean_prior", "covariance_prior")
    _model_arrays = ("weight_concentration_", "mean_precision_", "degrees_of_freedom_", "mean_prior_",
                     "covariance_prior_")
    _model_scalars = ("weight_concentration_prior_", "mean_precision_prior_", "degrees_of_freedom_prior_",
                      "n_active_components_")
    _bound_name = "lower bound"

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        tol_per_row=False,
        learning_decay=0.6,
        learning_offset=1.0,
        batch_size="auto",
        chunk_rows=None,
        split_every=DEFAULT_SPLIT_EVERY,
        init_sample_size=DEFAULT_INIT_SAMPLE_SIZE,
        persist="auto",
        checkpoint=None,
        device="cpu",
        algorithm="batch",
        waves="auto",
    ):
        super().__init__(
            n_components=n_components,
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weight_concentration_prior_type=weight_concentration_prior_type,
            weight_concentration_prior=weight_concentration_prior,
            mean_precision_prior=mean_precision_prior,
            mean_prior=mean_prior,
            degrees_of_freedom_prior=degrees_of_freedom_prior,
            covariance_prior=covariance_prior,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.tol_per_row = tol_per_row
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.batch_size = batch_size
        self.chunk_rows = chunk_rows
        self.split_every = split_every
        self.init_sample_size = init_sample_size
        self.persist = persist
        self.checkpoint = checkpoint
        self.device = device
        self.algorithm = algorithm
        self.waves = waves

    # ------------------------------------------------------------ the model's part of a fit
    def _check_model_arguments(self, n_features):
        mean_prior, degrees_of_freedom_prior, covariance_prior = check_priors(self, n_features)
        return PriorSettings(self.weight_concentration_prior_type, self.weight_concentration_prior,
                             self.mean_precision_prior, mean_prior, degrees_of_freedom_prior, covariance_prior)

    def _family(self, data, checked):
        return VariationalFamily(checked, self.reg_covar, data.dtype)

    def _starts(self, data, count, random_state, family, checked, samples):
        starts = draw_starts(data, count=count, n_components=self.n_components,
                             covariance_type=self.covariance_type, init_params=self.init_params,
                             random_state=random_state, sample_size=self.init_sample_size, samples=samples)
        stats, moments = starting_statistics(
            data, starts, [self.covariance_type] * count, [self.n_components] * count, self.split_every,
            moments_type=self.covariance_type if checked.needs_data() else None)
        priors = checked.resolve(moments, self.n_components, data.n_features)
        return [family.start(start_stats, priors) for start_stats in stats]

    def _convergence_tol(self, data):
        if not self.tol_per_row:
            return self.tol
        weight = data.n_samples if data.sample_weight is None else float(data.sample_weight.sum().compute())
        return self.tol * weight

    def _warm_start_params(self):
        # no priors: a warm start takes them from its data anew, as scikit-learn does
        return self._variational_params(priors=None)

    def _online_params(self):
        priors = Priors(self.weight_concentration_prior_type, self.weight_concentration_prior_,
                        self.mean_precision_prior_, np.asarray(self.mean_prior_, dtype=np.float64),
                        self.degrees_of_freedom_prior_, np.asarray(self.covariance_prior_, dtype=np.float64))
        return self._variational_params(priors=priors)

    def _per_row_params(self):
        return self._variational_params(priors=None).e_step()

    def _variational_params(self, priors):
        return VariationalParams(
            self.covariance_type, np.asarray(self.weight_concentration_, dtype=np.float64),
            np.asarray(self.mean_precision_, dtype=np.float64), np.asarray(self.means_, dtype=np.float64),
            np.asarray(self.degrees_of_freedom_, dtype=np.float64),
            np.asarray(self.covariances_, dtype=np.float64),
            np.asarray(self.precisions_cholesky_, dtype=np.float64), priors)

    def _restore(self):
        """The attributes a model file holds in another form (scikit-learn's types)."""
        if self.weight_concentration_prior_type == "dirichlet_process":
            self.weight_concentration_ = tuple(np.asarray(self.weight_concentration_))
        if self.covariance_type == "spherical":
            self.covariance_prior_ = float(self.covariance_prior_)
        if self.covariance_type == "tied":
            self.degrees_of_freedom_ = np.float64(self.degrees_of_freedom_)

    def _store(self, result: FitResult, dtype):
        params = result.params
        gaussian = GaussianParams(params.covariance_type, params.weights, params.means, params.covariances,
                                  params.precisions_cholesky)
        stored = gaussian.astype(dtype)
        check_representable(gaussian, stored)
        concentration = params.weight_concentration
        self.weight_concentration_ = (tuple(concentration) if np.ndim(concentration) == 2 else concentration)
        self.mean_precision_ = params.mean_precision
        self.degrees_of_freedom_ = params.degrees_of_freedom
        self.weights_ = stored.weights
        self.means_ = stored.means
        self.covariances_ = stored.covariances
        self.precisions_cholesky_ = stored.precisions_cholesky
        self.precisions_ = stored.precisions()
        priors = params.priors
        self.weight_concentration_prior_ = priors.weight_concentration_prior
        self.mean_precision_prior_ = priors.mean_precision_prior
        self.mean_prior_ = priors.mean_prior
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom_prior
        self.covariance_prior_ = (float(priors.covariance_prior) if self.covariance_type == "spherical"
                                  else priors.covariance_prior)
        self.n_active_components_ = int(len(params.active_components()))
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)
