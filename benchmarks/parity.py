"""Largest deviation of daskgmm from scikit-learn, per covariance type and dtype.

Run: ``.venv/bin/python benchmarks/parity.py``. Both fit the same data from
the same initial parameters (weights_init, means_init, precisions_init) for
the same iterations; float32 daskgmm is compared with scikit-learn on the
float64 copy of the same values (scikit-learn's own float32 diag/tied M-step
loses accuracy, scikit-learn#30382). Deviation = max |ours - theirs| / max |theirs|
over weights_, means_, covariances_, precisions_, precisions_cholesky_, and the
relative deviation of the lower bound. Then the same on the awkward datasets
(far and collapsed components, offsets, scales, mixed spreads), float32
against float64 as well.
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


def spread_units(ours, reference):
    """Largest mean difference in the reference's standard deviations, and covariance difference
    relative to each component's largest covariance entry."""
    covariances = np.asarray(reference.covariances_, dtype=np.float64)
    if reference.covariance_type == "full":
        sd = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2))
    elif reference.covariance_type == "tied":
        sd = np.sqrt(np.diag(covariances))[None, :]
    else:
        sd = np.sqrt(covariances).reshape(len(reference.weights_), -1)
    means = np.max(np.abs(ours.means_.astype(np.float64) - reference.means_) / sd)
    axes = None if reference.covariance_type == "tied" else tuple(range(1, covariances.ndim))
    scale = np.max(np.abs(covariances), axis=axes, keepdims=axes is not None)
    return means, np.max(np.abs(ours.covariances_.astype(np.float64) - covariances) / scale)


def awkward(max_iter=12):
    """The datasets of daskgmm.datasets.awkward_datasets(): daskgmm float64 against scikit-learn
    float64, and daskgmm float32 against daskgmm float64, from the same start (means_init
    representable in float32, so both dtypes start at the same point)."""
    from daskgmm.datasets import awkward_datasets

    print(f"\nawkward data ({max_iter} iterations, tol=0); means in standard deviations, covariances "
          "relative to the component's largest entry")
    print(f"{'dataset':>16} {'covariance':>10} {'f64 vs sklearn':>24} {'f32 vs f64':>24} {'bound f32-f64':>14}")
    for name, X in awkward_datasets().items():
        n_components = 16 if name == "duplicated rows" else 3
        reg_covar = 1e-6 * X.var(axis=0).mean() if "scale" in name else 1e-6
        X32 = X.astype(np.float32)
        X64 = X32.astype(np.float64)
        for covariance_type in ("full", "tied", "diag", "spherical"):
            start = SklearnGaussianMixture(n_components, covariance_type=covariance_type, max_iter=0,
                                           random_state=0, reg_covar=reg_covar).fit(X64)
            settings = dict(covariance_type=covariance_type, tol=0, max_iter=max_iter, reg_covar=reg_covar,
                            weights_init=start.weights_ / start.weights_.sum(),
                            means_init=start.means_.astype(np.float32), precisions_init=start.precisions_)
            try:
                reference = SklearnGaussianMixture(n_components, **settings).fit(X64)
                versus_sklearn = "%.1e / %.1e" % spread_units(
                    GaussianMixture(n_components, **settings).fit(X64), reference)
            except ValueError as error:  # scikit-learn's own numerics can fail here
                versus_sklearn = "sklearn: " + str(error)[:14]
            ours64 = GaussianMixture(n_components, **settings).fit(X64)
            ours32 = GaussianMixture(n_components, chunk_rows=1000, **settings).fit(X32)
            bound = abs(ours32.lower_bound_ - ours64.lower_bound_)
            print(f"{name:>16} {covariance_type:>10} {versus_sklearn:>24} "
                  f"{'%.1e / %.1e' % spread_units(ours32, ours64):>24} {bound:14.1e}")


if __name__ == "__main__":
    main()
    awkward()
