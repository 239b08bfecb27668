"""Opening stored data as row-chunked Dask arrays: Zarr, HDF5, .npy, Parquet/CSV, xarray.

:func:`open_array` returns a lazy 2-D Dask array whose chunks hold whole rows,
sized to a byte target and aligned to the storage's own row chunks, so every
task reads whole storage chunks and nothing is read before it is needed.
File handles are never put in the graph: HDF5, ``.npy`` and Parquet sources
are wrapped in small picklable objects that open the file inside each read, so
they work unchanged in worker processes, and Dask fuses each read into the task
that uses its rows.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from .runtime import default_chunk_bytes, default_chunk_rows

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
# A storage chunk at least this large is one task by itself: the task reads it and nothing else
# (no copy that joins storage chunks, the least a worker holds), and its work (~20 ms for a diag
# model at 8 MiB) still dwarfs the scheduler's ~1 ms per task. Smaller storage chunks are
# grouped into tasks of about the chunk target, read by one call to the store.
ONE_TASK_STORAGE_BYTES = 8 * 2**20
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
# Said by a reader whose task chunks already follow its storage's units (not to be rechunked).
KEEP_CHUNKS = "keep chunks"


class SourceError(ValueError):
    """A data source cannot be opened as a 2-D numeric array (the message says why and what to do).

    Messages name ``open_array``'s keywords (``dataset=``, ``columns=``, ``flatten=True``);
    :attr:`command_line_message` names the command line's options instead."""

    KEYWORD_TO_OPTION = {"dataset=": "--dataset", "columns=": "--columns", "flatten=True": "--flatten"}

    @property
    def command_line_message(self) -> str:
        message = str(self)
        for keyword, option in self.KEYWORD_TO_OPTION.items():
            message = re.sub(rf"\b[Pp]ass {re.escape(keyword)}", lambda m: m.group(0)[:5] + option, message)
        return message


# --------------------------------------------------------------------- readers
class HDF5Dataset:
    """An HDF5 dataset that opens its file for each read (picklable, process-safe)."""

    def __init__(self, path, name):
        import h5py

        self.path, self.name = str(path), name
        with h5py.File(self.path, "r") as handle:
            if name not in handle:
                raise SourceError(
                    f"{path}: no dataset {name!r}; datasets there: {_hdf5_datasets(handle)}. "
                    "Pass dataset= with one of them."
                )
            node = handle[name]
            if not isinstance(node, h5py.Dataset):
                raise SourceError(
                    f"{path}: {name!r} is a group, not a dataset; datasets there: "
                    f"{_hdf5_datasets(handle)}."
                )
            self.shape, self.dtype, self.storage_chunks = node.shape, node.dtype, node.chunks

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as handle:
            return handle[self.name][key]


def _hdf5_datasets(handle):
    import h5py

    found = []
    handle.visititems(lambda name, node: found.append(name) if isinstance(node, h5py.Dataset) else None)
    return found


