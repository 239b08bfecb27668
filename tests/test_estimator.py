"""The scikit-learn contract: parameters, validation, semantics, and weighted fits."""

import re
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from conftest import FITTED_ARRAYS, assert_same_model, fit_quietly, relative_deviation, starting_point
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import GaussianMixture

K = 4


def test_is_a_scikit_learn_gaussian_mixture_with_the_same_parameters():
    ours = GaussianMixture()
    reference_params = SklearnGaussianMixture().get_params()
    our_params = ours.get_params()
    for name, value in reference_params.items():
        assert our_params[name] == value if value is not None else our_params[name] is None
    assert set(our_params) - set(reference_params) == {
        "chunk_rows", "split_every", "init_sample_size", "persist", "checkpoint", "reseed_collapsed", "device",
        "algorithm", "waves", "learning_decay", "learning_offset", "batch_size", "missing"}
    assert isinstance(ours, SklearnGaussianMixture)
    copy = clone(GaussianMixture(3, covariance_type="diag", chunk_rows=100))
    assert copy.get_params()["chunk_rows"] == 100 and copy.covariance_type == "diag"
    assert ours.set_params(n_components=5).n_components == 5


@pytest.mark.parametrize(
    "params",
    [
        dict(n_components=0),
        dict(covariance_type="banana"),
        dict(init_params="nope"),
        dict(tol=-1.0),
        dict(reg_covar=-1e-3),
        dict(max_iter=-1),
        dict(n_init=0),
        dict(verbose_interval=0),
    ],
)
def test_invalid_parameters_get_scikit_learn_messages(X, params):
    with pytest.raises(ValueError) as expected:
        SklearnGaussianMixture(**params).fit(X)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        GaussianMixture(**params).fit(X)


@pytest.mark.parametrize(
    "params",
    [
        dict(weights_init=[0.5, 0.6, 0.1, 0.1]),
        dict(weights_init=[-0.5, 0.5, 0.5, 0.5]),
        dict(weights_init=[0.5, 0.5]),
        dict(means_init=np.zeros((K, 5))),
        dict(precisions_init=np.ones((K, 3, 3))),  # singular, not positive definite
        dict(precisions_init=-np.ones((K, 3)), covariance_type="diag"),
        dict(precisions_init=np.ones(3), covariance_type="spherical"),
        dict(precisions_init=np.ones((3, 3)), covariance_type="tied"),
        dict(precisions_init=np.eye(4), covariance_type="tied"),
        dict(means_init=np.full((K, 3), np.nan)),
    ],
)
def test_invalid_init_arrays_get_scikit_learn_messages(X, params):
    with pytest.raises(ValueError) as expected:
        SklearnGaussianMixture(K, **params).fit(X)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        GaussianMixture(K, **params).fit(X)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        GaussianMixture(K, **params).fit(da.from_array(X, chunks=500))


def test_too_few_samples(X):
    with pytest.raises(ValueError, match="Expected n_samples >= n_components but got n_components = 4, n_samples = 3"):
        GaussianMixture(K).fit(X[:3])
    with pytest.raises(ValueError, match="n_components = 4, n_samples = 3"):
        GaussianMixture(K).fit(da.from_array(X[:3]))
    for tiny in (X[:1], da.from_array(X[:1])):
        with pytest.raises(ValueError, match="minimum of 2 is required"):
            GaussianMixture(1).fit(tiny)


def test_empty_data_is_refused():
    for empty in (np.empty((0, 3)), da.from_array(np.empty((0, 3)))):
        with pytest.raises(ValueError, match="Found array with 0 sample\\(s\\)"):
            GaussianMixture(1).fit(empty)
    for no_features in (np.empty((10, 0)), da.from_array(np.empty((10, 0)))):
        with pytest.raises(ValueError, match="0 feature\\(s\\)"):
            GaussianMixture(1).fit(no_features)


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((4, 3, 2))])
def test_wrong_dimensionality_is_refused(bad):
    for data in (bad, da.from_array(bad)):
        with pytest.raises(ValueError, match="2D|dim <= 2|expected <= 2"):
            GaussianMixture(1).fit(data)


