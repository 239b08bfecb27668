"""The README's two commands and the demo, run for real."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands():
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    fence = lines.index("```bash")
    commands = [line.split("#")[0].strip() for line in lines[fence + 1 : lines.index("```", fence + 1)]]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_demo_fits_on_a_local_cluster(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "daskgmm", "demo", "--n-samples", "200000", "--n-components", "4",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "local cluster: 2 workers on tcp://127.0.0.1:" in out
    assert "converged: True" in out
    assert "s per iteration" in out
    # one line per true component, each matched to a fitted one with a small mean error
    rows = [line.split() for line in out.splitlines() if line[:9].strip().isdigit()]
    assert len(rows) == 4
    assert all(float(row[3]) < 0.1 for row in rows)
    assert "re-read from disk every iteration" in out
    for name in ("convergence", "components"):
        assert (tmp_path / f"demo_{name}.png").stat().st_size > 5000


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_make_demo_from_a_fresh_clone(tmp_path):
    """`make demo` on a clean clone: creates its own .venv, installs, runs."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    result = subprocess.run(
        ["make", "demo", f"DEMO_ARGS=--n-samples 100000 --n-components 3 --data-dir {tmp_path}"],
        cwd=clone, capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (clone / ".venv" / "bin" / "python").exists()
    assert "converged: True" in result.stdout
