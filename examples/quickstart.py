"""The 10-line tour: fit, inspect, predict, on NumPy and on Dask, as with scikit-learn.

Run: python examples/quickstart.py
"""

import dask.array as da
import numpy as np

from daskgmm import GaussianMixture

rng = np.random.default_rng(0)
X = np.vstack([rng.normal(-3, 1, size=(5000, 2)), rng.normal(3, 0.5, size=(5000, 2))])

gmm = GaussianMixture(n_components=2, random_state=0).fit(X)      # NumPy in, NumPy out
print("weights:", np.round(gmm.weights_, 3))
print("means:\n", np.round(gmm.means_, 3))
print("BIC:", round(gmm.bic(X), 1), " converged:", gmm.converged_, "after", gmm.n_iter_, "iterations")

dX = da.from_array(X, chunks=2500)                                  # the same data as a Dask array
labels = GaussianMixture(n_components=2, random_state=0).fit(dX).predict(dX)
print("labels are lazy:", type(labels).__name__, "with chunks", labels.chunks)
print("first labels:", labels[:5].compute(), " agree with NumPy fit:",
      bool((labels.compute() == gmm.predict(X)).all()))