def test_non_finite_dask_input_names_the_first_bad_row(X):
    bad = X.copy()
    bad[1234, 2] = np.nan
    bad[1500, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity in 2 of 2000 rows \(the first at row 1234\)"):
        GaussianMixture(K, **starting_point(X, K, "full")).fit(da.from_array(bad, chunks=300))
    with pytest.raises(ValueError, match="row 1234"):
        GaussianMixture(K, random_state=0).fit(da.from_array(bad, chunks=300))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(K).fit(bad)


def test_a_failed_fit_leaves_the_fitted_model_as_it_was(X):
    gmm = fit_quietly(GaussianMixture(K, random_state=0), X)
    before = {name: getattr(gmm, name).copy() for name in FITTED_ARRAYS}
    state = (gmm.n_iter_, gmm.lower_bound_, gmm.converged_, gmm.n_features_in_)
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError):
        gmm.fit(da.from_array(bad, chunks=500))
    with pytest.raises(ValueError):
        gmm.set_params(reg_covar=0.0).fit(np.repeat(X[:2], 50, axis=0))  # ill-defined covariance
    with pytest.raises(ValueError):
        gmm.fit(X[:, :2], sample_weight=-np.ones(len(X)))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(gmm, name), value)
    assert (gmm.n_iter_, gmm.lower_bound_, gmm.converged_, gmm.n_features_in_) == state


def test_ill_defined_covariance_error_is_scikit_learn_s(X):
    # 100 copies of one point far from the rest: component 0 collapses onto them.
    collapsed = np.vstack([np.repeat(X[:1] + 100, 100, axis=0), X[:100]])
    settings = dict(
        reg_covar=0,
        weights_init=[0.5, 0.5],
        means_init=collapsed[[0, 150]],
        precisions_init=np.stack([np.eye(3)] * 2),
    )
    with pytest.raises(ValueError) as expected:
        SklearnGaussianMixture(2, **settings).fit(collapsed)
    assert "ill-defined empirical covariance" in str(expected.value)
    # the first sentence (scikit-learn 1.9 added "or scale the input data" to the advice, as daskgmm has it)
    with pytest.raises(ValueError, match=re.escape(str(expected.value).split("Try")[0])):
        GaussianMixture(2, **settings).fit(collapsed)
    with pytest.raises(ValueError, match="passing float64 data instead of float32"):
        GaussianMixture(2, **settings).fit(collapsed.astype(np.float32))


def test_convergence_warning_and_flags(X):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gmm = GaussianMixture(K, max_iter=2, random_state=0).fit(X)
    assert not gmm.converged_ and gmm.n_iter_ == 2 and len(gmm.lower_bounds_) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert GaussianMixture(K, random_state=0).fit(X).converged_


def test_warm_start_continues_like_scikit_learn(X):
    start = starting_point(X, K, "full")
    ours = GaussianMixture(K, warm_start=True, max_iter=3, tol=1e-8, **start)
    reference = SklearnGaussianMixture(K, warm_start=True, max_iter=3, tol=1e-8, **start)
    for _ in range(3):
        fit_quietly(ours, da.from_array(X, chunks=700))
        fit_quietly(reference, X)
        assert_same_model(ours, reference, 1e-9)
    assert ours.n_iter_ == 3  # each call runs max_iter more iterations


def test_n_init_keeps_the_best_restart(X, capsys):
    gmm = fit_quietly(GaussianMixture(K, n_init=4, init_params="random", random_state=0, verbose=2), X)
    printed = capsys.readouterr().out
    bounds = [float(b) for b in re.findall(r"lower bound (-?\d+\.\d+)", printed)]
    assert len(bounds) == 4 and len(set(bounds)) > 1
    assert gmm.lower_bound_ == pytest.approx(max(bounds), abs=1e-5)


def test_verbose_output_matches_scikit_learn(X, capsys):
    settings = dict(max_iter=20, tol=1e-6, verbose=2, verbose_interval=3, **starting_point(X, K, "diag"))
    fit_quietly(SklearnGaussianMixture(K, covariance_type="diag", **settings), X)
    expected = capsys.readouterr().out
    fit_quietly(GaussianMixture(K, covariance_type="diag", **settings), X)
    got = capsys.readouterr().out

    def without_times(text):
        return re.sub(r"\d+\.\d+s", "T", text)

    assert without_times(got) == without_times(expected)
    assert "Iteration 3" in got


