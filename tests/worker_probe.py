"""Functions run on Dask workers by the tests, in a module that imports nothing heavy (a test
module would import scikit-learn on the worker just by being unpickled there)."""


def heavy_modules_imported():
    import sys

    return sorted(name for name in ("sklearn", "joblib", "matplotlib") if name in sys.modules)


def hog_memory(block):
    """A chunk step that allocates 1.2 GB, far beyond a small worker's limit (its nanny kills it)."""
    import numpy as np

    big = np.ones(150_000_000)
    return block + 0 * big[:1].sum()
