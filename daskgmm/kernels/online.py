"""Online EM (Cappé & Moulines, 2009) over one chunk of rows: pure NumPy, no Dask in here.

The model keeps a running average of per-row sufficient statistics. Each step computes a
batch's statistics under the current parameters (the chunk kernel), mixes them in with step
size ``(learning_offset + t) ** -learning_decay`` (``t`` the steps made before; the first
step replaces the average) and takes the family's M-step of the average, weighed as all the
rows seen so far. :func:`online_steps` walks a chunk in steps of about ``batch_rows`` rows, so a
chunk read once makes many steps; ``daskgmm``'s ``partial_fit`` chains it over the chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.statistics import SufficientStats, check_finite, nonfinite_rows_error, scaled
from .chunk import chunk_statistics
from .missing import check_incomplete_rows


@dataclass(frozen=True)
class OnlineState:
    """Online EM between steps: the parameters, the running average of per-row statistics
    (None before the first step), the total weight seen, the steps made and each step's bound."""

    params: object
    stats: SufficientStats | None = None
    weight_seen: float = 0.0
    n_steps: int = 0
    lower_bounds: tuple = ()


def online_step(state: OnlineState, stats: SufficientStats, family, learning_decay, learning_offset) -> OnlineState:
    """One step from the statistics of a batch under ``state.params``."""
    if stats.weight_sum <= 0:
        return state
    per_row = scaled(stats, 1.0 / stats.weight_sum)
    if state.stats is None:
        average = per_row
    else:
        step = (learning_offset + state.n_steps) ** -learning_decay
        average = scaled(state.stats, 1.0 - step) + scaled(per_row, step)
    weight_seen, n_steps = state.weight_seen + stats.weight_sum, state.n_steps + 1
    params = family.m_step(scaled(average, weight_seen), state.params, n_steps)
    bound = family.lower_bound(stats, state.params, params)
    return OnlineState(params, average, weight_seen, n_steps, state.lower_bounds + (bound,))


def online_steps(X, sample_weight, state: OnlineState, family, covariance_type, n_components, learning_decay,
                 learning_offset, batch_rows, row_offset=0, kernel=chunk_statistics, missing=False) -> OnlineState:
    """Online EM steps over the rows of one chunk (or NumPy batch), about ``batch_rows`` rows each
    (a rest of less than half a step is shared out). Non-finite rows are refused (with
    ``missing``, NaN marks a missing value: only infinity and rows with nothing observed).

    Step ``j`` of ``S`` takes rows ``j, j + S, j + 2S, ...``: every step sees the whole chunk, so
    a chunk sorted by cluster or by time (a user's batch of one class after another) makes ``S``
    alike steps, not ``S`` steps each pulled towards one part (measured on a stream of batches
    of two sorted clusters: contiguous steps left the means 2 away from the truth)."""
    X = np.asarray(X)
    n_rows = len(X)
    n_steps = max(1, -(-n_rows // batch_rows))
    if n_steps > 1 and n_rows - (n_steps - 1) * batch_rows < batch_rows // 2:
        n_steps -= 1
    if n_steps > 1 and missing:  # the steps' rows are not contiguous: the row numbers of bad rows are found here
        check_incomplete_rows(X, row_offset + np.arange(n_rows))
    elif n_steps > 1:
        finite = np.isfinite(X).all(axis=1)
        if not finite.all():
            raise nonfinite_rows_error(int(n_rows - finite.sum()), n_rows, row_offset + int(np.argmin(finite)))
    for step in range(n_steps):
        rows = slice(step, None, n_steps)
        weights = None if sample_weight is None else np.asarray(sample_weight)[rows]
        stats = kernel(np.ascontiguousarray(X[rows]), weights, family.assigner(state.params), covariance_type,
                       n_components, row_offset, missing=missing)
        check_finite(stats)
        state = online_step(state, stats, family, learning_decay, learning_offset)
    return state
