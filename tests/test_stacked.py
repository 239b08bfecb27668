"""Stacked diag/spherical models (select_model's candidates): one E-step GEMM and one M-step GEMM
for all of them give each model's lone statistics up to round-off, exactness paths included."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import fit_quietly, make_data

from daskgmm import GaussianMixture
from daskgmm.kernels import chunk as kernels
from daskgmm.kernels.chunk import GaussianAssigner, GaussianScorer, NearestCentreAssigner, chunk_statistics, chunk_statistics_models

MODELS = [(1, "diag"), (3, "spherical"), (4, "diag"), (2, "spherical"), (3, "full")]


@pytest.fixture(autouse=True)
def stack_from_two(monkeypatch):
    """Small model lists here: stack from two E-steps on (select_model stacks from
    ``MIN_STACKED_E_STEPS``, below which the compiled walks are as fast)."""
    monkeypatch.setattr(kernels, "MIN_STACKED_E_STEPS", 2)


def assigners_for(X, models):
    return [GaussianAssigner(fit_quietly(GaussianMixture(k, covariance_type=t, max_iter=3, random_state=0),
                                         X[:3000].astype(np.float64))._fitted_params()) for k, t in models]


def assert_stacked_equals_lone(X, weights, assigners, models, rtol):
    types, ks = [t for _, t in models], [k for k, _ in models]
    stacked = chunk_statistics_models(X, weights, assigners, types, ks, block_rows=1000, stack=True)
    for stats, assigner, (k, covariance_type) in zip(stacked, assigners, models):
        lone = chunk_statistics(X, weights, assigner, covariance_type, k, block_rows=1000)
        for name in ("resp_sum", "means", "scatter"):
            np.testing.assert_allclose(getattr(stats, name), getattr(lone, name), rtol=rtol, atol=0,
                                       err_msg=f"{name} K={k} {covariance_type}")
        np.testing.assert_allclose(stats.log_likelihood, lone.log_likelihood, rtol=rtol)
        assert stats.weight_sum == lone.weight_sum and stats.n_rows == lone.n_rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_stacked_models_equal_their_lone_walks(dtype, weighted):
    X = make_data(n_samples=5000, n_features=5, n_components=4, seed=3) + 1e5  # an offset far from 0
    weights = np.random.default_rng(0).uniform(0, 3, len(X)) if weighted else None
    assigners = assigners_for(X, MODELS)
    assert_stacked_equals_lone(X.astype(dtype), weights, assigners, MODELS, rtol=1e-9)


FULL_MODELS = [(1, "full"), (3, "full"), (4, "full"), (2, "full"), (2, "diag")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_stacked_full_models_equal_their_lone_walks(dtype, weighted):
    """select_model's full candidates: one E-step GEMM over the quadratic columns and one M-step
    GEMM for all of them; each model's statistics as its lone walk's (whitening or quadratic
    columns, whichever its width takes), a scored model's log-likelihood too."""
    X = make_data(n_samples=5000, n_features=5, n_components=4, seed=3) + 1e5
    weights = np.random.default_rng(0).uniform(0, 3, len(X)) if weighted else None
    assigners = assigners_for(X, FULL_MODELS)
    assigners[2] = GaussianScorer(assigners[2].params)
    # float32: narrow lone models whiten in float32, the stacked ones use float64 columns
    assert_stacked_equals_lone(X.astype(dtype), weights, assigners, FULL_MODELS,
                               rtol=1e-9 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_stacked_full_kmeans_assignments_equal_the_lone_ones(weighted):
    """select_model's full k-means starts: every set of centres assigned in one walk, their sums
    from the block's quadratic columns: each start's statistics as its lone assignment's."""
    X = make_data(n_samples=5000, n_features=4, n_components=4, seed=4) + 1e5
    weights = np.random.default_rng(1).uniform(0, 3, len(X)) if weighted else None
    models = [(2, "full"), (4, "full"), (3, "full")]
    rng = np.random.default_rng(0)
    assigners = [NearestCentreAssigner(X[rng.choice(len(X), k, replace=False)]) for k, _ in models]
    assigners[2] = NearestCentreAssigner(np.vstack([assigners[2].centres[:2], [[1e9] * 4]]))  # one empty
    assert_stacked_equals_lone(X, weights, assigners, models, rtol=1e-9)


def test_stacked_full_models_keep_their_exact_paths():
    X = make_data(n_samples=4000, n_features=3, n_components=3, seed=1)
    X[:50] = X[0]
    models = [(4, "full"), (2, "full")]
    assigners = assigners_for(X, models)
    params = assigners[0].params
    means, covariances = params.means.copy(), params.covariances.copy()
    means[0], covariances[0] = X[0], np.eye(3) * 1e-12  # collapsed onto the duplicated point
    means[1] += 1e6  # far from every row
    from daskgmm.model.params import compute_precision_cholesky

    assigners[0] = GaussianAssigner(replace(params, means=means, covariances=covariances,
                                            precisions_cholesky=compute_precision_cholesky(covariances, "full")))
    assert_stacked_equals_lone(X, None, assigners, models, rtol=1e-8)


def test_stacked_models_keep_their_exact_paths_for_far_and_collapsed_components():
    X = make_data(n_samples=4000, n_features=3, n_components=3, seed=1)
    X[:50] = X[0]  # duplicated rows: a component may sit on them alone
    models = [(4, "diag"), (4, "spherical"), (2, "diag")]
    assigners = assigners_for(X, models)
    params = assigners[0].params
    # one component collapsed onto the duplicated point, one 1e6 of its spreads away
    means, precisions_cholesky = params.means.copy(), params.precisions_cholesky.copy()
    means[0], precisions_cholesky[0] = X[0], 1e6
    means[1] += 1e6
    assigners[0] = GaussianAssigner(replace(params, means=means, precisions_cholesky=precisions_cholesky))
    assert_stacked_equals_lone(X, None, assigners, models, rtol=1e-8)


def test_other_assigners_and_a_single_stackable_model_are_walked_alone():
    X = make_data(n_samples=3000, n_features=3, n_components=2, seed=2)
    assigners = assigners_for(X, [(2, "diag")]) + [NearestCentreAssigner(X[:2])]
    both = chunk_statistics_models(X, None, assigners, ["diag", "diag"], [2, 2], stack=True)
    alone = chunk_statistics_models(X, None, assigners, ["diag", "diag"], [2, 2])
    for a, b in zip(both, alone):  # nothing to stack: bit for bit
        np.testing.assert_array_equal(a.scatter, b.scatter)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_kmeans_assignments_equal_the_numpy_ones(dtype, weighted):
    """Diag/spherical k-means starts are assigned by one compiled walk for all sets of centres;
    full ones by the NumPy assigner: the same labels, so the same counts, means and (diagonal)
    scatters, far from the origin, with weights, and with a centre no row is nearest to."""
    X = (make_data(n_samples=5000, n_features=4, n_components=4, seed=4) + 1e5).astype(dtype)
    weights = np.random.default_rng(1).uniform(0, 3, len(X)) if weighted else None
    centre_sets = [X[:1].astype(np.float64), X[[0, 2500]].astype(np.float64),
                   np.vstack([X[[0, 1200, 2500, 4000]], X[:1] + 1e4]).astype(np.float64)]
    assigners = [NearestCentreAssigner(c) for c in centre_sets]
    ks = [len(c) for c in centre_sets]
    for covariance_type in ("diag", "spherical"):
        together = chunk_statistics_models(X, weights, assigners, [covariance_type] * 3, ks, block_rows=1000)
        for stats, assigner, k in zip(together, assigners, ks):
            full = chunk_statistics(X, weights, assigner, "full", k, block_rows=1000)
            alone = chunk_statistics(X, weights, assigner, covariance_type, k, block_rows=1000)
            np.testing.assert_array_equal(stats.resp_sum, alone.resp_sum)  # one walk or its own: bit for bit
            np.testing.assert_array_equal(stats.scatter, alone.scatter)
            # (the NumPy path weighs float32 rows' one-hot responsibilities in float32)
            rtol = 1e-7 if weighted and dtype == np.float32 else 1e-12
            np.testing.assert_allclose(stats.resp_sum, full.resp_sum, rtol=rtol)
            np.testing.assert_allclose(stats.means, full.means, rtol=rtol)
            diagonal = np.diagonal(full.scatter, axis1=1, axis2=2)
            expected = diagonal if covariance_type == "diag" else diagonal.sum(axis=1)
            np.testing.assert_allclose(stats.scatter, expected, rtol=1e-6 if dtype == np.float32 else 1e-9)
        assert together[2].resp_sum[-1] == 0  # the far centre holds no row


def test_scorers_give_the_log_likelihood_of_their_models_and_no_sums():
    """select_model's final pass: only each candidate's log-likelihood, stacked or walked alone."""
    X = make_data(n_samples=4000, n_features=3, n_components=3, seed=6) - 3e4
    models = [(1, "diag"), (2, "spherical"), (3, "diag"), (2, "diag"), (3, "full")]
    assigners = assigners_for(X, models)
    types, ks = [t for _, t in models], [k for k, _ in models]
    expected = chunk_statistics_models(X, None, assigners, types, ks, block_rows=1000)
    scorers = [GaussianScorer(a.params) for a in assigners]
    for stack in (False, True):
        scored = chunk_statistics_models(X, None, scorers, types, ks, block_rows=1000, stack=stack)
        for stats, reference in zip(scored, expected):
            np.testing.assert_allclose(stats.log_likelihood, reference.log_likelihood, rtol=1e-12)
            assert stats.weight_sum == reference.weight_sum and not stats.resp_sum.any()
    # scorers among E-steps (stacked together): each as its own kind
    mixed = chunk_statistics_models(X, None, assigners[:2] + scorers[2:], types, ks, block_rows=1000, stack=True)
    for stats, reference, is_scorer in zip(mixed, expected, [False, False, True, True, True]):
        np.testing.assert_allclose(stats.log_likelihood, reference.log_likelihood, rtol=1e-12)
        assert (not stats.resp_sum.any()) == is_scorer


def test_fewer_e_steps_than_the_threshold_are_walked_alone(monkeypatch):
    monkeypatch.setattr(kernels, "MIN_STACKED_E_STEPS", 6)
    X = make_data(n_samples=3000, n_features=3, n_components=2, seed=2)
    models = MODELS[:4]
    assigners = assigners_for(X, models)
    types, ks = [t for _, t in models], [k for k, _ in models]
    stacked = chunk_statistics_models(X, None, assigners, types, ks, stack=True)
    for stats, assigner, (k, covariance_type) in zip(stacked, assigners, models):
        np.testing.assert_array_equal(stats.scatter, chunk_statistics(X, None, assigner, covariance_type, k).scatter)
