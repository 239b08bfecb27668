"""Opening stored data as row-chunked Dask arrays: Zarr, HDF5, .npy, Parquet/CSV, xarray.

:func:`open_array` returns a lazy 2-D Dask array whose chunks hold whole rows,
sized to a byte target and aligned to the storage's own row chunks, so every
task reads whole storage chunks and nothing is read before it is needed.
File handles are never put in the graph: HDF5, ``.npy`` and Parquet sources
are read through the picklable readers of :mod:`daskgmm.io.readers`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..runtime.resources import default_chunk_bytes, default_chunk_rows
from .readers import (
    ONE_TASK_STORAGE_BYTES,
    HDF5Dataset,
    NpyFile,
    ParquetRows,
    SourceError,
    chosen_columns,
    hdf5_datasets,
    refuse_non_numeric,
)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
# Metadata files at a Zarr store's root (format 3, format 2 group, format 2 array).
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
# Said by a reader whose task chunks already follow its storage's units (not to be rechunked).
KEEP_CHUNKS = "keep chunks"


# ------------------------------------------------------------------ open_array
def open_array(
    source,
    *,
    dataset=None,
    columns=None,
    chunk_bytes=None,
    sample_dim=None,
    flatten=False,
    storage_options=None,
):
    """Open ``source`` as a lazy 2-D Dask array of shape (n_samples, n_features).

    Parameters
    ----------
    source : str, path, zarr.Array, dask array or xarray.DataArray
        - a Zarr array or group (format 2 or 3), local path or fsspec URL
          (``s3://``, ``gs://``, ``file://`` ...);
        - an HDF5 file (``.h5``, ``.hdf5``; read with h5py);
        - a ``.npy`` file (memory-mapped);
        - a Parquet or CSV file, glob, or directory of them (Parquet read
          by pyarrow in whole row groups, CSV through dask.dataframe; needs
          pyarrow or pandas);
        - an xarray DataArray (needs xarray) or a Dask array.
    dataset : str, optional
        The array inside a Zarr group or HDF5 file. If omitted and the
        container holds exactly one array, that one is used.
    columns : list of str, optional
        Parquet/CSV columns to use (default: all, which must be numeric).
    chunk_bytes : int, optional
        Target size of a row chunk, rounded to whole storage chunks. Default
        128 MiB, or less when a distributed Client with small workers is
        active (see :func:`default_chunk_bytes`).
    sample_dim : str or tuple of str, optional
        xarray only: the dimension(s) that index samples (default: the first,
        or all but the last with ``flatten=True``). The other dimensions are
        flattened into features.
    flatten : bool, default False
        For arrays of 3 or more dimensions (e.g. an image ``(H, W, C)``):
        treat every leading dimension as samples, the last as features.
    storage_options : dict, optional
        Passed to fsspec for remote Zarr, Parquet and CSV.

    Returns
    -------
    dask.array.Array
        float32/float64/integer array chunked in whole rows.

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    SourceError (a ValueError)
        Missing dataset or columns, non-numeric data, wrong dimensionality;
        the message names the source and says what to do.
    """
    return open_samples(source, dataset=dataset, columns=columns, chunk_bytes=chunk_bytes, sample_dim=sample_dim,
                        flatten=flatten, storage_options=storage_options)[0]


def open_samples(source, *, dataset=None, columns=None, chunk_bytes=None, sample_dim=None, flatten=False,
                 storage_options=None):
    """:func:`open_array`'s rows, and the shape of the samples before ``flatten`` made them one
    dimension (``(n_samples,)`` without it; ``(H, W)`` for an image), for writing per-row outputs
    back in the source's layout."""
    chunk_bytes = chunk_bytes or default_chunk_bytes()
    if isinstance(source, da.Array):
        array, name, storage_rows = source, "dask array", None
    elif _is_xarray(source):
        array, name, storage_rows = _from_xarray(source, sample_dim, flatten), "xarray.DataArray", None
    elif _is_zarr_array(source):
        array, name, storage_rows = _from_zarr_object(source, str(source), chunk_bytes)
    else:
        array, name, storage_rows = _open_path(source, dataset, columns, storage_options, chunk_bytes)
    sample_shape = tuple(array.shape[:-1]) if array.ndim >= 3 and flatten else (array.shape[0],)
    array = _as_rows(array, name, flatten)
    return _rechunk_rows(array, chunk_bytes, storage_rows), sample_shape


def _open_path(source, dataset, columns, storage_options, chunk_bytes):
    text = os.fspath(source)
    is_url = "://" in text
    path = Path(text)
    suffix = path.suffix.lower()
    table_kind = TABLE_SUFFIXES.get(suffix)
    if not is_url and not any(ch in text for ch in "*?[") and not path.exists():
        raise FileNotFoundError(f"{text}: no such file or directory. Check the path.")
    if table_kind is None and (is_url or path.is_dir()):
        table_kind = _table_kind_of_directory(text, storage_options)
    if table_kind == "parquet":
        return _from_parquet(text, columns, storage_options, chunk_bytes), text, KEEP_CHUNKS
    if table_kind:
        return _from_csv(text, columns, storage_options), text, None
    if suffix == ".npy":
        reader = NpyFile(text)
        return _from_reader(reader, text, chunk_bytes, None), text, None
    if suffix in HDF5_SUFFIXES or (not is_url and path.is_file() and _is_hdf5(text)):
        reader = HDF5Dataset(text, dataset or _only_hdf5_dataset(text))
        storage_rows = reader.storage_chunks[0] if reader.storage_chunks else None
        array = _from_reader(reader, f"{text}:{reader.name}", chunk_bytes, storage_rows)
        return array, f"{text}:{reader.name}", storage_rows
    return _from_zarr_path(text, dataset, storage_options, chunk_bytes)


def _table_kind_of_directory(text, storage_options):
    """"parquet" or "csv" when the directory (local or a URL) holds such files, else None."""
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
        zarr_store = any(filesystem.exists(f"{root.rstrip('/')}/{marker}") for marker in ZARR_MARKERS)
        if zarr_store or not filesystem.isdir(root):  # a Zarr root may hold a key per chunk: not listed
            return None
        names = {Path(name).suffix.lower() for name in filesystem.ls(root, detail=False)}
    except (OSError, ValueError):  # unreachable or not a directory: the other readers say what is wrong
        return None
    return next((kind for suffix, kind in TABLE_SUFFIXES.items() if suffix in names), None)


def _is_hdf5(path):
    try:
        import h5py
    except ImportError:
        return False
    return h5py.is_hdf5(path)


def _only_hdf5_dataset(path):
    import h5py

    with h5py.File(path, "r") as handle:
        names = hdf5_datasets(handle)
    if len(names) != 1:
        raise SourceError(
            f"{path} holds {len(names)} datasets ({names}); pass dataset= to choose one."
        )
    return names[0]


def _from_reader(reader, label, chunk_bytes, storage_rows):
    name = "open-" + tokenize(label, os.path.getmtime(reader.path), os.path.getsize(reader.path))
    if np.dtype(reader.dtype).kind not in "biuf":
        raise SourceError(f"{label}: dtype {reader.dtype} is not numeric; store numbers.")
    first = reader.shape[0] if reader.ndim else 1
    # 2-D sources are read a whole task chunk at a time (one read, no copy joining pieces)
    rows = _task_rows(reader.shape, reader.dtype, chunk_bytes, storage_rows) if reader.ndim == 2 else min(first, 1024)
    return da.from_array(reader, chunks=(rows,) + reader.shape[1:], name=name, lock=False,
                         meta=np.empty((0,) * reader.ndim, dtype=reader.dtype))


def _is_zarr_array(obj):
    return type(obj).__module__.startswith("zarr") and hasattr(obj, "chunks") and hasattr(obj, "shape")


def _from_zarr_object(array, label, chunk_bytes):
    storage_rows = array.chunks[0] if array.ndim else None
    if np.dtype(array.dtype).kind not in "biuf":
        raise SourceError(f"{label}: dtype {array.dtype} is not numeric; store numbers.")
    if array.ndim == 2:  # tasks of whole storage chunks, each read by one call to the store
        rows = _task_rows(array.shape, array.dtype, chunk_bytes, storage_rows)
        return da.from_zarr(array, chunks=(rows, array.shape[1])), label, storage_rows
    return da.from_zarr(array), label, storage_rows


def _from_zarr_path(text, dataset, storage_options, chunk_bytes):
    import zarr

    try:
        node = zarr.open(store=text, mode="r", storage_options=storage_options)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
        raise SourceError(
            f"{text}: not a Zarr array or group, nor a .npy, HDF5, Parquet or CSV source "
            f"({error}). Check the path or its suffix."
        ) from error
    if isinstance(node, zarr.Group):
        names = sorted(node.array_keys())
        if dataset is None:
            if len(names) != 1:
                raise SourceError(
                    f"{text} is a Zarr group with {len(names)} arrays ({names}); "
                    "pass dataset= to choose one."
                )
            dataset = names[0]
        try:
            node = node[dataset]
        except KeyError:
            raise SourceError(
                f"{text}: no array {dataset!r} in this Zarr group; arrays there: {names}."
            ) from None
        if isinstance(node, zarr.Group):
            raise SourceError(f"{text}: {dataset!r} is a group; its arrays: {sorted(node.array_keys())}.")
        return _from_zarr_object(node, f"{text}/{dataset}", chunk_bytes)
    return _from_zarr_object(node, text, chunk_bytes)


def _from_parquet(text, columns, storage_options, chunk_bytes):
    """Parquet files (a file, a glob, a directory of them, local or remote) as row-group tasks."""
    import fsspec
    from dask.utils import natural_sort_key

    if importlib.util.find_spec("pyarrow") is None:  # pragma: no cover - depends on the environment
        raise SourceError(f"{text}: reading Parquet needs pyarrow (pip install 'daskgmm[dataframe]').")
    filesystem, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
    if any(ch in root for ch in "*?["):
        paths = filesystem.glob(root)
    elif filesystem.isdir(root):
        paths = [path for path in filesystem.find(root)
                 if not any(part.startswith(("_", ".")) for part in path[len(root):].split("/") if part)]
    else:
        paths = [root]
    if not paths:
        raise SourceError(f"{text}: no Parquet files there.")
    reader = ParquetRows(sorted(paths, key=natural_sort_key), filesystem, columns, text)
    name = "open-" + tokenize(text, reader.columns, [filesystem.info(path) for path in reader.paths])
    return da.from_array(reader, chunks=(reader.task_rows(chunk_bytes), reader.shape[1]), name=name, lock=False,
                         meta=np.empty((0, 0), dtype=reader.dtype))


def _from_csv(text, columns, storage_options):
    try:
        import dask.dataframe as dd
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SourceError(f"{text}: reading CSV needs dask.dataframe (pip install 'daskgmm[dataframe]').") from error
    from pandas.api.types import is_numeric_dtype

    frame = dd.read_csv(str(Path(text) / "*.csv") if Path(text).is_dir() else text, storage_options=storage_options)
    frame = frame[chosen_columns(text, list(frame.columns), columns)]
    refuse_non_numeric(text, [c for c, t in frame.dtypes.items() if not is_numeric_dtype(t)])
    return frame.to_dask_array(lengths=True)


def _is_xarray(obj):
    return type(obj).__module__.startswith("xarray") and hasattr(obj, "dims")


def _from_xarray(array, sample_dim, flatten):
    if sample_dim is None:
        sample_dims = tuple(array.dims[:-1]) if flatten and array.ndim > 2 else (array.dims[0],)
    else:
        sample_dims = (sample_dim,) if isinstance(sample_dim, str) else tuple(sample_dim)
    missing = [d for d in sample_dims if d not in array.dims]
    if missing:
        raise SourceError(f"xarray.DataArray has no dimension {missing[0]!r}; its dims: {array.dims}.")
    feature_dims = [d for d in array.dims if d not in sample_dims]
    data = array.transpose(*sample_dims, *feature_dims).data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data))
    n_samples = int(np.prod([array.sizes[d] for d in sample_dims]))
    n_features = int(np.prod([array.sizes[d] for d in feature_dims]))
    return data.reshape(n_samples, n_features)


