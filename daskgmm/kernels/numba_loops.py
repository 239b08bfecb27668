"""Compiled per-row loops for the E- and M-step of diag and spherical models (numba).

Why compiled: the NumPy forms of these steps are GEMMs over per-row moment
columns ``[x, x^2, 1]`` built in float64, so a block is copied and widened
several times for a few flops per value; with a cheap model that made the
kernel cost more than reading its chunk from storage (measured, 250k x 16
float32 rows, K=4 diag, one thread: 34.5 ms of kernel against 19-21 ms to
read and decompress the Zarr chunk). These loops read each row once for the
E-step and once for the M-step, and leave the exponentials to NumPy's SIMD
``exp`` between them: 15-16 ms; taking four rows at a time (each factor and
accumulator loaded once per four rows), 10.5-11.5 ms.

They are also accurate where the expanded forms are not: every component's
whitened differences ``u (x - shift) - u m`` are formed per row in float64
(rows exactly centred on the block's shift first, one rounding of ``u m``),
so no component is too far or too narrow for them. The M-step sums are the
moment sums about the shift that :func:`daskgmm.kernels.sums.separable_sums`
finishes (components whose expanded scatter would lose digits are recomputed
exactly centred there).

Also here: k-means assignments of a block to several sets of centres in one
walk that sums them (``select_model``'s starts, and a lone fit's), and the
log-sum-exp of component-major stacked log-probabilities (:mod:`daskgmm.kernels.stacked`).

numba is imported with this module; :mod:`daskgmm.kernels.chunk` imports it on first
use, so workers that only fit full or tied models do not pay its ~108 MiB
(numba, LLVM and the loaded loops, measured in a worker).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..model.params import GaussianParams, log_prob_offset
from .blocks import CentredBlock, Workspace
from .densities import exp_clamp

# Reassociation lets LLVM vectorise the sums over features; no-NaN/no-inf flags are left
# out, so -inf log-probabilities (components of weight zero) keep their meaning.
FASTMATH = {"reassoc", "contract"}
# densities.clamped_exp in two halves around NumPy's exp: the clamp below in the E-step loop, the
# floor subtracted in the M-step loop (the same operations in the same order: the same numbers)
EXP_CUTOFF, EXP_FLOOR = (float(value) for value in exp_clamp(np.float64))


@njit(nogil=True, fastmath=FASTMATH, cache=True, inline="always")
def _centre_rows(raw, shift, first, count, centred):
    """``centred[g] = raw[first + g] - shift`` in float64 for ``count`` rows (exact for float32 rows)."""
    for g in range(count):
        for d in range(raw.shape[1]):
            centred[g, d] = raw[first + g, d] - shift[d]


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _log_prob_relative(raw, shift, factors, whitened_means, offset, log_prob, top):
    """``log_prob[i, k] = max(offset_k - 1/2 sum_d (u_kd (x_id - shift_d) - u_kd m_kd)^2 - top_i, EXP_CUTOFF)``
    (``u`` the diag precision factors, ``u m`` the whitened means about the shift), ``top_i`` the
    row's largest (0 where it is not finite).

    Four rows at a time: each component's factors are loaded once for four rows' distances
    (measured 25-30% faster at K=4-16), the tail rows one by one."""
    n_rows, n_features = raw.shape
    n_components = factors.shape[0]
    centred = np.empty((4, n_features))
    grouped = n_rows - n_rows % 4
    for i in range(0, grouped, 4):
        _centre_rows(raw, shift, i, 4, centred)
        for k in range(n_components):
            d0 = d1 = d2 = d3 = 0.0
            for d in range(n_features):
                # one fused multiply-add each: its error is eps |u m|, against the whitened distances'
                # squares that the expanded forms cancel (2e-10 nats at 1e6 spreads from the shift)
                u, um = factors[k, d], whitened_means[k, d]
                w0, w1, w2, w3 = u * centred[0, d] - um, u * centred[1, d] - um, u * centred[2, d] - um, \
                    u * centred[3, d] - um
                d0 += w0 * w0
                d1 += w1 * w1
                d2 += w2 * w2
                d3 += w3 * w3
            log_prob[i, k] = offset[k] - 0.5 * d0
            log_prob[i + 1, k] = offset[k] - 0.5 * d1
            log_prob[i + 2, k] = offset[k] - 0.5 * d2
            log_prob[i + 3, k] = offset[k] - 0.5 * d3
    for i in range(grouped, n_rows):
        _centre_rows(raw, shift, i, 1, centred)
        for k in range(n_components):
            distance = 0.0
            for d in range(n_features):
                whitened = factors[k, d] * centred[0, d] - whitened_means[k, d]
                distance += whitened * whitened
            log_prob[i, k] = offset[k] - 0.5 * distance
    for i in range(n_rows):
        _relative_to_row_top(log_prob, i, top)


@njit(nogil=True, fastmath=FASTMATH, cache=True, inline="always")
def _relative_to_row_top(log_prob, i, top):
    """Row ``i`` of ``log_prob`` less its largest (written to ``top[i]``; 0 where not finite),
    clamped below at ``EXP_CUTOFF``: the first half of :func:`~daskgmm.kernels.densities.clamped_exp`."""
    largest = -np.inf
    for k in range(log_prob.shape[1]):
        largest = max(largest, log_prob[i, k])
    if not np.isfinite(largest):
        largest = 0.0
    top[i] = largest
    for k in range(log_prob.shape[1]):
        log_prob[i, k] = max(log_prob[i, k] - largest, EXP_CUTOFF)


@njit(nogil=True, fastmath=FASTMATH, cache=True, inline="always")
def _normalise_row(resp, i, weights, total):
    """Row ``i`` of ``resp`` (``exp`` of relative log-probabilities) less the clamp's floor,
    its total written to ``total[i]``, scaled to responsibilities times the row's weight: the
    second half of :func:`~daskgmm.kernels.densities.clamped_exp` and the normalisation."""
    row_total = 0.0
    for k in range(resp.shape[1]):
        value = max(resp[i, k] - EXP_FLOOR, 0.0)
        resp[i, k] = value
        row_total += value
    total[i] = row_total
    scale = weights[i] / row_total
    for k in range(resp.shape[1]):
        resp[i, k] *= scale


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _normalised_moment_sums(raw, shift, resp, weights, total, sums):
    """Normalises ``resp`` (``exp`` of :func:`_log_prob_relative`'s values) in place to weighted
    responsibilities, writes each row's total, and adds ``[sum r x, sum r x^2, sum r]`` (rows
    about ``shift``) to ``sums`` (K, 2D + 1).

    The sums take four rows at a time: each accumulator is loaded and stored once per four
    rows' products instead of once per row (the loop's bound; measured 30-38% faster at K=4-16)."""
    n_rows, n_features = raw.shape
    n_components = resp.shape[1]
    for i in range(n_rows):
        _normalise_row(resp, i, weights, total)
    centred = np.empty((4, n_features))
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features))
    mass = np.zeros(n_components)
    grouped = n_rows - n_rows % 4
    for i in range(0, grouped, 4):
        _centre_rows(raw, shift, i, 4, centred)
        for k in range(n_components):
            r0, r1, r2, r3 = resp[i, k], resp[i + 1, k], resp[i + 2, k], resp[i + 3, k]
            mass[k] += r0 + r1 + r2 + r3
            for d in range(n_features):
                w0, w1, w2, w3 = r0 * centred[0, d], r1 * centred[1, d], r2 * centred[2, d], r3 * centred[3, d]
                first[k, d] += w0 + w1 + w2 + w3
                second[k, d] += w0 * centred[0, d] + w1 * centred[1, d] + w2 * centred[2, d] + w3 * centred[3, d]
    for i in range(grouped, n_rows):
        _centre_rows(raw, shift, i, 1, centred)
        for k in range(n_components):
            r = resp[i, k]
            mass[k] += r
            for d in range(n_features):
                weighted = r * centred[0, d]
                first[k, d] += weighted
                second[k, d] += weighted * centred[0, d]
    for k in range(n_components):
        for d in range(n_features):
            sums[k, d] += first[k, d]
            sums[k, n_features + d] += second[k, d]
        sums[k, 2 * n_features] += mass[k]


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _relative_to_top(values, top):
    """Component-major weighted log-probabilities ``values`` (K, n), in place, less each row's
    largest ``top`` (written; 0 where not finite), clamped below at ``EXP_CUTOFF``: the first half
    of :func:`~daskgmm.kernels.densities.clamped_exp` after the row maxima, a row of ``values`` at a time."""
    n_components, n_rows = values.shape
    for i in range(n_rows):
        top[i] = values[0, i]
    for k in range(1, n_components):
        for i in range(n_rows):
            top[i] = max(top[i], values[k, i])
    for i in range(n_rows):
        if not np.isfinite(top[i]):
            top[i] = 0.0
    for k in range(n_components):
        for i in range(n_rows):
            values[k, i] = max(values[k, i] - top[i], EXP_CUTOFF)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _floored_totals(values, total, normalise):
    """The second half of :func:`~daskgmm.kernels.densities.clamped_exp` on exponentials ``values``
    (K, n, component-major, in place), each row's ``total``, and (``normalise``) the values divided
    by it: responsibilities."""
    n_components, n_rows = values.shape
    for i in range(n_rows):
        total[i] = 0.0
    for k in range(n_components):
        for i in range(n_rows):
            value = max(values[k, i] - EXP_FLOOR, 0.0)
            values[k, i] = value
            total[i] += value
    if normalise:
        for k in range(n_components):
            for i in range(n_rows):
                values[k, i] *= 1.0 / total[i]


def normalize_component_major(values, normalise, ws: Workspace):
    """``log p(x)`` (n,) of component-major weighted log-probabilities ``values`` (K, n): as
    :func:`~daskgmm.kernels.densities.normalize_log_prob`, and in place their responsibilities
    (``normalise``) or their exponentials relative to the row's largest (scoring only)."""
    top = np.empty(values.shape[1])
    _relative_to_top(values, top)
    np.exp(values, out=values)
    total = ws.get("component-major-total", values.shape[1], np.float64)
    _floored_totals(values, total, normalise)
    return _log_norm(total, top)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _nearest_centre_sums(raw, shift, centres, edges, weights, labels, sums):
    """For every model ``m`` (its centres: rows ``edges[m]:edges[m + 1]`` of ``centres``, about
    ``shift``), ``labels[m, i]``: the centre nearest to row ``i`` (the first of ties), and
    ``[w x, w x^2, w]`` (rows about ``shift``) added to that centre's row of ``sums`` (C, 2D + 1).
    Distances from exact differences ``(x - shift) - c``, so far or tight centres keep their rows."""
    n_rows, n_features = raw.shape
    n_centres = centres.shape[0]
    row = np.empty((1, n_features))
    centred = row[0]
    first = np.zeros((n_centres, n_features))
    second = np.zeros((n_centres, n_features))
    mass = np.zeros(n_centres)
    for i in range(n_rows):
        _centre_rows(raw, shift, i, 1, row)
        weight = weights[i]
        for m in range(edges.size - 1):
            nearest, best = edges[m], np.inf
            for c in range(edges[m], edges[m + 1]):
                distance = 0.0
                for d in range(n_features):
                    difference = centred[d] - centres[c, d]
                    distance += difference * difference
                if distance < best:
                    nearest, best = c, distance
            labels[m, i] = nearest - edges[m]
            mass[nearest] += weight
            for d in range(n_features):
                weighted = weight * centred[d]
                first[nearest, d] += weighted
                second[nearest, d] += weighted * centred[d]
    for c in range(n_centres):
        for d in range(n_features):
            sums[c, d] += first[c, d]
            sums[c, n_features + d] += second[c, d]
        sums[c, 2 * n_features] += mass[c]


