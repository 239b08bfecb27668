"""Passes over HDF5 and Parquet copies of the out-of-core store, and predictions streamed to Zarr.

Run (part of ``make bench-out-of-core``; about 10 minutes on 2 cores with the defaults)::

    .venv/bin/python benchmarks/sources.py --gib 2.5 --workers 2 --worker-memory 768MiB

One run, on one LocalCluster of ``--workers`` processes x ``--worker-memory``:
1. writes (once, under ``data/``) the rows of ``out_of_core.py``'s store of ``--gib`` GiB as an
   HDF5 file (h5py, 500k-row chunks, uncompressed) and a Parquet directory (dask.dataframe,
   500k-row partitions, snappy);
2. for each of Zarr, HDF5 and Parquet: a diag K=4 fit from a fixed start (``tol=0``), then a
   plain Dask reduction over the source as Dask opens it (the reading limit; for Parquet
   ``dd.read_parquet``, and also ``open_array``'s own read pass): seconds per iteration and its
   ratio to the read pass, peak worker RSS during the fit, pauses, restarts;
3. after the Zarr fit, its labels streamed from the Zarr store to a new Zarr store
   (``predict(X).to_zarr``, what ``daskgmm predict --out`` does), against the read pass.

Results: ``benchmarks/results/sources_<memory>.json`` and ``.md``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
from out_of_core import MemoryWatch, PassTimes, cluster_arguments, dataset, pauses, starting_point, worker_rss, worker_state
from results_files import machine_description, write_results

from daskgmm import GaussianMixture, open_array


def copies(zarr_path: Path, rows: int):
    """HDF5 and Parquet copies of the store (written once)."""
    import h5py

    h5_path, parquet_path = zarr_path.with_suffix(".h5"), zarr_path.with_suffix(".parquet")
    X = da.from_zarr(str(zarr_path))
    with dask.config.set(scheduler="threads"):
        if not (h5_path.parent / (h5_path.name + ".complete")).exists():
            print(f"writing {h5_path} ...", flush=True)
            with h5py.File(h5_path, "w") as handle:
                stored = handle.create_dataset("x", shape=X.shape, dtype=X.dtype, chunks=(rows, X.shape[1]))
                da.store(X.rechunk((rows, X.shape[1])), stored, lock=True)
            (h5_path.parent / (h5_path.name + ".complete")).write_text("ok")
        if not (parquet_path / ".complete").exists():
            print(f"writing {parquet_path} ...", flush=True)
            import dask.dataframe as dd

            frame = dd.from_dask_array(X.rechunk((rows, X.shape[1])), columns=[f"f{i}" for i in range(X.shape[1])])
            frame.to_parquet(str(parquet_path), write_index=False, overwrite=True)
            (parquet_path / ".complete").write_text("ok")
    return h5_path, parquet_path


def plain_read(source):
    """Seconds of a plain Dask reduction over the source, as Dask opens it."""
    started = time.perf_counter()
    if str(source).endswith(".parquet"):
        import dask.dataframe as dd

        dd.read_parquet(str(source)).sum().compute()
    elif str(source).endswith(".h5"):
        open_array(source).sum(axis=0).compute()  # h5py handles cannot travel: daskgmm's picklable reader
    else:
        da.from_zarr(str(source)).sum(axis=0).compute()
    return time.perf_counter() - started


def measured(client, work):
    """``work()``'s result with the peak worker RSS, pauses and restarts while it ran."""
    before, paused = worker_state(client), pauses(client)
    with MemoryWatch(client) as watch:
        result = work()
    after = worker_state(client)
    restarted = sorted(set(before) ^ set(after)) or [w for w in before if before[w]["pid"] != after[w]["pid"]]
    return result, {"peak_rss_mib": sorted(round(v / 2**20) for v in watch.peak.values()),
                    "pauses": pauses(client) - paused, "restarts": len(restarted)}


