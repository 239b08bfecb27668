"""Missing values (``missing="em"``): exact EM over the observed coordinates, held to a per-row
reference written here with loops over rows and components and the textbook formulas."""

import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from scipy.special import logsumexp

import daskgmm
from daskgmm import GaussianMixture, select_model
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics
from daskgmm.model.params import GaussianParams, compute_precision_cholesky

TYPES = ["full", "tied", "diag", "spherical"]
K, D = 3, 4


# ------------------------------------------------------------------ the per-row reference
def dense(covariances, covariance_type, k):
    """Component ``k``'s covariance as a D x D matrix."""
    return {"full": lambda: covariances[k], "tied": lambda: covariances,
            "diag": lambda: np.diag(covariances[k]),
            "spherical": lambda: covariances[k] * np.eye(D)}[covariance_type]()


def reference_e_step(X, weights, means, covariances, covariance_type):
    """Per row and component: log w_k + log N(x_o | mu_ko, S_oo); the completed row
    x_hat (missing coordinates by their conditional mean) and the conditional covariance."""
    n = len(X)
    log_prob = np.empty((n, K))
    completed = np.empty((n, K, D))
    conditional = np.zeros((n, K, D, D))
    for i in range(n):
        o = ~np.isnan(X[i])
        m = ~o
        for k in range(K):
            S = dense(covariances, covariance_type, k)
            S_oo, S_mo = S[np.ix_(o, o)], S[np.ix_(m, o)]
            d = X[i, o] - means[k, o]
            log_prob[i, k] = np.log(weights[k]) - 0.5 * (d @ np.linalg.solve(S_oo, d) + np.linalg.slogdet(S_oo)[1]
                                                         + o.sum() * np.log(2 * np.pi))
            completed[i, k] = X[i]
            completed[i, k, m] = means[k, m] + S_mo @ np.linalg.solve(S_oo, d)
            conditional[i, k][np.ix_(m, m)] = S[np.ix_(m, m)] - S_mo @ np.linalg.solve(S_oo, S_mo.T)
    return log_prob, completed, conditional


def reference_em_step(X, sample_weight, weights, means, covariances, covariance_type, reg_covar=1e-6):
    """One EM iteration: ``(mean log-likelihood before it, new weights, means, covariances)``."""
    log_prob, completed, conditional = reference_e_step(X, weights, means, covariances, covariance_type)
    log_norm = logsumexp(log_prob, axis=1)
    resp = np.exp(log_prob - log_norm[:, None]) * sample_weight[:, None]
    nk = resp.sum(axis=0)
    new_means = np.array([resp[:, k] @ completed[:, k] / nk[k] for k in range(K)])
    scatter = np.zeros((K, D, D))
    for k in range(K):
        for i in range(len(X)):
            diff = completed[i, k] - new_means[k]
            scatter[k] += resp[i, k] * (np.outer(diff, diff) + conditional[i, k])
    new_covariances = {
        "full": lambda: scatter / nk[:, None, None] + reg_covar * np.eye(D),
        "tied": lambda: scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(D),
        "diag": lambda: np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + reg_covar,
        "spherical": lambda: np.trace(scatter, axis1=1, axis2=2) / nk / D + reg_covar,
    }[covariance_type]()
    return sample_weight @ log_norm / sample_weight.sum(), nk / nk.sum(), new_means, new_covariances


def data_with_gaps(seed, fraction, n=240):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [4, 4, 0, -2], [0, 5, 5, 1]], dtype=float)
    X = centres[rng.integers(0, K, n)] + rng.normal(size=(n, D)) @ np.diag([1, 0.7, 1.3, 0.9])
    X[rng.random(X.shape) < fraction] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    return X, rng.uniform(0.5, 2.0, len(X)), centres


def starting_point(covariance_type, seed):
    rng = np.random.default_rng(seed + 100)
    weights = np.array([0.3, 0.3, 0.4])
    means = np.array([[0.5, 0, 0, 0], [3.5, 4, 0.5, -2], [0, 4.5, 5, 1]]) + rng.normal(scale=0.3, size=(K, D))
    covariances = {"full": lambda: np.array([np.eye(D) + 0.3 * np.ones((D, D)) * (k + 1) / 3 for k in range(K)]),
                   "tied": lambda: np.eye(D) + 0.2 * np.ones((D, D)),
                   "diag": lambda: rng.uniform(0.5, 2.0, (K, D)),
                   "spherical": lambda: rng.uniform(0.5, 2.0, K)}[covariance_type]()
    return weights, means, covariances


