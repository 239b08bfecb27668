"""What candidates of select_model share in a pass: the kernel, and select_model end to end.

Run: ``.venv/bin/python benchmarks/shared_pass.py [--rows 2000000] [--repeat 3] [--codec gzip]``.

(1) One chunk (262k x 16 float32), 8 models (K in 1, 2, 4, 8 x diag, spherical), one thread:
    the statistics of all 8 in one walk over the blocks (``chunk_statistics_models``), with
    their GEMMs stacked (``stack=True``, what select_model runs) and without, against the sum of
    8 separate walks; fastest of 3.
(2) The issue's case (fastest of ``--repeat`` interleaved runs of each side): a float32 Zarr
    store re-read every pass (``persist=False``), or with ``--input numpy`` the same rows as an
    in-memory NumPy array; the candidates ``--ks`` x ``--types`` (default: the 8 above):
    ``select_model`` against the fits one after another, each followed by its ``bic(X)`` (what
    choosing K by hand takes: independent ``GaussianMixture`` fits with the same
    ``random_state``, which start where select_model's candidates do), and a plain read pass, in
    one run; the candidates' BIC compared with the independent fits'.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import threadpoolctl
import zarr

from daskgmm import GaussianMixture, open_array, select_model
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels.chunk import GaussianAssigner, chunk_statistics, chunk_statistics_models

CANDIDATES = [(k, covariance_type) for covariance_type in ("diag", "spherical") for k in (1, 2, 4, 8)]


def fastest(function, repeat=3):
    best = np.inf
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="select_model and the fits, interleaved")
    parser.add_argument("--codec", choices=("default", "gzip"), default="default",
                        help="the store's compressor: Zarr's default (Zstd: reading is cheap next to the "
                             "candidates' compute) or gzip level 5 (3x slower to read: a read-bound pass)")
    parser.add_argument("--input", choices=("zarr", "numpy"), default="zarr",
                        help="(2) on the Zarr store re-read every pass, or on the rows in memory (NumPy)")
    parser.add_argument("--ks", default="1,2,4,8", help="(2)'s K, comma-separated")
    parser.add_argument("--types", default="diag,spherical", help="(2)'s covariance types, comma-separated")
    args = parser.parse_args(argv)
    candidates = [(k, t) for t in args.types.split(",") for k in (int(v) for v in args.ks.split(","))]
    warnings.simplefilter("ignore")
    weights, means, covariances = random_mixture(6, 16, separation=4.0, random_state=0)
    X = make_mixture(args.rows, weights, means, covariances, chunk_rows=250_000).compute().astype(np.float32)

    chunk = X[:262_144]  # (fewer rows with --rows below that)
    models = [GaussianAssigner(GaussianMixture(k, covariance_type=t, max_iter=2, random_state=0)
                               .fit(chunk[:50_000])._fitted_params()) for k, t in CANDIDATES]
    types, ks = [t for _, t in CANDIDATES], [k for k, _ in CANDIDATES]
    with threadpoolctl.threadpool_limits(1):
        stacked = fastest(lambda: chunk_statistics_models(chunk, None, models, types, ks, stack=True))
        shared = fastest(lambda: chunk_statistics_models(chunk, None, models, types, ks))
        separate = fastest(lambda: [chunk_statistics(chunk, None, m, t, k) for m, t, k in zip(models, types, ks)])
    print(f"(1) one {len(chunk):,} x 16 float32 chunk, 8 models, one thread: one walk, GEMMs stacked "
          f"{stacked:.3f} s ({separate / stacked:.2f}x), one walk, a GEMM per model {shared:.3f} s "
          f"({separate / shared:.2f}x), 8 walks {separate:.3f} s")

    path = Path(tempfile.mkdtemp()) / "x.zarr"
    compressors = "auto" if args.codec == "default" else zarr.codecs.GzipCodec(level=5)
    zarr.create_array(path, shape=X.shape, chunks=(min(250_000, len(X)), 16), dtype="f4",
                      compressors=compressors)[:] = X
    source = open_array(path) if args.input == "zarr" else X
    read = fastest(lambda: open_array(path).sum(axis=0).compute(), repeat=2)
    persist = False if args.input == "zarr" else "auto"
    ks = sorted({k for k, _ in candidates})
    types = list(dict.fromkeys(t for _, t in candidates))
    together = one_by_one = np.inf
    for _ in range(args.repeat):  # interleaved, the fastest of each side (the machine is noisy)
        started = time.perf_counter()
        result = select_model(source, n_components=ks, covariance_types=types, random_state=0, persist=persist)
        together = min(together, time.perf_counter() - started)
        started = time.perf_counter()
        one_by_one_bic = {}
        for k, covariance_type in candidates:  # what a user does by hand: fit, then its BIC on the same data
            model = GaussianMixture(k, covariance_type=covariance_type, random_state=0, persist=persist).fit(source)
            one_by_one_bic[k, covariance_type] = model.bic(source)
        one_by_one = min(one_by_one, time.perf_counter() - started)
    differences = [abs(row["bic"] / one_by_one_bic[row["n_components"], row["covariance_type"]] - 1)
                   for row in result.table]
    where = (f"Zarr ({args.codec} codec), re-read every pass" if args.input == "zarr" else "NumPy, in memory")
    print(f"(2) {args.rows:,} x 16 float32 {where}, K in {args.ks} x {args.types}: select_model {together:.2f} s "
          f"({result.passes} passes), the {len(candidates)} fits one after another, each with its BIC, "
          f"{one_by_one:.2f} s ({one_by_one / together:.2f}x), a plain read pass of the store {read:.2f} s; every "
          f"candidate's BIC equals its independent fit's to {max(differences):.1e} (relative)")

if __name__ == "__main__":
    main()
