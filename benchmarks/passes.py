"""Full-data passes: batch EM against coarse-to-fine, incremental and online EM, side by side.

Run: ``.venv/bin/python benchmarks/passes.py [--quick]`` (also in ``make bench``).

Datasets: the pixels of scikit-learn's ``china.jpg`` (K=16 full, the image segmentation
case), in image order and shuffled once, points filling a cube, which 16 full Gaussians tile and on which batch EM needs ~30
iterations, and the same at 2M rows in a Zarr store re-read every pass (``persist=False``). Every
algorithm fits the same Dask array with the same ``random_state`` and the default ``tol``;
``passes`` counts every chunk read (initialisation included) divided by the number of chunks;
the final mean log-likelihood is scored afterwards on all rows, untimed. The algorithms run
interleaved, ``--repeat`` rounds, and the fastest wall time counts (the machine is shared and
timings wander 2x); passes and log-likelihoods do not vary between rounds.

Results: ``benchmarks/results/passes.json`` and ``passes.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from results_files import machine_description, write_results

from daskgmm import GaussianMixture

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ("batch", "coarse-to-fine", "incremental", "online")


def filled_cube(n_samples, seed=0):
    """Points filling a cube (no cluster structure): Gaussian components tile it, slowly."""
    return np.random.default_rng(seed).uniform(size=(n_samples, 3)) * 10.0


def counted(X, reads):
    def record(block):
        reads.append(1)
        return block

    return X.map_blocks(record, dtype=X.dtype)


def fit(algorithm, X, k):
    model = GaussianMixture(k, random_state=0, persist=False,
                            algorithm="batch" if algorithm == "online" else algorithm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.partial_fit(X) if algorithm == "online" else model.fit(X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from sklearn.datasets import load_sample_image

    folder = Path(tempfile.mkdtemp())
    china = load_sample_image("china.jpg").reshape(-1, 3).astype(np.float64)
    rows = 200_000 if not args.quick else 20_000
    cube = filled_cube(rows)
    stored_rows = 2_000_000 if not args.quick else 40_000
    zarr.create_array(folder / "cube.zarr", shape=(stored_rows, 3), chunks=(stored_rows // 16, 3),
                      dtype="f8")[:] = filled_cube(stored_rows, seed=1)
    if args.quick:
        china = china[:20_000]
    shuffled_china = china[np.random.default_rng(0).permutation(len(china))]
    datasets = [
        ("china.jpg pixels", da.from_array(china, chunks=-(-len(china) // 16)), 16 if not args.quick else 4),
        # online EM follows rows in a meaningful order (the image region by region): the same
        # pixels in random order are data at rest as online EM expects them
        ("china.jpg pixels, rows shuffled", da.from_array(shuffled_china, chunks=-(-len(china) // 16)),
         16 if not args.quick else 4),
        ("filled cube", da.from_array(cube, chunks=-(-rows // 16)), 16 if not args.quick else 3),
        ("filled cube, Zarr re-read", da.from_zarr(str(folder / "cube.zarr")), 16 if not args.quick else 3),
    ]
    machine = machine_description()
    print(f"machine: {machine}")
    rows_out = []
    for name, X, k in datasets:
        n_chunks = X.numblocks[0]
        best = {}
        for _ in range(args.repeat):
            for algorithm in ALGORITHMS:
                reads = []
                started = time.perf_counter()
                model = fit(algorithm, counted(X, reads), k)
                seconds = time.perf_counter() - started
                if algorithm not in best or seconds < best[algorithm]["seconds"]:
                    best[algorithm] = dict(seconds=seconds, passes=len(reads) / n_chunks, model=model)
        scores = {algorithm: float(result["model"].score(X)) for algorithm, result in best.items()}
        for algorithm in ALGORITHMS:
            result = best[algorithm]
            row = dict(dataset=name, n=int(X.shape[0]), k=k, chunks=n_chunks, algorithm=algorithm,
                       em_iterations=int(result["model"].n_iter_), passes=result["passes"],
                       seconds=result["seconds"], mean_log_likelihood=scores[algorithm],
                       vs_batch=scores[algorithm] - scores["batch"],
                       passes_ratio=result["passes"] / best["batch"]["passes"],
                       time_ratio=result["seconds"] / best["batch"]["seconds"])
            rows_out.append(row)
            print(f"{name:>30} {algorithm:>14}: {row['passes']:5.1f} passes ({row['passes_ratio']:.2f} of batch), "
                  f"{row['seconds']:6.2f} s ({row['time_ratio']:.2f}), mean log-likelihood "
                  f"{row['mean_log_likelihood']:.5f} ({row['vs_batch']:+.5f})", flush=True)
    write_results(args.out, "passes", machine, rows_out, [
        ("dataset", lambda r: r["dataset"]), ("N", lambda r: f"{r['n']:,}"), ("K", lambda r: str(r["k"])),
        ("algorithm", lambda r: r["algorithm"]), ("EM iterations", lambda r: str(r["em_iterations"])),
        ("passes (with init)", lambda r: f"{r['passes']:.1f}"), ("/ batch", lambda r: f"{r['passes_ratio']:.2f}"),
        ("seconds", lambda r: f"{r['seconds']:.2f}"), ("/ batch", lambda r: f"{r['time_ratio']:.2f}"),
        ("mean log-likelihood", lambda r: f"{r['mean_log_likelihood']:.5f}"),
        ("vs batch", lambda r: f"{r['vs_batch']:+.5f}"),
    ])


if __name__ == "__main__":
    main()
