"""scikit-learn is the oracle: same start, same model, to tight tolerances."""

import dask.array as da
import numpy as np
import pytest
from conftest import (
    COVARIANCE_TYPES,
    FITTED_ARRAYS,
    SKLEARN_VERSION,
    assert_same_model,
    fit_quietly,
    relative_deviation,
    starting_point,
)
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import GaussianMixture

K = 4
FLOAT64_RTOL = 1e-9
# float32 chunks against scikit-learn on the float64 copy, over a fixed number of
# iterations (a tol near float32 resolution would stop the two at different points).
FLOAT32_RTOL = 1e-5


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float64_parity_from_identical_start(X, covariance_type):
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=1e-6, max_iter=300, **start)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), X)
    ours = fit_quietly(GaussianMixture(K, chunk_rows=317, **settings), X)
    assert reference.n_iter_ > 5  # the start is rough enough to exercise many iterations
    assert_same_model(ours, reference, FLOAT64_RTOL)
    for method in ("predict", "predict_proba", "score_samples"):
        expected = getattr(reference, method)(X)
        got = getattr(ours, method)(X)
        assert got.shape == expected.shape
        if method == "predict":
            np.testing.assert_array_equal(got, expected)
        else:
            assert relative_deviation(got, expected) <= FLOAT64_RTOL
    for method in ("score", "bic", "aic"):
        expected = getattr(reference, method)(X)
        got = getattr(ours, method)(X)
        assert isinstance(got, float)
        np.testing.assert_allclose(got, expected, rtol=FLOAT64_RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_parity_against_float64_reference(X, covariance_type):
    X32 = X.astype(np.float32)
    X = X32.astype(np.float64)  # the float64 copy of the very same values
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=0, max_iter=25, **start)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), X)
    ours = fit_quietly(GaussianMixture(K, chunk_rows=500, **settings), X32)
    for name in FITTED_ARRAYS:
        assert getattr(ours, name).dtype == np.float32, name
        assert relative_deviation(getattr(ours, name), getattr(reference, name)) <= FLOAT32_RTOL
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=FLOAT32_RTOL)
    assert ours.n_iter_ == reference.n_iter_ == 25
    assert ours.predict_proba(X32).dtype == np.float32
    assert ours.score_samples(X32).dtype == np.float32
    agreement = np.mean(ours.predict(X32) == reference.predict(X))
    assert agreement > 0.999


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_dtypes_follow_scikit_learn(X, covariance_type):
    """Fitted arrays have the dtype scikit-learn gives them for the same float32 input (float32,
    since scikit-learn 1.9; earlier releases gave float64, and daskgmm keeps 1.9's convention
    whichever release is installed)."""
    X32 = X.astype(np.float32)
    reference = fit_quietly(SklearnGaussianMixture(2, covariance_type=covariance_type, random_state=0), X32)
    ours = fit_quietly(GaussianMixture(2, covariance_type=covariance_type, random_state=0), X32)
    for name in FITTED_ARRAYS:
        expected = getattr(reference, name).dtype if SKLEARN_VERSION >= (1, 9) else np.float32
        assert getattr(ours, name).dtype == expected, name
        assert getattr(ours, name).shape == getattr(reference, name).shape, name


POINT_INITS = ["k-means++", "random_from_data"]


@pytest.mark.parametrize(
    "init_params, covariance_type",
    [("kmeans", c) for c in COVARIANCE_TYPES]
    + [(i, c) for i in POINT_INITS for c in COVARIANCE_TYPES if c != "tied"],
)
def test_default_initialisation_matches_scikit_learn(X, init_params, covariance_type):
    """With no more rows than init_sample_size, the whole fit is scikit-learn's."""
    # n_init=1: two restarts that reach the same optimum would be told apart by round-off.
    settings = dict(covariance_type=covariance_type, init_params=init_params, random_state=3)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), X)
    ours = fit_quietly(GaussianMixture(K, **settings), X)
    assert_same_model(ours, reference, 1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_max_iter_zero_returns_the_start(X, covariance_type):
    settings = dict(covariance_type=covariance_type, max_iter=0, random_state=0)
    reference = SklearnGaussianMixture(K, **settings).fit(X)
    ours = GaussianMixture(K, **settings).fit(da.from_array(X, chunks=300))
    for name in ("weights_", "means_", "precisions_cholesky_"):
        assert relative_deviation(getattr(ours, name), getattr(reference, name)) <= 1e-9
    assert ours.n_iter_ == 0 and ours.lower_bound_ == -np.inf and not ours.converged_


@pytest.mark.parametrize("init_params", POINT_INITS)
def test_tied_start_from_points_is_regularised_identity(X, init_params):
    """Documented difference: scikit-learn's tied start from K single points is
    (X^T X - sum x_i x_i^T) / K over *all* rows (uncentred, so it moves with the
    origin); daskgmm gives the empirical tied covariance of those K points,
    reg_covar * I, as it does for every other covariance type."""
    settings = dict(covariance_type="tied", init_params=init_params, random_state=3, max_iter=0)
    reference = SklearnGaussianMixture(K, **settings).fit(X)
    ours = GaussianMixture(K, **settings).fit(X)
    # the chosen points themselves (scikit-learn's are shrunk by 1 / (1 + 10 eps), see params.py)
    np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-14)
    np.testing.assert_allclose(ours.covariances_, 1e-6 * np.eye(X.shape[1]))
    shifted = GaussianMixture(K, **settings).fit(X + 1e3)
    np.testing.assert_allclose(shifted.covariances_, ours.covariances_)