def nearest_centre_blocks(block: CentredBlock, centres_list, sample_weight, ws: Workspace):
    """Hard (k-means) assignments of one block to each of several sets of centres (K_m, D), in one
    walk over its rows. Returns per set ``(resp, sums)``: the weighted one-hot responsibilities
    (n, K_m) and ``[sum w r x, sum w r x^2, sum w r]`` (K_m, 2D + 1) about ``block.shift``, as
    :func:`~daskgmm.kernels.sums.separable_sums` takes them."""
    raw = np.ascontiguousarray(block.raw)
    n_rows, n_features = raw.shape
    sizes = [len(centres) for centres in centres_list]
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    centres_c = np.vstack([np.asarray(centres, dtype=np.float64) for centres in centres_list]) - block.shift
    labels = ws.get("nearest-labels", (len(sizes), n_rows), np.int64)
    sums = np.zeros((edges[-1], 2 * n_features + 1))
    _nearest_centre_sums(raw, block.shift, centres_c, edges, _row_weights(sample_weight, n_rows, ws), labels, sums)
    results = []
    for m, size in enumerate(sizes):
        resp = ws.get(f"nearest-resp{m}", (n_rows, size), np.float64)
        np.equal(labels[m][:, None], np.arange(size)[None, :], out=resp, casting="unsafe")
        if sample_weight is not None:
            resp *= np.asarray(sample_weight, dtype=np.float64)[:, None]
        results.append((resp, sums[edges[m]:edges[m + 1]]))
    return results


