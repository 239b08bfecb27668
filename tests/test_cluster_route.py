"""The README's cluster route on a fresh machine, with the shipped configs as shipped: a dry run
needs neither certificates nor a scheduler, a missing certificate is named with the command that
makes it, `daskgmm certificates` makes ones that a real TLS cluster accepts."""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, daskgmm_command, make_data

from daskgmm import GaussianMixture
from daskgmm.cluster import connect
from daskgmm.runtime.certificates import make_certificates

CONFIGS = ROOT / "cluster_configs"


def run_as_new_user(home, *args, command=None):
    """A command in a fresh home directory (no ~/.daskgmm), as a new user types it."""
    env = dict(os.environ, HOME=str(home))
    return subprocess.run((command or daskgmm_command()) + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


@pytest.mark.parametrize("name, expected", [
    ("slurm", ["#SBATCH -p normal", "#SBATCH --exclusive", "--nworkers 4", "scale(jobs=8)"]),
    ("pbs", ["#PBS -q workq", "--nworkers"]),
    ("ssh", ["hosts: ['head.example.org'"]),
    ("kubernetes", ["name: daskgmm"]),
    ("local", ["n_workers: 2", "ready to start: nothing is missing"]),
])
def test_dry_run_of_every_shipped_config_needs_no_certificates_and_names_what_is_missing(tmp_path, name, expected):
    result = run_as_new_user(tmp_path, "cluster", CONFIGS / f"{name}.yaml")
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout
    if name in ("slurm", "pbs", "ssh"):
        assert f"missing TLS file(s): {tmp_path}/.daskgmm/tls/ca.pem (tls_ca_file)" in result.stdout
        assert f"`daskgmm certificates {tmp_path}/.daskgmm/tls`" in result.stdout
    if name == "ssh":
        import importlib.util

        if importlib.util.find_spec("asyncssh") is None:
            assert "missing: cluster type ssh needs asyncssh: pip install 'daskgmm[ssh]'" in result.stdout


def test_the_example_dry_run_works_as_shipped(tmp_path):
    result = run_as_new_user(tmp_path, "examples/cluster.py", "--config", "cluster_configs/slurm.yaml", "--dry-run",
                             command=[sys.executable])
    assert result.returncode == 0, result.stderr
    assert "#SBATCH" in result.stdout and "missing TLS file(s)" in result.stdout


def test_a_fit_on_a_shipped_config_without_certificates_names_them_and_how_to_make_them(tmp_path):
    np.save(tmp_path / "x.npy", make_data(n_samples=500))
    result = run_as_new_user(tmp_path, "fit", tmp_path / "x.npy", "--cluster-config", CONFIGS / "slurm.yaml")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("daskgmm: error: ")
    assert f"TLS file(s) missing: {tmp_path}/.daskgmm/tls/ca.pem (tls_ca_file)" in line
    assert f"`daskgmm certificates {tmp_path}/.daskgmm/tls`" in line


def test_certificates_are_made_once_and_then_the_shipped_config_is_ready(tmp_path):
    made = run_as_new_user(tmp_path, "certificates")
    assert made.returncode == 0, made.stderr
    folder = tmp_path / ".daskgmm" / "tls"
    assert sorted(p.name for p in folder.iterdir()) == ["ca-key.pem", "ca.pem", "cert.pem", "key.pem"]
    for key in ("key.pem", "ca-key.pem"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600
    before = (folder / "key.pem").read_bytes()
    again = run_as_new_user(tmp_path, "certificates")
    assert again.returncode == 1 and "never replaced" in again.stderr
    assert (folder / "key.pem").read_bytes() == before
    dry = run_as_new_user(tmp_path, "cluster", CONFIGS / "slurm.yaml")
    assert f"--tls-ca-file {folder}/ca.pem" in dry.stdout and "--protocol tls://" in dry.stdout
    assert "missing TLS" not in dry.stdout


def test_made_certificates_carry_a_real_tls_cluster_through_a_fit(tmp_path):
    folder = tmp_path / "tls"
    make_certificates(folder)
    security = {"tls_ca_file": str(folder / "ca.pem"), "require_encryption": True}
    for role in ("scheduler", "worker", "client"):
        security[f"tls_{role}_cert"], security[f"tls_{role}_key"] = str(folder / "cert.pem"), str(folder / "key.pem")
    X = make_data(n_samples=2000)
    config = {"type": "local", "cluster": {"n_workers": 1, "threads_per_worker": 2, "processes": False},
              "security": security}
    with connect(config) as client:
        assert client.scheduler.address.startswith("tls://127.0.0.1")
        gmm = GaussianMixture(3, random_state=0).fit(X)
    reference = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(gmm.means_, reference.means_, rtol=1e-12)
