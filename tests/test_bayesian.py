"""daskgmm.BayesianGaussianMixture against scikit-learn's, and what it adds at scale."""

import json

import dask.array as da
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, counting_reads, fit_quietly, interrupting, make_data, run
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture

from daskgmm import BayesianGaussianMixture, load
from daskgmm.em.families import VariationalFamily
from daskgmm.em.loop import FitResult, Run, advance_runs
from daskgmm.io.inputs import RowData
from daskgmm.mixture.model_files import describe_model
from daskgmm.model.variational import Priors, PriorSettings

PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
ATTRIBUTES = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "mean_precision_",
              "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "weight_concentration_prior_",
              "mean_precision_prior_", "degrees_of_freedom_prior_"]


@pytest.fixture(scope="module")
def X_far():
    """Overlapping blobs far from the origin (the default priors are the data's own moments)."""
    return make_data(n_samples=1500, n_components=4, offset=50.0, seed=3)


def assert_same_variational_model(ours, reference, rtol=1e-9):
    for name in ATTRIBUTES:
        np.testing.assert_allclose(getattr(ours, name), getattr(reference, name), rtol=rtol, atol=rtol,
                                   err_msg=name)
    np.testing.assert_allclose(np.asarray(ours.weight_concentration_), np.asarray(reference.weight_concentration_),
                               rtol=rtol)
    np.testing.assert_allclose(ours.lower_bound_, np.ravel(reference.lower_bound_)[0], rtol=rtol)
    if hasattr(reference, "lower_bounds_"):  # scikit-learn >= 1.7 records every iteration's bound
        np.testing.assert_allclose(ours.lower_bounds_, np.ravel(reference.lower_bounds_), rtol=rtol)
    assert (ours.n_iter_, ours.converged_) == (reference.n_iter_, reference.converged_)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_parity_with_scikit_learn(X_far, covariance_type, prior_type, chunked):
    settings = dict(n_components=6, covariance_type=covariance_type, weight_concentration_prior_type=prior_type,
                    max_iter=40, random_state=0)
    reference = fit_quietly(SklearnBayesianGaussianMixture(**settings), X_far)
    X = da.from_array(X_far, chunks=400) if chunked else X_far
    ours = fit_quietly(BayesianGaussianMixture(**settings), X)
    assert_same_variational_model(ours, reference)
    assert isinstance(ours.weight_concentration_, tuple) == (prior_type == "dirichlet_process")
    # the bound never decreases
    bounds = np.asarray(ours.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
    labels = ours.predict(X)
    np.testing.assert_array_equal(np.asarray(labels), reference.predict(X_far))
    np.testing.assert_allclose(np.asarray(ours.predict_proba(X)), reference.predict_proba(X_far), atol=1e-9)
    np.testing.assert_allclose(np.asarray(ours.score_samples(X)), reference.score_samples(X_far), rtol=1e-10)


@pytest.mark.parametrize("init_params", ["random_from_data", "k-means++"])
def test_parity_for_starts_from_points(X_far, init_params):
    settings = dict(n_components=5, init_params=init_params, max_iter=30, random_state=1)
    reference = fit_quietly(SklearnBayesianGaussianMixture(**settings), X_far)
    ours = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X_far, chunks=500))
    assert_same_variational_model(ours, reference)


def test_restarts_keep_scikit_learns_best(X_far):
    settings = dict(n_components=5, covariance_type="diag", n_init=3, max_iter=30, random_state=2)
    reference = fit_quietly(SklearnBayesianGaussianMixture(**settings), X_far)
    ours = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X_far, chunks=500))
    assert_same_variational_model(ours, reference)


def test_float32_within_its_precision(X_far):
    settings = dict(n_components=4, max_iter=15, tol=0, random_state=0)
    reference = fit_quietly(BayesianGaussianMixture(**settings), X_far)
    ours = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X_far.astype(np.float32), chunks=400))
    assert ours.means_.dtype == np.float32 and ours.covariances_.dtype == np.float32
    np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.covariances_, reference.covariances_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-5)


