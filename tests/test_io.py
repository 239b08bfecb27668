"""Every source format, opened for real from files on disk, and the persist policy."""

import dask
import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import FITTED_ARRAYS, counting_reads, fit_quietly, make_data, relative_deviation, starting_point
from distributed import Client, LocalCluster

from daskgmm import GaussianMixture, open_array
from daskgmm.em.passes import pass_graph
from daskgmm.io.inputs import RowData
from daskgmm.io.stores import ONE_TASK_STORAGE_BYTES, SourceError
from daskgmm.kernels.chunk import GaussianAssigner

K = 3


@pytest.fixture(scope="module")
def data():
    return make_data(n_samples=5000, n_features=4, n_components=K, seed=8)


@pytest.fixture(scope="module")
def reference(data):
    return fit_quietly(GaussianMixture(K, random_state=0, **starting_point(data, K, "full")), data)


def assert_same_fit(source, data, reference, **kwargs):
    ours = fit_quietly(GaussianMixture(K, random_state=0, **starting_point(data, K, "full"), **kwargs), source)
    for name in FITTED_ARRAYS:
        assert relative_deviation(getattr(ours, name), getattr(reference, name)) < 1e-10, name
    return ours


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_and_group_member(tmp_path, data, reference, zarr_format):
    path = tmp_path / "features.zarr"
    stored = zarr.create_array(path, shape=data.shape, chunks=(700, 2), dtype="f8", zarr_format=zarr_format)
    stored[:] = data
    array = open_array(path, chunk_bytes=5000 * 8 * 4 // 3)
    assert array.chunks[1] == (4,)
    assert all(c % 700 == 0 for c in array.chunks[0][:-1])  # whole storage chunks per task
    np.testing.assert_array_equal(array.compute(), data)
    assert_same_fit(str(path), data, reference)

    group = zarr.open_group(tmp_path / "group.zarr", mode="w", zarr_format=zarr_format)
    group.create_array("frames", shape=data.shape, dtype="f4", chunks=(1000, 4))[:] = data
    group.create_array("labels", shape=(5000,), dtype="i8")
    member = open_array(tmp_path / "group.zarr", dataset="frames")
    assert member.dtype == np.float32 and member.shape == data.shape
    with pytest.raises(SourceError, match=r"2 arrays \(\['frames', 'labels'\]\); pass dataset="):
        open_array(tmp_path / "group.zarr")
    with pytest.raises(SourceError, match="no array 'nope'.*arrays there: \\['frames', 'labels'\\]"):
        open_array(tmp_path / "group.zarr", dataset="nope")
    with pytest.raises(SourceError, match="1-D with shape \\(5000,\\)"):
        open_array(tmp_path / "group.zarr", dataset="labels")


def joining_layers(array):
    """Graph layers that rechunk or concatenate (copies that join pieces read separately)."""
    return [name for name in array.dask.layers if name.startswith(("rechunk", "concatenate"))]


def test_tasks_read_storage_chunks_without_joining_copies(tmp_path):
    rows = ONE_TASK_STORAGE_BYTES // 16  # float32 x 4: storage chunks of 8 MiB, each a task as it is
    values = np.arange((2 * rows + 10) * 4, dtype=np.float32).reshape(-1, 4)
    zarr.create_array(tmp_path / "big.zarr", shape=values.shape, chunks=(rows, 4), dtype="f4")[:] = values
    big = open_array(tmp_path / "big.zarr")
    assert big.chunks[0] == (rows, rows, 10) and not joining_layers(big)
    np.testing.assert_array_equal(big.compute(), values)
    # small storage chunks: grouped into tasks, each read by one call to the store
    zarr.create_array(tmp_path / "small.zarr", shape=values.shape, chunks=(1000, 4), dtype="f4")[:] = values
    small = open_array(tmp_path / "small.zarr", chunk_bytes=4 * 2**20)
    assert set(small.chunks[0][:-1]) == {262_000} and not joining_layers(small)
    with h5py.File(tmp_path / "small.h5", "w") as handle:
        handle.create_dataset("x", data=values, chunks=(1000, 4))
    hdf5 = open_array(tmp_path / "small.h5", chunk_bytes=4 * 2**20)
    assert set(hdf5.chunks[0][:-1]) == {262_000} and not joining_layers(hdf5)
    np.testing.assert_array_equal(hdf5.compute(), values)
    # each chunk is read inside the task that computes its statistics: no chunk waits in memory
    model = fit_quietly(GaussianMixture(2, covariance_type="diag", max_iter=1), values[::1000])
    graph = dict(pass_graph(RowData(big), [GaussianAssigner(model._fitted_params())], ["diag"], [2]).__dask_graph__())
    per_chunk = [key for key in graph if isinstance(key, tuple)]
    assert len(per_chunk) == 3 and all(key[0].startswith("chunk_task") for key in per_chunk)
    for output in (model.predict(big), model.score_samples(big), model.predict_proba(big)):  # and per-row outputs
        (optimized,) = dask.optimize(output)
        assert not [key for key in dict(optimized.dask) if isinstance(key, tuple) and "zarr" in key[0]]
    # a Dask array (or Parquet partitions) already in task-sized chunks keeps them
    kept = open_array(da.from_array(values, chunks=(rows, 4)))
    assert kept.chunks[0] == (rows, rows, 10) and not joining_layers(kept)


def test_zarr_through_an_fsspec_url(tmp_path, data):
    path = tmp_path / "url.zarr"
    zarr.create_array(path, shape=data.shape, chunks=(1000, 4), dtype="f8")[:] = data
    np.testing.assert_array_equal(open_array(path.as_uri()).compute(), data)


def test_hdf5_dataset_read_in_worker_processes(tmp_path, data, reference):
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("audio/mfcc", data=data, chunks=(500, 4))
    array = open_array(path, dataset="audio/mfcc")
    assert all(c % 500 == 0 for c in array.chunks[0][:-1])
    assert open_array(path).shape == data.shape  # the only dataset is found by itself
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        assert_same_fit(array, data, reference, persist=False)
    with pytest.raises(SourceError, match="no dataset 'x'; datasets there: \\['audio/mfcc'\\]"):
        open_array(path, dataset="x")


def test_npy_file_is_memory_mapped(tmp_path, data, reference):
    path = tmp_path / "features.npy"
    np.save(path, data)
    array = open_array(path, chunk_bytes=40_000)
    assert array.numblocks[0] > 1
    assert_same_fit(str(path), data, reference)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_table_directories_with_column_selection(tmp_path, data, reference, kind):
    frame = pd.DataFrame(data, columns=["a", "b", "c", "d"]).assign(name="x")
    folder = tmp_path / kind
    folder.mkdir()
    for i, part in enumerate([frame.iloc[:1500], frame.iloc[1500:3100], frame.iloc[3100:]]):
        if kind == "parquet":
            part.to_parquet(folder / f"part{i}.parquet")
        else:
            part.to_csv(folder / f"part{i}.csv", index=False)
    array = open_array(folder, columns=["a", "b", "c", "d"])
    np.testing.assert_allclose(array.compute(), data, rtol=1e-15)
    assert_same_fit(array, data, reference)
    with pytest.raises(SourceError, match="\\['name'\\] are not numeric; pass columns="):
        open_array(folder)
    with pytest.raises(SourceError, match="no column\\(s\\) \\['e'\\]"):
        open_array(folder, columns=["a", "e"])


def test_parquet_row_groups_are_tasks_read_inside_the_statistics_task(tmp_path):
    """Parquet is read by pyarrow straight into the task's array, whole row groups per task (one
    of 8 MiB or more starts a task, smaller ones join up to the chunk target), no separate read
    task in the pass graph; float32 stays float32; a pandas index is no feature."""
    pq = pytest.importorskip("pyarrow.parquet")
    rows = ONE_TASK_STORAGE_BYTES // 16
    values = np.random.default_rng(0).normal(size=(2 * rows + 10, 4)).astype(np.float32)
    frame = pd.DataFrame(values, columns=list("abcd"))
    folder = tmp_path / "big"
    folder.mkdir()
    frame.iloc[: rows + 5].to_parquet(folder / "part.0.parquet", row_group_size=rows)
    frame.iloc[rows + 5 :].set_index(pd.Index(np.arange(rows + 5, len(frame)) * 2, name="id")).to_parquet(
        folder / "part.10.parquet", row_group_size=rows)
    (folder / "_SUCCESS").write_text("")  # written by Spark and Hadoop: not data
    big = open_array(folder)
    # a row group of 8 MiB starts a task; the small one after it joins it (one read of both)
    assert big.dtype == np.float32 and big.chunks == ((rows + 5, rows + 5), (4,)) and not joining_layers(big)
    np.testing.assert_array_equal(big.compute(), values)  # part.10 after part.0: natural order
    np.testing.assert_array_equal(open_array(f"file://{folder}").compute(), values)  # a directory URL too
    model = fit_quietly(GaussianMixture(2, covariance_type="diag", max_iter=1), values[::1000])
    graph = dict(pass_graph(RowData(big), [GaussianAssigner(model._fitted_params())], ["diag"], [2]).__dask_graph__())
    assert all(key[0].startswith("chunk_task") for key in graph if isinstance(key, tuple))
    (optimized,) = dask.optimize(model.predict(big))
    assert not [key for key in dict(optimized.dask) if isinstance(key, tuple) and key[0].startswith("open-")]
    # small row groups are joined into tasks, and any row range reads across them
    pq.write_table(pq.read_table(folder / "part.0.parquet"), tmp_path / "small.parquet", row_group_size=1000)
    small = open_array(tmp_path / "small.parquet", columns=["d", "b"], chunk_bytes=2**20)
    assert set(small.chunks[0][:-1]) == {131_000} and small.shape == (rows + 5, 2)
    np.testing.assert_array_equal(small[1_999:262_001].compute(), values[1_999:262_001][:, [3, 1]])
    other = tmp_path / "other"
    other.mkdir()
    frame.iloc[:10].to_parquet(other / "a.parquet")
    frame.iloc[10:20, :3].to_parquet(other / "b.parquet")
    with pytest.raises(SourceError, match=r"the first file \['a', 'b', 'c', 'd'\]; pass columns="):
        open_array(other)
    np.testing.assert_array_equal(open_array(other, columns=["a", "c"]).compute(), values[:20][:, [0, 2]])


def test_xarray_with_a_sample_dimension(data):
    xr = pytest.importorskip("xarray")
    cube = xr.DataArray(data.T.reshape(4, 50, 100), dims=("band", "y", "x"))
    with pytest.raises(SourceError, match="no dimension 'time'"):
        open_array(cube, sample_dim="time")
    table = xr.DataArray(data, dims=("time", "feature"))
    np.testing.assert_array_equal(open_array(table).compute(), data)
    pixels = open_array(cube.transpose("y", "x", "band"), flatten=True)
    np.testing.assert_array_equal(pixels.compute(), data)
    np.testing.assert_array_equal(open_array(cube, sample_dim=("y", "x")).compute(), data)


def test_unreadable_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.zarr: no such file"):
        open_array(tmp_path / "missing.zarr")
    (tmp_path / "junk.bin").write_bytes(b"not an array")
    with pytest.raises(SourceError, match="junk.bin: not a Zarr array or group"):
        open_array(tmp_path / "junk.bin")
    image = tmp_path / "image.zarr"
    zarr.create_array(image, shape=(20, 30, 3), dtype="u1")[:] = 7
    with pytest.raises(SourceError, match="3-D with shape \\(20, 30, 3\\).*flatten=True"):
        open_array(image)
    pixels = open_array(image, flatten=True)
    assert pixels.shape == (600, 3)
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array([["a", "b"]]))
    with pytest.raises(SourceError, match="not numeric"):
        open_array(strings)


