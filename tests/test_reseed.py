"""Opt-in recovery of collapsed components (scikit-learn's most reported crash)."""

import warnings

import dask.array as da
import numpy as np
import pytest
from conftest import BLOBS, SPIKE
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import CollapsedComponentWarning, GaussianMixture


def collapsing_start(covariance_type):
    means = np.vstack([BLOBS[[0, 500, 1000]], [[40.0, 40.0]]])
    precisions = {"full": np.stack([np.eye(2)] * 4), "diag": np.ones((4, 2)), "spherical": np.ones(4)}
    return dict(covariance_type=covariance_type, reg_covar=0.0, weights_init=np.full(4, 0.25),
                means_init=means, precisions_init=precisions[covariance_type], max_iter=60, tol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_default_raises_like_scikit_learn_and_reseed_recovers(covariance_type):
    settings = collapsing_start(covariance_type)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        SklearnGaussianMixture(4, **settings).fit(SPIKE)
    if covariance_type == "full":
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            GaussianMixture(4, **settings).fit(SPIKE)
    else:
        # Documented difference: scikit-learn's variance of a component on one point is its
        # round-off (it completes or raises by chance: here it raises); daskgmm's is the
        # resolution floor (eps |mu|)^2, so the fit completes with that component visibly
        # collapsed onto the duplicated point.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            degenerate = GaussianMixture(4, **dict(settings, max_iter=1)).fit(SPIKE)
        np.testing.assert_allclose(degenerate.means_[3], [40.0, 40.0], rtol=1e-12)
        assert np.all(degenerate.covariances_[3] <= (np.finfo(np.float64).eps * 40.0) ** 2)
    with pytest.warns(CollapsedComponentWarning, match=r"Component\(s\) \[3\] .* iteration 1"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm = GaussianMixture(4, reseed_collapsed=True, **settings).fit(da.from_array(SPIKE, chunks=400))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gmm, name)))
    assert np.isfinite(gmm.score(SPIKE))
    assert gmm.weights_.min() > 0.01  # every component explains real points again


def test_a_component_that_lost_its_points_is_reseeded_at_the_worst_explained_rows():
    far = np.vstack([BLOBS[[0, 500]], [[1e4, 1e4]]])  # the third start reaches no point at all
    settings = dict(covariance_type="diag", means_init=far, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stuck = GaussianMixture(3, **settings).fit(BLOBS)
        assert stuck.weights_[2] < 1e-10  # scikit-learn's behaviour: an empty component forever
        with pytest.warns(CollapsedComponentWarning, match=r"\[2\]"):
            recovered = GaussianMixture(3, reseed_collapsed=True, **settings).fit(BLOBS)
    assert recovered.weights_[2] > 0.01  # it explains real rows again
    # it restarted at one of the rows the 2-component fit explained worst
    first_pass = GaussianMixture(3, **dict(settings, max_iter=1)).fit(BLOBS)
    worst = np.argsort(first_pass.score_samples(BLOBS))[:1]
    assert np.linalg.norm(recovered.means_[2] - BLOBS[worst[0]]) < np.linalg.norm(far[2] - BLOBS[worst[0]])


def test_reseeding_is_deterministic_across_chunkings():
    settings = dict(collapsing_start("full"), reseed_collapsed=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [GaussianMixture(4, **settings).fit(da.from_array(SPIKE, chunks=c)) for c in (1560, 400, 137)]
    for other in fits[1:]:
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-8, atol=1e-8)