class ParquetRows:
    """The rows of Parquet files as one 2-D array, read a row group (or a run of them) at a time.

    Picklable: it holds the paths and an fsspec filesystem and opens the files inside each read,
    so a task reads its row groups straight into one array (pyarrow columns, no DataFrame) and
    Dask fuses that read into the task that uses the rows. Columns that pandas stored as an
    index are not features.
    """

    def __init__(self, paths, filesystem, columns, label):
        import pyarrow.parquet as pq

        self.paths, self.filesystem, self.path = list(paths), filesystem, label
        groups, available = [], None
        for index, path in enumerate(self.paths):
            with filesystem.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                schema = parquet.schema_arrow
                groups += [(index, group, parquet.metadata.row_group(group).num_rows)
                           for group in range(parquet.metadata.num_row_groups)]
            names = [name for name in schema.names if name not in _pandas_index_columns(schema)]
            if available is None:
                available, types = names, {name: schema.field(name).type for name in names}
            elif columns is None and names != available:
                raise SourceError(f"{label}: {path} has columns {names}, the first file {available}; "
                                  "pass columns= with the features to use.")
        self.columns = _chosen_columns(label, available, columns)
        _refuse_non_numeric(label, [c for c in self.columns if not _is_numeric_arrow(types[c])])
        # integer and boolean columns are read as float64: a null in them becomes NaN (which a fit
        # reports by row), never an arbitrary integer; a fit computes in float64 anyway
        self.dtype = np.result_type(*[np.float64 if _is_exact_arrow(types[c]) else types[c].to_pandas_dtype()
                                      for c in self.columns])
        self.groups = [(index, group) for index, group, rows in groups if rows]
        self.group_rows = np.array([rows for _, _, rows in groups if rows], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.group_rows)])
        self.shape = (int(self.starts[-1]), len(self.columns))
        self.storage_chunks = None

    @property
    def ndim(self):
        return 2

    def task_rows(self, chunk_bytes):
        """Rows per task: consecutive whole row groups (Parquet reads no less) up to about
        ``chunk_bytes``; one of ``ONE_TASK_STORAGE_BYTES`` or more starts a task of its own."""
        row_bytes = self.shape[1] * self.dtype.itemsize
        tasks, pending = [], 0
        for rows in self.group_rows.tolist():
            if pending and (rows * row_bytes >= ONE_TASK_STORAGE_BYTES or (pending + rows) * row_bytes > chunk_bytes):
                tasks.append(pending)
                pending = 0
            pending += rows
        return tuple(tasks + [pending]) if pending or not tasks else tuple(tasks)

    def __getitem__(self, key):
        import pyarrow.parquet as pq

        rows, features = key if isinstance(key, tuple) else (key, slice(None))
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise IndexError("ParquetRows reads contiguous rows only")
        out = np.empty((max(stop - start, 0), self.shape[1]), dtype=self.dtype)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        group = max(first, 0)
        while group < len(self.groups) and self.starts[group] < stop:
            index = self.groups[group][0]
            run = [g for g in range(group, len(self.groups)) if self.groups[g][0] == index and self.starts[g] < stop]
            low, high = max(start, int(self.starts[run[0]])), min(stop, int(self.starts[run[-1] + 1]))
            offset = low - int(self.starts[run[0]])
            with self.filesystem.open(self.paths[index], "rb") as handle:
                parquet = pq.ParquetFile(handle)
                for j, column in enumerate(self.columns):
                    # a column at a time (decoded, copied, freed): a task holds its array and one
                    # column, not a decoded table beside it; one thread: Dask runs tasks in parallel
                    table = parquet.read_row_groups([self.groups[g][1] for g in run], columns=[column],
                                                    use_threads=False)
                    out[low - start:high - start, j] = table.column(0).slice(offset, high - low).to_numpy()
                    del table
            group = run[-1] + 1
        return out[:, features]


def _pandas_index_columns(schema):
    """Columns pandas wrote for a DataFrame's index (a RangeIndex is only metadata)."""
    metadata = schema.pandas_metadata or {}
    return {entry for entry in metadata.get("index_columns", []) if isinstance(entry, str)}


def _is_exact_arrow(arrow_type):
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)


def _is_numeric_arrow(arrow_type):
    import pyarrow as pa

    return _is_exact_arrow(arrow_type) or pa.types.is_floating(arrow_type)


class NpyFile:
    """A ``.npy`` file memory-mapped afresh for each read (picklable, process-safe)."""

    def __init__(self, path):
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = header.shape, header.dtype
        self.storage_chunks = None

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, key):
        return np.array(np.load(self.path, mmap_mode="r")[key])


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
        if not filesystem.isdir(root):
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
        names = _hdf5_datasets(handle)
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
    frame = frame[_chosen_columns(text, list(frame.columns), columns)]
    _refuse_non_numeric(text, [c for c, t in frame.dtypes.items() if not is_numeric_dtype(t)])
    return frame.to_dask_array(lengths=True)


def _chosen_columns(label, available, columns):
    """``columns`` (default: all ``available``), each checked to be there."""
    missing = [c for c in columns if c not in available] if columns is not None else []
    if missing:
        raise SourceError(f"{label}: no column(s) {missing}; columns there: {available}.")
    return list(columns) if columns is not None else list(available)


def _refuse_non_numeric(label, non_numeric):
    if non_numeric:
        raise SourceError(f"{label}: column(s) {non_numeric} are not numeric; pass columns= with the "
                          "numeric features to use.")


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
    chunks up to about ``chunk_bytes`` (:func:`~daskgmm.runtime.default_chunk_rows` without storage)."""
    n_samples, n_features = shape
    row_bytes = n_features * np.dtype(dtype).itemsize
    if storage_rows and storage_rows * row_bytes >= ONE_TASK_STORAGE_BYTES:
        return storage_rows
    rows = min(default_chunk_rows(n_samples, n_features, np.dtype(dtype).itemsize, chunk_bytes), max(1, n_samples))
    return max(storage_rows, rows // storage_rows * storage_rows) if storage_rows else rows

