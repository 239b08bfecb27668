"""Numerical edge cases: a correct model or a clear error, never NaN or inf."""

import warnings

import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_data
from sklearn.exceptions import ConvergenceWarning

from daskgmm import GaussianMixture

BASE = make_data(n_samples=600, n_features=3, n_components=3, seed=11)


def finite_model(gmm, X):
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        value = getattr(gmm, name)
        assert np.all(np.isfinite(value)), name
    assert np.isfinite(gmm.lower_bound_)
    assert np.all(np.isfinite(np.asarray(gmm.score_samples(X))))
    assert np.isfinite(gmm.bic(X))
    proba = np.asarray(gmm.predict_proba(X))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def fit(X, n_components=3, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(n_components, random_state=0, **kwargs).fit(X)


CASES = {
    "constant feature": np.column_stack([BASE[:, :2], np.full(600, 7.0)]),
    "duplicated points": np.repeat(BASE[:20], 30, axis=0),
    "offset 1e6": BASE + 1e6,
    "scaled 1e-8": BASE * 1e-8,
    "scaled 1e8": BASE * 1e8,
    "single feature": BASE[:, :1],
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_awkward_data_gives_a_finite_model(case, covariance_type):
    X = CASES[case]
    gmm = fit(da.from_array(X, chunks=170), covariance_type=covariance_type)
    finite_model(gmm, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_single_component_is_the_sample_mean_and_covariance(covariance_type):
    gmm = fit(BASE, n_components=1, covariance_type=covariance_type)
    np.testing.assert_allclose(gmm.means_[0], BASE.mean(0), rtol=1e-12)
    covariance = np.cov(BASE.T, bias=True) + 1e-6 * np.eye(3)
    expected = {"full": covariance[None], "tied": covariance, "diag": np.diag(covariance)[None],
                "spherical": np.array([np.trace(covariance) / 3])}[covariance_type]
    np.testing.assert_allclose(gmm.covariances_, expected, rtol=1e-10)
    assert gmm.converged_ and gmm.n_iter_ <= 2


def test_components_close_to_the_number_of_samples():
    X = BASE[:12]
    gmm = fit(X, n_components=11, covariance_type="diag")
    finite_model(gmm, X)


def test_a_component_that_receives_no_points_stays_finite():
    X = BASE
    means = np.vstack([BASE[:2], [[1e3, 1e3, 1e3]]])  # the third start is far from every point
    gmm = fit(X, means_init=means, covariance_type="spherical", max_iter=5)
    finite_model(gmm, X)
    assert gmm.weights_[2] < 1e-6


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float32_near_its_range_limits(scale):
    X32 = (BASE * scale).astype(np.float32)
    if scale > 1:
        # variances of ~1e60 cannot be float32 attributes: a clear error, not inf
        with pytest.raises(ValueError, match="do not fit in float32.*Pass float64 data"):
            fit(X32, covariance_type="full")
        finite_model(fit(X32.astype(np.float64), covariance_type="full"), X32.astype(np.float64))
    else:
        gmm = fit(X32, covariance_type="diag")
        finite_model(gmm, X32)
