"""The benchmark scripts run (on tiny sizes) so they cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_compare_quick_writes_its_tables(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/compare.py", "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "compare_quick.json").read_text())
    assert {r["covariance_type"] for r in report["rows"]} == {"full", "tied", "diag", "spherical"}
    # (t(4 iterations) - t(1)) / 3: on tiny data round-off of the clock can make it ~0, so only
    # check that every cell was measured
    assert all(np.isfinite(r["daskgmm_s"]) and np.isfinite(r["x_limit"]) for r in report["rows"])
    assert "pyspark" in report["spark"] or report["spark"] == "run"
    assert "| N | D | K |" in (tmp_path / "compare_quick.md").read_text()


def test_overhead_quick_writes_its_tables(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/overhead.py", "--quick", "--repeat", "1", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "overhead_quick.json").read_text())
    assert {r["covariance_type"] for r in report["rows"]} == {"full", "diag"}
    # differences of two timings can come out ~0 on tiny data: only the direct kernel timing must be > 0
    assert all(np.isfinite([r["iteration_s"], r["fixed_s"], r["overhead"]]).all() and r["kernel_s"] > 0
               for r in report["rows"])
    assert {m["init_params"] for m in report["init"]["methods"]} == {"kmeans", "k-means++", "random_from_data", "random"}
    assert "| init_params |" in (tmp_path / "overhead_quick.md").read_text()


def test_out_of_core_benchmark_runs_small(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/out_of_core.py", "--gib", "0.02", "--storage-rows", "50000", "--worker-memory", "512MiB",
         "--iterations", "2", "--data-dir", str(tmp_path), "--results", str(tmp_path), "--compare"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    report = json.loads((tmp_path / "out_of_core_512MiB.json").read_text())
    assert [r["model"] for r in report["rows"]] == ["diag K=4", "full K=16"]
    for row in report["rows"]:
        assert row["restarted_workers"] == [] and row["spilled_bytes"] == 0 and row["pauses"] == 0, out
        assert len(row["pass_seconds"]) == 2 and row["read_seconds"] > 0 and row["ratio_to_read"] > 0
        assert row["in_memory_max_relative_deviation"] < 1e-12
    assert "| / max(read, compute) |" in (tmp_path / "out_of_core_512MiB.md").read_text()


def test_sources_benchmark_runs_small(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/sources.py", "--gib", "0.02", "--storage-rows", "50000", "--worker-memory",
         "768MiB", "--iterations", "2", "--data-dir", str(tmp_path), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "sources_768MiB.json").read_text())
    assert [r["task"] for r in report["rows"]] == ["diag K=4 fit, Zarr", "labels streamed Zarr -> Zarr",
                                                   "diag K=4 fit, HDF5", "diag K=4 fit, Parquet"]
    assert all(r["restarts"] == 0 and r["seconds"] > 0 and r["read_seconds"] > 0 for r in report["rows"])


def test_bayesian_quick_writes_its_table(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/bayesian.py", "--quick", "--repeat", "1", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "bayesian.json").read_text())
    assert {(r["covariance_type"], r["dtype"]) for r in report["rows"]} == {
        (t, d) for t in ("full", "diag") for d in ("float64", "float32")}
    assert all(np.isfinite([r["sklearn_bgm_s"], r["daskgmm_bgm_s"], r["daskgmm_gmm_s"]]).all() for r in report["rows"])
    assert "| scikit-learn BGM s/it |" in (tmp_path / "bayesian.md").read_text()


def test_passes_quick_writes_its_table(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/passes.py", "--quick", "--repeat", "1", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "passes.json").read_text())
    assert {r["algorithm"] for r in report["rows"]} == {"batch", "coarse-to-fine", "incremental", "online"}
    assert len({r["dataset"] for r in report["rows"]}) == 4
    online = [r for r in report["rows"] if r["algorithm"] == "online"]
    assert all(r["passes"] < 2 for r in online)  # one pass, and the first chunk's initialisation
    assert "| dataset | N | K | algorithm |" in (tmp_path / "passes.md").read_text()


def test_shared_pass_runs_small():
    result = subprocess.run([sys.executable, "benchmarks/shared_pass.py", "--rows", "40000"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GEMMs stacked" in result.stdout and "8 walks" in result.stdout and "the 8 fits one after another" in result.stdout


def test_missing_values_benchmark_runs_small(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/missing.py", "--shape", "20000,4,3", "--types", "full,diag",
                             "--repeat", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "missing.json").read_text())
    assert [r["covariance_type"] for r in rows] == ["full", "diag"]
    assert all(r["missing_s_per_iter"] > 0 and r["complete_s_per_iter"] > 0 for r in rows)
    assert 0.2 < rows[0]["rows_with_nan"] < 0.5  # 10% of 4 values: 34% of rows