def precisions_of(covariances, covariance_type):
    chol = compute_precision_cholesky(covariances, covariance_type)
    if covariance_type == "full":
        return chol @ np.swapaxes(chol, 1, 2)
    if covariance_type == "tied":
        return chol @ chol.T
    return chol**2


# ------------------------------------------------------------------ EM against the reference
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("fraction", [0.1, 0.4])
def test_em_with_missing_values_equals_the_per_row_reference(covariance_type, fraction):
    """Three EM iterations from the same start, weighted rows, 10% and 40% missing: every
    parameter and every iteration's log-likelihood within 1e-10 of the reference."""
    X, sample_weight, _ = data_with_gaps(1, fraction)
    weights, means, covariances = starting_point(covariance_type, 1)
    n_iter = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 3 iterations
        gmm = GaussianMixture(K, covariance_type=covariance_type, missing="em", max_iter=n_iter, tol=0,
                              weights_init=weights, means_init=means,
                              precisions_init=precisions_of(covariances, covariance_type),
                              chunk_rows=70).fit(X, sample_weight=sample_weight)
    bounds = []
    for _ in range(n_iter):
        bound, weights, means, covariances = reference_em_step(X, sample_weight, weights, means, covariances,
                                                               covariance_type)
        bounds.append(bound)
    np.testing.assert_allclose(gmm.lower_bounds_, bounds, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gmm.weights_, weights, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gmm.means_, means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gmm.covariances_, covariances, rtol=0, atol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_chunk_statistics_with_missing_values_equal_the_reference_sums(covariance_type):
    """The kernel alone: mass, means and centred scatter (conditional covariance included) of
    one chunk, against sums of the reference's completed rows."""
    X, sample_weight, _ = data_with_gaps(2, 0.3)
    weights, means, covariances = starting_point(covariance_type, 2)
    params = GaussianParams(covariance_type, weights, means, covariances,
                            compute_precision_cholesky(covariances, covariance_type))
    stats = chunk_statistics(X, sample_weight, GaussianAssigner(params), covariance_type, K, missing=True)
    log_prob, completed, conditional = reference_e_step(X, weights, means, covariances, covariance_type)
    resp = np.exp(log_prob - logsumexp(log_prob, axis=1)[:, None]) * sample_weight[:, None]
    nk = resp.sum(axis=0)
    component_means = np.array([resp[:, k] @ completed[:, k] / nk[k] for k in range(K)])
    scatter = np.array([sum(resp[i, k] * (np.outer(completed[i, k] - component_means[k],
                                                    completed[i, k] - component_means[k]) + conditional[i, k])
                            for i in range(len(X))) for k in range(K)])
    expected = {"full": scatter, "tied": scatter.sum(axis=0), "diag": np.diagonal(scatter, axis1=1, axis2=2),
                "spherical": np.trace(scatter, axis1=1, axis2=2)}[covariance_type]
    np.testing.assert_allclose(stats.resp_sum, nk, rtol=1e-12)
    np.testing.assert_allclose(stats.means, component_means, rtol=0, atol=1e-11)
    np.testing.assert_allclose(stats.scatter, expected, rtol=1e-11, atol=1e-10)
    assert stats.log_likelihood == pytest.approx(sample_weight @ logsumexp(log_prob, axis=1), rel=1e-13)
    assert stats.n_rows == len(X) and stats.n_nonfinite == 0


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_lower_bound_never_decreases(covariance_type):
    X, _, _ = data_with_gaps(3, 0.3, n=600)
    gmm = GaussianMixture(K, covariance_type=covariance_type, missing="em", tol=1e-8, max_iter=60,
                          random_state=0).fit(X)
    assert len(gmm.lower_bounds_) > 3
    assert np.diff(gmm.lower_bounds_).min() >= -1e-12


# ------------------------------------------------------------------ no NaN: the normal path
@pytest.mark.parametrize("covariance_type", TYPES)
def test_without_nan_the_fit_is_identical_to_the_normal_path(covariance_type):
    X, _, _ = data_with_gaps(4, 0.0, n=500)
    kwargs = dict(covariance_type=covariance_type, random_state=0, chunk_rows=128)
    plain = GaussianMixture(K, **kwargs).fit(X)
    em = GaussianMixture(K, missing="em", **kwargs).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(em, name), getattr(plain, name))
    assert em.lower_bounds_ == plain.lower_bounds_
    np.testing.assert_array_equal(em.score_samples(X), plain.score_samples(X))
    np.testing.assert_array_equal(em.predict_proba(X), plain.predict_proba(X))


