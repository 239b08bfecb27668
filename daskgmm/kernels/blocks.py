"""Blocks of rows as the chunk math sees them: centred, sized for the cache, with reusable scratch.

Rows are centred before any product: distances and scatters are then computed
on numbers of the size of the data's spread, not of its offset, so adding a
constant to the data changes nothing. A :class:`CentredBlock` offers the
centred rows in the data's dtype (for float32 GEMMs) and exactly in float64
(for everything whose digits float32 would lose), each made when first asked.
"""

from __future__ import annotations

import numpy as np

# Temporaries of a block are kept near this size. Measured here (2 threads, K=16,
# D=16): full runs best in blocks of ~4k rows (n x K x D = 8 MiB), 1.3x faster than
# 2k and 16k; smaller blocks mean more short NumPy calls, which serialise threads
# on the GIL. tied/diag/spherical temporaries are n x (D + K)-sized; ~4-8k rows
# are best for them (2k: 1.3x slower with 2 threads).
BLOCK_TEMPORARY_BYTES = 8 * 2**20
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 1024, 16384
# float32 blocks whose centred values exceed this are computed in float64: their
# squares (in distances and scatters) would overflow float32 (max ~3.4e38).
FLOAT32_SAFE_MAGNITUDE = 1e16
# Blocks of a chunk share one centre (their moment sums then add) until a block's
# mean has moved from it by more than this many variances of the rows that set it,
# in some feature (10 standard deviations): rows sorted or drifting along a chunk
# then get a new centre instead of many components computed the slow, exact way.
DRIFT_LIMIT = 100.0

# A full model's E- and M-step run as GEMMs over the quadratic columns ``[x_i x_j (i <= j), x, 1]``
# (T = D(D+1)/2 + D + 1 a row, float64) instead of whitening every component (K D a row, in the
# data's dtype) when the model is wide enough for it: K D >= T for float32 data, K D >= T / 2 for
# float64, and D <= 32. Measured (chunk statistics of 262k rows, one thread, quadratic against
# whitening, f64 / f32 data): D=16 K=4 101 against 118 / 95 ms, K=8 122 against 150 / 150 (f64
# whitening: slower), K=16 160 against 320 / 272; D=8 K=4 41 against 55 / 47; D=32 K=8 429
# against 380 / 328, K=12 528 against 524 / 423; at D=64 the 2145 columns a row lose at every K.
# Per-row outputs (no M-step to share the columns with) stay on whitening: faster there.
QUADRATIC_FORM_MAX_FEATURES = 32


def uses_quadratic_form(covariance_type, n_features, n_components, itemsize):
    """Whether a model's statistics (E- and M-step) run over
    :func:`~daskgmm.kernels.densities.quadratic_columns`: full, few features, many components."""
    if covariance_type != "full" or n_features > QUADRATIC_FORM_MAX_FEATURES:
        return False
    width = n_features * (n_features + 1) // 2 + n_features + 1
    return n_components * n_features >= (width if itemsize < 8 else width / 2)


def default_block_rows(n_components, n_features, itemsize=8, covariance_type="full", statistics=True):
    """Rows per block so that a block's largest temporaries take about 8 MiB (``statistics``:
    for E- and M-steps, else for per-row outputs).

    Only full covariances keep their largest temporaries in the data's dtype (``itemsize``);
    the others' are float64 whatever the data (measured, tied K=16 D=16 float32, one thread:
    blocks sized for 4-byte items ran 8% slower than float64 data, sized for 8, as fast)."""
    if statistics and uses_quadratic_form(covariance_type, n_features, n_components, itemsize):
        # the quadratic columns (float64) and the n x K log-probabilities and responsibilities
        width, itemsize = n_features * (n_features + 1) // 2 + n_features + 1 + 2 * n_components, 8
    elif covariance_type == "full":
        width = n_components * n_features
    else:
        width, itemsize = 4 * (n_components + n_features), 8
    rows = BLOCK_TEMPORARY_BYTES // max(1, width * itemsize)
    return int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows)))


