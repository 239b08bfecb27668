"""Nothing lost, nothing silently stale: outputs, checkpoints, paths as input, weighted BIC.

The command-line cases run the real `daskgmm` command in a subprocess.
"""

import logging
import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import as_interrupted, fit_quietly, make_data, run
from sklearn.exceptions import ConvergenceWarning

import daskgmm
from daskgmm import GaussianMixture, select_model
from daskgmm.io.outputs import OutputError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nothing-lost")
    X = make_data(n_samples=3000, n_features=3, n_components=3, seed=2)
    zarr.create_array(folder / "x.zarr", shape=X.shape, chunks=(1000, 3), dtype="f8")[:] = X
    np.save(folder / "x.npy", X)
    run("fit", folder / "x.npy", "-k", 2, "--random-state", 0, "--max-iter", 5, "--out", folder / "model")
    return folder


def zarr_values(path):
    return zarr.open_array(str(path), mode="r")[:]


# ----------------------------------------------------------------------- outputs
def test_predict_refuses_to_write_over_its_input(folder):
    before = zarr_values(folder / "x.zarr")
    result = run("predict", folder / "model", folder / "x.zarr", "--out", folder / "x.zarr", check=False)
    assert result.returncode == 1
    assert "is the input" in result.stderr and result.stderr.count("\n") == 1
    np.testing.assert_array_equal(zarr_values(folder / "x.zarr"), before)
    inside = run("predict", folder / "model", folder / "x.zarr", "--out", folder / "x.zarr" / "labels",
                 check=False)
    assert inside.returncode == 1 and "overlaps the input" in inside.stderr
    np.testing.assert_array_equal(zarr_values(folder / "x.zarr"), before)


def test_fit_refuses_to_replace_a_dataset_or_a_folder_of_someone_else(folder, tmp_path):
    before = zarr_values(folder / "x.zarr")
    result = run("fit", folder / "x.npy", "-k", 2, "--out", folder / "x.zarr", check=False)
    assert result.returncode == 1 and "daskgmm did not write" in result.stderr
    np.testing.assert_array_equal(zarr_values(folder / "x.zarr"), before)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    for command in (["fit", folder / "x.npy", "-k", 2, "--out", notes],
                    ["predict", folder / "model", folder / "x.npy", "--out", notes],
                    ["select", folder / "x.npy", "-k", "1:2", "--out", notes]):
        result = run(*command, "--overwrite", check=False)
        assert result.returncode == 1 and "will not replace it" in result.stderr, command
        assert (notes / "notes.txt").read_text() == "mine"
    with pytest.raises(OutputError, match="will not replace it"):
        daskgmm.load(folder / "model").save(notes, overwrite=True)
    assert (notes / "notes.txt").read_text() == "mine"