# ------------------------------------------------------------------ the point of it
def test_em_beats_dropping_and_mean_imputing_on_a_known_mixture():
    """20% of values missing completely at random from a known 3-component full mixture:
    EM with missing values lands closer to the true means and covariances, and scores held-out
    complete rows higher, than fitting the complete rows only or the mean-imputed rows."""
    rng = np.random.default_rng(7)
    true_means = np.array([[0.0, 0, 0, 0], [3, 3, 0, 1], [0, 3, 3, -1]])
    A = rng.normal(scale=0.5, size=(K, D, D))
    true_covariances = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(D)
    true_weights = np.array([0.3, 0.3, 0.4])

    def draw(n):
        labels = rng.choice(K, n, p=true_weights)
        return np.array([rng.multivariate_normal(true_means[k], true_covariances[k]) for k in labels])

    X, held_out = draw(3000), draw(2000)
    X_missing = X.copy()
    X_missing[rng.random(X.shape) < 0.2] = np.nan
    X_missing = X_missing[~np.isnan(X_missing).all(axis=1)]
    complete = X_missing[~np.isnan(X_missing).any(axis=1)]
    imputed = np.where(np.isnan(X_missing), np.nanmean(X_missing, axis=0), X_missing)
    kwargs = dict(covariance_type="full", random_state=0, n_init=3, tol=1e-6, max_iter=500)
    fits = {"em": GaussianMixture(K, missing="em", **kwargs).fit(X_missing),
            "drop": GaussianMixture(K, **kwargs).fit(complete),
            "impute": GaussianMixture(K, **kwargs).fit(imputed)}

    def errors(gmm):
        order = [int(np.argmin(np.linalg.norm(gmm.means_ - mean, axis=1))) for mean in true_means]
        assert sorted(order) == [0, 1, 2]
        return (np.abs(gmm.means_[order] - true_means).max(),
                np.abs(gmm.covariances_[order] - true_covariances).max(),
                gmm.score(held_out))

    em, drop, impute = (errors(fits[name]) for name in ("em", "drop", "impute"))
    assert em[0] < drop[0] and em[0] < impute[0], (em, drop, impute)
    assert em[1] < drop[1] and em[1] < impute[1], (em, drop, impute)
    assert em[2] > drop[2] and em[2] > impute[2], (em, drop, impute)


# ------------------------------------------------------------------ per-row outputs
@pytest.mark.parametrize("covariance_type", TYPES)
def test_per_row_outputs_use_the_marginal_density_of_the_observed_values(covariance_type):
    X, _, _ = data_with_gaps(5, 0.3, n=400)
    gmm = GaussianMixture(K, covariance_type=covariance_type, missing="em", random_state=0).fit(X)
    covariances = gmm.covariances_
    log_prob, _, _ = reference_e_step(X, gmm.weights_, gmm.means_, covariances, covariance_type)
    log_norm = logsumexp(log_prob, axis=1)
    np.testing.assert_allclose(gmm.score_samples(X), log_norm, rtol=1e-12)
    np.testing.assert_allclose(gmm.predict_proba(X), np.exp(log_prob - log_norm[:, None]), atol=1e-12)
    np.testing.assert_array_equal(gmm.predict(X), np.argmax(log_prob, axis=1))
    assert gmm.score(X) == pytest.approx(log_norm.mean(), rel=1e-12)
    n_params = gmm._n_parameters()
    assert gmm.bic(X) == pytest.approx(-2 * log_norm.sum() + n_params * np.log(len(X)), rel=1e-12)
    lazy = gmm.score_samples(da.from_array(X, chunks=150))
    np.testing.assert_allclose(lazy.compute(), log_norm, rtol=1e-12)


