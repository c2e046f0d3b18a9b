"""What benchmark scripts share for their results: a Markdown table, the run's metadata (the
command to rerun it and the load average around it: the CPU is shared, so numbers taken under
load are labelled as such), and writing benchmarks/results/NAME.json and NAME.md.

A script run as `python benchmarks/NAME.py` has benchmarks/ on sys.path, so `import
bench_report` finds this file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def md_table(header: str, rows: Iterable[Sequence]) -> list[str]:
    """The lines of a Markdown table: `header` ("a | b | c"), its rule, then one line per row
    (cells as str())."""
    return [
        f"| {header} |",
        "|" + "---|" * (header.count("|") + 1),
        *("| " + " | ".join(map(str, row)) + " |" for row in rows),
    ]


def run_meta(load_before: Sequence[float], load_after: Sequence[float] | None = None) -> dict:
    """The command that reran this script (with its arguments) and the load average before
    and after the run (after: now, unless given)."""
    load_after = os.getloadavg() if load_after is None else load_after
    return {
        "command": f"python benchmarks/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:]),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def write_results(name: str, meta: dict, rows: list, lines: Sequence[str]) -> None:
    """results/NAME.json ({"meta": meta, "rows": rows}) and results/NAME.md (`lines`, which
    are printed too)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
