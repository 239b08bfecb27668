"""One pass over a row-chunked Dask array: a task per chunk, its statistics merged in a tree.

A pass reads every chunk once for several models at once (:func:`statistics_pass_many`): each
chunk's task computes every model's statistics (:func:`daskgmm.kernels.chunk.chunk_statistics_many`),
the statistics are merged in a tree of fan-in ``split_every``, and the models enter the graph
once, as a single key, so each worker receives them once whatever the number of chunks. Chunks
finished within a pass can be counted for progress displays. :func:`per_row_pass` is the lazy
per-row twin (labels, probabilities, log-likelihoods). The EM loops over passes are in
:mod:`daskgmm.em.loop`.
"""

from __future__ import annotations

import contextlib
import time

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback

from ..io.inputs import RowData
from ..kernels.chunk import chunk_statistics
from ..model.params import GaussianParams
from ..model.records import DEFAULT_SPLIT_EVERY
from ..model.statistics import check_finite
from ..runtime.resources import active_client, blas_threads_for
from .chunk_tasks import chunk_statistics_in_pass, chunk_task, merge_chunk_results, per_row_column


def tree_merge(parts, split_every=DEFAULT_SPLIT_EVERY, merge=merge_chunk_results, submit=None):
    """Merge partial results in a tree of fan-in ``split_every``, at least once (so that a lone
    chunk's result is unwrapped too). ``submit``: a distributed ``Client.submit`` for futures
    (default: ``dask.delayed``)."""
    split_every = max(2, int(split_every))
    submit = submit or (lambda function, *args, pure: dask.delayed(function, pure=pure)(*args))
    while True:
        parts = [submit(merge, *parts[i : i + split_every], pure=True) for i in range(0, len(parts), split_every)]
        if len(parts) == 1:
            return parts[0]


def _chunk_tasks(data: RowData, function, *arguments):
    """``function(x, w, row_offset, *arguments)`` of every chunk (delayed), each one task that
    also reads its chunk.

    Why one task: Dask fuses the chunk's read (a Zarr or HDF5 read, a slice of a persisted
    array) into it, so no worker holds a chunk between a read task and the task that uses it,
    and no chunk read ahead waits in memory. Dask array blocks must be arrays: each result is
    wrapped in a 1 x 1 object array, which :func:`~daskgmm.em.chunk_tasks.merge_chunk_results` unwraps.
    """
    arrays = [data.X] if data.sample_weight is None else [data.X, data.sample_weight[:, None]]
    n_chunks = data.X.numblocks[0]
    results = da.map_blocks(chunk_task, *arrays, function, data.first_row, *arguments, dtype=object,
                            chunks=((1,) * n_chunks, (1,)), meta=np.empty((0, 0), dtype=object))
    return list(results.to_delayed().ravel())


def statistics_kernel(device: str = "cpu"):
    """The chunk task of a pass: :func:`daskgmm.kernels.chunk.chunk_statistics`, or its CuPy twin
    :func:`daskgmm.kernels.gpu.chunk_statistics` for ``device="cuda"`` (same signature and result)."""
    if device == "cuda":
        from ..kernels import gpu

        return gpu.chunk_statistics
    return chunk_statistics


def per_row_pass(X, params: GaussianParams, output: str, device: str = "cpu", dtype=None, missing=False):
    """Every row's ``output`` ("label", "proba" or "log_norm") as a lazy Dask array with ``X``'s
    row chunks: :func:`daskgmm.kernels.chunk.per_row` per chunk, or its GPU twin for ``device="cuda"``.
    The parameters enter the graph once, as one key. ``dtype``: of probabilities and
    log-likelihoods (default: ``X``'s). ``missing``: NaN marks a missing value (CPU only)."""
    dtype = np.dtype(dtype or X.dtype)
    if device == "cuda":
        from ..kernels import gpu as backend
    else:
        from ..kernels import chunk as backend
    params_key = dask.delayed(params, pure=True)
    if output == "proba":
        return X.map_blocks(backend.per_row, params_key, output, dtype, missing,
                            chunks=(X.chunks[0], (params.n_components,)), dtype=dtype)
    # a column per chunk, then its only column: a task that dropped the feature axis would not
    # have the chunk's read fused into it (Dask fuses no contraction), and a chunk read by one
    # task and used by another waits in a worker's memory (streamed predictions paused workers)
    column = X.map_blocks(per_row_column, params_key, output, dtype, backend.per_row, missing,
                          chunks=(X.chunks[0], (1,)), dtype=np.int64 if output == "label" else dtype)
    return column[:, 0]


