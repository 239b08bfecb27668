"""scikit-learn's own tests of ``BayesianGaussianMixture``'s public behaviour, run against daskgmm's.

The test functions are scikit-learn's (imported from the installed package, so they follow
the installed release), with the module's ``BayesianGaussianMixture`` replaced by daskgmm's.
Left out: tests of scikit-learn's private functions (``_log_dirichlet_norm``,
``_log_wishart_norm``) and ``test_compare_covar_type``, which calls the private
``_check_parameters``/``_initialize_parameters`` (scikit-learn's own code, not daskgmm's).
"""

import pytest

pytest.importorskip("sklearn.mixture.tests.test_bayesian_mixture")
import sklearn.mixture.tests.test_bayesian_mixture as suite  # noqa: E402

from daskgmm import BayesianGaussianMixture  # noqa: E402

PRIVATE = {"test_log_dirichlet_norm", "test_log_wishart_norm", "test_compare_covar_type"}
PUBLIC = sorted(name for name in dir(suite) if name.startswith("test_") and name not in PRIVATE)


@pytest.fixture(autouse=True)
def daskgmm_in_the_suite(monkeypatch):
    monkeypatch.setattr(suite, "BayesianGaussianMixture", BayesianGaussianMixture)


for _name in PUBLIC:
    globals()[_name] = getattr(suite, _name)


def test_the_suite_is_there():
    assert len(PUBLIC) >= 10, PUBLIC
