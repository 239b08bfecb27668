"""The scikit-learn face: ``daskgmm.GaussianMixture``.

It *is* a :class:`sklearn.mixture.GaussianMixture` (same constructor
parameters, validation, messages, attributes, ``sample``, ``get_params``),
whose fitting and per-row methods run on row-chunked Dask arrays through
:mod:`daskgmm.em.loop`: one read of the data per EM iteration, responsibilities
never leaving a chunk.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture as _SklearnGaussianMixture
from sklearn.utils._param_validation import StrOptions

from ..em.families import GaussianFamily
from ..em.starts import DEFAULT_INIT_SAMPLE_SIZE, initial_parameters
from ..kernels.chunk import RANDOM_WITH_MISSING
from ..model.params import GaussianParams, check_representable, information_criteria, n_parameters
from ..model.records import DEFAULT_SPLIT_EVERY, FitResult
from ..model.validation import check_init_arrays
from .dask_mixture import DASK_PARAMETER_CONSTRAINTS, DaskMixtureMixin


class GaussianMixture(DaskMixtureMixin, _SklearnGaussianMixture):
    """Gaussian mixture model fitted by EM on Dask arrays, larger than memory if need be.

    A drop-in replacement for :class:`sklearn.mixture.GaussianMixture`: the same
    parameters, defaults, attributes and methods, for NumPy arrays, array-likes,
    pandas DataFrames and Dask arrays. Each EM iteration reads every chunk of
    the data once; per-chunk statistics are tree-reduced and the M-step runs
    on the driver. Works with whichever Dask scheduler is active (threads,
    synchronous, or a ``distributed.Client``).

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, \
weights_init, means_init, precisions_init, random_state, warm_start, verbose, \
verbose_interval
        As in :class:`sklearn.mixture.GaussianMixture`. Differences: 'kmeans'
        and 'k-means++' run on a uniform sample of at most ``init_sample_size``
        rows (identical to scikit-learn when the data have no more rows than
        that); 'random' draws responsibilities from a generator keyed by row
        index, so its start differs from scikit-learn's for the same seed.
    chunk_rows : int or None, default=None
        Rows per chunk. For in-memory input, ``None`` picks about 128 MiB per
        chunk and at least two chunks per core; for Dask input, ``None`` keeps
        the input's row chunks and an integer rechunks to it.
    split_every : int, default=16
        Fan-in of the tree that merges per-chunk statistics.
    init_sample_size : int, default=100000
        Most rows that 'kmeans' and 'k-means++' initialisation look at.
    persist : {"auto", True, False}, default="auto"
        For Dask input: keep the data in (cluster) memory for the fit, read
        once, or re-read them from storage in every pass with flat memory.
        "auto" keeps them when they take at most half the memory there is
        (the workers' summed limits, or the memory available locally).
    checkpoint : str or path, optional
        A directory where the state of the fit is written, atomically, after
        every iteration. A fit started with an existing checkpoint resumes
        from its last completed iteration (after a crash, a KeyboardInterrupt
        or a lost scheduler) and ends with the parameters an uninterrupted fit
        would have. A checkpoint from other data or settings is refused.
    reseed_collapsed : bool, default=False
        False (scikit-learn's behaviour): a component whose covariance is not
        positive definite stops the fit with the "ill-defined empirical
        covariance" error. True: a component that lost its points (less mass
        than an average row) or became singular is re-seeded at one of the
        rows the mixture explains worst, with the healthy components' pooled
        covariance, and the fit goes on; a ``CollapsedComponentWarning`` says
        which and when. (Tied covariances cannot be re-seeded per component.)
    device : {"cpu", "cuda"}, default="cpu"
        Where the EM passes and ``predict``/``predict_proba``/``score_samples``
        compute. "cuda" needs CuPy and a CUDA GPU (on every worker of a
        cluster): each chunk is copied to the GPU, its statistics computed
        there in the data's dtype with exactly centred scatters, and only the
        statistics come back, so data still stream from any source and never
        need to fit in GPU memory. Initialisation ('kmeans' etc.) runs on the
        CPU.
    algorithm : {"batch", "coarse-to-fine", "incremental"}, default="batch"
        How EM passes over the data. "batch": scikit-learn's EM, one full pass and one M-step
        per iteration. "coarse-to-fine": EM first runs on the initialisation's sample
        (``init_sample_size`` rows, in memory, no reads of the data) until it converges, then
        batch EM on all rows goes on from there, so the full passes only refine (data of at most
        ``init_sample_size`` rows fit as in "batch"). "incremental": incremental EM (Neal &
        Hinton, 1998), the chunks in ``waves`` groups with an exact M-step after each, the other
        groups' statistics kept from their last visit; ``lower_bound_`` is then its free energy
        per row (at most the mean log-likelihood, equal at convergence), which never decreases.
        ``n_iter_`` counts full passes in every mode. See docs/guide.md for measurements.
    waves : "auto" or int >= 2, default="auto"
        Groups of chunks per pass for "incremental" ("auto": about as many chunks per group as
        threads run tasks, 2 to 16 groups).
    learning_decay : float in [0, 1], default=0.6
        :meth:`partial_fit`'s step sizes ``(learning_offset + t) ** -learning_decay``: with
        0 every step replaces the statistics (one EM step per batch, following a drifting
        stream closely); Cappé & Moulines' convergence needs (0.5, 1].
    learning_offset : float >= 0, default=1.0
        Delays the decay of the step sizes (larger: early batches count less).
    batch_size : "auto", int or None, default="auto"
        Rows per :meth:`partial_fit` step: a chunk (or a NumPy ``X``) of more rows makes several
        steps, still read once. None: one step per chunk, or per NumPy ``X`` (the caller's
        batch, as in ``MiniBatchKMeans.partial_fit``). "auto": about 1000 steps per call of at
        least 256 rows each, whatever the input: a Dask or stored ``X`` read once in 1000 steps,
        a NumPy batch of 20k rows in 78. That is what one epoch needs to land near batch EM on
        rows in random order, whether it comes as one array or as a loop over batches
        (docs/guide.md).
    missing : {"raise", "em"}, default="raise"
        What a NaN in ``X`` means. "raise" (scikit-learn's behaviour): an error, naming the
        first row with one. "em": a missing value, and EM uses every observed number (exact EM
        when values are missing at random): the E-step scores each row under each component's
        marginal Gaussian of the row's observed coordinates, the M-step completes the missing
        coordinates by their conditional expectations and adds their conditional covariance.
        ``predict``, ``predict_proba``, ``score_samples``, ``score``, ``bic`` and ``aic`` then
        take rows with NaN too (the marginal density of their observed values). Infinity, and a
        row with no observed value, are errors. Initialisation ('kmeans', 'k-means++',
        'random_from_data') looks at the sample with each missing value filled by its column's
        observed mean; the k-means assignment pass then sends each row to the nearest centre
        over its observed coordinates and takes its missing ones from that centre ('random' is
        refused). CPU only; rows without NaN cost what they cost without this option.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, \
converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
        As in :class:`sklearn.mixture.GaussianMixture`; arrays have the data's
        dtype (float32 for float32 data).

    Examples
    --------
    >>> import dask.array as da
    >>> from daskgmm import GaussianMixture
    >>> X = da.random.default_rng(0).normal(size=(10_000, 2), chunks=(2_500, 2))
    >>> gmm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gmm.means_.shape
    (2, 2)
    >>> gmm.predict(X)  # lazy, with X's row chunks
    dask.array<...>
    """

    _parameter_constraints: dict = {
        **_SklearnGaussianMixture._parameter_constraints,
        **DASK_PARAMETER_CONSTRAINTS,
        "reseed_collapsed": ["boolean"],
        "missing": [StrOptions({"raise", "em"})],
    }
    # what a checkpoint's fingerprint holds (settings that change the fit)
    _fit_settings = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                     "init_params", "init_sample_size", "reseed_collapsed", "algorithm", "waves", "missing")
    _fit_arrays = ("weights_init", "means_init", "precisions_init")
    # a model file's arrays and scalars beyond the Gaussian ones (model_io.ARRAYS, SCALARS)
    _model_arrays = ()
    _model_scalars = ()

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_decay=0.6,
        learning_offset=1.0,
        batch_size="auto",
        chunk_rows=None,
        split_every=DEFAULT_SPLIT_EVERY,
        init_sample_size=DEFAULT_INIT_SAMPLE_SIZE,
        persist="auto",
        checkpoint=None,
        reseed_collapsed=False,
        device="cpu",
        algorithm="batch",
        waves="auto",
        missing="raise",
    ):
        super().__init__(
            n_components=n_components,
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.batch_size = batch_size
        self.chunk_rows = chunk_rows
        self.split_every = split_every
        self.init_sample_size = init_sample_size
        self.persist = persist
        self.checkpoint = checkpoint
        self.reseed_collapsed = reseed_collapsed
        self.device = device
        self.algorithm = algorithm
        self.waves = waves
        self.missing = missing

    @property
    def _handles_missing(self):
        return self.missing == "em"

    # ------------------------------------------------------------ the model's part of a fit
    def _check_model_arguments(self, n_features):
        if self._handles_missing and self.init_params == "random":
            raise ValueError(RANDOM_WITH_MISSING)
        return check_init_arrays(self.weights_init, self.means_init, self.precisions_init, self.covariance_type,
                                 self.n_components, n_features)

    def _family(self, data, checked):
        return GaussianFamily(self.reg_covar, data.dtype, reseed=self.reseed_collapsed)

    def _starts(self, data, count, random_state, family, checked, samples):
        weights_init, means_init, precisions_init = checked
        return initial_parameters(
            data,
            count=count,
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            init_params=self.init_params,
            reg_covar=self.reg_covar,
            random_state=random_state,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            sample_size=self.init_sample_size,
            split_every=self.split_every,
            samples=samples,
        )

    def _warm_start_params(self):
        return self._fitted_params()

    def _per_row_params(self):
        return self._fitted_params()

    def _online_params(self):
        return self._fitted_params()

    def _store(self, result: FitResult, dtype):
        params = result.params.astype(dtype)
        check_representable(result.params, params)
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions()
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)

    def _restore(self):
        """Nothing to derive after loading beyond the precisions."""

    def _fitted_params(self) -> GaussianParams:
        return GaussianParams(
            self.covariance_type,
            self.weights_,
            self.means_,
            self.covariances_,
            self.precisions_cholesky_,
        ).astype(np.float64)

    def _n_parameters(self):
        """Free parameters of the model (for BIC/AIC), as scikit-learn counts them."""
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion on ``X`` (lower is better), a float.

        With ``sample_weight``, a row of weight 2 counts as two rows (the
        reading of weights everywhere in daskgmm): the log-likelihood is
        weighted and the number of samples is the total weight.
        """
        return information_criteria(*self._mean_log_likelihood(X, sample_weight), self._n_parameters())[0]

    def aic(self, X, sample_weight=None):
        """Akaike information criterion on ``X`` (lower is better), a float; weights as in :meth:`bic`."""
        return information_criteria(*self._mean_log_likelihood(X, sample_weight), self._n_parameters())[1]
