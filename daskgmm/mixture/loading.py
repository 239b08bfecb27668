"""Fitted estimators made outside a fit: read from a model directory, or from an EM run of select_model."""

from __future__ import annotations

import numpy as np

from ..io.directories import ModelFileError, read_directory
from ..model.params import GaussianParams, check_shapes
from ..model.records import FitResult
from .bayesian import BayesianGaussianMixture
from .gaussian import GaussianMixture
from .model_files import ARRAYS, FORMAT, SCALARS


def fitted_estimator(result: FitResult, dtype, n_features, feature_names=None, **params) -> GaussianMixture:
    """A :class:`GaussianMixture` with ``params`` holding the outcome of an EM run (as a fit would
    leave it), for results computed outside the estimator (``select_model``'s candidates)."""
    estimator = GaussianMixture(**params)
    estimator._store(result, dtype)
    estimator.n_features_in_ = n_features
    if feature_names is not None:
        estimator.feature_names_in_ = feature_names
    return estimator


def load_model(path):
    """Read a model directory written by ``save`` (``daskgmm.load``): a
    :class:`GaussianMixture` or a :class:`BayesianGaussianMixture`, as saved.

    Loading runs no code from the file (JSON and NPZ read without pickle).
    """
    metadata, arrays = read_directory(path, FORMAT)
    try:
        estimator = ESTIMATORS[metadata.get("estimator", "GaussianMixture")](**metadata["params"])
        estimator._validate_params()
        names = ARRAYS + estimator._model_arrays
        missing = [name for name in names if name not in arrays]
        if missing:
            raise KeyError(missing)
        params = GaussianParams(estimator.covariance_type, *(arrays[name] for name in ARRAYS))
        check_shapes(params)
        for name, value in metadata["attributes"].items():
            if name not in SCALARS + estimator._model_scalars:
                raise KeyError(name)
            setattr(estimator, name, value)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: inconsistent model file ({error!r}).") from None
    for name in names:
        setattr(estimator, name, arrays[name])
    estimator.precisions_ = params.precisions()
    estimator._restore()
    if metadata.get("feature_names_in_") is not None:
        estimator.feature_names_in_ = np.asarray(metadata["feature_names_in_"], dtype=object)
    return estimator


ESTIMATORS = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}
