"""daskgmm against scikit-learn (and Spark MLlib where it runs), side by side, in one run.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/compare.py [--quick]``).

For every shape x covariance type x dtype x input (NumPy, Zarr), both fit the
same data from the same initial parameters with ``tol=0``; time per EM
iteration is ``(t(max_iter=4) - t(max_iter=1)) / 3`` so set-up and validation
are excluded for both. Peak memory is the tracemalloc peak of a separate
1-iteration fit (NumPy's allocations are traced), on top of the input. The machine is measured
in the same run (square and tall-skinny GEMM rates, Zarr read rate) and every
daskgmm time is also given as a multiple of the cost model's limit
(../shared/DESIGN.md: ``4 N K D^2`` flops for full, ``2 N K D^2`` for tied,
``~6 N K D`` for diag/spherical, and ``N D itemsize`` bytes read).

Results: ``benchmarks/results/compare.json`` and ``compare.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import zarr

from daskgmm import GaussianMixture, open_array
from daskgmm.datasets import make_mixture, random_mixture

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(200_000, 8, 8), (1_000_000, 16, 16), (500_000, 64, 16)]
QUICK_SHAPES = [(20_000, 4, 3)]
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def gemm_rates():
    """GFLOP/s of a square GEMM and of the tall-skinny N x D @ D x D shape (D=16)."""
    rates = {}
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        a = np.random.default_rng(0).normal(size=(2000, 2000)).astype(dtype)
        a @ a
        started = time.perf_counter()
        for _ in range(3):
            a @ a
        rates[f"square_{name}"] = 3 * 2 * 2000**3 / (time.perf_counter() - started) / 1e9
        tall = np.random.default_rng(0).normal(size=(1_000_000, 16)).astype(dtype)
        small = a[:16, :16].copy()
        product = tall @ small  # written into from now on: no page faults of a fresh output in the timing
        started = time.perf_counter()
        for _ in range(3):
            np.matmul(tall, small, out=product)
        rates[f"tall_skinny_{name}"] = 3 * 2 * 1_000_000 * 16 * 16 / (time.perf_counter() - started) / 1e9
    return rates


def flops_per_iteration(n, d, k, covariance_type):
    return {"full": 4 * n * k * d * d, "tied": 2 * n * k * d * d + 2 * n * d * d,
            "diag": 6 * n * k * d, "spherical": 4 * n * k * d}[covariance_type]


def time_per_iteration(makers, X, repeat=3, budget_s=10.0, max_repeat=8):
    """{side: (seconds per iteration, peak traced MiB of a 1-iteration fit)}, set-up excluded.

    ``makers`` maps a side's name to ``make_estimator(max_iter)``; ``X`` is the data, or a dict of
    each side's data (the same keys). The sides are interleaved
    (each repeat times every side's 1- and 4-iteration fits in turn, so a slow spell of the
    shared machine hits both alike); each runs ``repeat`` times, and more (up to
    ``max_repeat``) while the repeats took under ``budget_s``; the fastest counts. On a shared
    virtual machine single timings wander by 2-5x for the cheap cases (scikit-learn's diag
    measured 0.23 and 1.09 s/it in two runs). Timings run without tracemalloc (it slows every
    allocation); the peak is taken in a separate 1-iteration fit.
    """
    data = X if isinstance(X, dict) else dict.fromkeys(makers, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = {side: [np.inf, np.inf] for side in makers}
        started_all = time.perf_counter()
        runs = 0
        while runs < repeat or (runs < max_repeat and time.perf_counter() - started_all < budget_s * len(makers)):
            runs += 1
            for i, max_iter in enumerate((1, 4)):
                for side, make_estimator in makers.items():
                    started = time.perf_counter()
                    make_estimator(max_iter).fit(data[side])
                    seconds[side][i] = min(seconds[side][i], time.perf_counter() - started)
        peaks = {}
        for side, make_estimator in makers.items():
            tracemalloc.start()
            make_estimator(1).fit(data[side])
            peaks[side] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    return {side: ((seconds[side][1] - seconds[side][0]) / 3, peaks[side]) for side in makers}


def spark_status():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "not run: pyspark is not installed (pip install pyspark; it needs a Java runtime)"
    if shutil.which("java") is None:
        return "not run: pyspark needs a Java runtime and none is on PATH"
    return None


def spark_session():  # pragma: no cover - needs Java
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "8g")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def spark_seconds_per_iteration(spark, X, k, repeat=2):  # pragma: no cover - needs Java
    """Spark MLlib's GaussianMixture (full covariances only) in local[2] on the same rows.

    It takes no initial parameters, so only the per-iteration time compares:
    ``(t(maxIter=12) - t(maxIter=2))`` over the iterations Spark ran between the
    two (it stops early when the log-likelihood stops changing), fastest of
    ``repeat``, data cached and the JVM warmed up by an untimed fit first. (A
    first version took ``(t(4) - t(1)) / 3`` of two cold runs: at (200k, 8, 8)
    it reported 0.017 s/it where warm runs take ~0.2 s.)
    """
    import pandas as pd
    from pyspark.ml.clustering import GaussianMixture as SparkGaussianMixture
    from pyspark.ml.feature import VectorAssembler

    columns = [f"x{i}" for i in range(X.shape[1])]
    frame = spark.createDataFrame(pd.DataFrame(X, columns=columns))
    frame = VectorAssembler(inputCols=columns, outputCol="features").transform(frame).select("features")
    frame = frame.repartition(2).cache()
    frame.count()
    SparkGaussianMixture(k=k, maxIter=2, tol=0.0, seed=0).fit(frame)  # warm-up, untimed
    times, ran = [np.inf, np.inf], [0, 0]
    for _ in range(repeat):
        for i, iterations in enumerate((2, 12)):
            model = SparkGaussianMixture(k=k, maxIter=iterations, tol=0.0, seed=0)
            started = time.perf_counter()
            ran[i] = model.fit(frame).summary.numIter
            times[i] = min(times[i], time.perf_counter() - started)
    frame.unpersist()
    return (times[1] - times[0]) / (ran[1] - ran[0]) if ran[1] > ran[0] else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    parser.add_argument("--shape", action="append", metavar="N,D,K",
                        help="only this shape (repeatable); default: the three of the issue")
    parser.add_argument("--types", default=",".join(COVARIANCE_TYPES), help="covariance types, comma-separated")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per timing at least (more while under 10 s); the fastest counts")
    parser.add_argument("--no-spark", action="store_true", help="skip Spark MLlib even where it runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shape]
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cores": __import__("os").cpu_count(), **gemm_rates()}
    spark = spark_status() if not args.no_spark else "not run (--no-spark)"
    print(f"machine: {machine}")
    print(f"Spark MLlib: {spark or 'available'}")
    session = spark_session() if spark is None else None
    rows = []
    folder = Path(tempfile.mkdtemp())
    try:
        for n, d, k in shapes:
            weights, means, covariances = random_mixture(k, d, separation=4.0, random_state=0)
            X64 = make_mixture(n, weights, means, covariances, chunk_rows=250_000).compute()
            path = folder / f"x_{n}_{d}.zarr"
            zarr.create_array(path, shape=X64.shape, chunks=(min(n, 262_144), d), dtype="f8",
                              compressors=None)[:] = X64
            started = time.perf_counter()
            open_array(path).sum().compute()
            read_rate = X64.nbytes / (time.perf_counter() - started)
            for covariance_type in args.types.split(","):
                start = SklearnGaussianMixture(k, covariance_type=covariance_type, max_iter=0,
                                               random_state=0).fit(X64[:20_000])
                init = dict(covariance_type=covariance_type, tol=0,
                            weights_init=start.weights_ / start.weights_.sum(),
                            means_init=start.means_, precisions_init=start.precisions_)
                for dtype in (np.float64, np.float32):
                    X = X64.astype(dtype)
                    name = np.dtype(dtype).name
                    timed = time_per_iteration({
                        "sklearn": lambda m: SklearnGaussianMixture(k, max_iter=m, **init),
                        "daskgmm": lambda m: GaussianMixture(k, max_iter=m, **init)}, X, args.repeat)
                    (theirs, their_peak), (ours, our_peak) = timed["sklearn"], timed["daskgmm"]
                    flops = flops_per_iteration(n, d, k, covariance_type)
                    compute_limit = flops / (machine[f"square_{name}"] * 1e9)
                    row = dict(n=n, d=d, k=k, covariance_type=covariance_type, dtype=name, input="numpy",
                               sklearn_s=theirs, daskgmm_s=ours, speedup=theirs / ours,
                               sklearn_peak_mib=their_peak, daskgmm_peak_mib=our_peak,
                               input_mib=X.nbytes / 2**20, limit_s=compute_limit,
                               x_limit=ours / compute_limit,
                               x_tall_skinny_limit=ours / (flops / (machine[f"tall_skinny_{name}"] * 1e9)))
                    spark_note = ""
                    if session is not None and covariance_type == "full" and dtype == np.float64:
                        row["spark_s"] = spark_seconds_per_iteration(session, X, k)
                        row["vs_spark"] = row["spark_s"] / ours
                        spark_note = (f"; Spark {row['spark_s']:.3f} s/it ({row['vs_spark']:.1f}x)"
                                      if np.isfinite(row["spark_s"]) else "; Spark stopped early (no progress)")
                    rows.append(row)
                    print(f"{n:>9} {d:>3} {k:>3} {covariance_type:>9} {name:>7} numpy: sklearn {theirs:7.3f} s/it, "
                          f"daskgmm {ours:7.3f} s/it, {theirs / ours:5.1f}x; peak {their_peak:7.0f} vs "
                          f"{our_peak:7.0f} MiB; {ours / compute_limit:5.1f}x compute limit{spark_note}", flush=True)
                if covariance_type == "full":
                    zarr_input = open_array(path)
                    ours, our_peak = time_per_iteration(
                        {"daskgmm": lambda m: GaussianMixture(k, max_iter=m, persist=False, **init)}, zarr_input,
                        args.repeat)["daskgmm"]
                    limit = max(X64.nbytes / read_rate, flops_per_iteration(n, d, k, "full")
                                / (machine["square_float64"] * 1e9))
                    rows.append(dict(n=n, d=d, k=k, covariance_type="full", dtype="float64", input="zarr",
                                     daskgmm_s=ours, daskgmm_peak_mib=our_peak, read_gib_s=read_rate / 2**30,
                                     limit_s=limit, x_limit=ours / limit))
                    print(f"{n:>9} {d:>3} {k:>3} {'full':>9} float64 zarr:  daskgmm {ours:7.3f} s/it "
                          f"(read {read_rate / 2**30:.2f} GiB/s), {ours / limit:5.2f}x max(read, compute) limit",
                          flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if session is not None:
            session.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "compare_quick" if args.quick else "compare" if not args.shape else "compare_selected"
    (out / f"{name}.json").write_text(json.dumps({"machine": machine, "spark": spark or "run", "rows": rows},
                                                 indent=2))
    lines = [f"Machine: {machine['platform']}, {machine['cores']} cores; GEMM {machine['square_float64']:.0f} "
             f"GFLOP/s float64 square, {machine['tall_skinny_float64']:.0f} tall-skinny. Spark MLlib: "
             f"{spark or 'run'}.", "",
             "| N | D | K | covariance | dtype | input | scikit-learn s/it | daskgmm s/it | speed-up | "
             "Spark MLlib s/it (daskgmm speed-up) | peak MiB (sklearn / daskgmm, input) | x compute limit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sk = f"{r['sklearn_s']:.3f}" if "sklearn_s" in r else "—"
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else "—"
        peak = (f"{r['sklearn_peak_mib']:.0f} / {r['daskgmm_peak_mib']:.0f}, {r['input_mib']:.0f}"
                if "sklearn_peak_mib" in r else f"— / {r['daskgmm_peak_mib']:.0f}")
        spark_cell = "—" if "spark_s" not in r else f"{r['spark_s']:.3f} ({r['vs_spark']:.1f}x)" \
            if np.isfinite(r["spark_s"]) else "stopped early, no progress"
        lines.append(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['covariance_type']} | {r['dtype']} | {r['input']} | "
                     f"{sk} | {r['daskgmm_s']:.3f} | {speed} | {spark_cell} | {peak} | {r['x_limit']:.1f} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