def _row_weights(sample_weight, n_rows, ws):
    if sample_weight is None:
        weights = ws.get("unit-weights", n_rows, np.float64)
        weights[...] = 1.0
        return weights
    return np.asarray(sample_weight, dtype=np.float64)


def separable_log_prob(block: CentredBlock, params: GaussianParams, ws: Workspace):
    """``(log_prob - top, top)``: every row's weighted log-probabilities (n, K), less the row's
    largest ``top`` (n,), clamped below at ``EXP_CUTOFF``; both float64 scratch of ``ws``."""
    raw = np.ascontiguousarray(block.raw)
    n_rows, n_features = raw.shape
    factors = ws.memo("compiled-factors", params, n_features, lambda: _diagonal_factors(params, n_features))
    whitened_means = factors * (np.asarray(params.means, dtype=np.float64) - block.shift)
    offset = ws.memo("compiled-offset", params, n_features, lambda: log_prob_offset(params, n_features))
    log_prob = ws.get("resp", (n_rows, params.n_components), np.float64)
    top = ws.get("top", n_rows, np.float64)
    _log_prob_relative(raw, block.shift, factors, whitened_means, offset, log_prob, top)
    return log_prob, top


def separable_block(block: CentredBlock, params: GaussianParams, sample_weight, ws: Workspace):
    """E-step and M-step sums of one block of a diag or spherical model.

    Returns
    -------
    resp : ndarray (n, K), float64
        Weighted responsibilities (scratch of ``ws``), for the components
        :func:`~daskgmm.kernels.sums.separable_sums` computes exactly centred.
    sums : ndarray (K, 2D + 1)
        ``[sum w r x, sum w r x^2, sum w r]`` about ``block.shift``.
    log_norm : ndarray (n,)
        ``log p(x)`` of every row.
    """
    resp, top = separable_log_prob(block, params, ws)
    np.exp(resp, out=resp)  # the clamp is in the loops
    n_rows, n_features = block.raw.shape
    total = ws.get("total", n_rows, np.float64)
    sums = np.zeros((params.n_components, 2 * n_features + 1))
    _normalised_moment_sums(np.ascontiguousarray(block.raw), block.shift, resp, _row_weights(sample_weight, n_rows, ws),
                            total, sums)
    return resp, sums, _log_norm(total, top)


