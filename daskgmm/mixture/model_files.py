"""Model files: a fitted estimator saved as a directory of JSON + NPZ (never pickle), and described.

A model directory holds ``model.json`` (format name and version, estimator parameters, scalar
attributes) and ``arrays.npz`` (the fitted arrays); see :mod:`daskgmm.io.directories`.
"""

from __future__ import annotations

import numpy as np

from ..io.directories import FORMAT_VERSION, ModelFileError, read_directory, write_directory

FORMAT = "daskgmm-model"
ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
SCALARS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")


def save_model(estimator, path):
    """Write a fitted :class:`daskgmm.GaussianMixture` or :class:`daskgmm.BayesianGaussianMixture`
    to directory ``path`` (a model's own arrays and scalars beyond the Gaussian ones are named by
    its ``_model_arrays`` and ``_model_scalars``)."""
    from importlib.metadata import PackageNotFoundError, version

    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    params = {
        name: value for name, value in estimator.get_params().items()
        if name not in ("weights_init", "means_init", "precisions_init", "random_state")
    }
    random_state = estimator.random_state
    params["random_state"] = random_state if isinstance(random_state, (int, type(None))) else None
    scalars = {name: getattr(estimator, name) for name in SCALARS + estimator._model_scalars}
    scalars["lower_bounds_"] = [float(v) for v in scalars["lower_bounds_"]]
    scalars["lower_bound_"] = float(scalars["lower_bound_"])
    names = getattr(estimator, "feature_names_in_", None)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "daskgmm_version": _installed_version(version, PackageNotFoundError),
        "estimator": type(estimator).__name__,
        "params": params,
        "attributes": scalars,
        "feature_names_in_": None if names is None else [str(n) for n in names],
        "data": getattr(estimator, "_data_source", None),  # what it was fitted on (info)
    }
    write_directory(path, metadata, {name: np.asarray(getattr(estimator, name))
                                     for name in ARRAYS + estimator._model_arrays})


def describe_model(path) -> dict:
    """What a saved model holds, as plain Python values (``daskgmm info``): read from its files
    alone, without building an estimator (no scikit-learn import, so it answers at once)."""
    from ..model.params import n_parameters

    metadata, arrays = read_directory(path, FORMAT)
    try:
        params, attributes = metadata["params"], metadata["attributes"]
        means, covariances, weights = arrays["means_"], arrays["covariances_"], arrays["weights_"]
        k, d = means.shape
        covariance_type = params["covariance_type"]
        variances = {"full": lambda: np.diagonal(covariances, axis1=1, axis2=2),
                     "tied": lambda: np.broadcast_to(np.diagonal(covariances), (k, d)),
                     "diag": lambda: covariances,
                     "spherical": lambda: np.broadcast_to(covariances[:, None], (k, d))}[covariance_type]()
        settings = ("tol", "reg_covar", "max_iter", "n_init", "init_params", "random_state", "init_sample_size",
                    "weight_concentration_prior_type", "weight_concentration_prior", "tol_per_row", "algorithm")
        model = metadata.get("estimator", "GaussianMixture")
        active = attributes.get("n_active_components_")
        return {
            "path": str(path),
            "model": model,
            "n_components": int(k),
            **({} if active is None else {"n_active_components": int(active)}),
            "covariance_type": covariance_type,
            "n_features": int(d),
            "dtype": str(means.dtype),
            "n_parameters": n_parameters(k, d, covariance_type),
            "settings": {name: params.get(name) for name in settings if name in params},
            "n_iter": attributes["n_iter_"],
            "converged": attributes["converged_"],
            "lower_bound": attributes["lower_bound_"],
            "feature_names": metadata.get("feature_names_in_"),
            "data": metadata.get("data"),
            "daskgmm_version": metadata.get("daskgmm_version"),
            "components": [{"weight": float(weights[j]), "mean": means[j].tolist(),
                            "spread": np.sqrt(variances[j]).tolist()} for j in range(k)],
        }
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ModelFileError(f"{path}: inconsistent model file ({error!r}).") from None


def _installed_version(version, not_found):
    try:
        return version("daskgmm")
    except not_found:  # run from a source tree that is not installed
        return "unknown"
