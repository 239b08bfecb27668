"""Choosing K (and the covariance type) with every candidate fitted in shared passes.

The usual recipe fits GaussianMixture for K = 1..10 and each covariance type,
one after another, and keeps the lowest BIC: on data read from storage that
is one full read per iteration *per candidate*. :func:`select_model` runs all
candidates together: every iteration reads each chunk once and updates the
statistics of every candidate still running; converged candidates drop out.
Initialisation shares passes too (one uniform sample for all k-means starts,
one pass that assigns every row to every candidate's centres), and the
final log-likelihoods for BIC/AIC come from one more shared pass.

Sharing passes changes the cost, never the answer: each candidate follows the
same iterations as an independent fit from its starting parameters, and with an
integer ``random_state`` it starts where ``GaussianMixture(K, covariance_type,
random_state=random_state)`` starts (the covariance types of one K share that
k-means start), so its table row is that estimator's fit and BIC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

from ..em.families import GaussianFamily
from ..em.loop import advance_runs, place_data
from ..em.passes import statistics_pass_many
from ..em.progress import Reporters
from ..em.starts import DEFAULT_INIT_SAMPLE_SIZE, draw_sample, finish_starts, starts_for
from ..io.inputs import RowData, as_dask_rows, as_sample_weight, feature_names
from ..kernels.chunk import COMPILED_TYPES, RANDOM_WITH_MISSING, GaussianScorer
from ..model.params import information_criteria
from ..model.records import DEFAULT_SPLIT_EVERY, FitResult
from ..model.statistics import SufficientStats
from ..runtime.resources import check_worker_memory, worker_deaths_explained
from .gaussian import GaussianMixture
from .loading import fitted_estimator

CRITERIA = ("bic", "aic")


@dataclass
class Candidate:
    """One model being fitted: its settings, start, progress and outcome."""

    n_components: int
    covariance_type: str
    restart: int
    init_params: str = "kmeans"
    initial_params: object = None
    result: FitResult | None = None
    error: str | None = None
    log_likelihood: float = np.nan  # mean, under the final parameters
    bic: float = np.nan
    aic: float = np.nan


@dataclass(repr=False)
class SelectionResult:
    """The outcome of :func:`select_model`.

    Attributes
    ----------
    candidates : list of Candidate
    criterion : str
    passes : int
        Reads of the data made in all (sample draw, initialisation, EM, scoring).
    table : list of dict
        One row per candidate.
    best_estimator_ : GaussianMixture
        The candidate with the lowest criterion, as a fitted estimator.
    """

    candidates: list
    criterion: str
    passes: int
    table: list
    settings: dict = field(default_factory=dict)  # estimator parameters shared by all candidates
    dtype: object = np.float64
    n_features: int = 0
    feature_names: object = None  # of a DataFrame's columns, as the estimators' feature_names_in_

    def __post_init__(self):
        self.best_estimator_ = self.best()

    def best(self, covariance_type=None, n_components=None):
        """The lowest-criterion candidate, optionally among one covariance type and/or K, fitted.

        Parameters
        ----------
        covariance_type : str, optional
        n_components : int, optional

        Returns
        -------
        GaussianMixture
        """
        fitted = [c for c in self.candidates if c.error is None
                  and covariance_type in (None, c.covariance_type) and n_components in (None, c.n_components)]
        if not fitted:
            raise ValueError(f"no fitted candidate with covariance_type={covariance_type!r}, "
                             f"n_components={n_components!r}")
        chosen = min(fitted, key=lambda c: getattr(c, self.criterion))
        return fitted_estimator(chosen.result, self.dtype, self.n_features, self.feature_names,
                                n_components=chosen.n_components, covariance_type=chosen.covariance_type,
                                init_params=chosen.init_params, **self.settings)

    def _chosen_row(self):
        fitted = [i for i, c in enumerate(self.candidates) if c.error is None]
        return min(fitted, key=lambda i: getattr(self.candidates[i], self.criterion))

    def format_table(self) -> str:
        """The table as text, one row per candidate; the chosen one marked ``*``. BIC and AIC are
        printed to one decimal so that close candidates can be told apart."""
        chosen = self._chosen_row()
        lines = [f"  {'K':>3} {'covariance':>10} {'init':>16} {'restart':>7} {'BIC':>16} {'AIC':>16} "
                 f"{'iterations':>10}"]
        for i, row in enumerate(self.table):
            lines.append(f"{'*' if i == chosen else ' '} {row['n_components']:>3} {row['covariance_type']:>10} "
                         f"{row['init_params']:>16} {row['restart']:>7} {row['bic']:>16,.1f} {row['aic']:>16,.1f} "
                         f"{row['n_iter']:>10}" + (f"  failed: {row['error']}" if row["error"] else ""))
        return "\n".join(lines)

    def __repr__(self):
        best = self.best_estimator_
        return (f"SelectionResult({len(self.candidates)} candidates, {self.passes} reads of the data; "
                f"best by {self.criterion.upper()}: K={best.n_components}, {best.covariance_type})")

    def __str__(self):
        return repr(self) + "\n" + self.format_table()

    def _repr_html_(self):
        """The table in a notebook, the chosen row in bold."""
        from html import escape

        chosen = self._chosen_row()
        columns = ["n_components", "covariance_type", "init_params", "restart", "bic", "aic", "log_likelihood",
                   "n_iter", "converged", "error"]

        def cell(value):
            text = f"{value:,.1f}" if isinstance(value, float) and abs(value) >= 1 else str(value)
            return f"<td>{escape(text)}</td>"

        bold = ' style="font-weight:bold"'
        rows = "".join(f"<tr{bold if i == chosen else ''}>" + "".join(cell(row[c]) for c in columns) + "</tr>"
                       for i, row in enumerate(self.table))
        header = "".join(f"<th>{c}</th>" for c in columns)
        return f"<p>{escape(repr(self))}</p><table><tr>{header}</tr>{rows}</table>"

    def to_frame(self):
        """The table as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.table)

    def plot(self, ax=None):
        """BIC and AIC against K, one line per covariance type (needs matplotlib)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        for covariance_type in dict.fromkeys(row["covariance_type"] for row in self.table):
            rows = [r for r in self.table if r["covariance_type"] == covariance_type and np.isfinite(r["bic"])]
            best = {}
            for r in rows:  # best restart per K
                if r["n_components"] not in best or r[self.criterion] < best[r["n_components"]][self.criterion]:
                    best[r["n_components"]] = r
            ks = sorted(best)
            (line,) = ax.plot(ks, [best[k]["bic"] for k in ks], marker="o", label=f"{covariance_type} BIC")
            ax.plot(ks, [best[k]["aic"] for k in ks], marker="x", linestyle="--", color=line.get_color(),
                    label=f"{covariance_type} AIC")
        chosen = self.best_estimator_
        ax.axvline(chosen.n_components, color="grey", linewidth=0.8)
        ax.set_xlabel("number of components K")
        ax.set_ylabel("criterion (lower is better)")
        ax.set_title(f"chosen: K={chosen.n_components}, {chosen.covariance_type} ({self.criterion.upper()})")
        ax.legend(fontsize=7)
        return ax


def _initial_params(candidates, data, reg_covar, random_state, sample_size, split_every):
    """Starts for every candidate, sharing the sample and the assignment pass. Returns passes made.

    Every K of the first init method begins from the state ``random_state`` has after drawing
    the sample, as ``GaussianMixture(K, random_state=...)`` does, so the candidate's first
    restart starts where that estimator's would, and the covariance types of one K share its
    k-means (one fit, one assigner, one assignment in the pass). Restarts continue that state.
    Every K of a further method begins from a state of its own (seeded from ``random_state``):
    from one state, a k-means and a k-means++ start share their seeds, and the k-means++ starts
    of K and K+1 their first K points, which would take away the independent starts that
    rescue K on elongated clusters.
    """
    passes = 0
    sample = weights = None
    if any(c.init_params != "random" for c in candidates):
        sample, weights = draw_sample(data, sample_size, random_state)
        passes += 1
    groups = {}
    for c in candidates:
        groups.setdefault((c.init_params, c.n_components), {}).setdefault(c.restart, []).append(c)
    first_method = candidates[0].init_params
    after_sample = random_state.get_state()
    seeds = random_state.randint(np.iinfo(np.int32).max, size=len(groups))
    starts = {}
    for ((method, n_components), restarts), seed in zip(groups.items(), seeds):
        group_state = np.random.RandomState(seed)
        if method == first_method:
            group_state.set_state(after_sample)
        for restart in sorted(restarts):
            members = restarts[restart]
            for c, start in zip(members, starts_for(method, n_components, [c.covariance_type for c in members],
                                                    data, group_state, sample, weights)):
                starts[id(c)] = start
    starts = [starts[id(c)] for c in candidates]
    if not all(isinstance(start, SufficientStats) for start in starts):
        passes += 1
    starts = finish_starts(data, starts, [c.covariance_type for c in candidates],
                           [c.n_components for c in candidates], reg_covar, split_every, stack=True)
    for c, start in zip(candidates, starts):
        if isinstance(start, ValueError):
            c.error = str(start)
        else:
            c.initial_params = start
    return passes


def select_model(
    X,
    n_components=range(1, 11),
    covariance_types=("full", "tied", "diag", "spherical"),
    *,
    criterion="bic",
    n_init=1,
    init_params="kmeans",
    tol=1e-3,
    reg_covar=1e-6,
    max_iter=100,
    random_state=None,
    sample_weight=None,
    init_sample_size=DEFAULT_INIT_SAMPLE_SIZE,
    chunk_rows=None,
    split_every=DEFAULT_SPLIT_EVERY,
    persist="auto",
    progress=None,
    missing="raise",
) -> SelectionResult:
    """Fit every (K, covariance type, restart) candidate in shared passes; keep the best.

    Parameters
    ----------
    X : array-like, DataFrame, dask array or path (as for ``GaussianMixture.fit``)
    n_components : iterable of int
    covariance_types : iterable of {'full', 'tied', 'diag', 'spherical'}
    criterion : {'bic', 'aic'}
        How ``best_estimator_`` is chosen (lower is better).
    n_init : int
        Restarts per (K, covariance type, init method); each is a candidate of its own.
    init_params : str or sequence of str, default 'kmeans'
        One of 'kmeans', 'k-means++', 'random', 'random_from_data', or several:
        every method then starts its own candidates (``n_init`` each) and the
        lowest criterion over all of them wins. Worth it on stretched,
        elongated clusters, where k-means-style starts can trap EM in a poor
        optimum for the true K and the criterion silently picks another K
        (scikit-learn#34845); the extra starts share every pass.
    tol, reg_covar, max_iter, random_state, init_sample_size, chunk_rows,
    split_every, persist, missing
        As for :class:`daskgmm.GaussianMixture` (``missing="em"``: NaN marks a missing value;
        every candidate, its scores and ``best_estimator_`` use the observed values).
    sample_weight : array-like or dask array, optional
    progress : object, optional
        Told ``iteration_end(i, n_iter, change, lower_bound)`` for candidate ``i`` (in the
        table's order) and ``pass_end(seconds)`` after every EM pass; methods it lacks are skipped.

    Returns
    -------
    SelectionResult
        ``table`` (one row per candidate: K, covariance type, restart, BIC,
        AIC, mean log-likelihood, lower bound, n_iter, converged, error),
        ``to_frame()``, ``best_estimator_``, ``plot()`` and ``passes``.
    """
    with worker_deaths_explained():
        return _select_model(X, n_components, covariance_types, criterion, n_init, init_params, tol, reg_covar,
                             max_iter, random_state, sample_weight, init_sample_size, chunk_rows, split_every,
                             persist, progress, missing)


def _select_model(X, n_components, covariance_types, criterion, n_init, init_params, tol, reg_covar, max_iter,
                  random_state, sample_weight, init_sample_size, chunk_rows, split_every, persist, progress,
                  missing):
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    ks = sorted(set(int(k) for k in n_components))
    types = list(dict.fromkeys(covariance_types))
    methods = [init_params] if isinstance(init_params, str) else list(dict.fromkeys(init_params))
    if not methods:
        raise ValueError("init_params must name at least one method")
    template = GaussianMixture(max(ks), init_params=methods[0], tol=tol, reg_covar=reg_covar,
                               max_iter=max_iter, n_init=n_init, chunk_rows=chunk_rows,
                               split_every=split_every, init_sample_size=init_sample_size, missing=missing)
    for covariance_type, method in ((t, m) for t in types for m in methods):
        template.set_params(covariance_type=covariance_type, init_params=method)._validate_params()
    if template._handles_missing and "random" in methods:
        raise ValueError(RANDOM_WITH_MISSING)
    if min(ks) < 1:
        raise ValueError(f"n_components must be >= 1, got {min(ks)}")
    X_rows, in_memory = as_dask_rows(X, chunk_rows=chunk_rows, ensure_min_samples=2,
                                     allow_nan=template._handles_missing)
    check_worker_memory(max(X_rows.chunks[0]) * X_rows.shape[1] * X_rows.dtype.itemsize,
                        any(covariance_type in COMPILED_TYPES for covariance_type in types))
    if X_rows.shape[0] < max(ks):
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {max(ks)}, "
                         f"n_samples = {X_rows.shape[0]}")
    data = place_data(RowData(X_rows, as_sample_weight(sample_weight, X_rows), in_memory,
                              missing=template._handles_missing), persist)
    rng = check_random_state(random_state)
    candidates = [Candidate(k, t, r, m) for t in types for k in ks for m in methods for r in range(n_init)]
    passes = _initial_params(candidates, data, reg_covar, rng, init_sample_size, split_every)
    for c in candidates:
        if c.error is None:
            c.result = FitResult(c.initial_params, -np.inf)
    # every candidate is a run of the engine's one loop; a failing M-step ends that candidate only
    family = GaussianFamily(reg_covar, data.dtype)
    reporter = Reporters(progress)
    number = {id(c): i for i, c in enumerate(candidates)}
    passes += advance_runs(
        data, [c for c in candidates if c.error is None], family, tol=tol, max_iter=max_iter,
        split_every=split_every, fail_soft=True, on_pass=reporter.pass_end, stack=True,
        on_iteration=lambda c, change: reporter.iteration_end(number[id(c)], c.result.n_iter, change,
                                                              c.result.lower_bound))

    fitted = [c for c in candidates if c.error is None]
    if not fitted:
        raise ValueError("every candidate failed: " + "; ".join(sorted({c.error for c in candidates})))
    scores = statistics_pass_many(
        data, [GaussianScorer(c.result.params) for c in fitted],
        [c.covariance_type for c in fitted], [c.n_components for c in fitted], split_every, stack=True,
    )
    passes += 1
    for c, s in zip(fitted, scores):
        # weighted rows count as their weight (weight 2 = a duplicated row), as in GaussianMixture.bic
        c.log_likelihood = s.log_likelihood / s.weight_sum
        c.bic, c.aic = information_criteria(c.log_likelihood, s.weight_sum, family.n_parameters(c.result.params))
    settings = dict(tol=tol, reg_covar=reg_covar, max_iter=max_iter, random_state=random_state,
                    chunk_rows=chunk_rows, split_every=split_every, init_sample_size=init_sample_size,
                    persist=persist, missing=missing)
    table = [
        dict(n_components=c.n_components, covariance_type=c.covariance_type, init_params=c.init_params,
             restart=c.restart, bic=c.bic, aic=c.aic, log_likelihood=c.log_likelihood,
             lower_bound=c.result.lower_bound if c.result else np.nan,
             n_iter=c.result.n_iter if c.result else 0,
             converged=bool(c.result.converged) if c.result else False, error=c.error)
        for c in candidates
    ]
    return SelectionResult(candidates, criterion, passes, table, settings, data.dtype, data.n_features,
                           feature_names(X))