def test_predictions_stream_to_zarr(tmp_path, data, reference):
    path = tmp_path / "in.zarr"
    zarr.create_array(path, shape=data.shape, chunks=(1000, 4), dtype="f8")[:] = data
    source = open_array(path)
    reference.predict(source).to_zarr(str(tmp_path / "labels.zarr"))
    reference.predict_proba(source).to_zarr(str(tmp_path / "proba.zarr"))
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "labels.zarr")[:], reference.predict(data))
    np.testing.assert_allclose(zarr.open_array(tmp_path / "proba.zarr")[:], reference.predict_proba(data))


@pytest.mark.parametrize("persist, reads_per_chunk", [(True, 1), ("auto", 1), (False, 5)])
def test_persist_policy(data, persist, reads_per_chunk):
    dx, reads = counting_reads(data, 1000)
    start = starting_point(data, K, "diag")
    gmm = fit_quietly(GaussianMixture(K, covariance_type="diag", max_iter=5, tol=0, persist=persist, **start), dx)
    assert gmm.n_iter_ == 5
    assert np.bincount(reads).tolist() == [reads_per_chunk] * dx.numblocks[0]


def test_auto_does_not_persist_what_does_not_fit(data, monkeypatch):
    import daskgmm.em.loop

    monkeypatch.setattr(daskgmm.em.loop, "memory_budget", lambda client, chunk_bytes: 1000.0)
    dx, reads = counting_reads(data, 1000)
    fit_quietly(GaussianMixture(K, covariance_type="diag", max_iter=3, tol=0, **starting_point(data, K, "diag")), dx)
    assert np.bincount(reads).tolist() == [3] * dx.numblocks[0]


def test_pass_graph_has_one_parameter_key_and_a_task_per_chunk(data, reference):
    dx = da.from_array(data, chunks=(50, 4))  # 100 chunks
    params = reference._fitted_params()
    graph = dict(pass_graph(RowData(dx), [GaussianAssigner(params)], ["full"], [K], split_every=8).__dask_graph__())
    n_chunks = dx.numblocks[0]
    holding_params = [key for key, task in graph.items() if str(key).startswith("list-")]
    assert len(holding_params) == 1
    # the chunks (in-memory data) + statistics + reduction tree of fan-in 8 (13 + 2 + 1 merges) + the parameters
    assert len(graph) == 2 * n_chunks + 16 + 1
