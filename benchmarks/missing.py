"""Missing values: what EM over the observed values (``missing="em"``) costs per iteration
against the same fit of the complete data, same start, both sides interleaved.

The issue's targets (#26): 10% of values missing at random at (1M, 16, 16) costs at most 1.5x
the complete data's time per iteration for diag, at most 3x for full. Rows without NaN take the
usual kernels; what is measured is the rows with NaN (82% of them at D=16 and 10%).

    .venv/bin/python benchmarks/missing.py                      # 1M x 16, K=16: diag and full
    .venv/bin/python benchmarks/missing.py --shape 200000,8,8 --types full,tied,diag,spherical
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from compare import time_per_iteration

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1000000,16,16", metavar="N,D,K")
    parser.add_argument("--types", default="diag,full", help="covariance types, comma-separated")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of values missing (at random)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing at least; the fastest counts")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    n, d, k = (int(v) for v in args.shape.split(","))
    weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
    X = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
    X_missing = X.copy()
    X_missing[np.random.default_rng(1).random(X.shape) < args.fraction] = np.nan
    X_missing = X_missing[~np.isnan(X_missing).all(axis=1)]
    incomplete = float(np.isnan(X_missing).any(axis=1).mean())
    print(f"{platform.platform()}; {n} x {d}, K={k}, {args.fraction:.0%} missing: "
          f"{incomplete:.1%} of rows have a NaN")
    rows = []
    for covariance_type in args.types.split(","):
        start = GaussianMixture(k, covariance_type=covariance_type, max_iter=2, random_state=0).fit(X[:20_000])
        init = dict(covariance_type=covariance_type, tol=0, weights_init=start.weights_, means_init=start.means_,
                    precisions_init=start.precisions_)
        timed = time_per_iteration({"complete": lambda m: GaussianMixture(k, max_iter=m, **init),
                                    "missing": lambda m: GaussianMixture(k, max_iter=m, missing="em", **init)},
                                   {"complete": X, "missing": X_missing}, args.repeat)
        (complete, complete_peak), (missing, missing_peak) = timed["complete"], timed["missing"]
        row = dict(n=n, d=d, k=k, covariance_type=covariance_type, fraction_missing=args.fraction,
                   rows_with_nan=incomplete, complete_s_per_iter=complete, missing_s_per_iter=missing,
                   ratio=missing / complete, complete_peak_mib=complete_peak, missing_peak_mib=missing_peak)
        rows.append(row)
        print(f"{covariance_type:>9}: complete {complete:.3f} s/it, {args.fraction:.0%} missing {missing:.3f} s/it "
              f"({missing / complete:.2f}x); peak {complete_peak:.0f} / {missing_peak:.0f} MiB")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "missing.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
