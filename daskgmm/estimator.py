"""The scikit-learn face: ``daskgmm.GaussianMixture``.

It *is* a :class:`sklearn.mixture.GaussianMixture` (same constructor
parameters, validation, messages, attributes, ``sample``, ``get_params``),
whose fitting and per-row methods run on row-chunked Dask arrays through
:mod:`daskgmm.engine`: one read of the data per EM iteration, responsibilities
never leaving a chunk.
"""

from __future__ import annotations

import os
import warnings
from numbers import Integral

import dask
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SklearnGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .data import RowData, as_dask_rows, as_sample_weight, feature_names
from .engine import DEFAULT_SPLIT_EVERY, FitResult, fit_mixture, per_row_pass
from .family import GaussianFamily
from .init import DEFAULT_INIT_SAMPLE_SIZE, initial_parameters
from .model_io import checkpoint_for, save_model
from .outputs import check_output
from .params import GaussianParams, check_representable, information_criteria, n_parameters
from .reporting import Reporters, TextProgress, VerbosePrinter
from .runtime import blas_threads_for, check_worker_memory, worker_deaths_explained
from .validation import check_init_arrays


class GaussianMixture(_SklearnGaussianMixture):
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
        "chunk_rows": [Interval(Integral, 1, None, closed="left"), None],
        "split_every": [Interval(Integral, 2, None, closed="left")],
        "init_sample_size": [Interval(Integral, 1, None, closed="left")],
        "persist": [StrOptions({"auto"}), "boolean"],
        "checkpoint": [str, os.PathLike, None],
        "reseed_collapsed": ["boolean"],
        "device": [StrOptions({"cpu", "cuda"})],
    }

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
        chunk_rows=None,
        split_every=DEFAULT_SPLIT_EVERY,
        init_sample_size=DEFAULT_INIT_SAMPLE_SIZE,
        persist="auto",
        checkpoint=None,
        reseed_collapsed=False,
        device="cpu",
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
        self.chunk_rows = chunk_rows
        self.split_every = split_every
        self.init_sample_size = init_sample_size
        self.persist = persist
        self.checkpoint = checkpoint
        self.reseed_collapsed = reseed_collapsed
        self.device = device

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None, *, progress=None):
        """Estimate model parameters with the EM algorithm.

        Fits ``n_init`` times (once, continuing, with ``warm_start``) and keeps
        the run with the largest final lower bound. Each iteration reads the
        data once. A failed fit leaves the estimator as it was.

        Parameters
        ----------
        X : array-like, DataFrame, dask array, zarr array, xarray DataArray or path
            of shape (n_samples, n_features). Rows are samples. Dask arrays may
            have any row chunking; split columns are rechunked to whole rows
            once. A path (Zarr, HDF5, .npy, Parquet, CSV) is opened with
            :func:`daskgmm.open_array`.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,), optional
            Non-negative per-row weights: every statistic is weighted, weight 2
            is the same as a duplicated row, unit weights the same as none.
        progress : bool or object, optional
            True prints one line per EM pass (mean log-likelihood, its
            change against ``tol``, the pass's time), in a terminal or a
            notebook. An object receives ``init_begin(i)``,
            ``iteration_end(i, n_iter, change, lower_bound)``,
            ``init_end(i, lower_bound, converged)`` (``i`` numbers the
            starts; they advance together), ``pass_end(seconds)`` and
            ``chunks_done(done, total)`` within a pass; methods it lacks are
            skipped.

        Returns
        -------
        self : GaussianMixture
        """
        self._fit(X, sample_weight, progress)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the most probable component of each row.

        The labels are computed with the final parameters, so they equal
        ``fit(X).predict(X)``. Lazy (a dask array) for Dask input.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,)
        """
        data = self._fit(X, sample_weight)
        return self._map_rows(data.X, data.in_memory, "label")

    def _fit(self, X, sample_weight, progress=None) -> RowData:
        with worker_deaths_explained() as known:
            return self._fit_explained(X, sample_weight, progress, known)

    def _fit_explained(self, X, sample_weight, progress, known) -> RowData:
        self._validate_params()
        self._check_device()
        X_rows, in_memory, names = self._open_rows(X, ensure_min_samples=2)
        known["chunk_bytes"] = max(X_rows.chunks[0]) * X_rows.shape[1] * X_rows.dtype.itemsize
        check_worker_memory(known["chunk_bytes"])
        n_samples, n_features = X_rows.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )
        weights_init, means_init, precisions_init = check_init_arrays(
            self.weights_init, self.means_init, self.precisions_init, self.covariance_type,
            self.n_components, n_features)
        data = RowData(X_rows, as_sample_weight(sample_weight, X_rows), in_memory)

        warm_start = None
        if self.warm_start and hasattr(self, "converged_"):
            warm_start = FitResult(self._fitted_params(), self.lower_bound_)
            if warm_start.params.n_features != n_features:
                raise ValueError(
                    f"X has {n_features} features, but the warm start is from a model of "
                    f"{warm_start.params.n_features} features. Fit X with warm_start=False."
                )
        random_state = check_random_state(self.random_state)
        n_starts = 1 if warm_start else self.n_init
        if progress is True:
            progress = TextProgress(self.tol, n_starts)

        def initialise(placed_data, count):
            return initial_parameters(
                placed_data,
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
            )

        result = fit_mixture(
            data,
            initialise,
            n_init=self.n_init,
            tol=self.tol,
            max_iter=self.max_iter,
            family=GaussianFamily(self.reg_covar, data.dtype, reseed=self.reseed_collapsed),
            warm_start=warm_start,
            split_every=self.split_every,
            persist=self.persist,
            reporter=Reporters(VerbosePrinter(self.verbose, self.verbose_interval, n_starts), progress),
            checkpoint=checkpoint_for(self, data, warm_start),
            device=self.device,
        )
        if not result.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
            )
        # Only now, with the fit complete, does the estimator change.
        self._check_features(X_rows, names, reset=True)
        self._store(result, data.dtype)
        return data


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

    def _fitted_params(self) -> GaussianParams:
        return GaussianParams(
            self.covariance_type,
            self.weights_,
            self.means_,
            self.covariances_,
            self.precisions_cholesky_,
        ).astype(np.float64)

    def save(self, path, *, overwrite=False):
        """Write the fitted model to directory ``path`` (JSON + NPZ, no pickle).

        Read it back with :func:`daskgmm.load`; loading runs no code from the
        file. ``path`` may be new or an empty directory; a model saved there
        before is replaced (atomically) only with ``overwrite=True``, and
        anything else that is there is never replaced (``OutputError``).
        """
        check_is_fitted(self)
        check_output(path, "model", overwrite=overwrite)
        save_model(self, path)

    # ------------------------------------------------------------ per-row output
    def _open_rows(self, X, ensure_min_samples=1):
        """``(rows, in_memory, feature names)`` of any input ``fit`` accepts: array-likes,
        DataFrames (pandas or Dask), Dask arrays, stored arrays and paths, all opened alike."""
        names = feature_names(X)
        rows, in_memory = as_dask_rows(X, chunk_rows=self.chunk_rows, ensure_min_samples=ensure_min_samples,
                                       default_rows=self._default_chunk_rows())
        return rows, in_memory, names

    def _check_features(self, rows, names, *, reset):
        """scikit-learn's checks (and, with ``reset``, attributes) of the number and names of
        features, through its public ``validate_data`` (the rows themselves are checked chunk
        by chunk, never gathered here)."""
        if names is not None:
            import pandas as pd  # a DataFrame was given, so pandas is there

            rows = pd.DataFrame(columns=names)  # names and count of the columns: all that is checked
        validate_data(self, rows, reset=reset, skip_check_array=True)

    def _n_parameters(self):
        """Free parameters of the model (for BIC/AIC), as scikit-learn counts them."""
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def _rows_for_prediction(self, X):
        check_is_fitted(self)
        rows, in_memory, names = self._open_rows(X)
        self._check_features(rows, names, reset=False)
        return rows, in_memory

    def _default_chunk_rows(self):
        """Chunking of in-memory input: larger chunks for the GPU (see :mod:`daskgmm.gpu`)."""
        if self.device == "cuda":
            from . import gpu

            return gpu.default_chunk_rows
        return None

    def _check_device(self):
        """A clear error before any work when ``device="cuda"`` cannot run here."""
        if self.device == "cuda":
            from . import gpu

            gpu.cupy_or_error()

    def _map_rows(self, X_rows, in_memory, output):
        """Every row's ``output`` ("label", "proba", "log_norm") through the engine
        (:func:`~daskgmm.engine.per_row_pass`): lazy for Dask input, computed at once for
        in-memory input, on the estimator's device.

        Rows are computed in the wider of their dtype and the model's, as
        scikit-learn does: a float64 model scores float32 data in float64.
        """
        self._check_device()
        X_rows = X_rows.astype(np.result_type(X_rows.dtype, self.means_.dtype), copy=False)
        out = per_row_pass(X_rows, self._fitted_params(), output, self.device)
        if not in_memory:
            return out
        with blas_threads_for(X_rows.numblocks[0]):
            return out.compute()

    def predict(self, X):
        """Most probable component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), or a lazy dask array with X's
            row chunks for Dask input.
        """
        return self._map_rows(*self._rows_for_prediction(X), "label")

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), or a lazy dask array.
        """
        return self._map_rows(*self._rows_for_prediction(X), "proba")

    def score_samples(self, X):
        """Log-likelihood of each row under the model.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or a lazy dask array.
        """
        return self._map_rows(*self._rows_for_prediction(X), "log_norm")

    def score(self, X, y=None):
        """Mean per-row log-likelihood of ``X`` (a float, computed in one pass)."""
        return self._mean_log_likelihood(X)[0]

    def _mean_log_likelihood(self, X, sample_weight=None):
        """``(weighted mean log-likelihood, total weight)`` of ``X``, in one pass."""
        rows, _ = self._rows_for_prediction(X)
        scores = self._map_rows(rows, False, "log_norm")  # lazy: summed in the same pass
        weights = as_sample_weight(sample_weight, rows)
        if weights is None:
            total, weight_sum = scores.sum(dtype=np.float64), rows.shape[0]
        else:
            total, weight_sum = (scores * weights).sum(dtype=np.float64), weights.sum()
        with blas_threads_for(rows.numblocks[0]):
            total, weight_sum = dask.compute(total, weight_sum)
        return float(total / weight_sum), float(weight_sum)

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
