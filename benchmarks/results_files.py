"""What the benchmarks share: the machine they ran on, and their results as JSON and a Markdown table."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine_description() -> dict:
    return {"platform": platform.platform(), "cores": os.cpu_count()}


def write_results(out, stem, machine, rows, columns):
    """``out/stem.json`` (machine and rows) and ``out/stem.md`` (a table), and say where.

    ``columns``: ``(heading, format)`` pairs, ``format(row)`` giving the cell's text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = ["| " + " | ".join(heading for heading, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row) for _, cell in columns) + " |" for row in rows]
    (out / f"{stem}.md").write_text(f"machine: {machine}\n\n" + "\n".join(lines) + "\n")
    print(f"results: {out / f'{stem}.md'}")