class Workspace:
    """Scratch arrays reused by every block of a chunk instead of allocated per block.

    Why: distributed's Nanny starts workers with ``MALLOC_TRIM_THRESHOLD_``
    set, which makes glibc hand every large temporary back to the OS and
    page-fault it in again on the next allocation; measured here, that made
    a kernel that allocated per block 2-4x slower inside workers than in a
    plain process.

    :meth:`memo` keeps values derived from the parameters (or from one block)
    for the blocks that share them.
    """

    def __init__(self):
        self._buffers = {}
        self._memo = {}

    def get(self, name, shape, dtype):
        """An uninitialised array of ``shape`` backed by the buffer called ``name``."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        buffer = self._buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name, dtype] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)

    def memo(self, name, owner, key, compute):
        """``compute()``, or its value from the last call with this ``name``, same ``owner`` and equal ``key``.

        ``owner`` is compared by identity (and held, so a new object cannot
        reuse a dead one's id): the parameters, or a block's rows; ``key``
        by equality: the shift and dtype the value was made for.
        """
        cached = self._memo.get(name)
        if cached is not None and cached[0] is owner and cached[1] == key:
            return cached[2]
        value = compute()
        self._memo[name] = (owner, key, value)
        return value


class CentredBlock:
    """Rows of one block centred on ``shift``, in the two forms the math uses (each made on demand).

    Attributes
    ----------
    raw : ndarray of shape (n, D)
        The rows as read (float32 or float64).
    shift : ndarray of shape (D,), float64
        Exactly representable in ``raw``'s dtype.
    """

    def __init__(self, raw, shift, workspace):
        self.raw, self.shift = raw, shift
        self._workspace = workspace
        self._rows = self._exact = None

    @property
    def n_rows(self):
        return self.raw.shape[0]

    @property
    def dtype(self):
        """The dtype of :attr:`rows`."""
        return self.rows.dtype

    @property
    def rows(self):
        """``raw - shift`` in the data's dtype (float64 where float32 squares could
        overflow): what the fast GEMM forms of float32 data use."""
        if self._rows is None:
            raw = self.raw
            rows = np.subtract(raw, self.shift.astype(raw.dtype),
                               out=self._workspace.get("centred", raw.shape, raw.dtype))
            if rows.dtype == np.float32 and rows.size and np.abs(rows).max() > FLOAT32_SAFE_MAGNITUDE:
                rows = self.exact()
            self._rows = rows
        return self._rows

    def exact(self):
        """``raw - shift`` in float64: exact for float32 data (the difference of two
        float32 numbers is a float64 number), rounded once for float64 data."""
        if self._exact is None:
            out = self._workspace.get("exact_rows", self.raw.shape, np.float64)
            self._exact = np.subtract(self.raw, self.shift, out=out)
        return self._exact


def block_mean(raw):
    """Column means in float64, by a GEMV in the data's dtype (5x faster than ``mean(axis=0)``;
    any shift near the mean serves)."""
    return (np.ones(raw.shape[0], dtype=raw.dtype) @ raw).astype(np.float64) / raw.shape[0]


def centre_block(raw, workspace=None, shift=None) -> CentredBlock:
    """``raw`` centred on ``shift`` (default: its column mean), the shift rounded to the data's dtype."""
    ws = workspace or Workspace()
    if shift is None:
        shift = block_mean(raw)
    return CentredBlock(raw, np.asarray(shift).astype(raw.dtype).astype(np.float64), ws)


class SharedCentre:
    """The centre the blocks of a chunk share, renewed when their rows drift away from it.

    A block is centred on the shared centre unless the previous block's mean
    (:meth:`observe`, known from its moment sums at no cost) had moved more
    than ``DRIFT_LIMIT`` variances from it; the first block of a centre sets it
    to its mean and measures the variances.
    """

    def __init__(self):
        self.shift = None
        self._variance = None
        self._renew = True

    def centre(self, raw, workspace) -> tuple[CentredBlock, bool]:
        """``(centred block, whether the centre is new)``."""
        if not self._renew:
            return centre_block(raw, workspace, self.shift), False
        block = centre_block(raw, workspace)
        rows = block.exact()
        self.shift, self._variance, self._renew = block.shift, np.einsum("nd,nd->d", rows, rows) / len(rows), False
        return block, True

    def observe(self, mean_offset):
        """The mean of the last block's rows relative to the centre (None: unknown)."""
        if mean_offset is not None and np.any(mean_offset**2 > DRIFT_LIMIT * self._variance):
            self._renew = True