def test_chunking_and_scheduler_do_not_change_the_fit(X_far):
    settings = dict(n_components=5, covariance_type="tied", max_iter=25, random_state=0)
    whole = fit_quietly(BayesianGaussianMixture(**settings), X_far)
    for chunks in (97, 700):
        chunked = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X_far, chunks=chunks))
        assert_same_variational_model(chunked, whole, rtol=1e-10)


def test_one_read_per_iteration(X_far):
    dx, reads = counting_reads(X_far, 300)
    model = fit_quietly(BayesianGaussianMixture(n_components=4, max_iter=7, tol=0, persist=False,
                                                random_state=0), dx)
    # the sample (all rows here), the k-means assignment pass (which also yields the priors'
    # moments), then one read per iteration
    assert model.n_iter_ == 7
    assert np.bincount(reads).tolist() == [2 + 7] * dx.numblocks[0]


def test_single_iteration_warm_starts_follow_the_fit_and_never_lower_the_bound(X_far):
    settings = dict(n_components=5, covariance_type="full", random_state=0)
    whole = fit_quietly(BayesianGaussianMixture(**settings, max_iter=12, tol=0), X_far)
    stepped = BayesianGaussianMixture(**settings, max_iter=1, warm_start=True)
    bounds = []
    for _ in range(12):
        fit_quietly(stepped, da.from_array(X_far, chunks=500))
        bounds.append(stepped.lower_bound_)
    np.testing.assert_allclose(bounds, whole.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(stepped.means_, whole.means_, rtol=1e-9)
    assert np.all(np.diff(bounds) >= 0)


def test_the_prior_switches_off_what_the_data_do_not_need():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.vstack([c + rng.normal(size=(700, 2)) for c in centres])
    model = fit_quietly(BayesianGaussianMixture(n_components=10, random_state=0, max_iter=300),
                        da.from_array(X, chunks=500))
    assert model.n_active_components_ == 3
    assert np.sort(model.weights_)[-3:].sum() > 0.99


def test_weights_count_rows_and_the_default_priors_ignore_their_scale(X_far):
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 4, size=len(X_far))
    settings = dict(n_components=4, covariance_type="diag", max_iter=20, tol=0, random_state=0)
    # the data's mean and spread do not depend on the weights' scale; the evidence does
    fits = [fit_quietly(BayesianGaussianMixture(**settings), X_far, sample_weight=counts * scale)
            for scale in (1.0, 1e-6, 1e6)]
    for other in fits[1:]:
        for name in ("covariance_prior_", "mean_prior_"):
            np.testing.assert_allclose(getattr(other, name), getattr(fits[0], name), rtol=1e-9, err_msg=name)
    assert fits[1].n_active_components_ <= fits[0].n_active_components_ == fits[2].n_active_components_
    # a weight of n is n copies of the row: the same iterations from the same start and priors
    # (data-derived priors count the covariance's ddof in average weights, so that their scale
    # changes nothing)
    family = VariationalFamily(PriorSettings(), reg_covar=1e-6)
    start = fits[0]._variational_params(priors=Priors("dirichlet_process", 0.25, 1.0, X_far.mean(axis=0), 3.0,
                                                      np.var(X_far, axis=0)))
    outcomes = []
    for data in (RowData(da.from_array(X_far, chunks=500), da.from_array(counts.astype(float), chunks=500), False),
                 RowData(da.from_array(np.repeat(X_far, counts, axis=0), chunks=700), None, False)):
        runs = [Run(FitResult(start, -np.inf))]
        advance_runs(data, runs, family, tol=0, max_iter=10)
        outcomes.append(runs[0].result)
    np.testing.assert_allclose(outcomes[0].lower_bounds, outcomes[1].lower_bounds, rtol=1e-10)
    np.testing.assert_allclose(outcomes[0].params.means, outcomes[1].params.means, rtol=1e-10)


