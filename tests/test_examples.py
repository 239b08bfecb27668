"""Every example runs, on small sizes, as a user would run it."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
import zarr

import daskgmm

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd=ROOT):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)],
                            capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_quickstart():
    out = run_example("quickstart.py")
    assert "weights: [0.5 0.5]" in out and "agree with NumPy fit: True" in out


def test_out_of_core(tmp_path):
    out = run_example("out_of_core.py", "--rows", "400000", "--folder", tmp_path)
    assert "converged True" in out and "400,000 rows" in out


def test_iris(tmp_path):
    out = run_example("iris.py", "--out", tmp_path)
    rand_index = float(re.search(r"adjusted Rand index against the species: ([\d.]+)", out).group(1))
    assert rand_index > 0.4  # sepal measurements alone separate setosa, not the other two
    assert "converged True" in out
    assert (tmp_path / "iris_components.png").stat().st_size > 20_000


def test_model_selection_picks_the_four_stretched_blobs(tmp_path):
    out = run_example("model_selection.py", "--out", tmp_path)
    assert "lowest BIC: K=4" in out and "lowest AIC: K=4" in out
    assert "40 candidates in" in out
    for name in ("selection_criteria.png", "selection_regions.png"):
        assert (tmp_path / name).stat().st_size > 20_000


def test_bayesian_mixture_switches_off_what_bic_leaves_out(tmp_path):
    out = run_example("bayesian.py", "--out", tmp_path)
    assert "Bayesian mixture of 10 components: 4 carry weight" in out and "converged: True" in out
    assert "BIC over K = 1..10 (full): K = 4" in out
    assert (tmp_path / "bayesian.png").stat().st_size > 20_000


def test_image_segmentation_photo_and_tiled_zarr(tmp_path):
    out = run_example("image_segmentation.py", "--tiles", "2", "--components", "4", "--out", tmp_path)
    assert out.count("converged True") == 2
    assert (tmp_path / "segmented_photo.png").stat().st_size > 50_000
    labels = zarr.open_array(str(tmp_path / "tiled_2x2_labels.zarr"), mode="r")
    assert labels.shape == (854, 1280) and labels.chunks == (512, 512)
    values = np.asarray(labels[:])
    assert set(np.unique(values)) <= set(range(4)) and len(np.unique(values)) == 4
    # the tiled image is the photograph four times over: every copy is segmented alike
    np.testing.assert_array_equal(values[:427, :640], values[427:, 640:])


def test_speech_features_identify_speakers(tmp_path):
    out = run_example("speech_features.py", "--speakers", "3", "--train-seconds", "10", "--tests", "4",
                      "--components", "8", "--out", tmp_path)
    accuracy = float(re.search(r"identification accuracy: ([\d.]+)%", out).group(1))
    assert accuracy >= 90, out
    assert "frames from Zarr" in out


def test_cluster_example_on_the_local_config(tmp_path):
    out = run_example("cluster.py", "--config", ROOT / "cluster_configs" / "local.yaml", "--workers", "2",
                      "--out", tmp_path)
    assert "2 workers" in out and "converged True" in out
    assert daskgmm.load(tmp_path / "cluster_example_model").n_components == 4
    assert not (tmp_path / "cluster_example.checkpoint").exists()


def test_cluster_example_shows_the_slurm_job_script(tmp_path):
    """--dry-run renders slurm.yaml's job script; here bound to loopback (no 'ib0', no TLS certs)."""
    config = yaml.safe_load((ROOT / "cluster_configs" / "slurm.yaml").read_text())
    config["cluster"].pop("interface")
    config["cluster"]["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    config.pop("security")
    (tmp_path / "slurm.yaml").write_text(yaml.safe_dump(config))
    out = run_example("cluster.py", "--config", tmp_path / "slurm.yaml", "--dry-run", cwd=tmp_path)
    assert "#SBATCH -A my-project" in out and "#SBATCH -t 04:00:00" in out and "--nworkers 4" in out
