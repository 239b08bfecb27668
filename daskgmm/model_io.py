"""Model files and checkpoints in an open format: a directory of JSON + NPZ, never pickle.

A model directory holds ``model.json`` (format name and version, estimator
parameters, scalar attributes) and ``arrays.npz`` (the fitted arrays, read
with ``allow_pickle=False``). Loading executes no code from the file, so a
model from someone else is safe to open. Writes go to a temporary directory
that is renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
SCALARS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read (the message names it and says why)."""


def write_directory(path, metadata: dict, arrays: dict):
    """Atomically replace directory ``path`` with ``metadata`` (JSON) and ``arrays`` (NPZ)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.savez(staging / "arrays.npz", **arrays)
        (staging / "model.json").write_text(json.dumps(metadata, indent=2, default=_json_default))
        if path.exists():
            retired = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_directory(path, expected_format=FORMAT):
    """``(metadata, arrays)`` of a directory written by :func:`write_directory`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model directory.")
    try:
        metadata = json.loads((path / "model.json").read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model.json is missing; not a daskgmm model directory.") from None
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}/model.json is corrupted ({error}).") from None
    if not isinstance(metadata, dict) or metadata.get("format") != expected_format:
        raise ModelFileError(f"{path}: not a {expected_format} directory (format field missing or different).")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer daskgmm (format version {metadata['format_version']}); upgrade daskgmm."
        )
    try:
        with np.load(path / "arrays.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: arrays.npz is missing.") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{path}/arrays.npz is corrupted or truncated ({error}).") from None
    return metadata, arrays


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def save_model(estimator, path):
    """Write a fitted :class:`daskgmm.GaussianMixture` to directory ``path``."""
    from sklearn.utils.validation import check_is_fitted

    from . import __version__

    check_is_fitted(estimator)
    params = {
        name: value for name, value in estimator.get_params().items()
        if name not in ("weights_init", "means_init", "precisions_init", "random_state")
    }
    random_state = estimator.random_state
    params["random_state"] = random_state if isinstance(random_state, (int, type(None))) else None
    scalars = {name: getattr(estimator, name) for name in SCALARS}
    scalars["lower_bounds_"] = [float(v) for v in scalars["lower_bounds_"]]
    scalars["lower_bound_"] = float(scalars["lower_bound_"])
    names = getattr(estimator, "feature_names_in_", None)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "daskgmm_version": __version__,
        "params": params,
        "attributes": scalars,
        "feature_names_in_": None if names is None else [str(n) for n in names],
    }
    write_directory(path, metadata, {name: getattr(estimator, name) for name in ARRAYS})


def load_model(path):
    """Read a model directory written by :func:`save_model` into a fitted GaussianMixture."""
    from .estimator import GaussianMixture
    from .params import GaussianParams

    metadata, arrays = read_directory(path)
    try:
        estimator = GaussianMixture(**metadata["params"])
        estimator._validate_params()
        missing = [name for name in ARRAYS if name not in arrays]
        if missing:
            raise KeyError(missing)
        params = GaussianParams(estimator.covariance_type, *(arrays[name] for name in ARRAYS))
        _check_shapes(params)
        for name, value in metadata["attributes"].items():
            if name not in SCALARS:
                raise KeyError(name)
            setattr(estimator, name, value)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: inconsistent model file ({error!r}).") from None
    for name in ARRAYS:
        setattr(estimator, name, arrays[name])
    estimator.precisions_ = params.precisions()
    if metadata.get("feature_names_in_") is not None:
        estimator.feature_names_in_ = np.asarray(metadata["feature_names_in_"], dtype=object)
    return estimator


def _check_shapes(params):
    from .stats import scatter_shape

    k, d = params.means.shape
    expected = scatter_shape(params.covariance_type, k, d)
    if params.weights.shape != (k,) or params.covariances.shape != expected \
            or params.precisions_cholesky.shape != expected:
        raise ValueError(f"array shapes do not fit a {params.covariance_type} model of {k} components")
    if not all(np.all(np.isfinite(a)) for a in (params.weights, params.means, params.covariances)):
        raise ValueError("non-finite parameters")