@pytest.mark.parametrize("make_input", [np.asarray, lambda a: da.from_array(a, chunks=333)])
def test_fit_predict_equals_fit_then_predict(X, make_input):
    data = make_input(X)
    gmm = GaussianMixture(K, random_state=1, max_iter=3)
    with pytest.warns(ConvergenceWarning):
        labels = gmm.fit_predict(data)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(gmm.predict(data)))
    assert isinstance(labels, type(gmm.predict(data)))


def test_dataframe_input_records_feature_names(X):
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    gmm = fit_quietly(GaussianMixture(K, random_state=0), frame)
    np.testing.assert_array_equal(gmm.feature_names_in_, ["a", "b", "c"])
    assert gmm.n_features_in_ == 3
    reference = fit_quietly(SklearnGaussianMixture(K, random_state=0), frame)
    assert relative_deviation(gmm.means_, reference.means_) < 1e-9
    np.testing.assert_array_equal(gmm.predict(frame), reference.predict(frame))
    with pytest.raises(ValueError, match="feature names should match"):
        gmm.predict(frame.rename(columns={"a": "z"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        gmm.predict(X)


def test_predict_refuses_a_different_number_of_features(X):
    gmm = fit_quietly(GaussianMixture(2, random_state=0), X)
    for data in (X[:, :2], da.from_array(X[:, :2])):
        with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
            gmm.predict(data)


def test_unfitted_estimator_raises_not_fitted(X):
    with pytest.raises(NotFittedError):
        GaussianMixture().predict(X)


def test_sample_matches_scikit_learn_and_the_model(X):
    settings = dict(random_state=7, covariance_type="full")
    ours = fit_quietly(GaussianMixture(K, **settings), X)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), X)
    samples, labels = ours.sample(20000)
    expected_samples, expected_labels = reference.sample(20000)
    assert samples.shape == (20000, 3) and labels.shape == (20000,)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(samples, expected_samples, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.bincount(labels, minlength=K) / 20000, ours.weights_, atol=0.015)
    np.testing.assert_allclose(samples.mean(0), ours.weights_ @ ours.means_, atol=0.1)


# --------------------------------------------------------------------- weights
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_unit_weights_are_no_weights(X, covariance_type):
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=1e-6, **start)
    plain = fit_quietly(GaussianMixture(K, **settings), X)
    unit = fit_quietly(GaussianMixture(K, **settings), X, sample_weight=np.ones(len(X)))
    assert_same_model(unit, plain, 1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_weight_two_is_a_duplicated_row(X, covariance_type):
    """Weighted fit == scikit-learn on the data with weight-2 rows duplicated."""
    weights = np.ones(len(X))
    weights[::3] = 2.0
    weights[1::7] = 0.0
    duplicated = np.repeat(X, weights.astype(int), axis=0)
    start = starting_point(X, K, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=1e-6, max_iter=200, **start)
    reference = fit_quietly(SklearnGaussianMixture(K, **settings), duplicated)
    dask_weights = da.from_array(weights, chunks=777)  # chunked unlike X
    ours = fit_quietly(GaussianMixture(K, **settings), da.from_array(X, chunks=300), sample_weight=dask_weights)
    assert_same_model(ours, reference, 1e-9)


def test_weighted_default_initialisation_is_a_good_fit(X):
    weights = np.random.default_rng(0).uniform(0.5, 3, size=len(X))
    for init in ("kmeans", "k-means++", "random", "random_from_data"):
        gmm = fit_quietly(GaussianMixture(K, init_params=init, random_state=0), X, sample_weight=weights)
        assert np.isfinite(gmm.lower_bound_) and gmm.weights_.sum() == pytest.approx(1)


@pytest.mark.parametrize(
    "weights, message",
    [
        (-np.ones(2000), "negative"),
        (np.ones(1999), "expected \\(2000,\\)"),
        (np.full(2000, np.nan), "NaN or infinity"),
        (np.zeros(2000), "sums to zero"),
        (da.from_array(-np.ones(2000), chunks=500), "negative"),
    ],
)
def test_invalid_sample_weight_is_refused(X, weights, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(K).fit(X, sample_weight=weights)
