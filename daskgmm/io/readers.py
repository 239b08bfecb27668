"""Readers of one storage format each: small picklable objects that open their file inside every
read (so they work unchanged in worker processes, and Dask fuses each read into the task that
uses its rows), and the error a source that cannot be read as rows raises. No Dask in here;
:mod:`daskgmm.io.stores` turns them into row-chunked Dask arrays.
"""

from __future__ import annotations

import re

import numpy as np

# A storage chunk at least this large is one task by itself: the task reads it and nothing else
# (no copy that joins storage chunks, the least a worker holds), and its work (~20 ms for a diag
# model at 8 MiB) still dwarfs the scheduler's ~1 ms per task. Smaller storage chunks are
# grouped into tasks of about the chunk target, read by one call to the store.
ONE_TASK_STORAGE_BYTES = 8 * 2**20


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


class HDF5Dataset:
    """An HDF5 dataset that opens its file for each read (picklable, process-safe)."""

    def __init__(self, path, name):
        import h5py

        self.path, self.name = str(path), name
        with h5py.File(self.path, "r") as handle:
            if name not in handle:
                raise SourceError(
                    f"{path}: no dataset {name!r}; datasets there: {hdf5_datasets(handle)}. "
                    "Pass dataset= with one of them."
                )
            node = handle[name]
            if not isinstance(node, h5py.Dataset):
                raise SourceError(
                    f"{path}: {name!r} is a group, not a dataset; datasets there: "
                    f"{hdf5_datasets(handle)}."
                )
            self.shape, self.dtype, self.storage_chunks = node.shape, node.dtype, node.chunks

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as handle:
            return handle[self.name][key]


def hdf5_datasets(handle):
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
        self.columns = chosen_columns(label, available, columns)
        refuse_non_numeric(label, [c for c in self.columns if not _is_numeric_arrow(types[c])])
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


def chosen_columns(label, available, columns):
    """``columns`` (default: all ``available``), each checked to be there."""
    missing = [c for c in columns if c not in available] if columns is not None else []
    if missing:
        raise SourceError(f"{label}: no column(s) {missing}; columns there: {available}.")
    return list(columns) if columns is not None else list(available)


def refuse_non_numeric(label, non_numeric):
    if non_numeric:
        raise SourceError(f"{label}: column(s) {non_numeric} are not numeric; pass columns= with the "
                          "numeric features to use.")
