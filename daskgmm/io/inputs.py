"""Turning what users pass into row-chunked Dask arrays (validation at the edge).

The engine only ever sees :class:`RowData`: a 2-D float32/float64 Dask array
whose chunks hold whole rows, optional per-row weights chunked like it, and
the global offset of every chunk.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace

import dask
import dask.array as da
import numpy as np
from sklearn.utils.validation import check_array

from ..runtime.resources import default_chunk_rows


@dataclass(frozen=True)
class RowData:
    """Data as the engine needs it.

    Attributes
    ----------
    X : dask.array.Array of shape (n, D)
        float32 or float64, chunked along rows only.
    sample_weight : dask.array.Array of shape (n,) or None
        Chunked exactly like ``X``'s rows.
    in_memory : bool
        True when ``X`` wraps a NumPy array of the caller (no storage to read).
    first_row : int
        Global index of ``X``'s first row (a wave of chunks: see :meth:`in_waves`).
    missing : bool
        NaN marks a missing value, which EM integrates out (``missing="em"``); False: a
        row with NaN is an error.
    """

    X: da.Array
    sample_weight: da.Array | None = None
    in_memory: bool = False
    first_row: int = 0
    missing: bool = False

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def in_waves(self, count: int) -> list["RowData"]:
        """The chunks in ``count`` consecutive groups of (nearly) equal numbers of chunks, each as
        RowData (at most one group per chunk)."""
        n_chunks = self.X.numblocks[0]
        edges = np.linspace(0, n_chunks, min(count, n_chunks) + 1).round().astype(int)
        offsets = np.cumsum((0,) + self.X.chunks[0])
        return [replace(self, X=self.X.blocks[a:b],
                        sample_weight=None if self.sample_weight is None else self.sample_weight.blocks[a:b],
                        first_row=self.first_row + int(offsets[a]))
                for a, b in zip(edges[:-1], edges[1:])]


def feature_names(X):
    """Column names of a DataFrame as an object array (scikit-learn's rule), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, da.Array):
        return None
    names = np.asarray(columns, dtype=object)
    if len(names) and all(isinstance(name, str) for name in names):
        return names
    return None


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype.kind in "biuf":
        return np.dtype(np.float64)
    raise ValueError(
        f"X has dtype {dtype}, which is not numeric. GaussianMixture needs float32 or "
        "float64 data (integers and booleans are converted to float64); convert or "
        "drop non-numeric columns first."
    )


def _check_2d(shape, estimator_name):
    if len(shape) != 2:
        raise ValueError(
            f"Expected a 2D array of shape (n_samples, n_features), got a {len(shape)}D "
            f"array of shape {tuple(shape)} instead. Reshape your data with "
            "X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it "
            f"contains a single sample ({estimator_name})."
        )


def as_dask_rows(X, *, chunk_rows=None, ensure_min_samples=1, estimator_name="GaussianMixture",
                 default_rows=None, allow_nan=False):
    """A 2-D float Dask array chunked in whole rows, and whether it wraps memory.

    Dask input is used lazily (rechunked once if its columns are split, chunk
    sizes computed if unknown). Anything else goes through scikit-learn's
    ``check_array`` (same errors as scikit-learn for NaN, shape, dtype) and is
    wrapped with ``chunk_rows`` rows per chunk, by default
    ``default_rows(n_samples, n_features, itemsize)`` (:func:`default_chunk_rows`).
    ``allow_nan``: NaN marks a missing value (infinity is still refused).
    """
    if isinstance(X, (str, os.PathLike)) or _is_stored_array(X):
        from .stores import open_array

        X = open_array(X)
    if hasattr(X, "to_dask_array") and not isinstance(X, da.Array):
        X = X.to_dask_array(lengths=True)  # a dask DataFrame
    if isinstance(X, da.Array):
        _check_2d(X.shape, estimator_name)
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        dtype = _float_dtype(X.dtype)
        if X.dtype != dtype:
            X = X.astype(dtype)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        if chunk_rows is not None:
            X = X.rechunk({0: chunk_rows})
        n_samples = X.shape[0]
        if n_samples < ensure_min_samples:
            raise ValueError(
                f"Found array with {n_samples} sample(s) (shape={X.shape}) while a "
                f"minimum of {ensure_min_samples} is required by {estimator_name}."
            )
        if X.shape[1] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 "
                f"is required by {estimator_name}."
            )
        return X, False
    try:
        array = check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=ensure_min_samples,
                            ensure_all_finite="allow-nan" if allow_nan else True, estimator=estimator_name,
                            input_name="X")
    except ValueError as error:
        if "contains NaN" in str(error) and estimator_name == "GaussianMixture":
            raise ValueError(f"{error}\nOr fit GaussianMixture(missing='em'), whose EM uses every observed value.") \
                from None
        raise
    rows = chunk_rows or (default_rows or default_chunk_rows)(*array.shape, array.dtype.itemsize)
    return wrap_in_memory(array, rows), True


