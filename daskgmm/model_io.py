"""Model files and checkpoints in an open format: a directory of JSON + NPZ, never pickle.

A model directory holds ``model.json`` (format name and version, estimator
parameters, scalar attributes) and ``arrays.npz`` (the fitted arrays, read
with ``allow_pickle=False``). Loading executes no code from the file, so a
model from someone else is safe to open. Writes go to a temporary directory
that is renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("daskgmm")
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
        raise ModelFileError(f"{path}: model.json is missing; not a {expected_format} directory.") from None
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
    if isinstance(value, os.PathLike):  # e.g. checkpoint=Path(...)
        return os.fspath(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def save_model(estimator, path):
    """Write a fitted :class:`daskgmm.GaussianMixture` or :class:`daskgmm.BayesianGaussianMixture`
    to directory ``path`` (a model's own arrays and scalars beyond the Gaussian ones are named by
    its ``_model_arrays`` and ``_model_scalars``)."""
    from sklearn.utils.validation import check_is_fitted

    from importlib.metadata import PackageNotFoundError, version

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
    from .params import n_parameters

    metadata, arrays = read_directory(path)
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


# ----------------------------------------------------------------- checkpoints
CHECKPOINT_FORMAT = "daskgmm-checkpoint"


# Fingerprint entries that are digests: named, not printed, when they differ.
DIGEST_NAMES = {"data": "the data's content differs", "warm_start_from": "the warm start's parameters differ"}


class CheckpointFile:
    """The state of a fit after its last completed iteration, in directory ``path``.

    ``fingerprint`` describes the data and settings (shape, dtype, model and
    EM settings); a checkpoint written under another fingerprint is refused
    rather than silently resumed.
    """

    def __init__(self, path, fingerprint: dict):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=_json_default))

    def load(self):
        from .engine import EMState, Run

        if not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir())):
            return None  # nothing yet (an empty folder made for it is fine)
        metadata, arrays = read_directory(self.path, CHECKPOINT_FORMAT)
        if metadata.get("finished"):
            logger.warning("daskgmm: checkpoint %s holds a finished fit: starting afresh (it will be replaced)",
                           self.path)
            return None
        stored = metadata.get("fingerprint", {})
        if stored != self.fingerprint:
            different = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
            plain = [k for k in different if k not in DIGEST_NAMES]
            different = plain or different  # a digest differs anyway when what it covers does
            details = "; ".join(DIGEST_NAMES[k] if k in DIGEST_NAMES else
                                f"{k}: checkpoint {stored.get(k)!r}, now {self.fingerprint.get(k)!r}"
                                for k in different)
            raise ValueError(
                f"checkpoint {self.path} was written for other data or settings ({details}). "
                "Delete it, or pass another checkpoint path, to start afresh."
            )
        if "runs" not in metadata:
            raise ModelFileError(
                f"checkpoint {self.path} was written by an earlier daskgmm, which ran its starts one "
                "after another. Delete it, or pass another checkpoint path, to start afresh.")
        try:
            runs = [Run(self._result(info, arrays, f"run{i}"), info["error"], int(info["index"]),
                        self._waves(info, arrays, f"run{i}"))
                    for i, info in enumerate(metadata["runs"])]
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{self.path}: inconsistent checkpoint ({error!r}).") from None
        logger.warning("daskgmm: resumed from checkpoint %s at iteration %s",
                       self.path, "/".join(str(run.result.n_iter) for run in runs))
        return EMState(runs)

    def _result(self, info, arrays, prefix):
        from .records import FitResult

        start = f"{prefix}_"
        params = params_type(self.fingerprint.get("model", "GaussianMixture")).from_arrays(
            self.fingerprint["covariance_type"],
            {name[len(start):]: value for name, value in arrays.items() if name.startswith(start)})
        return FitResult(params, float(info["lower_bound"]), list(info["lower_bounds"]),
                         int(info["n_iter"]), bool(info["converged"]))

    def _waves(self, info, arrays, prefix):
        """Incremental EM's statistics of every wave, as the run left them (None for batch EM)."""
        from .stats import SufficientStats

        if info.get("wave_entropies") is None:
            return None
        entropies = [float(v) for v in info["wave_entropies"]]
        stats = []
        for w in range(len(entropies)):
            start = f"{prefix}_wave{w}_"
            fields = {name[len(start):]: value for name, value in arrays.items() if name.startswith(start)}
            stats.append(SufficientStats.from_arrays(self.fingerprint["covariance_type"], fields) if fields else None)
        return stats, entropies

    def save(self, state):
        arrays, runs = {}, []
        for i, run in enumerate(state.runs):
            result = run.result
            runs.append({
                "index": int(run.index),
                "error": run.error,
                "lower_bound": float(result.lower_bound),
                "lower_bounds": [float(v) for v in result.lower_bounds],
                "n_iter": int(result.n_iter),
                "converged": bool(result.converged),
                "wave_entropies": None if run.waves is None else [float(v) for v in run.waves[1]],
            })
            for name, value in result.params.to_arrays().items():
                arrays[f"run{i}_{name}"] = value
            for w, stats in enumerate([] if run.waves is None else run.waves[0]):
                for name, value in ({} if stats is None else stats.to_arrays()).items():
                    arrays[f"run{i}_wave{w}_{name}"] = value
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "finished": bool(state.finished),
            "runs": runs,
        }
        write_directory(self.path, metadata, arrays)


def checkpoint_for(estimator, data, warm_start):
    """The estimator's ``checkpoint`` (None if it has none), tied to a fingerprint of the data
    (shape, dtype, weights, a content digest) and of every setting that changes the fit."""
    if estimator.checkpoint is None:
        return None
    from .data import content_digest

    fingerprint = {name: getattr(estimator, name) for name in estimator._fit_settings}
    if fingerprint.get("algorithm") == "batch":  # as before these settings existed: those checkpoints resume
        del fingerprint["algorithm"], fingerprint["waves"]
    if type(estimator).__name__ != "GaussianMixture":
        fingerprint["model"] = type(estimator).__name__
    fingerprint.update(
        n_samples=data.n_samples,
        n_features=data.n_features,
        dtype=str(data.dtype),
        weighted=data.sample_weight is not None,
        data=content_digest(data),
        warm_start_from=None if warm_start is None else params_digest(warm_start.params),
        random_state=(estimator.random_state if isinstance(estimator.random_state, (int, type(None)))
                      else "instance"),
        warm_start=warm_start is not None,
        **{name: None if getattr(estimator, name) is None else np.asarray(getattr(estimator, name)).tolist()
           for name in estimator._fit_arrays},
    )
    return CheckpointFile(estimator.checkpoint, fingerprint)


def params_type(model: str):
    """The parameter value type of an estimator's model (checkpoints name the model)."""
    if model == "BayesianGaussianMixture":
        from .variational import VariationalParams

        return VariationalParams
    from .params import GaussianParams

    return GaussianParams


def params_digest(params) -> str:
    """A digest of parameters (a checkpoint's warm start is tied to it)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("weights", "means", "covariances"):
        digest.update(np.ascontiguousarray(getattr(params, name), dtype=np.float64).tobytes())
    return digest.hexdigest()
