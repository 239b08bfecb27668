"""Choosing K and the covariance type by BIC/AIC, every candidate in shared passes.

Run: python examples/model_selection.py [--samples 4000] [--out data]

Four Gaussian blobs under a random linear stretch (as in scikit-learn's
model-selection example). ``select_model`` fits K = 1..10 for all four
covariance types (40 candidates) reading the data once per iteration for
all of them, prints the table's best rows, and plots the BIC/AIC curves and
the decision regions of the best full and best spherical models: spherical
components cannot follow the stretch, so they need more of them.
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from daskgmm import select_model
from daskgmm.plot import file_pyplot, plot_components


def stretched_blobs(n_samples, random_state=0):
    X, y = make_blobs(n_samples=n_samples, centers=4, cluster_std=1.0, random_state=random_state)
    stretch = np.random.default_rng(random_state).normal(size=(2, 2))
    return X @ stretch, y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--out", default="data", help="folder for the plots")
    args = parser.parse_args()

    X, _ = stretched_blobs(args.samples)
    result = select_model(X, n_components=range(1, 11), random_state=0)
    by_aic = min(result.table, key=lambda row: row["aic"])
    best = result.best_estimator_
    print(f"{len(result.candidates)} candidates in {result.passes} reads of the data")
    print(f"lowest BIC: K={best.n_components}, {best.covariance_type}")
    print(f"lowest AIC: K={by_aic['n_components']}, {by_aic['covariance_type']}")
    print("\nbest K per covariance type (BIC):")
    for covariance_type in ("full", "tied", "diag", "spherical"):
        gmm = result.best(covariance_type)
        print(f"  {covariance_type:>9}: K={gmm.n_components:>2}  BIC {gmm.bic(X):10.1f}  "
              f"({gmm.n_iter_} iterations)")

    plt = file_pyplot()
    if plt is None:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ax = result.plot()
    ax.figure.savefig(out / "selection_criteria.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)

    # the best full and the best spherical model side by side
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, covariance_type in zip(axes, ("full", "spherical")):
        plot_components(result.best(covariance_type), X, ax=ax)
    figure.savefig(out / "selection_regions.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    print(f"\nplots: {out / 'selection_criteria.png'}, {out / 'selection_regions.png'}")


if __name__ == "__main__":
    main()
