"""Style-transfer evidence: speed against a naive loop, quality grids, the docs gallery.

    python benchmarks/style.py speed      # seconds for 300 iterations at 256 / 512 px
    python benchmarks/style.py grid       # settings comparison -> docs/style/compare_*.jpg
    python benchmarks/style.py gallery    # 3 photos x 3 paintings -> docs/style/gallery_*.jpg
    python benchmarks/style.py large      # 1024 px coarse-to-fine run: time and peak memory
    python benchmarks/style.py all

Everything runs under flock /tmp/convlens-bench.lock (the CPU is shared with other
benchmarks). Results merge into benchmarks/results/style.json; style.md is rewritten from it.

The parts: style_speed.py (speed against the naive loop), style_quality.py (grid, gallery,
compose, large), style_report.py (style.json and style.md), style_common.py (the lock, the
inputs, the picture helpers).
"""

from __future__ import annotations

import argparse
import sys

from style_common import ROOT, bench_lock
from style_quality import compare, compose_gallery, gallery, large
from style_speed import speed


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    p = argparse.ArgumentParser()
    p.add_argument(
        "what", nargs="+", choices=["speed", "grid", "gallery", "large", "compose", "all"]
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--tv", type=float, default=300.0)
    p.add_argument("--scales", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--grid-size", type=int, default=256)
    p.add_argument("--large-steps", type=int, default=200)
    args = p.parse_args()
    sections = {"speed": speed, "grid": compare, "gallery": gallery, "large": large,
                "compose": compose_gallery}  # fmt: skip
    # one lock for everything asked: no re-queueing behind other benchmarks between sections
    with bench_lock():
        for what in ["speed", "grid", "gallery", "large"] if "all" in args.what else args.what:
            sections[what](args)


if __name__ == "__main__":
    main()