def per_row_output(block: CentredBlock, params: GaussianParams, output, ws: Workspace):
    """:func:`daskgmm.kernels.chunk.per_row`'s ``output`` ("label", "proba", "log_norm") of one block."""
    relative, top = separable_log_prob(block, params, ws)
    if output == "label":
        return np.argmax(relative, axis=1)
    np.exp(relative, out=relative)
    relative -= EXP_FLOOR
    np.maximum(relative, 0, out=relative)
    total = relative @ np.ones(params.n_components)
    if output == "proba":
        relative /= total[:, None]
        return relative
    return _log_norm(total, top)


def _log_norm(total, top):
    with np.errstate(divide="ignore"):
        log_norm = np.log(total)
    log_norm += top
    return log_norm


def _diagonal_factors(params: GaussianParams, n_features):
    """Per-feature precision factors (K, D): the diag factors, or a spherical one on every feature."""
    factors = np.asarray(params.precisions_cholesky, dtype=np.float64)
    if params.covariance_type == "spherical":
        factors = np.repeat(factors[:, None], n_features, axis=1)
    return np.ascontiguousarray(factors)


# ----------------------------------------------------------------- missing values (daskgmm.kernels.missing)
@njit(nogil=True, fastmath=FASTMATH, cache=True)
def missing_log_prob(values, mask, factors, whitened_means, log_factors, offset, log_prob, top):
    """The diag E-step of rows with missing values, as :func:`_log_prob_relative` (relative to the
    row's largest, clamped) over each row's observed coordinates: ``values`` are the rows about
    the centre with 0 where missing, ``mask`` 1.0 where observed, ``offset_k = log w_k`` and the
    log-determinant and ``log 2 pi`` terms summed over the observed coordinates only."""
    n_rows, n_features = values.shape
    n_components = factors.shape[0]
    for i in range(n_rows):
        for k in range(n_components):
            distance = 0.0
            log_det = 0.0
            for d in range(n_features):
                whitened = factors[k, d] * values[i, d] - whitened_means[k, d]
                distance += mask[i, d] * whitened * whitened
                log_det += mask[i, d] * log_factors[k, d]
            log_prob[i, k] = offset[k] + log_det - 0.5 * distance
        _relative_to_row_top(log_prob, i, top)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def missing_moment_sums(values, mask, resp, weights, total, first, second, missing_mass, mass):
    """Normalises ``resp`` (``exp`` of :func:`missing_log_prob`'s values) in place to weighted
    responsibilities, writes each row's total, and adds ``sum r x``, ``sum r x^2`` over observed
    values (``values`` hold 0 where missing), ``sum r`` per missing coordinate and ``sum r``."""
    n_rows, n_features = values.shape
    n_components = resp.shape[1]
    for i in range(n_rows):
        _normalise_row(resp, i, weights, total)
        for k in range(n_components):
            r = resp[i, k]
            mass[k] += r
            for d in range(n_features):
                weighted = r * values[i, d]
                first[k, d] += weighted
                second[k, d] += weighted * values[i, d]
                missing_mass[k, d] += r - r * mask[i, d]