def _as_rows(array, name, flatten):
    if np.dtype(array.dtype).kind not in "biuf":
        raise SourceError(f"{name}: dtype {array.dtype} is not numeric.")
    if array.ndim == 2:
        return array
    if array.ndim >= 3 and flatten:
        array = array.rechunk({i: -1 for i in range(1, array.ndim)})
        return array.reshape(-1, array.shape[-1])
    hint = (
        "pass flatten=True to use every leading dimension as samples and the last as features"
        if array.ndim >= 3
        else "a single feature needs shape (n_samples, 1): reshape it"
    )
    raise SourceError(
        f"{name} is {array.ndim}-D with shape {tuple(array.shape)}; GaussianMixture needs "
        f"(n_samples, n_features): {hint}."
    )


def _rechunk_rows(array, chunk_bytes, storage_rows):
    if storage_rows is KEEP_CHUNKS:  # chunks that follow the storage's own units (Parquet row groups)
        return array
    if np.isnan(array.shape[0]):
        array = array.compute_chunk_sizes()
    if storage_rows is None and _sized_for_tasks(array, chunk_bytes):
        # e.g. Parquet partitions or a Dask array's own chunks: each is read by one task as it
        # is; joining them would only add a copy (and splitting them would read one many times)
        return array.rechunk({1: -1})
    return array.rechunk({0: _task_rows(array.shape, array.dtype, chunk_bytes, storage_rows), 1: -1})


