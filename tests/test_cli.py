"""The `daskgmm` command, run for real in subprocesses."""

import re

import numpy as np
import pytest
import zarr
from conftest import make_data, run

import daskgmm
from daskgmm import GaussianMixture


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    X = make_data(n_samples=4000, n_features=3, n_components=3, seed=2)
    zarr.create_array(folder / "x.zarr", shape=X.shape, chunks=(1000, 3), dtype="f8")[:] = X
    return folder, X


def test_fit_with_restarts_says_how_they_advance_and_which_won(store):
    folder, X = store
    fitted = run("fit", folder / "x.zarr", "-k", 3, "--n-init", 3, "--random-state", 0, "--init", "random")
    assert "3 starts advancing together" in fitted.stderr and "starts still running" in fitted.stderr
    reference = GaussianMixture(3, n_init=3, random_state=0, init_params="random").fit(X)
    assert f"mean log-likelihood: {reference.lower_bound_:.6f}" in fitted.stdout
    assert re.search(r"best of 3 starts: start [123]\n", fitted.stdout)
    assert "s per pass, median of" in fitted.stdout


def test_fit_info_predict_score(store):
    folder, X = store
    fitted = run("fit", folder / "x.zarr", "-k", 3, "--covariance-type", "diag", "--random-state", 0,
                 "--out", folder / "model", "--checkpoint", folder / "ck")
    assert "iteration" in fitted.stderr and "mean log-likelihood" in fitted.stderr
    assert "data: 4,000 rows x 3 features" in fitted.stderr
    summary = fitted.stdout
    for expected in ("components: 3 (diag)", "converged: True", "BIC:", "weights:", "s per iteration",
                     "peak memory: driver", "model written to"):
        assert expected in summary
    reference = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    model = daskgmm.load(folder / "model")
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-12)
    assert (folder / "ck" / "model.json").exists()

    described = run("info", folder / "model").stdout
    assert "3 components, diag covariances, 3 features" in described and "component 2: weight" in described
    assert f"fitted on: {folder / 'x.zarr'} (4,000 rows x 3 features, float64)" in described

    run("predict", folder / "model", folder / "x.zarr", "--out", folder / "labels.zarr")
    np.testing.assert_array_equal(zarr.open_array(folder / "labels.zarr")[:], reference.predict(X))
    run("predict", folder / "model", folder / "x.zarr", "--out", folder / "proba.zarr", "--proba")
    np.testing.assert_allclose(zarr.open_array(folder / "proba.zarr")[:], reference.predict_proba(X), atol=1e-12)

    scored = run("score", folder / "model", folder / "x.zarr").stdout
    assert f"mean log-likelihood: {reference.score(X):.6f}" in scored


def test_fit_on_a_local_cluster_shows_the_dashboard(store):
    folder, _ = store
    result = run("fit", folder / "x.zarr", "-k", 2, "--local", "-q", "--random-state", 1)
    assert "dashboard (while it ran): http://127.0.0.1:" in result.stdout
    assert "peak memory: driver" in result.stdout and "worker tcp://127.0.0.1:" in result.stdout


def test_errors_are_one_line_without_traceback(store, tmp_path):
    folder, _ = store
    result = run("fit", tmp_path / "missing.zarr", "-k", 2, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"daskgmm: error: {tmp_path / 'missing.zarr'}: no such file or directory. Check the path."
    ]
    result = run("fit", folder / "x.zarr", "-k", 5000, check=False)
    assert result.returncode == 1 and "n_samples >= n_components" in result.stderr
    assert "Traceback" not in result.stderr
    debug = run("fit", tmp_path / "missing.zarr", "--debug", check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    usage = run("fit", folder / "x.zarr", "--covariance-type", "banana", check=False)
    assert usage.returncode == 2 and "Invalid value" in usage.stderr


def test_select_keeps_the_best_model(store):
    folder, X = store
    result = run("select", folder / "x.zarr", "-k", "1:4", "--covariance-types", "full,diag",
                 "--random-state", 0, "--out", folder / "best", "--table", folder / "table.csv")
    assert "best by BIC: K=3, full" in result.stdout
    assert "16 candidates" not in result.stdout and "8 candidates in" in result.stdout
    assert daskgmm.load(folder / "best").n_components == 3
    assert len((folder / "table.csv").read_text().splitlines()) == 1 + 8
    several = run("select", folder / "x.zarr", "-k", "2:3", "--covariance-types", "full",
                  "--init", "kmeans,random_from_data", "--random-state", 0)
    assert "4 candidates in" in several.stdout and several.stdout.count("random_from_data") == 2
    bad = run("select", folder / "x.zarr", "--init", "kmeans,banana", check=False)
    assert bad.returncode == 2 and "'--init'" in bad.stderr and "'banana' is not one of" in bad.stderr


@pytest.mark.parametrize("command", ["fit", "predict", "score", "info", "select"])
def test_every_command_has_help_with_examples(command):
    result = run(command, "--help")
    assert "Example" in result.stdout and f"daskgmm {command}" in result.stdout


def test_missing_values_from_the_command_line(tmp_path):
    """--missing em: fit and select take NaN as missing, the saved model scores rows with NaN;
    without it the one-line error says which option to pass."""
    rng = np.random.default_rng(3)
    X = make_data(n_samples=3000, n_features=3, n_components=2, seed=3)
    X[rng.random(X.shape) < 0.2] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(1000, 3), dtype="f8")[:] = X
    refused = run("fit", tmp_path / "x.zarr", "-k", 2, check=False)
    assert refused.returncode == 1 and "pass --missing em" in refused.stderr
    run("fit", tmp_path / "x.zarr", "-k", 2, "--missing", "em", "--random-state", 0, "--out", tmp_path / "m")
    reference = GaussianMixture(2, missing="em", random_state=0).fit(X)
    scored = run("score", tmp_path / "m", tmp_path / "x.zarr")
    assert f"mean log-likelihood: {reference.score(X):.6f}" in scored.stdout
    selected = run("select", tmp_path / "x.zarr", "-k", "1:3", "--covariance-types", "full,diag", "--missing", "em",
                   "--random-state", 0, "--json", "-q")
    assert '"n_components": 2' in selected.stdout
