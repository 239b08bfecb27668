"""A cluster as it is deployed: a scheduler and two worker processes started with Dask's own
command-line tools on 127.0.0.1 over TLS (a throwaway CA made here), ``daskgmm fit`` run over it
from the command line with the client's certificates; a worker process killed during a pass
leaves the result unchanged, and a client without the cluster's certificates is refused."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from conftest import daskgmm_command

import daskgmm
from daskgmm.runtime.certificates import make_certificates

FIT = ["-k", "4", "--max-iter", "8", "--tol", "0", "--random-state", "0", "--chunk-bytes", str(40_000 * 8 * 8)]


def tls_options(folder):
    return ["--tls-ca-file", str(folder / "ca.pem"), "--tls-cert", str(folder / "cert.pem"),
            "--tls-key", str(folder / "key.pem")]


def dask_cli(*args, log):
    return subprocess.Popen([sys.executable, "-m", "dask", *map(str, args)], stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.fixture
def tls_cluster(tmp_path):
    """tls://127.0.0.1 scheduler and two workers without nannies (a killed worker stays dead)."""
    folder = tmp_path / "tls"
    make_certificates(folder)
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "w")
    processes = [dask_cli("scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                          "--scheduler-file", scheduler_file, *tls_options(folder), log=log)]
    try:
        wait_for(scheduler_file.exists, "the scheduler wrote no scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(dask_cli("worker", address, "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1",
                                      "--no-dashboard", "--memory-limit", "0", *tls_options(folder), log=log))
        from distributed import Client, Security

        security = Security(tls_ca_file=str(folder / "ca.pem"), tls_client_cert=str(folder / "cert.pem"),
                            tls_client_key=str(folder / "key.pem"), require_encryption=True)
        with Client(address, security=security, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, folder, processes[1:]
    finally:
        for process in processes:
            process.kill()
            process.wait()
        log.close()


def test_a_fit_over_a_deployed_tls_cluster_survives_a_killed_worker_and_refuses_strangers(tmp_path, tls_cluster):
    address, folder, workers = tls_cluster
    X = np.random.default_rng(0).normal(size=(2_000_000, 8))
    X[::2] += 4.0
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(40_000, 8), dtype="f8")[:] = X

    # the reference: the same command on Dask's threaded scheduler
    subprocess.run(daskgmm_command() + ["fit", str(tmp_path / "x.zarr"), *FIT, "--out", str(tmp_path / "reference")],
                   check=True, capture_output=True, timeout=300)

    fit = subprocess.Popen(daskgmm_command() + ["fit", str(tmp_path / "x.zarr"), *FIT, "--scheduler", address,
                                                *tls_options(folder), "--out", str(tmp_path / "model")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in fit.stderr:  # the driver prints a line per EM pass: kill a worker as pass 3 starts
        lines.append(line)
        if line.strip().startswith("iteration   2"):
            os.kill(workers[0].pid, signal.SIGKILL)
            break
    stderr = "".join(lines) + fit.stderr.read()
    stdout = fit.stdout.read()
    assert fit.wait(timeout=300) == 0, stderr
    assert workers[0].wait(timeout=10) == -signal.SIGKILL
    assert "cluster: 2 workers" in stderr and "iterations: 8" in stdout
    model, reference = daskgmm.load(tmp_path / "model"), daskgmm.load(tmp_path / "reference")
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-10, err_msg=name)

    # a client without certificates, and one whose certificate another CA signed, are refused
    bare = subprocess.run(daskgmm_command() + ["fit", str(tmp_path / "x.zarr"), "-k", "2", "--scheduler", address],
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "TLS scheduler and this client has no certificates" in bare.stderr
    make_certificates(tmp_path / "stranger")
    stranger = subprocess.run(
        daskgmm_command() + ["fit", str(tmp_path / "x.zarr"), "-k", "2", "--scheduler", address,
                             *tls_options(tmp_path / "stranger")],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s"))
    assert stranger.returncode != 0 and f"no Dask scheduler answered at {address}" in stranger.stderr
    assert "CA may not have signed" in stranger.stderr


def test_tls_options_are_checked_before_connecting(tmp_path):
    store = tmp_path / "x.zarr"
    zarr.create_array(store, shape=(100, 2), chunks=(50, 2), dtype="f8")[:] = np.random.default_rng(0).normal(size=(100, 2))
    missing = subprocess.run(daskgmm_command() + ["fit", str(store), "--scheduler", "tls://127.0.0.1:1",
                                                  *tls_options(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and f"TLS file(s) not found: {tmp_path / 'nowhere' / 'ca.pem'}" in missing.stderr
    wrong_use = subprocess.run(daskgmm_command() + ["fit", str(store), "--tls-ca-file", str(tmp_path / "ca.pem")],
                               capture_output=True, text=True, timeout=120)
    assert wrong_use.returncode == 2 and "are for a tls:// --scheduler" in wrong_use.stderr