def test_our_outputs_are_replaced_only_when_asked(folder, tmp_path):
    model, labels = tmp_path / "model", tmp_path / "labels.zarr"
    run("fit", folder / "x.npy", "-k", 2, "--max-iter", 3, "--out", model)
    again = run("fit", folder / "x.npy", "-k", 3, "--max-iter", 3, "--out", model, check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert daskgmm.load(model).n_components == 2
    run("fit", folder / "x.npy", "-k", 3, "--max-iter", 3, "--out", model, "--overwrite")
    assert daskgmm.load(model).n_components == 3
    run("predict", model, folder / "x.npy", "--out", labels)
    assert zarr.open_array(str(labels), mode="r").attrs["daskgmm"]["content"] == "labels"
    again = run("predict", model, folder / "x.npy", "--out", labels, "--proba", check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    run("predict", model, folder / "x.npy", "--out", labels, "--proba", "--overwrite")
    assert zarr_values(labels).shape == (3000, 3)
    gmm = daskgmm.load(model)
    with pytest.raises(OutputError, match="overwrite=True"):
        gmm.save(model)
    gmm.save(model, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    gmm.save(empty)  # an empty folder holds nothing to lose
    assert daskgmm.load(empty).n_components == 3


def test_an_unwritable_output_is_refused_before_reading_the_data(folder):
    result = run("fit", folder / "missing.zarr", "-k", 2, "--out", "/proc/forbidden/model", check=False)
    assert result.returncode == 1
    assert "cannot write the --out to /proc/forbidden/model" in result.stderr  # not "no such data"
    assert ".forbidden" not in result.stderr and result.stderr.count("\n") == 1


def test_a_selection_table_is_not_written_over_a_file_of_someone_else(folder, tmp_path):
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    result = run("select", folder / "x.npy", "-k", "1:2", "--table", other, "--overwrite", check=False)
    assert result.returncode == 1 and "will not replace it" in result.stderr
    assert other.read_text() == "a,b\n1,2\n"
    ours = tmp_path / "ours.csv"
    run("select", folder / "x.npy", "-k", "1:2", "--covariance-types", "diag", "--table", ours)
    again = run("select", folder / "x.npy", "-k", "1:2", "--covariance-types", "diag", "--table", ours,
                check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    run("select", folder / "x.npy", "-k", "1:2", "--covariance-types", "diag", "--table", ours, "--overwrite")


# ------------------------------------------------------------------- checkpoints
def test_a_checkpoint_from_other_data_is_refused(tmp_path):
    X1 = make_data(n_samples=2000, n_components=4, seed=1)
    X2 = make_data(n_samples=2000, n_components=4, seed=2) * 3 + 5  # the next fold: same shape
    settings = dict(random_state=7, checkpoint=tmp_path / "ck", max_iter=4, tol=0)
    interrupted = GaussianMixture(4, **settings)
    fit_quietly(interrupted, X1)
    as_interrupted(tmp_path / "ck")  # a fit interrupted on X1
    with pytest.raises(ValueError, match="the data's content differs"):
        GaussianMixture(4, **settings).fit(X2)


def test_a_finished_checkpoint_is_not_resumed_and_says_so(tmp_path, caplog):
    X1 = make_data(n_samples=2000, n_components=4, seed=1)
    X2 = make_data(n_samples=2000, n_components=4, seed=2) * 3 + 5
    gmm = fit_quietly(GaussianMixture(4, random_state=7, checkpoint=tmp_path / "ck"), X1)
    with caplog.at_level(logging.WARNING, logger="daskgmm"):
        fit_quietly(gmm, X2)
    assert "holds a finished fit: starting afresh" in caplog.text
    reference = fit_quietly(GaussianMixture(4, random_state=7), X2)
    np.testing.assert_allclose(gmm.means_, reference.means_)
    np.testing.assert_allclose(gmm.score(X2), reference.score(X2))
    # and a warm start with the same checkpoint continues from the fitted model
    gmm.set_params(warm_start=True, max_iter=3)
    fit_quietly(gmm, X2)
    assert gmm.n_iter_ <= 3


def test_a_checkpoint_goes_into_an_empty_folder_never_into_someone_else_s(tmp_path):
    X = make_data(n_samples=1000, n_components=2, seed=1)
    (tmp_path / "empty").mkdir()
    fit_quietly(GaussianMixture(2, random_state=0, checkpoint=tmp_path / "empty", max_iter=3), X)
    assert (tmp_path / "empty" / "model.json").exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a daskgmm-checkpoint directory"):
        GaussianMixture(2, random_state=0, checkpoint=notes, max_iter=3).fit(X)
    assert [p.name for p in notes.iterdir()] == ["notes.txt"]


def test_a_resumed_fit_says_where_it_resumed(tmp_path, caplog):
    X = make_data(n_samples=2000, n_components=4, seed=1)
    settings = dict(random_state=7, checkpoint=tmp_path / "ck", tol=0)
    fit_quietly(GaussianMixture(4, max_iter=3, **settings), X)
    as_interrupted(tmp_path / "ck")  # as if the process had died after iteration 3
    with caplog.at_level(logging.WARNING, logger="daskgmm"):
        fit_quietly(GaussianMixture(4, max_iter=3, **settings), X)
    assert "resumed from checkpoint" in caplog.text and "at iteration 3" in caplog.text


# ------------------------------------------------------------ paths and DataFrames
def test_every_method_takes_the_inputs_fit_takes(folder):
    X = np.load(folder / "x.npy")
    from_path = fit_quietly(GaussianMixture(3, random_state=0), str(folder / "x.npy"))
    in_memory = fit_quietly(GaussianMixture(3, random_state=0), X)
    assert from_path.n_features_in_ == 3
    for source in (str(folder / "x.npy"), folder / "x.npy", folder / "x.zarr", da.from_array(X, chunks=700), X):
        np.testing.assert_allclose(from_path.bic(source), in_memory.bic(X), rtol=1e-10)
        np.testing.assert_allclose(from_path.aic(source), in_memory.aic(X), rtol=1e-10)
        np.testing.assert_allclose(in_memory.score(source), in_memory.score(X), rtol=1e-12)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
        from_path.predict(X[:, :2])
    with pytest.raises(ValueError, match="Reshape your data"):
        from_path.predict(X[:, 0])


def test_dask_dataframes_carry_feature_names_everywhere():
    X = make_data(n_samples=1500, n_features=3, n_components=2, seed=4)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    lazy = dd.from_pandas(frame, npartitions=3)
    gmm = fit_quietly(GaussianMixture(2, random_state=0), lazy)
    assert list(gmm.feature_names_in_) == ["a", "b", "c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" warning
        assert isinstance(gmm.bic(lazy), float) and isinstance(gmm.aic(lazy), float)
        np.testing.assert_allclose(gmm.bic(lazy), gmm.bic(frame), rtol=1e-10)
        best = select_model(lazy, [1, 2], ["diag"]).best_estimator_
        assert list(best.feature_names_in_) == ["a", "b", "c"]
        best.predict(frame)


# -------------------------------------------------------------------- weighted BIC
def test_weighted_bic_is_the_bic_of_the_duplicated_rows():
    X = make_data(n_samples=300, n_features=2, n_components=2, seed=5)
    weights = np.random.default_rng(0).integers(1, 6, size=len(X))
    duplicated = np.repeat(X, weights, axis=0)
    start = dict(means_init=X[[0, 1]], random_state=0, tol=0, max_iter=5)
    weighted = fit_quietly(GaussianMixture(2, **start), X, sample_weight=weights)
    expanded = fit_quietly(GaussianMixture(2, **start), duplicated)
    np.testing.assert_allclose(weighted.bic(X, sample_weight=weights), expanded.bic(duplicated), rtol=1e-9)
    np.testing.assert_allclose(weighted.aic(X, sample_weight=weights), expanded.aic(duplicated), rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = select_model(X, [2], ["full"], sample_weight=weights, max_iter=5, tol=0, random_state=0)
    best = result.best_estimator_
    np.testing.assert_allclose(result.table[0]["bic"], best.bic(X, sample_weight=weights), rtol=1e-9)
    np.testing.assert_allclose(result.table[0]["aic"], best.aic(X, sample_weight=weights), rtol=1e-9)
    # the weighted BIC's n is the total weight, not the 300 rows (11 free parameters: K=2, D=2, full)
    row = result.table[0]
    np.testing.assert_allclose(row["bic"], -2 * row["log_likelihood"] * weights.sum() + 11 * np.log(weights.sum()),
                               rtol=1e-12)


def test_scikit_learn_s_check_fit2d_predict1d():
    from sklearn.utils.estimator_checks import check_fit2d_predict1d

    check_fit2d_predict1d("GaussianMixture", GaussianMixture(2, random_state=0))
