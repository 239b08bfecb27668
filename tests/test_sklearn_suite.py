"""scikit-learn's own tests of ``GaussianMixture``'s public behaviour, run against daskgmm's.

The test functions are scikit-learn's (imported from the installed package, so they follow
the installed release), with the module's ``GaussianMixture`` replaced by daskgmm's and the
two fixtures they take from scikit-learn's conftest (``global_random_seed``,
``global_dtype``) at scikit-learn's defaults. Left out, as scikit-learn's code rather than
daskgmm's behaviour:

- tests of its private module functions (``_estimate_gaussian_covariances_*``,
  ``_compute_log_det_cholesky``, ``_estimate_log_gaussian_prob``);
- ``test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters``: it mocks the
  private ``_estimate_gaussian_parameters`` and counts its calls, which daskgmm's chunk
  kernels never make (the count is 0, not ``n_iter_``). What it guards (gh-26015: no
  parameters estimated when all three init arrays are given) is tested below for daskgmm as
  the passes over the data: exactly one per iteration, none for the start;
- the array API tests (daskgmm computes on NumPy, or CuPy through ``device="cuda"``).
"""

import numpy as np
import pytest

pytest.importorskip("sklearn.mixture.tests.test_gaussian_mixture")
import sklearn.mixture.tests.test_gaussian_mixture as suite  # noqa: E402
from conftest import counting_reads  # noqa: E402

from daskgmm import GaussianMixture  # noqa: E402

PRIVATE = {
    "test_suffstat_sk_full", "test_suffstat_sk_tied", "test_suffstat_sk_diag", "test_gaussian_suffstat_sk_spherical",
    "test_compute_log_det_cholesky", "test_gaussian_mixture_log_probabilities",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters",
}
PUBLIC = sorted(name for name in dir(suite)
                if name.startswith("test_") and name not in PRIVATE and "array_api" not in name)


@pytest.fixture(autouse=True)
def daskgmm_in_the_suite(monkeypatch):
    monkeypatch.setattr(suite, "GaussianMixture", GaussianMixture)


@pytest.fixture
def global_random_seed():
    return 42  # scikit-learn's default (SKLEARN_TESTS_GLOBAL_RANDOM_SEED unset)


@pytest.fixture
def global_dtype():
    return np.float64  # scikit-learn's default (SKLEARN_RUN_FLOAT32_TESTS unset)


for _name in PUBLIC:
    globals()[_name] = getattr(suite, _name)


def test_the_suite_is_there():
    assert len(PUBLIC) >= 30, PUBLIC
    assert "test_regularisation" in PUBLIC and "test_gaussian_mixture_fit" in PUBLIC


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_all_init_arrays_given_makes_no_initialisation_pass(covariance_type):
    """gh-26015 for daskgmm: with weights, means and precisions given, the fit reads the data once
    per iteration and once to check them (the first E-step of the loop), never to estimate a start."""
    rand_data = suite.RandomData(np.random.RandomState(42))
    X = rand_data.X[covariance_type]
    dX, reads = counting_reads(X, 100)
    n_chunks = dX.numblocks[0]
    gm = GaussianMixture(rand_data.n_components, covariance_type=covariance_type, weights_init=rand_data.weights,
                         means_init=rand_data.means, precisions_init=rand_data.precisions[covariance_type],
                         persist=False, random_state=0).fit(dX)
    assert len(reads) == gm.n_iter_ * n_chunks