def _sized_for_tasks(array, chunk_bytes):
    """Whether there are several row chunks, none over ``chunk_bytes`` and all but the last at
    least ``ONE_TASK_STORAGE_BYTES``."""
    row_bytes = array.shape[1] * array.dtype.itemsize
    sizes = [rows * row_bytes for rows in array.chunks[0]]
    return (len(sizes) > 1 and max(sizes) <= max(chunk_bytes, ONE_TASK_STORAGE_BYTES)
            and min(sizes[:-1]) >= ONE_TASK_STORAGE_BYTES)


def _task_rows(shape, dtype, chunk_bytes, storage_rows):
    """Rows per task: one storage chunk of at least ``ONE_TASK_STORAGE_BYTES``, else whole storage
    chunks up to about ``chunk_bytes`` (:func:`~daskgmm.runtime.resources.default_chunk_rows` without storage)."""
    n_samples, n_features = shape
    row_bytes = n_features * np.dtype(dtype).itemsize
    if storage_rows and storage_rows * row_bytes >= ONE_TASK_STORAGE_BYTES:
        return storage_rows
    rows = min(default_chunk_rows(n_samples, n_features, np.dtype(dtype).itemsize, chunk_bytes), max(1, n_samples))
    return max(storage_rows, rows // storage_rows * storage_rows) if storage_rows else rows

