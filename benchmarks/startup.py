"""How long the `daskgmm` command takes to answer when it does little: --help, info, an argument
error (target: under 0.5 s each; they import neither scikit-learn nor Dask).

Run: ``.venv/bin/python benchmarks/startup.py`` (fastest of --repeat runs of each, in seconds;
``python -c pass`` alongside, as the floor of any Python command on this machine).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fastest(command, repeat):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    daskgmm = [sys.executable, "-m", "daskgmm"]
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "x.npy", np.random.default_rng(0).normal(size=(2000, 3)))
        subprocess.run(daskgmm + ["fit", f"{folder}/x.npy", "-k", "2", "--out", f"{folder}/model", "-q"],
                       check=True, capture_output=True, cwd=ROOT)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "daskgmm --help": daskgmm + ["--help"],
            "daskgmm info model/": daskgmm + ["info", f"{folder}/model"],
            "daskgmm fit x.npy -k 0 (argument error)": daskgmm + ["fit", f"{folder}/x.npy", "-k", "0"],
            "daskgmm fit missing.npy (missing file)": daskgmm + ["fit", f"{folder}/missing.npy"],
        }
        for name, command in cases.items():
            print(f"{name:<45} {fastest(command, args.repeat):.3f} s", flush=True)


if __name__ == "__main__":
    main()
