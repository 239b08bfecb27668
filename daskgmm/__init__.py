"""daskgmm: Gaussian mixture models fitted by EM on Dask, for data larger than memory.

``from daskgmm import GaussianMixture`` is a drop-in replacement for
``sklearn.mixture.GaussianMixture`` that reads the data once per EM iteration.
"""

from .estimator import GaussianMixture
from .fitted import load_model as load
from .io import open_array
from .params import CollapsedComponentWarning
from .selection import select_model

__version__ = "0.1.0"

__all__ = ["CollapsedComponentWarning", "GaussianMixture", "load", "open_array", "select_model", "__version__"]
