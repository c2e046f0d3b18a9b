"""The style benchmark's result file: benchmarks/results/style.json (each section merged in
as it is measured) and style.md, rewritten from it."""

from __future__ import annotations

import json
import os
import platform
from operator import itemgetter

import torch
from bench_report import md_table
from style_common import RESULTS


def load_results() -> dict:
    path = RESULTS / "style.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(update: dict) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = load_results()
    data.update(update)
    data["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    (RESULTS / "style.json").write_text(json.dumps(data, indent=2))
    write_markdown(data)
    return data


def write_markdown(data: dict) -> None:
    lines = [
        "# Style transfer benchmark",
        "",
        "Written by `benchmarks/style.py` from `style.json`. CPU: 2 cores (the latest speed "
        "rows on a quiet machine; the other sections while other jobs shared it). The speed "
        "rows ran holding /tmp/convlens-bench.lock, naive and ours "
        "alternating in the same process (best of the rounds); the quality runs (settings grid, "
        "gallery, high resolution) ran at nice 19 outside the lock, so their seconds are "
        "indicative only. No GPU was available in this session: no GPU numbers are claimed.",
        "",
    ]
    speed_cells = itemgetter("config", "size", "threads", "steps", "seconds", "s_per_iter")

    def costs(r: dict) -> tuple[str, str]:
        return f"{r['content_cost']:.3g}", f"{r['style_cost']:.3g}"

    if "speed" in data:
        lines += [
            "## Speed: seconds for N Adam iterations (chelsea x starry_night)",
            "",
            *md_table(
                "config | size | threads | steps | seconds | s/iter | speedup vs naive",
                [(*speed_cells(r), f"{r['speedup_vs_naive']}x") for r in data["speed"]],
            ),
            "",
        ]
    if "compare" in data:
        c = data["compare"]
        lines += [
            f"## Settings compared ({c['size']} px, {c['steps']} steps)",
            "",
            *md_table(
                "setting | seconds | content cost | style cost | speckle",
                [(r["setting"], r["seconds"], *costs(r), r["speckle"]) for r in c["rows"]],
            ),
            "",
        ]
    if "gallery" in data:
        g = data["gallery"]
        lines += [
            f"## Gallery runs ({g['size']} px, {g['steps']} steps, tv {g['tv']}, "
            f"scales {g['scales']})",
            "",
            *md_table(
                "content | style | seconds | speckle",
                map(itemgetter("content", "style", "seconds", "speckle"), g["runs"]),
            ),
            "",
        ]
    if "large" in data:
        r = data["large"]
        lines += [
            "## High resolution",
            "",
            f"1024 px, {r['scales']} scales {r['sizes']}: {r['seconds']} s, peak RSS "
            f"{r['peak_rss_gib']} GiB (estimate before starting: {r['estimated_gib']} GiB).",
            "",
        ]
    (RESULTS / "style.md").write_text("\n".join(lines))
