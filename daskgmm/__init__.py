"""daskgmm: Gaussian mixture models fitted by EM on Dask, for data larger than memory.

``from daskgmm import GaussianMixture`` is a drop-in replacement for
``sklearn.mixture.GaussianMixture`` that reads the data once per EM iteration.

The public names are imported on first use (PEP 562), so that what imports one module of the
package (a Dask worker running chunk tasks, ``daskgmm --help``) does not pay for scikit-learn.
"""

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_PUBLIC = {
    "GaussianMixture": ("mixture.gaussian", "GaussianMixture"),
    "BayesianGaussianMixture": ("mixture.bayesian", "BayesianGaussianMixture"),
    "load": ("mixture.loading", "load_model"),
    "open_array": ("io.stores", "open_array"),
    "CollapsedComponentWarning": ("model.params", "CollapsedComponentWarning"),
    "select_model": ("mixture.selection", "select_model"),
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'daskgmm' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return __all__