def test_tol_per_row_judges_the_bound_per_row(X_far):
    total = fit_quietly(BayesianGaussianMixture(n_components=6, random_state=0, max_iter=500), X_far)
    per_row = fit_quietly(BayesianGaussianMixture(n_components=6, random_state=0, max_iter=500,
                                                  tol_per_row=True), X_far)
    assert per_row.converged_
    assert abs(per_row.lower_bounds_[-1] - per_row.lower_bounds_[-2]) < 1e-3 * len(X_far)
    assert per_row.n_iter_ < total.n_iter_
    np.testing.assert_allclose(per_row.lower_bounds_, total.lower_bounds_[: per_row.n_iter_], rtol=1e-12)


@pytest.mark.parametrize("bad, message_from", [
    (dict(mean_prior=[0.0, 1.0]), "mean"),
    (dict(degrees_of_freedom_prior=1.5), "dof"),
    (dict(covariance_prior=np.array([[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]])), "full"),
    (dict(covariance_type="diag", covariance_prior=np.array([1.0, -1.0, 1.0])), "diag"),
    (dict(covariance_type="tied", covariance_prior=np.eye(2)), "tied shape"),
])
def test_bad_priors_get_scikit_learns_messages_and_no_fitted_state(X_far, bad, message_from):
    with pytest.raises(ValueError) as expected:
        SklearnBayesianGaussianMixture(n_components=2, **bad).fit(X_far)
    model = BayesianGaussianMixture(n_components=2, **bad)
    with pytest.raises(ValueError) as raised:
        model.fit(da.from_array(X_far, chunks=500))
    assert str(raised.value) == str(expected.value)
    assert not hasattr(model, "converged_")


def test_save_load_and_describe(X_far, tmp_path):
    model = fit_quietly(BayesianGaussianMixture(n_components=6, covariance_type="spherical", random_state=0,
                                                weight_concentration_prior_type="dirichlet_process"), X_far)
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert type(loaded) is BayesianGaussianMixture and loaded.get_params() == model.get_params()
    assert isinstance(loaded.weight_concentration_, tuple) and isinstance(loaded.covariance_prior_, float)
    np.testing.assert_array_equal(loaded.predict_proba(X_far), model.predict_proba(X_far))
    assert loaded.n_active_components_ == model.n_active_components_
    info = describe_model(tmp_path / "m")
    assert info["model"] == "BayesianGaussianMixture"
    assert info["n_active_components"] == model.n_active_components_
    assert info["data"] == {"source": "numpy.ndarray", "n_samples": len(X_far), "n_features": 3,
                            "dtype": "float64", "weighted": False}
    assert "mean_precision_" in np.load(tmp_path / "m" / "arrays.npz").files
    assert json.loads((tmp_path / "m" / "model.json").read_text())["estimator"] == "BayesianGaussianMixture"


def test_checkpoint_resume_ends_as_the_uninterrupted_fit(X_far, tmp_path):
    settings = dict(n_components=5, covariance_type="diag", n_init=2, max_iter=30, random_state=0, persist=False)
    whole = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X_far, chunks=500))
    resumed = BayesianGaussianMixture(**settings, checkpoint=tmp_path / "ck")
    with pytest.raises(KeyboardInterrupt):
        fit_quietly(resumed, interrupting(X_far, 3 * 8 + 1))
    assert not hasattr(resumed, "converged_")
    fit_quietly(resumed, da.from_array(X_far, chunks=500))
    assert_same_variational_model(resumed, whole, rtol=0)


def test_pickle_free_sampling_and_lazy_predictions(X_far):
    model = fit_quietly(BayesianGaussianMixture(n_components=4, random_state=0), X_far)
    samples, labels = model.sample(200)
    assert samples.shape == (200, X_far.shape[1]) and labels.shape == (200,)
    lazy = model.predict(da.from_array(X_far, chunks=300))
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == da.from_array(X_far, chunks=300).chunks[0]
    np.testing.assert_array_equal(lazy.compute(), model.predict(X_far))


