"""Choosing K: select_model's shared passes against fitting every candidate on its own.

Run: ``.venv/bin/python benchmarks/selection.py [--rows 500000]``. On a Zarr
store (re-read every pass, ``persist=False``), K = 1..10 x 4 covariance types:

(a) ``daskgmm.select_model`` (all candidates in shared passes);
(b) the same 40 candidates as sequential, independent ``daskgmm.GaussianMixture`` fits;
(c) the scikit-learn tutorial's loop over ``sklearn.mixture.GaussianMixture`` in memory.

It reports bytes read (counted per chunk read) and wall time for each, and
whether all three choose the same model. Results: ``benchmarks/results/selection.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import zarr

from daskgmm import GaussianMixture, open_array, select_model
from daskgmm.datasets import make_mixture, random_mixture

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("full", "tied", "diag", "spherical")


def counted(array, counter):
    def read(block):
        counter[0] += block.nbytes
        return block

    return array.map_blocks(read, dtype=array.dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--k-max", type=int, default=10)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    weights, means, covariances = random_mixture(4, args.features, separation=5.0, random_state=0)
    X = make_mixture(args.rows, weights, means, covariances, chunk_rows=100_000).compute()
    ks = range(1, args.k_max + 1)
    result = {"rows": args.rows, "features": args.features, "candidates": len(ks) * len(TYPES),
              "data_bytes": X.nbytes}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.zarr"
        zarr.create_array(path, shape=X.shape, chunks=(100_000, args.features), dtype="f8")[:] = X

        read = [0]
        started = time.perf_counter()
        shared = select_model(counted(open_array(path), read), ks, TYPES, random_state=0, persist=False)
        result["shared"] = {"seconds": time.perf_counter() - started, "bytes_read": read[0],
                            "passes": shared.passes,
                            "longest_fit_iterations": max(c.result.n_iter for c in shared.candidates),
                            "best": [shared.best_estimator_.n_components, shared.best_estimator_.covariance_type]}

        read = [0]
        started = time.perf_counter()
        best = None
        for covariance_type in TYPES:
            for k in ks:
                source = counted(open_array(path), read)
                gmm = GaussianMixture(k, covariance_type=covariance_type, random_state=0, persist=False).fit(source)
                bic = gmm.bic(source)
                best = min(best or (np.inf,), (bic, k, covariance_type))
        result["sequential_daskgmm"] = {"seconds": time.perf_counter() - started, "bytes_read": read[0],
                                        "best": list(best[1:])}

    started = time.perf_counter()
    best = None
    for covariance_type in TYPES:
        for k in ks:
            gmm = SklearnGaussianMixture(k, covariance_type=covariance_type, random_state=0).fit(X)
            best = min(best or (np.inf,), (gmm.bic(X), k, covariance_type))
    result["sklearn_loop_in_memory"] = {"seconds": time.perf_counter() - started, "best": list(best[1:])}

    gib = 2**30
    print(f"{args.rows:,} x {args.features}, K=1..{args.k_max} x {len(TYPES)} covariance types "
          f"({result['candidates']} candidates), data {X.nbytes / gib:.3f} GiB")
    print(f"select_model (shared passes): {result['shared']['seconds']:7.1f} s, "
          f"{result['shared']['bytes_read'] / gib:7.2f} GiB read in {result['shared']['passes']} passes "
          f"(longest single fit: {result['shared']['longest_fit_iterations']} iterations), "
          f"best {result['shared']['best']}")
    print(f"sequential daskgmm fits:      {result['sequential_daskgmm']['seconds']:7.1f} s, "
          f"{result['sequential_daskgmm']['bytes_read'] / gib:7.2f} GiB read, "
          f"best {result['sequential_daskgmm']['best']}")
    print(f"scikit-learn loop, in memory: {result['sklearn_loop_in_memory']['seconds']:7.1f} s, "
          f"best {result['sklearn_loop_in_memory']['best']}")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
