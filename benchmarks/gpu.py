"""device="cuda" against device="cpu" and scikit-learn, side by side, on a machine with a GPU.

Run: ``.venv/bin/python benchmarks/gpu.py`` (needs CuPy and a CUDA GPU).

Same method as ``compare.py``: the same data and initial parameters for all,
``tol=0``, time per EM iteration ``(t(max_iter=4) - t(max_iter=1)) / 3``,
fastest of the repeats. NumPy input: every pass copies each chunk to the GPU
(the data stay in host memory, as they would stream from Zarr), so the GPU
figures include the host-to-device copies. The GPU's float64 GEMM rate is
measured in the same run.

Results: ``gpu.json`` and ``gpu.md`` in ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from compare import COVARIANCE_TYPES, SHAPES, flops_per_iteration, time_per_iteration

from daskgmm import GaussianMixture
from daskgmm.datasets import make_mixture, random_mixture
from daskgmm.kernels.gpu import cupy_or_error

ROOT = Path(__file__).resolve().parents[1]
QUICK_SHAPES = [(20_000, 4, 3)]


def gpu_gemm_rate(cp, dtype, size=8192):
    a = cp.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    a @ a
    cp.cuda.Device().synchronize()
    started = time.perf_counter()
    for _ in range(3):
        a @ a
    cp.cuda.Device().synchronize()
    return 3 * 2 * size**3 / (time.perf_counter() - started) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    parser.add_argument("--shape", action="append", metavar="N,D,K", help="only this shape (repeatable)")
    parser.add_argument("--types", default=",".join(COVARIANCE_TYPES))
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    cp = cupy_or_error()
    properties = cp.cuda.runtime.getDeviceProperties(0)
    machine = dict(platform=platform.platform(), cores=os.cpu_count(), gpu=properties["name"].decode(),
                   gpu_gemm_float64=gpu_gemm_rate(cp, np.float64), gpu_gemm_float32=gpu_gemm_rate(cp, np.float32))
    print(f"machine: {machine}", flush=True)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shape]
    rows = []
    for n, d, k in shapes:
        weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
        X64 = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
        for covariance_type in args.types.split(","):
            start = SklearnGaussianMixture(k, covariance_type=covariance_type, max_iter=0,
                                           random_state=0).fit(X64[:20_000])
            init = dict(covariance_type=covariance_type, tol=0, weights_init=start.weights_ / start.weights_.sum(),
                        means_init=start.means_, precisions_init=start.precisions_)
            for dtype in args.dtypes.split(","):
                X = X64.astype(dtype)
                timed = time_per_iteration({
                    "sklearn": lambda m: SklearnGaussianMixture(k, max_iter=m, **init),
                    "cpu": lambda m: GaussianMixture(k, max_iter=m, **init),
                    "cuda": lambda m: GaussianMixture(k, max_iter=m, device="cuda", **init),
                }, X, args.repeat, budget_s=5.0)
                seconds = {name: value[0] for name, value in timed.items()}
                cuda_fit = GaussianMixture(k, max_iter=5, device="cuda", **init).fit(X)
                cpu_fit = GaussianMixture(k, max_iter=5, **init).fit(X)
                deviation = float(np.max(np.abs(cuda_fit.covariances_ - cpu_fit.covariances_))
                                  / np.max(np.abs(cpu_fit.covariances_)))
                row = dict(n=n, d=d, k=k, covariance_type=covariance_type, dtype=np.dtype(dtype).name,
                           sklearn_s=seconds["sklearn"], cpu_s=seconds["cpu"], cuda_s=seconds["cuda"],
                           flops=flops_per_iteration(n, d, k, covariance_type), cuda_vs_cpu_deviation=deviation)
                rows.append(row)
                print(f"{n:>9} {d:3} {k:3} {covariance_type:>9} {row['dtype']}: sklearn {seconds['sklearn']:.3f}, "
                      f"cpu {seconds['cpu']:.3f}, cuda {seconds['cuda']:.4f} s/it "
                      f"({seconds['sklearn'] / seconds['cuda']:.0f}x sklearn, {seconds['cpu'] / seconds['cuda']:.1f}x cpu);"
                      f" covariances cuda vs cpu {deviation:.1e}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_quick" if args.quick else "gpu"
    (out / f"{stem}.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=2))
    lines = [f"Machine: {machine['gpu']} (GEMM {machine['gpu_gemm_float64']:.0f} GFLOP/s float64, "
             f"{machine['gpu_gemm_float32']:.0f} float32), {machine['cores']} CPU cores. NumPy input in host "
             "memory, copied to the GPU in every pass.", "",
             "| N | D | K | covariance | dtype | scikit-learn s/it | daskgmm cpu s/it | daskgmm cuda s/it | "
             "cuda vs sklearn | cuda vs cpu |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['d']} | {r['k']} | {r['covariance_type']} | {r['dtype']} | {r['sklearn_s']:.3f} | "
              f"{r['cpu_s']:.3f} | {r['cuda_s']:.4f} | {r['sklearn_s'] / r['cuda_s']:.0f}x | "
              f"{r['cpu_s'] / r['cuda_s']:.1f}x |" for r in rows]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