def test_command_line_fit_info_predict(tmp_path):
    import zarr


    rng = np.random.default_rng(4)
    X = np.vstack([c + rng.normal(size=(800, 2)) for c in ([0.0, 0.0], [9.0, 0.0], [0.0, 9.0])])
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(600, 2), dtype="f8")[:] = X
    fitted = run("fit", tmp_path / "x.zarr", "-k", 8, "--bayesian", "--random-state", 0, "--max-iter", 300,
                 "--out", tmp_path / "model")
    reference = fit_quietly(BayesianGaussianMixture(n_components=8, random_state=0, max_iter=300), X)
    assert "until the lower bound (a total over the rows) changes by less than" in fitted.stderr
    assert f"Bayesian (dirichlet_process): {reference.n_active_components_} of 8 components carry weight" \
        in fitted.stdout
    assert f"lower bound: {reference.lower_bound_:.6f}" in fitted.stdout and "BIC" not in fitted.stdout
    assert "3 components carry weight" in run("info", tmp_path / "model").stdout
    run("predict", tmp_path / "model", tmp_path / "x.zarr", "--out", tmp_path / "labels.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "labels.zarr")[:], reference.predict(X))
    scored = run("score", tmp_path / "model", tmp_path / "x.zarr").stdout
    assert f"mean log-likelihood: {reference.score(X):.6f}  (a Bayesian mixture: no BIC/AIC)" in scored

    as_json = run("fit", tmp_path / "x.zarr", "-k", 8, "--bayesian", "dirichlet_distribution",
                  "--weight-concentration", "0.01", "--random-state", 1, "--json")
    summary = json.loads(as_json.stdout)
    reference = fit_quietly(BayesianGaussianMixture(
        n_components=8, weight_concentration_prior_type="dirichlet_distribution", weight_concentration_prior=0.01,
        random_state=1), X)
    assert summary["estimator"] == "BayesianGaussianMixture"
    assert summary["n_active_components"] == reference.n_active_components_
    assert summary["lower_bound"] == pytest.approx(reference.lower_bound_, rel=1e-10)
    assert summary["weight_concentration_prior_type"] == "dirichlet_distribution"
    per_row = run("fit", tmp_path / "x.zarr", "-k", 8, "--bayesian", "--tol-per-row", "--random-state", 0)
    assert "until the lower bound per row changes by less than 0.001" in per_row.stderr
    wrong = run("fit", tmp_path / "x.zarr", "--tol-per-row", check=False)
    assert wrong.returncode == 2 and wrong.stderr.strip() == "daskgmm: error: --weight-concentration and " \
        "--tol-per-row need --bayesian (see 'daskgmm fit --help')"


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_data_far_from_the_origin_fit_as_if_centred(covariance_type):
    """At an offset of 1e6 scikit-learn's expanded variances lose digits (its diag bound is off
    by 16 nats here); daskgmm's centred statistics give the fit of the centred data, which
    scikit-learn computes correctly."""
    from daskgmm.datasets import awkward_datasets

    X = np.asarray(awkward_datasets()["offset 1e6"])
    centre = np.round(X.mean(axis=0))
    settings = dict(n_components=4, covariance_type=covariance_type, random_state=0, max_iter=30)
    reference = fit_quietly(SklearnBayesianGaussianMixture(**settings), X - centre)
    ours = fit_quietly(BayesianGaussianMixture(**settings), da.from_array(X, chunks=700))
    np.testing.assert_allclose(ours.lower_bound_, np.ravel(reference.lower_bound_)[0], rtol=1e-11)
    if hasattr(reference, "lower_bounds_"):  # scikit-learn >= 1.7
        np.testing.assert_allclose(ours.lower_bounds_, np.ravel(reference.lower_bounds_), rtol=1e-11)
    np.testing.assert_allclose(ours.means_ - centre, reference.means_, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, reference.covariances_, rtol=1e-7)
