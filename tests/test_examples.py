"""Every example runs, on small sizes, as a user would run it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd=ROOT):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)],
                            capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_quickstart():
    out = run_example("quickstart.py")
    assert "weights: [0.5 0.5]" in out and "agree with NumPy fit: True" in out


def test_out_of_core(tmp_path):
    out = run_example("out_of_core.py", "--rows", "400000", "--folder", tmp_path)
    assert "converged True" in out and "400,000 rows" in out
