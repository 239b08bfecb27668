"""Restarts (n_init) advance together, one read of the data per iteration for all, whatever
watches them (verbose, a progress object, a checkpoint) and with re-seeding: the result is the
one-by-one result (each start run alone through the engine, the best kept by scikit-learn's rule)."""

import re
import warnings

import numpy as np
import pytest
from conftest import SPIKE, counting_reads, make_data

from daskgmm import GaussianMixture
from daskgmm.em.families import GaussianFamily
from daskgmm.em.loop import FitResult, Run, advance_runs, best_run
from daskgmm.em.starts import initial_parameters
from daskgmm.io.inputs import RowData

CHUNK_ROWS = 500
SETTINGS = dict(n_components=4, covariance_type="full", n_init=3, init_params="random_from_data",
                random_state=11, tol=1e-5, max_iter=30, reg_covar=1e-6, persist=False)


@pytest.fixture(scope="module")
def X():
    return make_data(n_samples=3000, n_components=4, seed=8)


class Recorder:
    """A progress object that listens to some events only (the others are skipped)."""

    def __init__(self):
        self.iterations, self.ended, self.passes = [], {}, 0

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        self.iterations.append((init_index, n_iter))

    def init_end(self, init_index, lower_bound, converged):
        self.ended[init_index] = (lower_bound, converged)

    def pass_end(self, seconds):
        self.passes += 1


def starts_and_init_reads(X, settings):
    dx, reads = counting_reads(X, CHUNK_ROWS)
    starts = initial_parameters(
        RowData(dx, None, False), count=settings["n_init"], n_components=settings["n_components"],
        covariance_type=settings["covariance_type"], init_params=settings["init_params"],
        reg_covar=settings["reg_covar"], random_state=np.random.RandomState(settings["random_state"]))
    return starts, len(reads)


def one_by_one(X, settings, starts):
    """Each start alone through the engine's loop: its own passes, nothing shared."""
    results = []
    for start in starts:
        run = Run(FitResult(start, -np.inf))
        family = GaussianFamily(settings["reg_covar"], X.dtype, reseed=settings.get("reseed_collapsed", False))
        advance_runs(RowData(counting_reads(X, CHUNK_ROWS)[0], None, False), [run], family,
                     tol=settings["tol"], max_iter=settings["max_iter"])
        results.append(run.result)
    return results


