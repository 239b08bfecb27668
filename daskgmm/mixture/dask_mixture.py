"""What daskgmm's estimators share: fitting through the engine, per-row outputs, files.

:class:`DaskMixtureMixin` sits in front of a scikit-learn mixture estimator
(``GaussianMixture``, ``BayesianGaussianMixture``): the subclass is the scikit-learn class
(constructor, validation, messages, ``sample``, ``get_params``), the mixin replaces fitting
and every per-row method with passes over row-chunked Dask arrays (:mod:`daskgmm.em.loop`).
A model names its own part through a few hooks: its arguments' checks, its model family, its
starts, what a warm start continues from, how a fit is stored and which parameters the
per-row methods evaluate.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from numbers import Integral, Real

import dask
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..em.checkpoints import checkpoint_for
from ..em.loop import Run, advance_runs, fit_mixture
from ..em.passes import per_row_pass, statistics_kernel
from ..em.progress import NotebookProgress, Reporters, TextProgress, VerbosePrinter, in_notebook
from ..em.starts import draw_sample
from ..io.inputs import RowData, as_dask_rows, as_sample_weight, describe_input, feature_names
from ..io.outputs import check_output
from ..kernels.chunk import COMPILED_TYPES
from ..kernels.online import OnlineState, online_steps
from ..model.records import FitResult
from ..runtime.resources import blas_threads_for, check_worker_memory, total_threads, worker_deaths_explained
from .model_files import save_model

# daskgmm's own constructor parameters, shared by its estimators (documented on each)
DASK_PARAMETER_CONSTRAINTS = {
    "chunk_rows": [Interval(Integral, 1, None, closed="left"), None],
    "split_every": [Interval(Integral, 2, None, closed="left")],
    "init_sample_size": [Interval(Integral, 1, None, closed="left")],
    "persist": [StrOptions({"auto"}), "boolean"],
    "checkpoint": [str, os.PathLike, None],
    "device": [StrOptions({"cpu", "cuda"})],
    "algorithm": [StrOptions({"batch", "coarse-to-fine", "incremental"})],
    "waves": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
    "learning_decay": [Interval(Real, 0, 1, closed="both")],
    "learning_offset": [Interval(Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
}
# incremental EM's waves per pass when "auto": about one task per thread in each wave, within these
AUTO_WAVES = (2, 16)
# partial_fit's steps when batch_size="auto": about this many per call, of at least this many rows.
# Measured (benchmarks/passes.py): one epoch of online EM lands near batch EM with hundreds of
# steps, and a step of fewer rows costs more in overhead than it gains.
AUTO_STEPS, AUTO_MIN_STEP_ROWS = 1000, 256


class DaskMixtureMixin:
    """Fitting and per-row methods on Dask arrays for a scikit-learn mixture estimator.

    Hooks a model supplies: ``_check_model_arguments(n_features)``, ``_family(data,
    checked)``, ``_starts(data, count, random_state, family, checked, samples)``,
    ``_warm_start_params()``, ``_online_params()`` (what ``partial_fit`` goes on from),
    ``_convergence_tol(data)``, ``_store(result, dtype)``, ``_restore()``, ``_per_row_params()``;
    and the class attributes ``_fit_settings``/``_fit_arrays`` (what a checkpoint's fingerprint
    holds), ``_model_arrays``/``_model_scalars`` (what a model file holds) and ``_bound_name``
    (how progress names the bound).
    """

    _bound_name = "mean log-likelihood"
    # whether NaN marks a missing value (GaussianMixture's ``missing="em"``) rather than an error
    _handles_missing = False

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
            True shows the progress of the fit: in a terminal one line per EM
            pass (the lower bound, its change against ``tol``, the pass's time);
            in a Jupyter notebook the same in one cell, updated in place, with a
            bar of the chunks done within the running pass.
            An object receives ``init_begin(i)``,
            ``iteration_end(i, n_iter, change, lower_bound)``,
            ``init_end(i, lower_bound, converged)`` (``i`` numbers the
            starts; they advance together), ``pass_end(seconds)`` and
            ``chunks_done(done, total)`` within a pass; methods it lacks are
            skipped.

        Returns
        -------
        self : estimator
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
        check_worker_memory(known["chunk_bytes"], self.covariance_type in COMPILED_TYPES)
        n_samples, n_features = X_rows.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )
        checked = self._check_model_arguments(n_features)
        data = RowData(X_rows, as_sample_weight(sample_weight, X_rows), in_memory, missing=self._handles_missing)

        warm_start = None
        if self.warm_start and hasattr(self, "converged_"):
            warm_start = FitResult(self._warm_start_params(), self.lower_bound_)
            if warm_start.params.n_features != n_features:
                raise ValueError(
                    f"X has {n_features} features, but the warm start is from a model of "
                    f"{warm_start.params.n_features} features. Fit X with warm_start=False."
                )
        random_state = check_random_state(self.random_state)
        n_starts = 1 if warm_start else self.n_init
        tol = self._convergence_tol(data)
        if progress is True:
            progress = (NotebookProgress(tol, n_starts, quantity=self._bound_name) if in_notebook()
                        else TextProgress(tol, n_starts, quantity=self._bound_name))
        family = self._family(data, checked)
        samples = []  # what initialisation drew: coarse-to-fine runs EM on it

        def initialise(placed_data, count):
            return self._starts(placed_data, count, random_state, family, checked, samples)

        def warm_up(starts):
            return self._warm_up(starts, data, samples, family, random_state)

        result = fit_mixture(
            data,
            initialise,
            n_init=self.n_init,
            tol=tol,
            max_iter=self.max_iter,
            family=family,
            warm_start=warm_start,
            split_every=self.split_every,
            persist=self.persist,
            reporter=Reporters(VerbosePrinter(self.verbose, self.verbose_interval, n_starts), progress),
            checkpoint=checkpoint_for(self, data, warm_start),
            device=self.device,
            warm_up=warm_up if self.algorithm == "coarse-to-fine" else None,
            waves=self._waves(data),
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
        self._data_source = describe_input(X, X_rows, sample_weight)
        self._online = None  # partial_fit's running statistics belong to the model it left
        return data

    # ------------------------------------------------------------------ online EM
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model from ``X`` alone: online EM (Cappé & Moulines, 2009).

        The model keeps a running average of the per-row sufficient statistics. Each step
        computes a batch's statistics under the current parameters, mixes them in with step size
        ``(learning_offset + t) ** -learning_decay`` (``t`` the steps made before; the first step
        replaces the average, so on a fitted model it is exactly one EM step) and takes the
        M-step of the average (:mod:`daskgmm.kernels.online`). A Dask or stored ``X`` is consumed chunk by
        chunk, each chunk read once; every ``X`` makes steps of ``batch_size`` rows (by default
        about 1000 steps of at least 256 rows: a NumPy batch of 20k rows makes 78). The first
        call on an unfitted model initialises it
        (``init_params``) from ``X``, or from the first chunk of a Dask ``X``; a fitted model (by
        ``fit`` too) goes on from its parameters. A variational model's average is weighed as
        all the rows seen so far (its posterior firms up with the data).

        ``n_steps_`` (and ``n_iter_``) count the steps; ``converged_`` stays False;
        ``lower_bounds_`` gets the family's bound of every step's batch (a ``GaussianMixture``:
        its mean log-likelihood under the parameters before the step).

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_device()
        fitted = hasattr(self, "converged_")
        X_rows, in_memory, names = self._open_rows(X)
        if fitted:
            self._check_features(X_rows, names, reset=False)
        checked = self._check_model_arguments(X_rows.shape[1])
        data = RowData(X_rows, as_sample_weight(sample_weight, X_rows), in_memory, missing=self._handles_missing)
        batches = [data] if in_memory else data.in_waves(X_rows.numblocks[0])  # chunk by chunk
        family = self._family(data, checked)
        if fitted:
            state = getattr(self, "_online", None) or OnlineState(None)
            state = replace(state, params=self._online_params(), lower_bounds=())
        else:  # initialised from the first batch
            if batches[0].n_samples < self.n_components:
                raise ValueError(
                    "Expected n_samples >= n_components in the first batch of partial_fit but got "
                    f"n_components = {self.n_components}, n_samples = {batches[0].n_samples}"
                )
            state = OnlineState(self._starts(batches[0], 1, check_random_state(self.random_state), family,
                                             checked, [])[0])
        settings = (family, self.covariance_type, self.n_components, self.learning_decay, self.learning_offset)
        kernel = statistics_kernel(self.device)
        step_rows = self._step_rows(data)
        for batch in batches:  # one compute per chunk: the chunks are read one after another
            rows = step_rows or batch.n_samples
            step = dask.delayed(online_steps, pure=True)(
                batch.X, batch.sample_weight, state, *settings, rows, batch.first_row, kernel, data.missing)
            with blas_threads_for(1):
                (state,) = dask.compute(step)
        if state.n_steps == 0:
            raise ValueError("partial_fit got no rows of positive weight: nothing to learn from.")
        self._check_features(X_rows, names, reset=not fitted)
        lower_bounds = (list(self.lower_bounds_) if fitted else []) + list(state.lower_bounds)
        self._store(FitResult(state.params, lower_bounds[-1], lower_bounds, state.n_steps, False), data.dtype)
        self._online, self.n_steps_ = state, state.n_steps
        self._data_source = describe_input(X, X_rows, sample_weight)
        return self

    def _step_rows(self, data: RowData):
        """Rows per online-EM step (None: a step per chunk, or per NumPy ``X``).

        "auto" is one rule for every input, a NumPy batch too: a batch of 20k rows makes 78 steps,
        not one (measured on shuffled china.jpg pixels, K=16 full, one epoch of 20k-row NumPy
        batches: -0.125 per row below batch EM with a step per batch, +0.053 with this rule)."""
        if self.batch_size != "auto":
            return self.batch_size
        return max(AUTO_MIN_STEP_ROWS, -(-data.n_samples // AUTO_STEPS))

    def _convergence_tol(self, data: RowData) -> float:
        return self.tol

    def _warm_up(self, starts, data: RowData, samples, family, random_state):
        """coarse-to-fine: EM on the initialisation's sample (in memory: no reads of the data)
        until it converges, from every start; each run then goes on from there on all rows."""
        if data.n_samples <= self.init_sample_size:
            return starts  # the sample would be every row
        if not samples:  # 'random' starts or the user's arrays drew none
            samples.append(draw_sample(data, self.init_sample_size, random_state))
        sample, weights = samples[0]
        rows, _ = as_dask_rows(sample, default_rows=self._default_chunk_rows(), allow_nan=data.missing)
        sample_data = RowData(rows, as_sample_weight(weights, rows), in_memory=True, missing=data.missing)
        runs = [Run(FitResult(start, -np.inf)) for start in starts]
        advance_runs(sample_data, runs, family, tol=self._convergence_tol(sample_data), max_iter=self.max_iter,
                     split_every=self.split_every, device=self.device, fail_soft=True)
        return [run.result.params if run.error is None else start for run, start in zip(runs, starts)]

    def _waves(self, data: RowData) -> int:
        """Waves of chunks per pass: 1 (batch EM) unless ``algorithm="incremental"``."""
        if self.algorithm != "incremental":
            return 1
        if self.waves != "auto":
            return self.waves
        low, high = AUTO_WAVES
        return max(low, min(high, data.X.numblocks[0] // total_threads()))

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
                                       default_rows=self._default_chunk_rows(), allow_nan=self._handles_missing)
        return rows, in_memory, names

    def _check_features(self, rows, names, *, reset):
        """scikit-learn's checks (and, with ``reset``, attributes) of the number and names of
        features, through its public ``validate_data`` (the rows themselves are checked chunk
        by chunk, never gathered here)."""
        if names is not None:
            import pandas as pd  # a DataFrame was given, so pandas is there

            rows = pd.DataFrame(columns=names)  # names and count of the columns: all that is checked
        validate_data(self, rows, reset=reset, skip_check_array=True)

    def _rows_for_prediction(self, X):
        check_is_fitted(self)
        rows, in_memory, names = self._open_rows(X)
        self._check_features(rows, names, reset=False)
        return rows, in_memory

    def _default_chunk_rows(self):
        """Chunking of in-memory input: larger chunks for the GPU (see :mod:`daskgmm.kernels.gpu`)."""
        if self.device == "cuda":
            from ..kernels import gpu

            return gpu.default_chunk_rows
        return None

    def _check_device(self):
        """A clear error before any work when ``device="cuda"`` cannot run here."""
        if self.device == "cuda":
            from ..kernels import gpu

            if self._handles_missing:
                raise ValueError(gpu.MISSING_ON_CPU_ONLY)
            gpu.cupy_or_error()

    def _map_rows(self, X_rows, in_memory, output):
        """Every row's ``output`` ("label", "proba", "log_norm") through the engine
        (:func:`~daskgmm.em.passes.per_row_pass`): lazy for Dask input, computed at once for
        in-memory input, on the estimator's device.

        Rows are computed in the wider of their dtype and the model's, as
        scikit-learn does: a float64 model scores float32 data in float64.
        """
        self._check_device()
        dtype = np.result_type(X_rows.dtype, self.means_.dtype)
        if self.device != "cpu" or self.covariance_type not in COMPILED_TYPES:
            # (the compiled diag/spherical loops compute in float64 from float32 rows as they are:
            # no float64 copy of every chunk, which doubled a streamed prediction's memory)
            X_rows = X_rows.astype(dtype, copy=False)
        out = per_row_pass(X_rows, self._per_row_params(), output, self.device, dtype, self._handles_missing)
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
