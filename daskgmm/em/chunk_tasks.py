"""The functions a pass's chunk tasks run on the workers (see :func:`daskgmm.em.passes._chunk_tasks`).

Kept apart from :mod:`daskgmm.em.passes` because a worker imports the module of every function it
runs: this one imports only the kernels and the statistics, so workers never import Dask's
collections, the estimator or scikit-learn (~60 MiB of worker memory).
"""

from __future__ import annotations

import numpy as np

from ..kernels.chunk import chunk_statistics_many
from ..model.statistics import merge_stats_lists


def chunk_task(x, *rest, block_info=None):
    """One chunk's ``function(x, w, row_offset, *arguments)``, wrapped in a 1 x 1 array. ``rest``: the
    weights' block if any, then :func:`~daskgmm.em.passes._chunk_tasks`'s function, first row and arguments."""
    weighted = 1 in block_info
    w, rest = (rest[0].ravel(), rest[1:]) if weighted else (None, rest)
    function, first_row, *arguments = rest
    wrapped = np.empty((1, 1), dtype=object)
    wrapped[0, 0] = function(x, w, first_row + block_info[0]["array-location"][0][0], *arguments)
    return wrapped


def merge_chunk_results(*results):
    """:func:`merge_stats_lists` of chunk results (wrapped by :func:`chunk_task`) or merged ones."""
    return merge_stats_lists(*(r[0, 0] if isinstance(r, np.ndarray) else r for r in results))


def chunk_statistics_in_pass(x, w, row_offset, assigners, covariance_types, n_components, kernel, track_worst,
                             stack, missing):
    """:func:`chunk_statistics_many` in :func:`~daskgmm.em.passes._chunk_tasks`'s argument order."""
    return chunk_statistics_many(x, w, assigners, covariance_types, n_components, row_offset, kernel, track_worst,
                                 stack, missing)


def per_row_column(X, params, output, dtype, per_row, missing):
    """``per_row(X, params, output, dtype, missing)`` (labels or log-likelihoods) as an (n, 1) column."""
    return per_row(X, params, output, dtype, missing)[:, None]
