"""The on-disk format of model files and checkpoints: a directory of JSON + NPZ, never pickle.

A directory holds ``model.json`` (format name and version, then what the writer puts there)
and ``arrays.npz`` (arrays, read with ``allow_pickle=False``). Reading executes no code from
the files, so a model from someone else is safe to open. Writes go to a temporary directory
that is renamed into place, so a reader never sees half a directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

# The newest layout this daskgmm writes and reads; directories from a newer one are refused.
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read (the message names it and says why)."""


def write_directory(path, metadata: dict, arrays: dict):
    """Atomically replace directory ``path`` with ``metadata`` (JSON) and ``arrays`` (NPZ)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.savez(staging / "arrays.npz", **arrays)
        (staging / "model.json").write_text(json.dumps(metadata, indent=2, default=json_default))
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


def read_directory(path, expected_format):
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


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):  # e.g. checkpoint=Path(...)
        return os.fspath(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
