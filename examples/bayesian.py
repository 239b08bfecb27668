"""A variational Bayesian mixture finds K itself; BIC over K agrees.

Run: python examples/bayesian.py [--samples 4000] [--out data]

The stretched blobs of ``examples/model_selection.py`` (four Gaussian blobs under a random
linear stretch). ``BayesianGaussianMixture(n_components=10)`` with a Dirichlet-process prior
on the weights is fitted on a chunked Dask array: the prior switches off the components the
data do not need, and ``n_active_components_`` counts the rest. Switching off is slow (the
weight of a redundant component drains over hundreds of iterations) and EM finds local optima:
one start of this example ends with a blob split between two components, so three starts run
together (sharing every read) and the best lower bound wins. Next to it,
``select_model`` fits K = 1..10 (full covariances) and picks K by BIC. The plot shows the
weights of the ten components and the regions of the Bayesian model.
"""

import argparse
from pathlib import Path

import dask.array as da
import numpy as np
from model_selection import stretched_blobs

from daskgmm import BayesianGaussianMixture, select_model
from daskgmm.plot import file_pyplot, plot_components


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--out", default="data", help="folder for the plots")
    args = parser.parse_args()

    X, _ = stretched_blobs(args.samples)
    chunked = da.from_array(X, chunks=1000)
    bayesian = BayesianGaussianMixture(n_components=10, n_init=3, max_iter=1000, random_state=0).fit(chunked)
    print(f"Bayesian mixture of 10 components: {bayesian.n_active_components_} carry weight "
          f"after {bayesian.n_iter_} iterations (converged: {bayesian.converged_})")
    print("weights, largest first: " + " ".join(f"{w:.3f}" for w in np.sort(bayesian.weights_)[::-1]))

    selection = select_model(chunked, n_components=range(1, 11), covariance_types=["full"], random_state=0)
    best = selection.best_estimator_
    print(f"BIC over K = 1..10 (full): K = {best.n_components}")

    plt = file_pyplot()
    if plt is None:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure, (weights_ax, regions_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    weights_ax.bar(range(10), bayesian.weights_, color=[f"C{k}" for k in range(10)])
    weights_ax.set_xlabel("component")
    weights_ax.set_ylabel("weight")
    weights_ax.set_title(f"{bayesian.n_active_components_} of 10 components carry weight")
    plot_components(bayesian, X, ax=regions_ax)
    figure.savefig(out / "bayesian.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    print(f"\nplot: {out / 'bayesian.png'}")


if __name__ == "__main__":
    main()
