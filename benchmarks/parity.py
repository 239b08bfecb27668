"""Largest deviation of daskgmm from scikit-learn, per covariance type and dtype.

Run: ``.venv/bin/python benchmarks/parity.py``. Both fit the same data from
the same initial parameters (weights_init, means_init, precisions_init) for
the same iterations; float32 daskgmm is compared with scikit-learn on the
float64 copy of the same values (scikit-learn's own float32 diag/tied M-step
loses accuracy, scikit-learn#30382). Deviation = max |ours - theirs| / max |theirs|
over weights_, means_, covariances_, precisions_, precisions_cholesky_, and the
relative deviation of the lower bound.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture

ATTRIBUTES = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


def deviation(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0))


def main(n_samples=50_000, n_features=6, n_components=5, max_iter=40):
    warnings.simplefilter("ignore", ConvergenceWarning)
    weights, means, covariances = random_mixture(n_components, n_features, separation=3.0, random_state=0)
    X = make_mixture(n_samples, weights, means, covariances, chunk_rows=10_000).compute()
    print(f"data: {n_samples} x {n_features}, K={n_components}, {max_iter} iterations (tol=0)")
    print(f"{'covariance':>10} {'dtype':>8} {'params':>10} {'lower bound':>12} {'labels agree':>13}")
    for covariance_type in ("full", "tied", "diag", "spherical"):
        start = SklearnGaussianMixture(n_components, covariance_type=covariance_type, max_iter=0, random_state=0).fit(X)
        settings = dict(
            covariance_type=covariance_type, tol=0, max_iter=max_iter,
            weights_init=start.weights_ / start.weights_.sum(),
            means_init=start.means_ + 0.3, precisions_init=start.precisions_,
        )
        for dtype in (np.float64, np.float32):
            data = X.astype(dtype)
            reference_data = data.astype(np.float64)
            reference = SklearnGaussianMixture(n_components, **settings).fit(reference_data)
            ours = GaussianMixture(n_components, chunk_rows=7_000, **settings).fit(data)
            params = max(deviation(getattr(ours, a), getattr(reference, a)) for a in ATTRIBUTES)
            bound = abs(ours.lower_bound_ - reference.lower_bound_) / abs(reference.lower_bound_)
            agree = np.mean(ours.predict(data) == reference.predict(reference_data))
            print(f"{covariance_type:>10} {np.dtype(dtype).name:>8} {params:10.2e} {bound:12.2e} {agree:13.6f}")


if __name__ == "__main__":
    main()
