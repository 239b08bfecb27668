"""Soft clustering of the iris flowers by sepal length and width (K=3).

Run: python examples/iris.py [--out data]

The classic small case: 150 flowers, two features, three species. A mixture
gives every flower a probability per component, not just a label; flowers in
the overlap of versicolor and virginica get split probabilities, which a hard
clustering hides. Writes ``iris_components.png`` (ellipses, decision regions).
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score

from daskgmm import GaussianMixture
from daskgmm.plot import file_pyplot, plot_components


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="data", help="folder for the plot")
    args = parser.parse_args()

    iris = load_iris()
    X = iris.data[:, :2]  # sepal length, sepal width (cm)
    gmm = GaussianMixture(n_components=3, covariance_type="full", n_init=5, random_state=0).fit(X)

    order = np.argsort(gmm.means_[:, 0])  # name components by mean sepal length
    print("component  weight  mean sepal length/width (cm)")
    for rank, k in enumerate(order):
        print(f"{rank:>9}  {gmm.weights_[k]:6.3f}  {gmm.means_[k, 0]:5.2f} / {gmm.means_[k, 1]:4.2f}")

    labels = gmm.predict(X)
    proba = gmm.predict_proba(X)
    print("\nfirst flowers of each species: label and probabilities")
    for species in range(3):
        i = int(np.flatnonzero(iris.target == species)[0])
        print(f"  {iris.target_names[species]:>10}: label {np.flatnonzero(order == labels[i])[0]}, "
              f"p = {np.round(proba[i, order], 3)}")
    uncertain = int((proba.max(axis=1) < 0.8).sum())
    print(f"\nflowers with no component above p=0.8: {uncertain} of {len(X)}")
    print(f"adjusted Rand index against the species: {adjusted_rand_score(iris.target, labels):.3f}")
    print(f"BIC {gmm.bic(X):.1f}, converged {gmm.converged_} after {gmm.n_iter_} iterations")

    plt = file_pyplot()
    if plt is None:
        return
    ax = plot_components(gmm, X)
    ax.set_xlabel("sepal length (cm)")
    ax.set_ylabel("sepal width (cm)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(out / "iris_components.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"plot: {out / 'iris_components.png'}")


if __name__ == "__main__":
    main()
