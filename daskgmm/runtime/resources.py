"""Where and how things run: the active cluster, its memory, chunk sizes, BLAS threads.

The one place for runtime policy, a leaf that imports nothing of daskgmm:
the engine, the readers and the estimator ask it rather than deciding
deep inside the math.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import dask
import dask.local
from threadpoolctl import ThreadpoolController

DEFAULT_CHUNK_BYTES = 128 * 2**20
MIN_CHUNK_ROWS = 16384


def active_client():
    """The default ``distributed.Client`` if one is active, else None."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def memory_budget(client, chunk_bytes: float = 0.0) -> float:
    """Bytes of data that can be kept in memory comfortably.

    On a cluster: per worker, the 60% of its limit below which Dask does not
    spill, less a working set of three chunks per thread; locally, half the
    memory available now.
    """
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        limits = [(w.get("memory_limit") or 0, w.get("nthreads") or 1) for w in workers]
        if limits and all(limit for limit, _ in limits):
            return sum(max(0.0, 0.6 * limit - 3 * chunk_bytes * threads) for limit, threads in limits)
    import psutil

    return 0.5 * psutil.virtual_memory().available


def total_threads() -> int:
    """Threads that run chunk tasks at once: the cluster's (every worker's), else this machine's cores."""
    client = active_client()
    if client is not None:
        workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
        return max(1, sum(w.get("nthreads") or 1 for w in workers))
    return os.cpu_count() or 1


def default_chunk_rows(n_samples, n_features, itemsize, chunk_bytes=DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk: about ``chunk_bytes``, and at least two chunks per local core."""
    by_bytes = max(1, int(chunk_bytes) // max(1, n_features * itemsize))
    per_core = -(-n_samples // (2 * (os.cpu_count() or 1)))
    return int(max(1, min(n_samples, by_bytes, max(MIN_CHUNK_ROWS, per_core))))


# What a worker process holds before any data, with room to spare (measured here: ~230 MB RSS
# when workers imported scikit-learn; ~160 MiB after a fit since they do not).
WORKER_BASELINE_BYTES = 256 * 2**20
# The least a worker holds after a fit's first tasks (measured: 162 MiB), for refusing chunks no
# worker can hold: a task holds its chunk and about as much again (reading, merging storage chunks).
WORKER_FLOOR_BYTES = 160 * 2**20
CHUNK_COPIES_PER_TASK = 2
# What the compiled diag/spherical kernels add to a worker (numba, LLVM, the loaded loops; measured:
# 235 -> 343 MiB RSS over a worker's first diag fit after a full one).
COMPILED_KERNEL_BYTES = 112 * 2**20
NANNY_TERMINATE_FRACTION = 0.95  # distributed.worker.memory.terminate


def default_chunk_bytes() -> int:
    """128 MiB, or less on a cluster whose workers are small.

    A task holds its chunk and about as much again while reading it, on top
    of the worker's own baseline: chunks get a quarter of what the smallest
    worker has left after the baseline (at least 8 MiB).
    """
    client = active_client()
    if client is None:
        return DEFAULT_CHUNK_BYTES
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    sizes = [max(8 * 2**20, (limit - WORKER_BASELINE_BYTES) // 4) for limit in limits if limit]
    return int(min([DEFAULT_CHUNK_BYTES] + sizes))


_blas_controller = None


@contextmanager
def blas_threads_for(n_chunks: int):
    """Single-threaded BLAS while several chunks run in threads of this process.

    Each Dask thread already keeps a core busy; a multi-threaded BLAS inside
    every task would oversubscribe the cores (measured here: 3x slower at
    1M x 16, K=16). Worker processes of a distributed cluster get
    ``OPENBLAS_NUM_THREADS=1`` from their Nanny; this covers the threaded
    scheduler and in-process workers. One chunk, or the synchronous
    scheduler, keeps BLAS's own threads.
    """
    global _blas_controller
    if n_chunks < 2 or dask.base.get_scheduler() is dask.local.get_sync:
        yield
        return
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield


class WorkerMemoryError(MemoryError):
    """Dask workers cannot hold daskgmm's tasks: refused before the work starts, or they died
    running them (almost always: out of memory)."""


def check_worker_memory(chunk_bytes: float, compiled_kernels: bool = False):
    """Refuse, before any work, chunks that the active cluster's smallest worker cannot hold
    with all its threads busy (its nanny would kill it minutes later). ``compiled_kernels``: the
    fit runs :mod:`daskgmm.kernels.numba_loops`'s loops (diag, spherical). No cluster: nothing to check."""
    client = active_client()
    if client is None:
        return
    workers = [w for w in client.scheduler_info(n_workers=-1)["workers"].values() if w.get("memory_limit")]
    if not workers:
        return
    smallest = min(workers, key=lambda w: w["memory_limit"] / max(w.get("nthreads", 1), 1))
    limit, threads = smallest["memory_limit"], max(smallest.get("nthreads", 1), 1)
    floor = WORKER_FLOOR_BYTES + (COMPILED_KERNEL_BYTES if compiled_kernels else 0)
    need = CHUNK_COPIES_PER_TASK * chunk_bytes * threads + floor
    if need <= NANNY_TERMINATE_FRACTION * limit:
        return
    largest = (NANNY_TERMINATE_FRACTION * limit - floor) / (CHUNK_COPIES_PER_TASK * threads)
    itself = "for the worker itself" + (" and the compiled diag/spherical kernels" if compiled_kernels else "")
    raise WorkerMemoryError(
        f"chunks of {chunk_bytes / 2**20:,.0f} MiB need about {need / 2**20:,.0f} MiB per worker with {threads} "
        f"thread(s) ({CHUNK_COPIES_PER_TASK} chunk copies per running task + {floor / 2**20:.0f} MiB "
        f"{itself}), but a worker has {limit / 2**20:,.0f} MiB. Use chunks of at most "
        f"{max(largest, 0) / 2**20:,.0f} MiB (chunk_rows=, --chunk-bytes, or rechunk the Dask array), fewer "
        "threads per worker, or workers with more memory."
    )


@contextmanager
def worker_deaths_explained():
    """Turns Dask's ``KilledWorker`` (after its many lines of worker logs) into one message that
    says what happened, with the workers' memory limit and the chunk size, and what to change.
    Yields a dict in which the caller records ``chunk_bytes`` once it knows it."""
    client = active_client()
    # read before the work starts: a dead worker has left the scheduler's list by the end
    limits = sorted({w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()}) \
        if client is not None else []
    known = {}
    try:
        yield known
    except Exception as error:
        if type(error).__name__ != "KilledWorker":
            raise
        limit = f"{limits[0] / 2**20:,.0f} MiB per worker" if limits and limits[0] else "the workers' memory limit"
        chunk_bytes = known.get("chunk_bytes")
        chunk = f" with chunks of {chunk_bytes / 2**20:,.0f} MiB" if chunk_bytes else ""
        raise WorkerMemoryError(
            f"Dask workers died while running daskgmm's tasks{chunk}, almost always because they ran out of "
            f"memory ({limit}). Give workers more memory, use smaller chunks (chunk_rows=, --chunk-bytes), "
            "fewer threads per worker, or persist=False (--persist false) so that the data are not kept "
            f"in memory. Dask said: {str(error).splitlines()[0][:300]}"
        ) from None