def pass_graph(
    data: RowData,
    assigners: list,
    covariance_types: list,
    n_components: list,
    split_every: int = DEFAULT_SPLIT_EVERY,
    device: str = "cpu",
    track_worst: list | None = None,
    stack: bool = False,
):
    """The graph of one pass for several models: a statistics task per chunk (one read of it for
    all models), merged in a tree of fan-in ``split_every``. Returns a ``Delayed`` of the list of
    merged :class:`SufficientStats`, one per model. The models enter the graph as one key, so
    each worker receives them once, whatever the number of chunks.

    ``track_worst`` (one count per model) keeps that many worst-explained rows (re-seeding).
    ``stack``: the diag and spherical models' GEMMs stacked (equal to their lone passes up to
    round-off, not bit for bit: for ``select_model``'s candidates, not for restarts).
    """
    return tree_merge(_pass_parts(data, assigners, covariance_types, n_components, device, track_worst, stack),
                      split_every)


def _pass_parts(data, assigners, covariance_types, n_components, device, track_worst, stack=False):
    """The chunk tasks of a pass (delayed), before they are merged."""
    models = dask.delayed(list(assigners), pure=True)
    kernel = statistics_kernel(device)
    worst = list(track_worst) if track_worst is not None else [0] * len(assigners)
    return _chunk_tasks(data, chunk_statistics_in_pass, models, list(covariance_types), list(n_components), kernel,
                        worst, stack, data.missing)


def statistics_pass_many(
    data: RowData,
    assigners: list,
    covariance_types: list,
    n_components: list,
    split_every: int = DEFAULT_SPLIT_EVERY,
    device: str = "cpu",
    track_worst: list | None = None,
    on_chunk=None,
    stack: bool = False,
) -> list:
    """One read of every chunk for several models: their merged statistics, in order (the
    arguments are :func:`pass_graph`'s). Non-finite rows are refused with a clear error.

    ``on_chunk(done, total)`` is told as chunks finish (at most twice a second, and at the end):
    on Dask's local schedulers through a callback; on a distributed cluster the pass is then
    submitted as futures, one per chunk, merged on the workers in the same tree (same result).
    """
    client = active_client()
    parts = _pass_parts(data, assigners, covariance_types, n_components, device, track_worst, stack)
    with blas_threads_for(len(parts)):
        if on_chunk is not None and client is not None:
            stats_list = _compute_counting_chunks(client, parts, split_every, _Throttled(on_chunk, len(parts)))
        else:
            counting = _ChunkCounter(on_chunk, len(parts)) if on_chunk else contextlib.nullcontext()
            with counting:
                (stats_list,) = dask.compute(tree_merge(parts, split_every))
    for stats in stats_list:
        check_finite(stats)
    return stats_list


def _compute_counting_chunks(client, parts, split_every, tell):
    """``parts`` merged as :func:`tree_merge` merges them, computed as futures so that finished
    chunks can be counted; each chunk's statistics are let go as soon as they are counted, so
    the workers drop them once merged (no more memory than the plain graph)."""
    from distributed import as_completed

    futures = client.compute(parts)
    finished = as_completed(futures)
    merged = tree_merge(futures, split_every, submit=client.submit)
    del futures
    for future in finished:
        tell.chunk_finished()
        del future
    return merged.result()


class _Throttled:
    """Calls ``on_chunk(done, total)`` at most every ``interval_s`` seconds, and at the last chunk."""

    def __init__(self, on_chunk, total, interval_s=0.5):
        self.on_chunk, self.total, self.interval_s = on_chunk, total, interval_s
        self.done, self.told = 0, 0.0

    def chunk_finished(self):
        self.done += 1
        now = time.perf_counter()
        if self.done == self.total or now - self.told >= self.interval_s:
            self.told = now
            self.on_chunk(self.done, self.total)


class _ChunkCounter(Callback):
    """Counts the chunk tasks of a pass as Dask's local scheduler finishes them."""

    def __init__(self, on_chunk, total):
        super().__init__()
        self.tell = _Throttled(on_chunk, total)

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("chunk_task"):
            self.tell.chunk_finished()