def test_every_input_kind_and_dtype_gives_the_same_fit(tmp_path):
    """NumPy, DataFrame, Dask, a Zarr store on disk (by path), float32: one model."""
    X, sample_weight, _ = data_with_gaps(6, 0.25, n=600)
    kwargs = dict(covariance_type="full", missing="em", random_state=0, chunk_rows=200)
    reference = GaussianMixture(K, **kwargs).fit(X, sample_weight=sample_weight)
    store = zarr.open(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(200, D), dtype="f8")
    store[:] = X
    for source in (pd.DataFrame(X, columns=list("abcd")), da.from_array(X, chunks=200), str(tmp_path / "x.zarr")):
        other = GaussianMixture(K, **kwargs).fit(source, sample_weight=sample_weight)
        np.testing.assert_allclose(other.means_, reference.means_, rtol=0, atol=1e-12)
        assert other.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-13)
    single = GaussianMixture(K, **kwargs).fit(X.astype(np.float32), sample_weight=sample_weight)
    assert single.means_.dtype == np.float32
    np.testing.assert_allclose(single.means_, reference.means_, atol=1e-4)


# ------------------------------------------------------------------ errors
def test_nan_is_still_an_error_by_default_and_the_error_names_the_option():
    X, _, _ = data_with_gaps(8, 0.2)
    with pytest.raises(ValueError, match="missing='em'"):
        GaussianMixture(K).fit(X)
    with pytest.raises(ValueError, match="missing='em'"):
        GaussianMixture(K).fit(da.from_array(X, chunks=50))


def test_rows_that_missing_value_em_cannot_use_are_refused_by_row_number():
    X, _, _ = data_with_gaps(9, 0.2)
    empty = X.copy()
    empty[17] = np.nan
    gmm = GaussianMixture(K, missing="em", random_state=0)
    with pytest.raises(ValueError, match="no observed value: row 17"):
        gmm.fit(da.from_array(empty, chunks=60))
    infinite = X.copy()
    infinite[130, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        gmm.fit(infinite)
    assert not hasattr(gmm, "means_")  # nothing half-fitted
    gmm.fit(X)
    with pytest.raises(ValueError, match="no observed value"):
        gmm.predict(empty)


def test_random_init_and_the_gpu_are_refused_with_missing_values():
    X, _, _ = data_with_gaps(10, 0.2)
    with pytest.raises(ValueError, match="init_params='random'"):
        GaussianMixture(K, missing="em", init_params="random").fit(X)
    with pytest.raises(ValueError, match="CPU only"):
        GaussianMixture(K, missing="em", device="cuda").fit(X)
    with pytest.raises(ValueError, match="missing"):
        GaussianMixture(K, missing="impute").fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_every_init_that_copes_with_missing_values_finds_the_clusters(init_params):
    X, _, centres = data_with_gaps(11, 0.3, n=900)
    gmm = GaussianMixture(K, missing="em", init_params=init_params, random_state=1, n_init=2).fit(X)
    found = np.sort(np.linalg.norm(gmm.means_[:, None] - centres[None], axis=2).min(axis=0))
    assert found.max() < 0.5, gmm.means_


# ------------------------------------------------------------------ beyond fit
def test_select_model_and_partial_fit_take_missing_values():
    X, _, _ = data_with_gaps(12, 0.2, n=900)
    result = select_model(X, range(1, 5), ("full", "diag"), missing="em", random_state=0)
    best = result.best_estimator_
    assert best.n_components == K and best.missing == "em"
    single = GaussianMixture(best.n_components, covariance_type=best.covariance_type, missing="em",
                             random_state=0).fit(X)
    assert result.table[result._chosen_row()]["log_likelihood"] == pytest.approx(single.score(X), abs=1e-6)
    online = GaussianMixture(K, missing="em", random_state=0, batch_size=100)
    for start in range(0, len(X), 300):
        online.partial_fit(X[start : start + 300])
    assert online.score(X) > single.score(X) - 0.05


def test_a_saved_model_keeps_its_missing_setting(tmp_path):
    X, _, _ = data_with_gaps(13, 0.2)
    gmm = GaussianMixture(K, missing="em", random_state=0).fit(X)
    gmm.save(tmp_path / "model")
    loaded = daskgmm.load(tmp_path / "model")
    assert loaded.missing == "em"
    np.testing.assert_array_equal(loaded.score_samples(X), gmm.score_samples(X))
