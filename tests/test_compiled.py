"""The compiled diag/spherical E+M loops (daskgmm/kernels/numba_loops.py) give the NumPy GEMM forms'
statistics up to round-off, on awkward data too, and only their fits import numba."""

import subprocess
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
from conftest import fit_quietly, make_data

from daskgmm import GaussianMixture
from daskgmm.kernels import chunk as kernels
from daskgmm.kernels.blocks import centre_block
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics, per_row
from daskgmm.kernels.densities import normalize_log_prob, weighted_log_prob


def params_for(X, n_components, covariance_type):
    model = GaussianMixture(n_components, covariance_type=covariance_type, max_iter=3, random_state=0)
    return fit_quietly(model, X[:3000].astype(np.float64))._fitted_params()


def assert_compiled_equals_numpy_forms(X, weights, params, rtol):
    compiled = chunk_statistics(X, weights, GaussianAssigner(params), params.covariance_type,
                                params.n_components, block_rows=1000, track_worst=3)
    numpy_forms = chunk_statistics(X, weights, GaussianAssigner(params, compiled=False), params.covariance_type,
                                   params.n_components, block_rows=1000, track_worst=3)
    for name in ("resp_sum", "means", "scatter", "worst_log_prob"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(numpy_forms, name), rtol=rtol, atol=0,
                                   err_msg=name)
    np.testing.assert_allclose(compiled.log_likelihood, numpy_forms.log_likelihood, rtol=rtol)
    np.testing.assert_array_equal(compiled.worst_index, numpy_forms.worst_index)
    assert compiled.weight_sum == numpy_forms.weight_sum and compiled.n_rows == numpy_forms.n_rows


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_loops_equal_the_numpy_forms(covariance_type, dtype, weighted):
    X = make_data(n_samples=5000, n_features=5, n_components=4, seed=3) + 1e5  # an offset far from 0
    weights = None
    if weighted:  # weights of any scale, some rows weighing nothing
        weights = np.random.default_rng(0).uniform(0, 3e6, len(X))
        weights[::7] = 0
    params = params_for(X, 4, covariance_type)
    assert_compiled_equals_numpy_forms(X.astype(dtype), weights, params, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_compiled_loops_on_far_collapsed_and_empty_components(covariance_type):
    X = make_data(n_samples=4000, n_features=3, n_components=3, seed=1)
    X[:50] = X[0]  # duplicated rows: a component may sit on them alone
    params = params_for(X, 4, covariance_type)
    means, precisions_cholesky, weights = params.means.copy(), params.precisions_cholesky.copy(), params.weights.copy()
    # one component collapsed onto the duplicated point, one 1e6 of its spreads away, one of weight 0
    means[0], precisions_cholesky[0] = X[0], 1e6
    means[1] += 1e6
    weights[3] = 0.0
    params = replace(params, means=means, precisions_cholesky=precisions_cholesky, weights=weights / weights.sum())
    assert_compiled_equals_numpy_forms(X, None, params, rtol=1e-8)
    stats = chunk_statistics(X, None, GaussianAssigner(params), covariance_type, 4)
    assert stats.resp_sum[3] == 0 and stats.resp_sum[0] >= 50 - 1e-9


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_the_compiled_and_numpy_paths_are_two_paths(monkeypatch, covariance_type):
    """Each path runs without the other: with the compiled loops stubbed out the NumPy forms still
    answer (and the compiled path fails), with the NumPy forms stubbed out the compiled loops
    answer (and the NumPy path fails). Until 2026-12 a subclass meant to reach the NumPy forms
    was sent to the compiled loops, and the comparisons above compared numba with numba."""
    X = make_data(n_samples=2000, n_features=3, n_components=3, seed=2)
    params = params_for(X, 3, covariance_type)

    def statistics(compiled):
        return chunk_statistics(X, None, GaussianAssigner(params, compiled=compiled), covariance_type, 3)

    with monkeypatch.context() as patch:
        stub = types.ModuleType("daskgmm.kernels.numba_loops")

        def missing(name):
            raise RuntimeError(f"compiled loops stubbed out ({name})")

        stub.__getattr__ = missing
        patch.setitem(sys.modules, "daskgmm.kernels.numba_loops", stub)
        statistics(compiled=False)
        with pytest.raises(RuntimeError, match="stubbed out"):
            statistics(compiled=True)
    with monkeypatch.context() as patch:
        def broken(*args, **kwargs):
            raise RuntimeError("NumPy forms stubbed out")

        patch.setattr(kernels, "moment_sums", broken)
        statistics(compiled=True)
        with pytest.raises(RuntimeError, match="stubbed out"):
            statistics(compiled=False)


def test_only_diag_and_spherical_fits_import_numba():
    script = (
        "import sys, numpy as np\n"
        "from daskgmm import GaussianMixture\n"
        "X = np.random.default_rng(0).normal(size=(2000, 3))\n"
        "for covariance_type in ('full', 'tied', 'diag'):\n"
        "    GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)\n"
        "    print(covariance_type, 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["full", "False", "tied", "False", "diag", "True"]


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_per_row_outputs_equal_the_numpy_forms(covariance_type, dtype):
    X = (make_data(n_samples=3000, n_features=4, n_components=3, seed=5) + 1e4).astype(dtype)
    params = params_for(X, 3, covariance_type)
    block = centre_block(X)
    log_prob = weighted_log_prob(block, params)
    proba, log_norm = normalize_log_prob(log_prob.copy())
    np.testing.assert_array_equal(per_row(X, params, "label"), np.argmax(log_prob, axis=1))
    np.testing.assert_allclose(per_row(X, params, "proba"), proba, rtol=1e-5 if dtype == np.float32 else 1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(per_row(X, params, "log_norm"), log_norm, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_a_float64_model_scores_float32_chunks_in_float64_without_converting_them():
    """The compiled loops take float32 rows as they are (no float64 copy of a chunk) and still
    answer in float64, as scikit-learn does for a float64 model."""
    import dask.array as da

    X = make_data(n_samples=4000, n_features=4, n_components=3, seed=6)
    model = fit_quietly(GaussianMixture(3, covariance_type="diag", random_state=0), X)
    X32 = da.from_array(X.astype(np.float32), chunks=1000)
    proba, scores = model.predict_proba(X32), model.score_samples(X32)
    assert proba.dtype == scores.dtype == np.float64
    assert not any(name.startswith("astype") for name in proba.dask.layers)
    np.testing.assert_allclose(proba.compute(), model.predict_proba(X.astype(np.float32).astype(np.float64)),
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(scores.compute(), model.score_samples(X.astype(np.float32).astype(np.float64)),
                               rtol=1e-12)
