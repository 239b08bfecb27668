"""Where results are written: never over what is not ours, and checked before any work.

An output (a model directory, a label store, a table) may replace only a
previous output of the same kind written by daskgmm, and only when the
caller says so (``overwrite=True``, ``--overwrite``); never the input it is
computed from, nor a folder or file of someone else's. Whether it can be
written is checked when the command starts, not after an hours-long fit.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

MODEL_FORMATS = {"model": "daskgmm-model", "checkpoint": "daskgmm-checkpoint"}
KIND_NAMES = {"model": "model", "checkpoint": "checkpoint", "labels": "label store", "table": "selection table"}
# The attribute that marks a Zarr store of labels or probabilities as daskgmm's.
LABELS_ATTRIBUTE = "daskgmm"


class OutputError(ValueError):
    """An output path that must not, or cannot, be written (the message says which and why)."""


def _local(path):
    """A local filesystem path, or None for URLs (s3://, gs://, ...), which are not checked here."""
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return None
    return Path(text.removeprefix("file://")).expanduser().resolve()


def owner_kind(path: Path):
    """``"model"``, ``"checkpoint"``, ``"labels"``, ``"empty"``, ``None`` (absent) or ``"foreign"``."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_dir():
        if not any(path.iterdir()):
            return "empty"
        try:
            fmt = json.loads((path / "model.json").read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        for kind, name in MODEL_FORMATS.items():
            if fmt == name:
                return kind
        if _is_label_store(path):
            return "labels"
    return "foreign"


def _is_label_store(path: Path) -> bool:
    try:
        import zarr

        return LABELS_ATTRIBUTE in zarr.open_array(str(path), mode="r").attrs
    except Exception:  # noqa: BLE001 - anything unreadable as a marked Zarr array is not ours
        return False


def check_output(path, kind, *, overwrite=False, inputs=(), what=None):
    """Refuse, in one line, an output that must not or cannot be written; create its parent folders.

    Parameters
    ----------
    path : str or path
        Where a ``kind`` output is to be written (a directory for "model",
        "checkpoint" and "labels", a file for "table").
    kind : {"model", "checkpoint", "labels", "table"}
    overwrite : bool
        Allow replacing an existing output of the same kind written by daskgmm.
    inputs : iterable of str or path, or of (name, path) pairs
        The paths the command reads or writes besides (named "the input"
        unless a name is given): an output may be none of them, nor inside
        one, nor hold one.
    what : str, optional
        How to name the output in messages (default: ``kind``).
    """
    what = what or kind
    target = _local(path)
    if target is None:
        return
    for source in inputs:
        name, source = source if isinstance(source, tuple) else ("the input", source)
        source = _local(source) if isinstance(source, (str, os.PathLike)) else None
        if source is not None and (target == source or source in target.parents or target in source.parents):
            relation = "is" if target == source else "overlaps"
            raise OutputError(f"the {what} path {path} {relation} {name} {source}; choose another output path.")
    found = owner_kind(target)
    if kind == "table" and target.is_file():
        found = "table" if _is_selection_table(target) else "foreign"
    if found not in (None, "empty"):
        if found != kind:
            description = "a daskgmm " + KIND_NAMES[found] if found in KIND_NAMES else \
                "an existing folder or file that daskgmm did not write"
            raise OutputError(f"the {what} path {path} is {description}; daskgmm will not replace it. "
                              "Choose another output path.")
        if not overwrite:
            raise OutputError(f"the {what} path {path} already holds a daskgmm {KIND_NAMES[kind]}; pass --overwrite "
                              "(overwrite=True in Python) to replace it, or choose another path.")
    _check_writable(target, path, what)


TABLE_HEADER = "n_components,covariance_type,init_params,restart,"


def _is_selection_table(path: Path) -> bool:
    try:
        with open(path) as handle:
            return handle.readline().startswith(TABLE_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def _check_writable(target: Path, path, what):
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{target.name}.probe-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(f"cannot write the {what} to {path}: {reason} ({parent}).") from None


def mark_labels(path, content, **sources):
    """Mark the Zarr array at ``path`` as daskgmm's ``content`` ("labels" or "probabilities"),
    so that a later ``--overwrite`` may replace it and nothing else is mistaken for it."""
    import zarr

    zarr.open_array(str(path), mode="r+").attrs[LABELS_ATTRIBUTE] = {
        "content": content, **{name: os.fspath(value) for name, value in sources.items()}}
