"""Checks of the user's initial arrays (``weights_init``, ``means_init``, ``precisions_init``) and priors.

The same checks, in the same order and with the same messages, as scikit-learn's
``GaussianMixture`` makes; written here so that daskgmm does not call scikit-learn's private
``_check_parameters``, whose signature changes between releases. Unlike scikit-learn, the
estimator's parameters are not replaced by the checked arrays (``get_params`` returns what
the user passed).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_array

PRECISIONS_SHAPE = {
    "full": lambda k, d: (k, d, d),
    "tied": lambda k, d: (d, d),
    "diag": lambda k, d: (k, d),
    "spherical": lambda k, d: (k,),
}


def _check_shape(array, shape, name):
    if array.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}")


def check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.min(weights):.5f}, min value {np.max(weights):.5f}"  # (sic) as scikit-learn words it
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(weights):.5f}")
    return weights


def check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precision_matrix(precision, covariance_type):
    if not (np.allclose(precision, precision.T) and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite")


def check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(precisions, dtype=[np.float64, np.float32], ensure_2d=False,
                             allow_nd=covariance_type == "full")
    _check_shape(precisions, PRECISIONS_SHAPE[covariance_type](n_components, n_features),
                 f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(np.less_equal(precisions, 0.0)):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        for precision in precisions if covariance_type == "full" else [precisions]:
            _check_precision_matrix(precision, covariance_type)
    return precisions


def check_init_arrays(weights_init, means_init, precisions_init, covariance_type, n_components, n_features):
    """The user's initial arrays, checked as scikit-learn checks them (None stays None)."""
    return (
        None if weights_init is None else check_weights(weights_init, n_components),
        None if means_init is None else check_means(means_init, n_components, n_features),
        None if precisions_init is None else check_precisions(precisions_init, covariance_type, n_components,
                                                              n_features),
    )


def check_priors(estimator, n_features):
    """A ``BayesianGaussianMixture``'s ``(mean_prior, degrees_of_freedom_prior,
    covariance_prior)`` as given, checked as scikit-learn checks them (``_check_parameters``);
    None stays None (a prior taken from the data)."""
    mean_prior = estimator.mean_prior
    if mean_prior is not None:
        mean_prior = check_array(mean_prior, dtype=[np.float64, np.float32], ensure_2d=False)
        _check_shape(mean_prior, (n_features,), "means")
    dof = estimator.degrees_of_freedom_prior
    if dof is not None and not dof > n_features - 1.0:
        raise ValueError("The parameter 'degrees_of_freedom_prior' should be greater than %d, but got %.3f."
                         % (n_features - 1, dof))
    covariance_type, covariance_prior = estimator.covariance_type, estimator.covariance_prior
    if covariance_prior is not None and covariance_type != "spherical":
        covariance_prior = check_array(covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False)
        shape = (n_features, n_features) if covariance_type in ("full", "tied") else (n_features,)
        _check_shape(covariance_prior, shape, f"{covariance_type} covariance_prior")
        if covariance_type == "diag":
            if np.any(np.less_equal(covariance_prior, 0.0)):
                raise ValueError(f"'{covariance_type} precision' should be positive")  # (sic) as scikit-learn words it
        else:
            _check_precision_matrix(covariance_prior, covariance_type)
    return mean_prior, dof, covariance_prior