class _ReadOnlyRows:
    """A NumPy array seen through ``__getitem__`` only.

    ``dask.array.from_array`` copies anything with a ``.copy`` method (a whole
    second copy of the user's data); daskgmm never writes to its input, so
    it reads the caller's array in place.
    """

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        return self.array[key]


def wrap_in_memory(array, chunk_rows):
    """A Dask array over an in-memory NumPy array, without copying it."""
    return da.from_array(
        _ReadOnlyRows(array),
        chunks=(chunk_rows, array.shape[1]),
        name=f"daskgmm-input-{uuid.uuid4().hex}",
        asarray=True,
        meta=np.empty((0, 0), dtype=array.dtype),
    )


def _is_stored_array(X):
    """A zarr array or xarray DataArray (opened lazily through :func:`daskgmm.io.stores.open_array`)."""
    return type(X).__module__.split(".")[0] in ("zarr", "xarray")


def as_sample_weight(sample_weight, X: da.Array):
    """Validated per-row weights as a Dask array chunked like ``X``'s rows, or None.

    Weights must be finite, non-negative and not all zero. A Dask array is
    checked with one small pass over the weights (not over ``X``).
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, da.Array):
        weights = sample_weight
        if any(np.isnan(c) for c in weights.chunks[0]):
            weights = weights.compute_chunk_sizes()
    else:
        weights = np.asarray(sample_weight)
        if weights.ndim == 0:
            weights = np.full(X.shape[0], float(weights))
        if weights.ndim == 1 and weights.shape[0] == X.shape[0]:
            weights = weights.astype(np.float64)  # our own copy: validated, then read in place
    if weights.ndim != 1 or weights.shape[0] != X.shape[0]:
        raise ValueError(
            f"sample_weight.shape == {tuple(weights.shape)}, expected ({X.shape[0]},): "
            "one non-negative weight per row of X."
        )
    if np.dtype(weights.dtype).kind not in "biuf":
        raise ValueError(f"sample_weight has dtype {weights.dtype}; pass numbers.")
    weights = weights.astype(np.float64)
    if isinstance(weights, da.Array):
        low, finite, total = dask.compute(weights.min(), da.isfinite(weights).all(), weights.sum())
        weights = weights.rechunk((X.chunks[0],))
    else:
        low, finite, total = weights.min(), np.isfinite(weights).all(), weights.sum()
        weights = da.from_array(_ReadOnlyRows(weights), chunks=(X.chunks[0],), asarray=True,
                                name=f"daskgmm-weights-{uuid.uuid4().hex}", meta=np.empty((0,)))
    if not finite:
        raise ValueError("sample_weight contains NaN or infinity; pass finite weights.")
    if low < 0:
        raise ValueError(
            f"sample_weight has negative values (min {low}); weights must be >= 0."
        )
    if total <= 0:
        raise ValueError("sample_weight sums to zero; at least one row needs a positive weight.")
    return weights


# Rows that identify the data for a checkpoint: the first and last of any input (one chunk
# read each), and for in-memory input (where reading is free) rows spread over all of it.
DIGEST_EDGE_ROWS = 16
DIGEST_SPREAD_ROWS = 1024


def content_digest(data: RowData) -> str:
    """A digest of what the data hold, for tying a checkpoint to them at the cost of two chunk reads.

    Shape and dtype, the first and last rows (and, for in-memory data, rows
    spread over all of them), and the same of the weights: another fold of
    the same shape, or a store rewritten in place, gives another digest.
    """
    import hashlib

    n = data.n_samples
    edges = np.unique(np.r_[np.arange(min(n, DIGEST_EDGE_ROWS)), np.arange(max(0, n - DIGEST_EDGE_ROWS), n)])
    index = np.unique(np.r_[edges, np.linspace(0, n - 1, DIGEST_SPREAD_ROWS).astype(int)]) \
        if data.in_memory else edges
    arrays = [data.X] + ([] if data.sample_weight is None else [data.sample_weight])
    digest = hashlib.sha256(repr((data.X.shape, str(data.dtype))).encode())
    for values in dask.compute(*[array[index] for array in arrays]):
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def describe_input(X, rows, sample_weight) -> dict:
    """What a model was fitted on, for its file (``daskgmm info``): the path, or the kind of
    array (with a Zarr array's store), and the rows' shape and dtype."""
    if isinstance(X, (str, os.PathLike)):
        source = os.fspath(X)
    else:
        source = f"{type(X).__module__.split('.')[0]}.{type(X).__name__}"
        store = getattr(X, "store_path", None)
        if store is not None:
            source += f" at {store}"
    return {"source": source, "n_samples": int(rows.shape[0]), "n_features": int(rows.shape[1]),
            "dtype": str(rows.dtype), "weighted": sample_weight is not None}
