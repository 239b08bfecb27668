"""Awkward data a user meets: far and collapsed components, offsets, scales, weights of any scale.

Every figure compares float32 input with the float64 fit of the very same values
from the same start (or with an exact float64 formula): a silently wrong model is
the worst thing this library can do.
"""

import warnings

import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, fit_quietly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import GaussianMixture
from daskgmm.datasets import awkward_datasets

DATASETS = awkward_datasets()
F32 = np.finfo(np.float32).eps


def unit_precisions(covariance_type, n_components, n_features):
    return {"full": np.tile(np.eye(n_features), (n_components, 1, 1)), "tied": np.eye(n_features),
            "diag": np.ones((n_components, n_features)), "spherical": np.ones(n_components)}[covariance_type]


def far_clusters(distance, n_samples=3000, seed=0):
    """Three unit-variance clusters at (0, 0), (1.5, 0) and (distance, distance), and their centres."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [1.5, 0.0], [distance, distance]])
    return centres[rng.integers(3, size=n_samples)] + rng.normal(size=(n_samples, 2)), centres


def standard_deviations(gmm):
    covariances = gmm.covariances_.astype(np.float64)
    if gmm.covariance_type == "full":
        return np.sqrt(np.diagonal(covariances, axis1=1, axis2=2))
    if gmm.covariance_type == "tied":
        return np.sqrt(np.diag(covariances))[None, :]
    if gmm.covariance_type == "spherical":
        return np.sqrt(covariances)[:, None]
    return np.sqrt(covariances)


def assert_same_fit(ours, reference, tolerance, per_component=True):
    """Parameters within ``tolerance`` in the units that matter (means in standard deviations,
    covariances relative to each component's largest entry, or with ``per_component=False`` to
    the largest of all), plus float32's own rounding of the stored means; the same mean
    log-likelihood and iterations."""
    sd = standard_deviations(reference)
    means, reference_means = ours.means_.astype(np.float64), reference.means_.astype(np.float64)
    storage = np.finfo(ours.means_.dtype).eps * np.abs(reference_means)
    assert np.all(np.abs(means - reference_means) <= tolerance * sd + storage), "means"
    np.testing.assert_allclose(ours.weights_, reference.weights_, atol=tolerance, rtol=0)
    covariances, reference_covariances = ours.covariances_.astype(np.float64), reference.covariances_
    axes = tuple(range(1, reference_covariances.ndim)) \
        if reference.covariance_type != "tied" and per_component else None
    scale = np.max(np.abs(reference_covariances), axis=axes, keepdims=axes is not None)
    assert np.all(np.abs(covariances - reference_covariances) <= tolerance * scale), "covariances"
    assert abs(ours.lower_bound_ - reference.lower_bound_) <= tolerance * max(1.0, abs(reference.lower_bound_))
    assert ours.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_cluster_per_row_outputs_of_float32_equal_float64(covariance_type):
    """The true model, 10^4 standard deviations between clusters: float32 rows give the float64 answers."""
    X, centres = far_clusters(1e4)
    X32 = X.astype(np.float32)
    settings = dict(covariance_type=covariance_type, means_init=centres, weights_init=np.full(3, 1 / 3),
                    precisions_init=unit_precisions(covariance_type, 3, 2), max_iter=0)
    ours32 = GaussianMixture(3, **settings).fit(X32)
    ours64 = GaussianMixture(3, **settings).fit(X32.astype(np.float64))
    np.testing.assert_array_equal(ours32.predict(X32), ours64.predict(X32.astype(np.float64)))
    np.testing.assert_allclose(ours32.predict_proba(X32), ours64.predict_proba(X32.astype(np.float64)),
                               atol=1e-5)
    np.testing.assert_allclose(ours32.score_samples(X32), ours64.score_samples(X32.astype(np.float64)),
                               rtol=1e-6, atol=1e-5)


def test_tied_components_far_apart_and_tight_in_float64():
    """+-1e5 with standard deviation 1e-3: 10^16 in whitened units squared, beyond any expansion."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1e5, 1e-3, size=(1000, 2)), rng.normal(1e5, 1e-3, size=(1000, 2))])
    means = np.array([[-1e5, -1e5], [1e5, 1e5]])
    gmm = GaussianMixture(2, covariance_type="tied", means_init=means, precisions_init=np.eye(2) * 1e6,
                          weights_init=[0.5, 0.5], max_iter=0).fit(X)
    log_prob = np.stack([-0.5 * np.sum(((X - means[k]) * 1e3) ** 2, axis=1) for k in range(2)], axis=1)
    expected = logsumexp(log_prob + np.log(0.5) + np.log(1e6) - np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(gmm.score_samples(X), expected, rtol=1e-12, atol=1e-7)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("distance", [1e3, 3e3])
def test_far_cluster_float32_fit_equals_float64_fit(covariance_type, distance):
    X, centres = far_clusters(distance)
    X32 = X.astype(np.float32)
    settings = dict(covariance_type=covariance_type, means_init=centres + 0.3, weights_init=np.full(3, 1 / 3),
                    precisions_init=unit_precisions(covariance_type, 3, 2))
    ours32 = fit_quietly(GaussianMixture(3, **settings), da.from_array(X32, chunks=700))
    ours64 = fit_quietly(GaussianMixture(3, **settings), X32.astype(np.float64))
    assert ours64.n_iter_ <= 5
    assert_same_fit(ours32, ours64, 1e-5)


def awkward_start(name, covariance_type):
    X = DATASETS[name]
    n_components = 16 if name == "duplicated rows" else 3
    reg_covar = 1e-6 * X.var(axis=0).mean() if "scale" in name else 1e-6  # reg_covar is absolute
    X32 = X.astype(np.float32)
    reference = SklearnGaussianMixture(n_components, covariance_type=covariance_type, max_iter=0,
                                       random_state=0, reg_covar=reg_covar).fit(X32.astype(np.float64))
    return X32, n_components, dict(
        covariance_type=covariance_type, reg_covar=reg_covar,
        weights_init=reference.weights_ / reference.weights_.sum(),
        means_init=reference.means_.astype(np.float32),  # representable in both dtypes: the same start
        precisions_init=reference.precisions_,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_float32_fit_ends_within_float32_precision_of_the_float64_fit(name, covariance_type):
    X32, n_components, start = awkward_start(name, covariance_type)
    settings = dict(start, tol=0, max_iter=12)
    ours32 = fit_quietly(GaussianMixture(n_components, **settings), da.from_array(X32, chunks=1000))
    ours64 = fit_quietly(GaussianMixture(n_components, **settings), X32.astype(np.float64))
    assert_same_fit(ours32, ours64, 2e-5)
    for ours in (ours32, ours64):  # EM never lowers the bound (beyond round-off)
        assert np.min(np.diff(ours.lower_bounds_)) >= -1e-6 * abs(ours.lower_bound_)
    # the float32 model's per-row outputs are those of the same model in float64
    exact = float64_copy(ours32)
    np.testing.assert_allclose(ours32.score_samples(X32), exact.score_samples(X32.astype(np.float64)),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours32.predict_proba(X32), exact.predict_proba(X32.astype(np.float64)),
                               atol=1e-4)


def float64_copy(gmm):
    """The same fitted model with every array in float64."""
    copy = clone(gmm)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        setattr(copy, name, getattr(gmm, name).astype(np.float64))
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
        setattr(copy, name, getattr(gmm, name))
    return copy


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"offset 1e6"}))
def test_float64_parity_with_scikit_learn_on_awkward_data(name, covariance_type):
    """scikit-learn as the oracle where its own float64 arithmetic holds: it expands diag/tied
    moments about the origin, so at an offset of 1e6 it is the one that loses digits, and its
    collapsed components' variances carry ~1e-13 of the data's square (hence covariances
    compared relative to the largest)."""
    X32, n_components, start = awkward_start(name, covariance_type)
    X = X32.astype(np.float64)
    settings = dict(start, tol=0, max_iter=12)
    reference = fit_quietly(SklearnGaussianMixture(n_components, **settings), X)
    ours = fit_quietly(GaussianMixture(n_components, **settings), da.from_array(X, chunks=1000))
    assert_same_fit(ours, reference, 1e-6, per_component=False)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_rows_converge_like_float64_and_the_bound_is_the_score(covariance_type):
    """The issue's reproduction: a run of identical rows (silence frames) among 13-D frames, K=16."""
    X = DATASETS["duplicated rows"]
    fits = {dtype: GaussianMixture(16, covariance_type=covariance_type, random_state=0, max_iter=100)
            .fit(X.astype(dtype)) for dtype in (np.float32, np.float64)}
    ours32, ours64 = fits[np.float32], fits[np.float64]
    assert ours32.converged_ and ours64.converged_
    assert abs(ours32.n_iter_ - ours64.n_iter_) <= 1
    np.testing.assert_allclose(ours32.lower_bound_, ours64.lower_bound_, rtol=1e-4)
    for dtype, ours in fits.items():
        assert np.min(np.diff(ours.lower_bounds_)) >= -1e-6 * abs(ours.lower_bound_)
        # after convergence the bound is the score of the data, to within tol
        assert abs(ours.score(X.astype(dtype)) - ours.lower_bound_) < ours.tol


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_results_do_not_depend_on_the_scale_of_sample_weight(covariance_type):
    """float32 rows, a rare cluster of 20 rows far away: the weights' scale changes nothing."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(19980, 2)), rng.normal(50, 1, size=(20, 2))]).astype(np.float32)
    weights = rng.uniform(0.5, 2, size=len(X))
    settings = dict(covariance_type=covariance_type, random_state=0, max_iter=10, tol=0)
    reference = fit_quietly(GaussianMixture(2, **settings), X, sample_weight=weights)
    for scale in (1 / weights.sum(), 1e-9, 1e9):
        scaled = fit_quietly(GaussianMixture(2, **settings), X, sample_weight=weights * scale)
        np.testing.assert_allclose(scaled.weights_, reference.weights_, rtol=1e-6)
        np.testing.assert_allclose(scaled.means_, reference.means_, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(scaled.covariances_, reference.covariances_, rtol=1e-5)
        np.testing.assert_allclose(scaled.lower_bound_, reference.lower_bound_, rtol=1e-6)


def test_a_singleton_component_completes_as_in_scikit_learn():
    """scikit-learn's test_gaussian_mixture_setting_best_params (#18216): a spherical start that
    puts components on single points, reg_covar=0, one iteration. It completes there."""
    rnd = np.random.RandomState(0)
    X = rnd.uniform(size=(30, 3))
    means_init = np.array([
        [0.670637869618158, 0.21038256107384043, 0.12892629765485303],
        [0.09394051075844147, 0.5759464955561779, 0.929296197576212],
        [0.5033230372781258, 0.9569852381759425, 0.08654043447295741],
        [0.18578301420435747, 0.5531158970919143, 0.19388943970532435],
        [0.4548589928173794, 0.35182513658825276, 0.568146063202464],
        [0.609279894978321, 0.7929063819678847, 0.9620097270828052],
    ])
    precisions_init = np.array([999999.999604483, 999999.9990869573, 553.7603944542167, 204.78596008931834,
                                15.867423501783637, 85.4595728389735])
    weights_init = [1 / 30, 1 / 30, 2 / 30, 2 / 30, 21 / 30, 3 / 30]
    gmm = GaussianMixture(6, covariance_type="spherical", reg_covar=0, means_init=means_init,
                          weights_init=weights_init, precisions_init=precisions_init, random_state=rnd,
                          max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(X)
    assert not gmm.converged_ and gmm.n_iter_ == 1
    assert np.all(np.isfinite(gmm.precisions_cholesky_)) and np.isfinite(gmm.lower_bound_)
    reference = SklearnGaussianMixture(6, covariance_type="spherical", reg_covar=0, means_init=means_init,
                                       weights_init=weights_init, precisions_init=precisions_init,
                                       max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X)
    np.testing.assert_allclose(gmm.weights_, reference.weights_, rtol=1e-9)
    np.testing.assert_allclose(gmm.covariances_[2:], reference.covariances_[2:], rtol=1e-9)
    assert np.all(gmm.covariances_[:2] < 1e-15)  # the singletons: collapsed, and visibly so


def test_a_float64_model_scores_float32_rows_in_float64(X):
    gmm = GaussianMixture(3, random_state=0).fit(X)
    X32 = X.astype(np.float32)
    for method in ("predict_proba", "score_samples"):
        got = getattr(gmm, method)(X32)
        assert got.dtype == np.float64, method
        np.testing.assert_allclose(got, getattr(gmm, method)(X32.astype(np.float64)), rtol=1e-12)
    assert gmm.score_samples(da.from_array(X32, chunks=500)).dtype == np.float64


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    scale=st.sampled_from([1e-4, 1.0, 1e4]),
    offset=st.sampled_from([0.0, 1e3, -1e5]),  # in units of the spread
    spread=st.sampled_from([1e-2, 1.0]),
)
def test_float32_and_float64_agree_whatever_the_scale_offset_and_spreads(covariance_type, scale, offset,
                                                                          spread):
    """Property: for scaled, shifted data with one narrow feature, one EM step from the same start
    gives the same statistics in float32 as in float64 (per-row outputs and parameters)."""
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(1500, 3)) * [1.0, spread, 1.0] + rng.integers(3, size=(1500, 1)) * 4.0 + offset) * scale
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)
    start = SklearnGaussianMixture(3, covariance_type=covariance_type, max_iter=0, random_state=0,
                                   reg_covar=1e-6 * scale**2).fit(X64)
    settings_ = dict(covariance_type=covariance_type, reg_covar=1e-6 * scale**2, tol=0, max_iter=3,
                     weights_init=start.weights_ / start.weights_.sum(),
                     means_init=start.means_.astype(np.float32), precisions_init=start.precisions_)
    ours32 = fit_quietly(GaussianMixture(3, **settings_), X32)
    ours64 = fit_quietly(GaussianMixture(3, **settings_), X64)
    assert_same_fit(ours32, ours64, 1e-5)
    np.testing.assert_allclose(ours32.predict_proba(X32), float64_copy(ours32).predict_proba(X64), atol=1e-4)
