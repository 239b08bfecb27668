"""Cluster configs: every shipped file checked, the local one started for real, job scripts rendered."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_data
from distributed import LocalCluster

from daskgmm import GaussianMixture
from daskgmm.cluster import ClusterConfigError, connect, create_cluster, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "cluster_configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses_and_checks(path):
    config = load_config(path)
    assert config.type == path.stem
    if config.type != "local":
        assert config.security is None or config.security.get("require_encryption") is True
    if config.type in ("ssh", "slurm", "pbs"):
        assert config.security, "remote configs show TLS"


def test_local_config_runs_on_loopback_only():
    """The shipped local.yaml, started for real (smaller memory, any free dashboard port)."""
    X = make_data(n_samples=3000, n_features=2, n_components=2)
    shipped = load_config(CONFIGS / "local.yaml")
    options = dict(shipped.cluster, memory_limit="1GiB", dashboard_address="127.0.0.1:0")
    with connect({"type": "local", "cluster": options}) as client:
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(address.startswith("tcp://127.0.0.1:") for address in info["workers"])
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        gmm = GaussianMixture(2, random_state=0).fit(X)
        assert gmm.converged_


def test_default_connect_is_a_loopback_local_cluster(monkeypatch):
    import daskgmm.cluster as cluster_module

    monkeypatch.setitem(cluster_module.LOCAL_DEFAULTS, "dashboard_address", "127.0.0.1:0")
    with connect() as client:
        client.wait_for_workers(2, timeout=60)
        assert client.scheduler_info()["address"].startswith("tcp://127.0.0.1:")
        assert len(client.scheduler_info()["workers"]) == 2


def test_connect_to_a_running_scheduler_address():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with connect(cluster.scheduler_address) as client:
            assert client.scheduler.address == cluster.scheduler_address


def test_exposed_local_cluster_is_refused():
    with pytest.raises(ClusterConfigError, match="must bind host to 127.0.0.1"):
        load_config({"type": "local", "cluster": {"host": "0.0.0.0"}})
    with pytest.raises(ClusterConfigError, match="dashboard_address"):
        load_config({"type": "local", "cluster": {"dashboard_address": ":8787"}})


def test_bad_configs_are_explained(tmp_path):
    with pytest.raises(ClusterConfigError, match="type must be one of"):
        load_config({"type": "yarn"})
    with pytest.raises(ClusterConfigError, match="unknown option\\(s\\) \\['n_wrokers'\\]"):
        load_config({"type": "local", "cluster": {"n_wrokers": 2}})
    with pytest.raises(ClusterConfigError, match="unknown top-level"):
        load_config({"type": "local", "workers": 2})
    with pytest.raises(ClusterConfigError, match="unknown security option"):
        load_config({"type": "slurm", "security": {"tls_cert": "x"}})
    with pytest.raises(FileNotFoundError, match="no such cluster config"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("type: [unclosed")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def self_signed_tls(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return folder


@pytest.mark.parametrize("name, directive", [("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_jobqueue_configs_render_job_scripts(name, directive, self_signed_tls):
    """dask-jobqueue renders the job script with the config's options and TLS.

    Here the scheduler binds to loopback and the certificates are made on the
    spot: the cluster network ('ib0') and the real certificates exist only on
    the target cluster.
    """
    config = load_config(CONFIGS / f"{name}.yaml")
    config.cluster.pop("interface")
    config.cluster["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    config.security = {
        key: str(self_signed_tls / ("key.pem" if key.endswith("_key") else "cert.pem"))
        for key in config.security if key.startswith("tls_")
    } | {"require_encryption": True}
    config.scale = {}  # render, do not submit
    cluster = create_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert directive in script
    assert "tls://127.0.0.1:" in script
    assert "--nworkers" in script and str(config.cluster["processes"]) in script
    if name == "slurm":
        assert "#SBATCH -p normal" in script and "#SBATCH --exclusive" in script
        assert "#SBATCH -t 04:00:00" in script
    else:
        assert "#PBS -q workq" in script and "select=1:ncpus=24:mem=96GB" in script
    assert np.all([line.startswith("#") or line.strip() == "" or "distributed" in line or "cd " in line
                   for line in script.splitlines()[1:]])
