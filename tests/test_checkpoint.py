"""Checkpoints: an interrupted fit resumes and ends exactly as an uninterrupted one."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from conftest import FITTED_ARRAYS, as_interrupted, fit_quietly, interrupting, make_data

from daskgmm import GaussianMixture

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(n_components=4, init_params="random_from_data", n_init=2, random_state=5, tol=1e-7,
                max_iter=40, persist=False)


@pytest.fixture(scope="module")
def X():
    return make_data(n_samples=3000, n_components=4, seed=3)


@pytest.fixture(scope="module")
def uninterrupted(X):
    return fit_quietly(GaussianMixture(**SETTINGS), da.from_array(X, chunks=500))


def assert_identical(a, b):
    for name in FITTED_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.n_iter_, a.converged_, a.lower_bound_, a.lower_bounds_) == \
        (b.n_iter_, b.converged_, b.lower_bound_, b.lower_bounds_)


def wait_for_iteration(path, n_iter, timeout=120):
    """Wait until the checkpoint at ``path`` records ``n_iter`` iterations; False on time-out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        model = path / "model.json"
        if model.exists() and min(run["n_iter"] for run in json.loads(model.read_text())["runs"]) >= n_iter:
            return True
        time.sleep(0.02)
    return False


def test_checkpointing_does_not_change_the_fit(X, uninterrupted, tmp_path):
    checkpointed = fit_quietly(GaussianMixture(**SETTINGS, checkpoint=tmp_path / "ck"), da.from_array(X, chunks=500))
    assert_identical(checkpointed, uninterrupted)
    state = json.loads((tmp_path / "ck" / "model.json").read_text())
    assert state["format"] == "daskgmm-checkpoint" and state["finished"]
    assert [run["index"] for run in state["runs"]] == [0, 1]


@pytest.mark.parametrize("after_reads", [3, 6 * 7 + 2, 6 * 30])  # during init, in pass 7, in pass 30 (of 40)
def test_keyboard_interrupt_then_resume(X, uninterrupted, tmp_path, after_reads):
    path = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), interrupting(X, after_reads))
    resumed = fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), da.from_array(X, chunks=500))
    assert_identical(resumed, uninterrupted)


def test_sigterm_then_resume(X, uninterrupted, tmp_path):
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "ck"
    script = textwrap.dedent(f"""
        import time, warnings
        import dask.array as da, numpy as np
        from daskgmm import GaussianMixture
        warnings.simplefilter("ignore")
        X = np.load({str(tmp_path / "X.npy")!r})
        def slow(block):
            time.sleep(0.05)
            return block
        dx = da.from_array(X, chunks=500).map_blocks(slow, dtype=X.dtype)
        GaussianMixture(**{SETTINGS!r}, checkpoint={str(path)!r}).fit(dx)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    if not wait_for_iteration(path, 3):
        process.kill()
        pytest.fail("the fit never reached its third iteration")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    state = json.loads((path / "model.json").read_text())
    assert not state["finished"] and all(run["n_iter"] >= 3 for run in state["runs"])
    resumed = fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), da.from_array(X, chunks=500))
    assert_identical(resumed, uninterrupted)


def test_checkpoint_of_an_earlier_format_is_refused_with_what_to_do(X, tmp_path):
    path = tmp_path / "ck"
    fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), X)
    state = json.loads((path / "model.json").read_text())
    state.update(finished=False, init_index=0, run=state.pop("runs")[0], best=None, rng=None)
    (path / "model.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="earlier daskgmm.*Delete it, or pass another checkpoint path"):
        GaussianMixture(**SETTINGS, checkpoint=path).fit(X)


def test_checkpoint_from_other_data_or_settings_is_refused(X, tmp_path):
    path = tmp_path / "ck"
    fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), X)
    as_interrupted(path)
    with pytest.raises(ValueError, match="other data or settings \\(n_samples: checkpoint 3000, now 2000\\)"):
        GaussianMixture(**SETTINGS, checkpoint=path).fit(X[:2000])
    with pytest.raises(ValueError, match="covariance_type: checkpoint 'full', now 'diag'.*Delete it"):
        GaussianMixture(**dict(SETTINGS, covariance_type="diag"), checkpoint=path).fit(X)
    with pytest.raises(ValueError, match="dtype"):
        GaussianMixture(**SETTINGS, checkpoint=path).fit(X.astype(np.float32))


def test_lost_scheduler_then_resume(X, uninterrupted, tmp_path):
    """The scheduler goes away mid-fit; the same call, elsewhere, resumes to the same result."""
    import threading

    from distributed import Client, LocalCluster

    path = tmp_path / "ck"
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    client = Client(cluster)

    def slow(block):
        time.sleep(0.02)
        return block

    def lose_scheduler():
        wait_for_iteration(path, 2)
        client.loop.add_callback(cluster.scheduler.close)  # the scheduler stops mid-pass

    threading.Thread(target=lose_scheduler, daemon=True).start()
    try:
        with pytest.raises(Exception):
            fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path),
                        da.from_array(X, chunks=500).map_blocks(slow, dtype=X.dtype))
    finally:
        for closing in (client.close, cluster.close):
            try:  # closing what has already lost its scheduler may time out: that is the point
                closing(timeout=5)
            except (TimeoutError, OSError):
                pass
    assert all(run["n_iter"] >= 2 for run in json.loads((path / "model.json").read_text())["runs"])
    resumed = fit_quietly(GaussianMixture(**SETTINGS, checkpoint=path), da.from_array(X, chunks=500))
    assert_identical(resumed, uninterrupted)