@pytest.mark.parametrize("watch", ["nothing", "verbose", "progress", "checkpoint"])
def test_restarts_share_every_pass_and_give_the_one_by_one_result(X, tmp_path, capsys, watch):
    options = dict(verbose={"verbose": 2, "verbose_interval": 1},
                   checkpoint={"checkpoint": tmp_path / "ck"}).get(watch, {})
    progress = Recorder() if watch == "progress" else None
    starts, init_reads = starts_and_init_reads(X, SETTINGS)
    results = one_by_one(X, SETTINGS, starts)
    best = best_run(results)
    assert len({r.lower_bound for r in results}) == 3  # three different optima: the choice matters

    dx, reads = counting_reads(X, CHUNK_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = GaussianMixture(**SETTINGS, **options).fit(dx, progress=progress)
    np.testing.assert_array_equal(gmm.weights_, best.params.weights)
    np.testing.assert_array_equal(gmm.means_, best.params.means)
    np.testing.assert_array_equal(gmm.covariances_, best.params.covariances)
    assert gmm.lower_bounds_ == best.lower_bounds and gmm.n_iter_ == best.n_iter
    passes = max(r.n_iter for r in results)
    digest_reads = 2 if watch == "checkpoint" else 0  # the checkpoint ties itself to the data's first and last chunk
    # one read per iteration for all starts
    assert len(reads) == init_reads + digest_reads + passes * dx.numblocks[0]

    printed = capsys.readouterr().out
    if watch == "verbose":
        for index, result in enumerate(results):
            assert f"Initialization {index}\n" in printed
            assert f"  Iteration {result.n_iter} (initialization {index})" in printed
            assert re.search(f"Initialization {index} (converged|did not converge).*lower bound "
                             f"{result.lower_bound:.5f}", printed)
    if watch == "progress":
        assert progress.passes == passes
        assert sorted(progress.iterations) == sorted((i, n) for i, r in enumerate(results)
                                                     for n in range(1, r.n_iter + 1))
        assert progress.ended == {i: (r.lower_bound, r.converged) for i, r in enumerate(results)}


def test_restarts_with_reseeding_share_their_passes_and_give_the_one_by_one_result():
    from daskgmm.model.params import CollapsedComponentWarning

    settings = dict(SETTINGS, covariance_type="diag", reseed_collapsed=True, reg_covar=0.0, max_iter=15,
                    tol=1e-6, random_state=4)
    starts, init_reads = starts_and_init_reads(SPIKE, settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = one_by_one(SPIKE, settings, starts)
        dx, reads = counting_reads(SPIKE, CHUNK_ROWS)
        gmm = GaussianMixture(**settings).fit(dx)
    assert any(issubclass(w.category, CollapsedComponentWarning) for w in caught)  # re-seeding happened
    best = best_run(results)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(gmm, name + "_"), getattr(best.params, name))
    assert gmm.lower_bounds_ == best.lower_bounds
    assert len(reads) == init_reads + max(r.n_iter for r in results) * dx.numblocks[0]


class KnownWeightsFamily(GaussianFamily):
    """A model family the loop has never seen: mixing weights known in advance and kept fixed
    (the M-step updates means and covariances only). It plugs in through the family seam alone."""

    def __init__(self, weights, reg_covar):
        super().__init__(reg_covar)
        self.weights = np.asarray(weights, dtype=np.float64)

    def m_step(self, stats, params, n_iter):
        from dataclasses import replace

        return replace(super().m_step(stats, params, n_iter), weights=self.weights)


def test_a_new_model_family_plugs_into_the_loop_without_touching_it(X):
    """EM with fixed weights is still EM: each iteration keeps the weights and never lowers the
    likelihood; the restarts share their passes as any family's do."""
    starts, _ = starts_and_init_reads(X, SETTINGS)
    weights = np.full(4, 0.25)
    family = KnownWeightsFamily(weights, SETTINGS["reg_covar"])
    runs = [Run(FitResult(replace_weights(start, weights), -np.inf), index=i) for i, start in enumerate(starts)]
    dx, reads = counting_reads(X, CHUNK_ROWS)
    passes = advance_runs(RowData(dx, None, False), runs, family, tol=1e-6, max_iter=20)
    assert len(reads) == passes * dx.numblocks[0] and passes == max(run.result.n_iter for run in runs)
    for run in runs:
        np.testing.assert_array_equal(run.result.params.weights, weights)
        assert np.all(np.diff(run.result.lower_bounds) >= -1e-12)
    assert len({run.result.lower_bound for run in runs}) == 3
    free = GaussianMixture(4, **{k: v for k, v in SETTINGS.items() if k != "n_components"}).fit(X)
    assert not np.allclose(free.weights_, weights, atol=1e-3)  # the data's own weights are not 1/4


def replace_weights(params, weights):
    from dataclasses import replace

    return replace(params, weights=weights)


def test_progress_true_prints_a_line_per_pass_with_the_change_against_tol(X, capsys):
    gmm = GaussianMixture(4, random_state=0, tol=1e-4, max_iter=50).fit(X, progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  iteration")]
    assert len(lines) == gmm.n_iter_
    assert "(first iteration)" in lines[0] and "(tol 0.0001)" in lines[1]
    assert lines[-1].split()[1] == str(gmm.n_iter_) and ("converged" in lines[-1]) == gmm.converged_


class Chunks:
    """Listens to chunks done within a pass and to the passes."""

    def __init__(self):
        self.calls, self.passes = [], 0

    def chunks_done(self, done, total):
        self.calls.append((done, total))

    def pass_end(self, seconds):
        self.passes += 1


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_chunks_done_within_a_pass_are_told_and_change_nothing(X, scheduler):
    from contextlib import nullcontext

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) \
        if scheduler == "distributed" else None
    with (Client(cluster) if cluster else nullcontext()):
        dx, _ = counting_reads(X, CHUNK_ROWS)
        chunks = Chunks()
        settings = dict(n_components=4, random_state=0, tol=1e-4, max_iter=8, persist=False)
        watched = GaussianMixture(**settings).fit(dx, progress=chunks)
        plain = GaussianMixture(**settings).fit(dx)
    if cluster:
        cluster.close()
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(watched, name), getattr(plain, name))
    assert watched.lower_bounds_ == plain.lower_bounds_
    total = dx.numblocks[0]
    assert chunks.passes == watched.n_iter_ and chunks.calls.count((total, total)) == chunks.passes
    assert all(total == t and 1 <= done <= t for done, t in chunks.calls)


class Cell:
    """What IPython's ``display(..., display_id=True)`` gives: one output, updated in place."""

    def __init__(self):
        self.shown = []

    def __call__(self, html):
        self.shown.append(html)
        return self

    def update(self, html):
        self.shown.append(html)


def test_notebook_progress_updates_one_cell_with_passes_chunks_and_the_winner(X):
    from daskgmm.em.progress import NotebookProgress, in_notebook

    assert not in_notebook()  # pytest is no Jupyter kernel: progress=True prints lines here
    cell = Cell()
    dx, _ = counting_reads(X, CHUNK_ROWS)
    progress = NotebookProgress(1e-4, 3, display=cell)
    gmm = GaussianMixture(4, random_state=0, tol=1e-4, n_init=3, max_iter=30, persist=False).fit(dx, progress=progress)
    assert "initialisation done" in cell.shown[0]
    assert any("<progress value=" in html and f"of {dx.numblocks[0]} chunks" in html for html in cell.shown)
    passes = [html for html in cell.shown if "  iteration" in html or "iteration " in html]
    assert len({html.split("<br>")[1] for html in passes}) >= max(gmm.n_iter_, 2)
    last = cell.shown[-1]
    assert f"best of 3 starts: start {progress.best_start()}" in last and "s per pass" in last
    assert f"best mean log-likelihood {gmm.lower_bound_: .6f}" in last
