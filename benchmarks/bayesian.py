"""daskgmm's BayesianGaussianMixture against scikit-learn's, and against daskgmm's GaussianMixture.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bayesian.py [--quick]``).

On the same data (a random mixture, NumPy input), every estimator fits with ``tol=0`` from
the same ``random_state``; time per EM iteration is ``(t(max_iter=4) - t(max_iter=1)) / 3``,
so initialisation and validation are excluded. The three estimators' fits are interleaved
(1-iteration fits of all three, then 4-iteration fits, repeated) and the fastest of the
repeats counts: the machine is shared and single timings wander 2x. Ratios are from one run.

Results: ``benchmarks/results/bayesian.json`` and ``bayesian.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from results_files import machine_description, write_results

from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(1_000_000, 16, 16)]
QUICK_SHAPES = [(20_000, 4, 3)]


def interleaved_seconds_per_iteration(makers: dict, X, repeat: int) -> dict:
    """``{name: seconds per iteration}`` for estimator factories ``make(max_iter)``, interleaved."""
    best = {name: [np.inf, np.inf] for name in makers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeat):
            for i, max_iter in enumerate((1, 4)):
                for name, make in makers.items():
                    started = time.perf_counter()
                    make(max_iter).fit(X)
                    best[name][i] = min(best[name][i], time.perf_counter() - started)
    return {name: (four - one) / 3 for name, (one, four) in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    parser.add_argument("--shape", action="append", metavar="N,D,K", help="only this shape (repeatable)")
    parser.add_argument("--types", default="full,diag", help="covariance types, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the fastest counts")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shape]
    machine = machine_description()
    print(f"machine: {machine}")
    rows = []
    for n, d, k in shapes:
        weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
        X64 = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
        for covariance_type in args.types.split(","):
            settings = dict(n_components=k, covariance_type=covariance_type, tol=0, random_state=0)
            for dtype in (np.float64, np.float32):
                X = X64.astype(dtype)
                seconds = interleaved_seconds_per_iteration({
                    "sklearn_bgm": lambda m: SklearnBayesianGaussianMixture(max_iter=m, **settings),
                    "daskgmm_bgm": lambda m: BayesianGaussianMixture(max_iter=m, **settings),
                    "daskgmm_gmm": lambda m: GaussianMixture(max_iter=m, **settings),
                }, X, args.repeat)
                row = dict(n=n, d=d, k=k, covariance_type=covariance_type, dtype=np.dtype(dtype).name,
                           **{f"{name}_s": value for name, value in seconds.items()},
                           speedup=seconds["sklearn_bgm"] / seconds["daskgmm_bgm"],
                           bgm_over_gmm=seconds["daskgmm_bgm"] / seconds["daskgmm_gmm"])
                rows.append(row)
                print(f"{n:>9} x {d:>2}, K={k:>2} {covariance_type:>9} {row['dtype']}: scikit-learn BGM "
                      f"{row['sklearn_bgm_s']:.3f} s/it, daskgmm BGM {row['daskgmm_bgm_s']:.3f} "
                      f"({row['speedup']:.1f}x), daskgmm GMM {row['daskgmm_gmm_s']:.3f} "
                      f"(BGM/GMM {row['bgm_over_gmm']:.2f})", flush=True)
    write_results(args.out, "bayesian", machine, rows, [
        ("N", lambda r: f"{r['n']:,}"), ("D", lambda r: str(r["d"])), ("K", lambda r: str(r["k"])),
        ("covariance", lambda r: r["covariance_type"]), ("dtype", lambda r: r["dtype"]),
        ("scikit-learn BGM s/it", lambda r: f"{r['sklearn_bgm_s']:.3f}"),
        ("daskgmm BGM s/it", lambda r: f"{r['daskgmm_bgm_s']:.3f}"), ("speed-up", lambda r: f"{r['speedup']:.1f}x"),
        ("daskgmm GMM s/it", lambda r: f"{r['daskgmm_gmm_s']:.3f}"), ("BGM / GMM", lambda r: f"{r['bgm_over_gmm']:.2f}"),
    ])


if __name__ == "__main__":
    main()
