"""Functions run on Dask workers by the tests, in a module that imports nothing heavy (a test
module would import scikit-learn on the worker just by being unpickled there)."""


def heavy_modules_imported():
    import sys

    return sorted(name for name in ("sklearn", "joblib", "matplotlib") if name in sys.modules)
