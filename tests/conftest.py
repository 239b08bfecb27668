"""Shared data and helpers, the one module tests import them from: small mixtures, scikit-learn
starting points, tolerances, counted and interrupted reads, the command line in a subprocess,
and the test tiers."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]

# the oracle's release: daskgmm follows the newest's conventions (float32 attributes for float32
# data, lower_bounds_), whichever is installed
SKLEARN_VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
FITTED_ARRAYS = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


def make_data(n_samples=2000, n_features=3, n_components=4, offset=0.0, seed=0):
    """Anisotropic, overlapping blobs: EM needs a few dozen iterations on them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    mixing = [rng.normal(size=(n_features, n_features)) * 0.6 + np.eye(n_features)
              for _ in range(n_components)]
    X = np.empty((n_samples, n_features))
    for k in range(n_components):
        rows = labels == k
        X[rows] = centres[k] + rng.normal(size=(rows.sum(), n_features)) @ mixing[k]
    return X + offset


BLOBS = make_data(n_samples=1500, n_features=2, n_components=3, seed=21)
# 60 copies of one point, far from the blobs: a component started there collapses onto it
SPIKE = np.vstack([BLOBS, np.repeat([[40.0, 40.0]], 60, axis=0)])


@pytest.fixture(scope="session")
def X():
    return make_data()


def starting_point(X, n_components, covariance_type, seed=0):
    """A rough start (k-means with perturbed means) as scikit-learn init arrays."""
    reference = SklearnGaussianMixture(
        n_components, covariance_type=covariance_type, max_iter=0, random_state=seed
    ).fit(X)
    rng = np.random.default_rng(seed)
    means = reference.means_ + rng.normal(scale=0.5, size=reference.means_.shape)
    return dict(
        weights_init=reference.weights_ / reference.weights_.sum(),
        means_init=means,
        precisions_init=reference.precisions_,
    )


def counting_reads(X, chunk_rows):
    """A Dask array over X, and the list of chunk indices its reads append to."""
    import dask.array as da

    reads = []

    def record(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return block

    return da.from_array(X, chunks=(chunk_rows, X.shape[1])).map_blocks(record, dtype=X.dtype), reads


def interrupting(X, after_reads):
    """X as a Dask array whose reads raise KeyboardInterrupt after ``after_reads`` chunk reads."""
    count = [0]

    def read(block):
        count[0] += 1
        if count[0] > after_reads:
            raise KeyboardInterrupt
        return block

    import dask.array as da

    return da.from_array(X, chunks=500).map_blocks(read, dtype=X.dtype)


def as_interrupted(path):
    """Mark a finished checkpoint as a fit still going (as after a crash after its last iteration)."""
    state = json.loads((path / "model.json").read_text())
    state["finished"] = False
    (path / "model.json").write_text(json.dumps(state))


ROOT = Path(__file__).resolve().parents[1]


def daskgmm_command():
    """The installed ``daskgmm`` command beside this Python, or ``python -m daskgmm.cli.main``."""
    installed = shutil.which("daskgmm", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "daskgmm.cli.main"]


def run(*args, check=True, timeout=300):
    """The command line with ``args`` in a subprocess (from the repository root)."""
    result = subprocess.run(daskgmm_command() + [str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def fit_quietly(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


def relative_deviation(ours, reference):
    """max |ours - reference| / max |reference| (0 for equal arrays)."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = np.max(np.abs(reference)) or 1.0
    return float(np.max(np.abs(ours - reference)) / scale)


def assert_same_model(ours, reference, rtol):
    for name in FITTED_ARRAYS:
        deviation = relative_deviation(getattr(ours, name), getattr(reference, name))
        assert deviation <= rtol, f"{name} deviates by {deviation:.3g} (allowed {rtol})"
    assert ours.n_iter_ == reference.n_iter_
    assert ours.converged_ == reference.converged_
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=rtol)
    if hasattr(reference, "lower_bounds_"):  # scikit-learn >= 1.7 records every iteration's bound
        np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=rtol)


# Test tiers: `make test-fast` runs what is marked neither `cluster` (a distributed LocalCluster or
# Client), `subprocess` (the CLI, a benchmark, an example or Python in a subprocess) nor `slow`.
# Whole modules first, then single tests of mixed modules (module::test).
SUBPROCESS_MODULES = {"test_benchmarks", "test_examples", "test_cli", "test_cli_first_hour", "test_demo_and_readme",
                      "test_cluster_route", "test_nothing_lost"}
CLUSTER_MODULES = {"test_cluster", "test_faults", "test_schedulers", "test_tls_deployment"}
# scikit-learn's own suites: ~20 s of many small fits
SLOW_MODULES = {"test_sklearn_suite", "test_sklearn_bayesian_suite"}
TIERS = {
    "cluster": {"test_checkpoint::test_lost_scheduler_then_resume", "test_checkpoint::test_sigterm_then_resume",
                "test_fewer_passes::test_incremental_results_do_not_depend_on_the_scheduler",
                "test_io::test_hdf5_dataset_read_in_worker_processes",
                "test_partial_fit::test_partial_fit_does_not_depend_on_the_scheduler",
                "test_restarts::test_chunks_done_within_a_pass_are_told_and_change_nothing",
                "test_gpu::test_gpu_reseeding_and_a_process_cluster_give_the_cpu_fit"},
    "subprocess": {"test_compiled::test_only_diag_and_spherical_fits_import_numba",
                   "test_bayesian::test_command_line_fit_info_predict",
                   "test_fewer_passes::test_command_line_algorithms"},
    "slow": {"test_selection::test_several_init_methods_rescue_k_on_elongated_clusters",
             "test_fewer_passes::test_incremental_bound_never_decreases_and_ends_at_a_fixed_point_of_batch_em",
             "test_selection::test_candidates_equal_independent_fits_and_share_passes",
             "test_io::test_tasks_read_storage_chunks_without_joining_copies",
             "test_fewer_passes::test_incremental_weights_of_any_scale_and_float32",
             "test_fewer_passes::test_incremental_checkpoint_resumes_exactly",
             "test_reseed::test_reseeding_is_deterministic_across_chunkings",
             "test_partial_fit::test_one_epoch_of_numpy_batches_lands_near_batch_em",
             "test_partial_fit::test_one_epoch_over_the_chunks_is_close_to_batch_em_and_reads_each_chunk_once",
             "test_missing::test_em_beats_dropping_and_mean_imputing_on_a_known_mixture",
             "test_missing::test_select_model_and_partial_fit_take_missing_values",
             "test_missing::test_every_init_that_copes_with_missing_values_finds_the_clusters",
             "test_missing::test_every_input_kind_and_dtype_gives_the_same_fit"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        name = f"{module}::{item.originalname}"
        if module in SUBPROCESS_MODULES or name in TIERS["subprocess"]:
            item.add_marker(pytest.mark.subprocess)
        if module in CLUSTER_MODULES or name in TIERS["cluster"]:
            item.add_marker(pytest.mark.cluster)
        if module in SLOW_MODULES or name in TIERS["slow"]:
            item.add_marker(pytest.mark.slow)