def streamed_labels(client, model, zarr_path, data_dir):
    """The labels of every row of the store written to a new Zarr store, against a plain read."""
    X = open_array(zarr_path)
    with tempfile.TemporaryDirectory(dir=data_dir) as folder:
        def stream():
            started = time.perf_counter()
            model.predict(X).to_zarr(str(Path(folder) / "labels.zarr"))
            return time.perf_counter() - started

        read_seconds = min(plain_read(zarr_path) for _ in range(2))
        seconds, memory = measured(client, stream)
    return dict(task="labels streamed Zarr -> Zarr", tasks=X.numblocks[0], seconds=seconds, read_seconds=read_seconds,
                ratio_to_read=seconds / read_seconds, **memory)


def main(argv=None):
    args = cluster_arguments(__doc__, gib=2.5).parse_args(argv)
    warnings.simplefilter("ignore")

    from distributed import Client, LocalCluster

    zarr_path = Path(args.data_dir) / f"mixture_{args.gib:g}gib_f32_{args.storage_rows}.zarr"
    dataset(args.gib, args.storage_rows, zarr_path)
    h5_path, parquet_path = copies(zarr_path, args.storage_rows)
    _, settings = starting_point(zarr_path, "diag", 4)
    rows = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.worker_memory,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        print(f"cluster: {args.workers} workers x {args.worker_memory}, 1 thread each; worker RSS "
              f"{sorted(round(v / 2**20) for v in worker_rss(client).values())} MiB", flush=True)
        model = None
        for name, source in (("Zarr", zarr_path), ("HDF5", h5_path), ("Parquet", parquet_path)):
            X = open_array(source)
            times = PassTimes()
            gmm = GaussianMixture(4, covariance_type="diag", tol=0, max_iter=args.iterations, persist=False,
                                  **settings)
            # the fit first: Dask's DataFrame read of Parquet leaves pandas and pyarrow memory in the workers
            _, memory = measured(client, lambda: gmm.fit(X, progress=times))
            read_seconds = min(plain_read(source) for _ in range(2))
            per_iteration = statistics.median(times.seconds[1:] or times.seconds)
            row = dict(task=f"diag K=4 fit, {name}", tasks=X.numblocks[0], seconds=per_iteration,
                       read_seconds=read_seconds, ratio_to_read=per_iteration / read_seconds, **memory)
            if name == "Parquet":  # and daskgmm's own reader's plain pass (pyarrow row groups into arrays)
                started = time.perf_counter()
                X.sum(axis=0).compute()
                row["reader_seconds"] = time.perf_counter() - started
            rows.append(row)
            if model is None:  # before the other sources' libraries (pyarrow's pool) take worker memory
                model = gmm
                rows.append(streamed_labels(client, model, zarr_path, args.data_dir))
    for row in rows:
        print(f"{row['task']}: {row['seconds']:.1f} s ({row['tasks']} tasks) = {row['ratio_to_read']:.2f}x the "
              f"read pass ({row['read_seconds']:.1f} s); peak RSS {row['peak_rss_mib']} MiB of "
              f"{args.worker_memory}; pauses {row['pauses']}; restarts {row['restarts']}"
              + (f"; open_array's own read pass {row['reader_seconds']:.1f} s" if "reader_seconds" in row else ""))
    machine = dict(machine_description(), workers=f"{args.workers} x {args.worker_memory}", data_gib=args.gib)
    columns = [("task", lambda r: r["task"]), ("tasks", lambda r: str(r["tasks"])),
               ("s (per iteration)", lambda r: f"{r['seconds']:.2f}"), ("read pass s", lambda r: f"{r['read_seconds']:.2f}"),
               ("/ read", lambda r: f"{r['ratio_to_read']:.2f}x"), ("peak RSS MiB", lambda r: str(r["peak_rss_mib"])),
               ("pauses", lambda r: str(r["pauses"])), ("restarts", lambda r: str(r["restarts"]))]
    write_results(Path(args.results), f"sources_{args.worker_memory}", machine, rows, columns)
    return rows


if __name__ == "__main__":
    main()
