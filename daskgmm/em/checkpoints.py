"""Checkpoints: the state of a fit after its last completed iteration, so that an interrupted fit
resumes where it stopped (written in the directory format of :mod:`daskgmm.io.directories`)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..io.directories import FORMAT_VERSION, ModelFileError, json_default, read_directory, write_directory
from ..io.inputs import content_digest
from ..model.params import GaussianParams
from ..model.records import FitResult
from ..model.statistics import SufficientStats
from ..model.variational import VariationalParams
from .loop import EMState, Run

logger = logging.getLogger("daskgmm")
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
        self.fingerprint = json.loads(json.dumps(fingerprint, default=json_default))

    def load(self):
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
        start = f"{prefix}_"
        params = params_type(self.fingerprint.get("model", "GaussianMixture")).from_arrays(
            self.fingerprint["covariance_type"],
            {name[len(start):]: value for name, value in arrays.items() if name.startswith(start)})
        return FitResult(params, float(info["lower_bound"]), list(info["lower_bounds"]),
                         int(info["n_iter"]), bool(info["converged"]))

    def _waves(self, info, arrays, prefix):
        """Incremental EM's statistics of every wave, as the run left them (None for batch EM)."""
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
    fingerprint = {name: getattr(estimator, name) for name in estimator._fit_settings}
    if fingerprint.get("algorithm") == "batch":  # as before these settings existed: those checkpoints resume
        del fingerprint["algorithm"], fingerprint["waves"]
    if fingerprint.get("missing") == "raise":  # likewise for checkpoints from before missing values
        del fingerprint["missing"]
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
        return VariationalParams
    return GaussianParams


def params_digest(params) -> str:
    """A digest of parameters (a checkpoint's warm start is tied to it)."""
    digest = hashlib.sha256()
    for name in ("weights", "means", "covariances"):
        digest.update(np.ascontiguousarray(getattr(params, name), dtype=np.float64).tobytes())
    return digest.hexdigest()
