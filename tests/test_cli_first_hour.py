"""The command line as a new user types it: one-line errors that name the options, early
argument checks, feedback on long runs, Ctrl-C and SIGTERM, a fast `info` (real subprocesses)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import zarr
from conftest import ROOT, daskgmm_command, make_data, run

import daskgmm


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("first_hour")
    X = make_data(n_samples=3000, n_features=3, n_components=3, seed=4)
    np.save(folder / "x.npy", X)
    np.save(folder / "image.npy", np.random.default_rng(0).random((20, 30, 3)))
    with h5py.File(folder / "two.h5", "w") as handle:
        handle["a"], handle["b"] = X, X
    run("fit", folder / "x.npy", "-k", 3, "--random-state", 0, "--out", folder / "model", "-q")
    return folder


def one_line_error(result, status):
    assert result.returncode == status, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daskgmm: error: "), result.stderr
    return lines[0]


USAGE_ERRORS = [
    (["select", "{f}/x.npy", "-k", "3:1"], "the range is empty (K_MIN 3 > K_MAX 1); did you mean 1:3?"),
    (["select", "{f}/x.npy", "-k", "0:2"], "every K must be at least 1"),
    (["select", "{f}/x.npy", "-k", "a"], "use K_MIN:K_MAX (1:10), a list (1,2,4,8) or one K (5)"),
    # argument errors come before the data are opened: the path does not even exist
    (["fit", "{f}/missing.npy", "-k", "0"], "'-k' / '--n-components': 0 is not in the range x>=1"),
    (["fit", "{f}/missing.npy", "--tol", "-1"], "'--tol'"),
    (["fit", "{f}/missing.npy", "--persist", "maybe"], "'--persist'"),
    (["select", "{f}/x.npy", "--covariance-types", "full,ful"], "'ful' is not one of full, tied, diag, spherical"),
    (["select", "{f}/x.npy", "--init", "kmeans,k-means"], "'k-means' is not one of kmeans, k-means++, random"),
    (["fit"], "Missing argument 'DATA'. (see 'daskgmm fit --help')"),
    (["nosuch"], "No such command 'nosuch'"),
]
USAGE_ERRORS = [pytest.param(args, expected, id=" ".join(args[:1] + args[2:])) for args, expected in USAGE_ERRORS]


@pytest.mark.parametrize("args, expected", USAGE_ERRORS)
def test_usage_errors_are_one_line_with_where_to_look(folder, args, expected):
    line = one_line_error(run(*[a.format(f=folder) for a in args], check=False), 2)
    assert expected in line


def test_usage_errors_come_before_the_heavy_imports(folder):
    """A usage error answers at once (~0.1 s): before scikit-learn, Dask or the data are touched."""
    script = ("import sys, json; from daskgmm.cli.main import main\n"
              "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit as stop:\n    assert stop.code == 2\n"
              "print('HEAVY', sorted(m for m in ('sklearn', 'dask', 'distributed', 'numba') if m in sys.modules))")
    for args, _ in (case.values for case in USAGE_ERRORS):
        args = [a.format(f=folder) for a in args]
        result = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True,
                                timeout=60, cwd=ROOT)
        assert result.stdout.rsplit("HEAVY", 1)[-1].strip() == "[]", (args, result.stdout, result.stderr)


@pytest.mark.parametrize("args, expected", [
    (["info", "{f}/none"], "model directory {f}/none does not exist"),
    (["info", "{f}/x.npy"], "{f}/x.npy is a file, not a model directory"),
    (["predict", "{f}/none", "{f}/x.npy", "--out", "{f}/labels.zarr"], "model directory {f}/none does not exist"),
    (["score", "{f}/none", "{f}/x.npy"], "model directory {f}/none does not exist"),
    # open_array's advice, in the command line's words
    (["fit", "{f}/image.npy"], "pass --flatten to use every leading dimension as samples"),
    (["fit", "{f}/two.h5"], "holds 2 datasets (['a', 'b']); pass --dataset to choose one"),
    (["fit", "{f}/two.h5", "--dataset", "c"], "no dataset 'c'; datasets there: ['a', 'b']. Pass --dataset"),
])
def test_errors_name_the_command_line_options_in_one_line(folder, args, expected):
    line = one_line_error(run(*[a.format(f=folder) for a in args], check=False), 1)
    assert expected.format(f=folder) in line


def test_single_k_and_lists_for_select_and_a_table_that_tells_close_candidates_apart(folder):
    result = run("select", folder / "x.npy", "-k", "3", "--covariance-types", "diag,spherical")
    rows = [line for line in result.stdout.splitlines() if "diag" in line or "spherical" in line][:2]
    assert len(rows) == 2 and sum(row.startswith("*") for row in rows) == 1
    assert re.search(r"\d{2},\d{3}\.\d\s", result.stdout)  # BIC to one decimal, not 4e+04
    assert "2 candidates (K 3..3 x 2 covariance types x 1 init methods x 1 restarts)" in result.stderr
    assert "EM pass   1: 2 of 2 candidates still iterating" in result.stderr
    logged = run("select", folder / "x.npy", "-k", "2", "--covariance-types", "diag", "-v")
    assert "daskgmm: keeping" in logged.stderr and "distributed" not in logged.stderr
    quiet = run("select", folder / "x.npy", "-k", "1,3", "--covariance-types", "diag", "-q")
    assert quiet.stderr == "" and "best by BIC: K=3, diag" in quiet.stdout


def test_unreachable_scheduler_is_said_within_the_connect_timeout(folder):
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    result = subprocess.run(daskgmm_command() + ["fit", str(folder / "x.npy"), "--scheduler", "tcp://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert "no Dask scheduler answered at tcp://127.0.0.1:9 within 2 s" in one_line_error(result, 1)


def test_info_reads_the_files_only_and_describes_the_model(folder):
    script = ("import sys; from daskgmm.cli.main import main\n"
              "try:\n    main(['info', sys.argv[1], '--json'])\nexcept SystemExit:\n    pass\n"
              "heavy = sorted(m for m in ('sklearn', 'dask', 'distributed') if m in sys.modules)\n"
              "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", script, str(folder / "model")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    text, heavy = result.stdout.rsplit("HEAVY", 1)
    assert heavy.strip() == "[]"  # no scikit-learn, no Dask: it answers at once
    described = json.loads(text)
    model = daskgmm.load(folder / "model")
    assert described["n_components"] == 3 and described["n_parameters"] == model._n_parameters()
    assert described["settings"]["random_state"] == 0
    for k, component in enumerate(described["components"]):
        np.testing.assert_allclose(component["spread"], np.sqrt(np.diag(model.covariances_[k])))
        np.testing.assert_allclose(component["mean"], model.means_[k])
    help_script = ("import sys; from daskgmm.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                   "print('HEAVY', sorted(m for m in ('sklearn', 'dask') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", help_script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.rsplit("HEAVY", 1)[1].strip() == "[]"


def test_python_dash_m_daskgmm_is_the_command():
    result = subprocess.run([sys.executable, "-m", "daskgmm", "--help"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0 and "Usage: daskgmm" in result.stdout


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_stopped_fit_says_how_to_resume_and_the_rerun_says_it_resumed(tmp_path, how):
    X = make_data(n_samples=400_000, n_features=3, n_components=4, seed=2)
    np.save(tmp_path / "x.npy", X)
    command = daskgmm_command() + ["fit", str(tmp_path / "x.npy"), "-k", "6", "--tol", "0", "--max-iter", "40",
                                   "--checkpoint", str(tmp_path / "ck"), "--chunk-bytes", str(2**20)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while not (tmp_path / "ck" / "model.json").exists():
        assert time.time() < deadline and process.poll() is None, "no checkpoint was written"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == (143 if how == "SIGTERM" else 130), stderr
    assert f"{tmp_path / 'ck'} holds every start up to its last finished iteration: run the same command again" in stderr
    assert stderr.strip().endswith("terminated (SIGTERM)" if how == "SIGTERM" else "interrupted")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "resumed from checkpoint" in done.stderr and "iterations: 40" in done.stdout


def test_predict_on_an_image_keeps_its_shape_in_the_smallest_integer_type(folder, tmp_path):
    image = np.load(folder / "image.npy")
    run("fit", folder / "image.npy", "--flatten", "-k", 2, "--random-state", 0, "--out", tmp_path / "model", "-q")
    done = run("predict", tmp_path / "model", folder / "image.npy", "--flatten", "--out", tmp_path / "labels.zarr")
    assert "data: 600 rows x 3 features" in done.stderr and "(shape (20, 30), uint8)" in done.stdout
    labels = zarr.open_array(tmp_path / "labels.zarr")
    expected = daskgmm.load(tmp_path / "model").predict(image.reshape(-1, 3)).reshape(20, 30)
    assert labels.shape == (20, 30) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels[:], expected)
    run("predict", tmp_path / "model", folder / "image.npy", "--flatten", "--proba", "--out", tmp_path / "p.zarr")
    assert zarr.open_array(tmp_path / "p.zarr").shape == (20, 30, 2)


def test_json_output_for_scripts(folder):
    fitted = json.loads(run("fit", folder / "x.npy", "-k", 3, "--n-init", 2, "--random-state", 0, "--json", "-q").stdout)
    reference = daskgmm.GaussianMixture(3, n_init=2, random_state=0).fit(np.load(folder / "x.npy"))
    assert fitted["n_iter"] == reference.n_iter_ and fitted["best_start"] in (1, 2)
    np.testing.assert_allclose(fitted["weights"], reference.weights_, rtol=1e-12)
    assert len(fitted["pass_seconds"]) >= fitted["n_iter"]  # the starts share passes; the longest sets the count
    scored = json.loads(run("score", folder / "model", folder / "x.npy", "--json", "-q").stdout)
    model = daskgmm.load(folder / "model")
    assert scored["rows"] == 3000
    np.testing.assert_allclose(scored["mean_log_likelihood"], model.score(np.load(folder / "x.npy")), rtol=1e-12)
    selected = json.loads(run("select", folder / "x.npy", "-k", "2,3", "--covariance-types", "diag", "--json",
                              "-q").stdout)
    assert [row["n_components"] for row in selected["table"]] == [2, 3]
    assert selected["best"]["covariance_type"] == "diag" and selected["passes"] > 0
