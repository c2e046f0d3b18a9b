"""Live people seen by a shaking camera: how often does the passive liveness rule reject them?

    nice python benchmarks/liveness_shake.py [--degrees 1.0] [--pixels 4]

The carried cue (faces/liveness/context.py) assumes a fixed camera: a photo or screen moves
its surroundings with the face, a live head moves in front of a still room. A hand-held phone
or a shaking mount moves the room too. Every live clip of benchmarks/liveness.py (both halves)
is re-filmed by a camera that sways by up to ±DEGREES of roll and ±PIXELS of shift at 0.3-0.8 Hz
with a little tremor (zoomed 8% so no border shows), encoded like the original, tracked, and
judged as liveness.py judges it. Writes benchmarks/results/liveness_shake.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

import liveness  # noqa: E402
from bench_report import md_table, run_meta, write_results  # noqa: E402


def shaken(frames: list[np.ndarray], fps: float, out: Path, degrees: float, pixels: float, seed):
    """Write `frames` as seen by a camera swaying by ±degrees (roll) and ±pixels (shift)."""
    import cv2

    from convlens.video import VideoWriter

    rng = np.random.default_rng(seed)
    freq, phase = rng.uniform(0.3, 0.8, 3), rng.uniform(0, 2 * np.pi, 3)
    with VideoWriter(out, fps=fps) as writer:
        for k, frame in enumerate(frames):
            t = k / fps
            h, w = frame.shape[:2]
            sway = np.sin(2 * np.pi * freq * t + phase)
            angle = degrees * sway[0] + 0.1 * rng.standard_normal()
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.08)
            m[:, 2] += pixels * sway[1:]
            writer.write(cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--degrees", type=float, default=1.0)
    ap.add_argument("--pixels", type=float, default=4.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/convlens-liveness-shake"))
    args = ap.parse_args()
    import torch

    from convlens.video import FrameReader

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    rows = []
    for i, clip in enumerate(liveness.live_clips(args.work)):
        src = Path(clip["path"])
        with FrameReader(src) as reader:
            fps = reader.fps
        tag = f"shake{args.degrees:g}-{args.pixels:g}_{src.stem}"
        out = args.work / (tag + (".mpg" if fps == 25 else ".mp4"))  # MPEG-1 takes 25, not 12.5
        if not out.exists():
            shaken(liveness._frames(src), fps, out, args.degrees, args.pixels, seed=100 + i)
        v = liveness.evaluate(liveness.observe({"path": out}, args.work), active=False)
        rows.append({"clip": src.name, "split": clip["split"], **v})
        print(f"{src.name:44s} {v['verdict']:9s} {','.join(v['reasons'])}", flush=True)
    rejected = sum(r["verdict"] != "live" for r in rows)
    meta = run_meta(load0)
    lines = [
        f"# Liveness under a shaking camera (±{args.degrees:g}°, ±{args.pixels:g} px)",
        "",
        f"BPCER {rejected}/{len(rows)} (live clips not judged live); `{meta['command']}`; load "
        f"average {meta['loadavg_before']} before, {meta['loadavg_after']} after.",
        "",
        *md_table("clip | split | verdict | reasons", [
            (r["clip"], r["split"], r["verdict"], ", ".join(r["reasons"])) for r in rows
        ]),
    ]  # fmt: skip
    write_results("liveness_shake", meta, rows, lines)


if __name__ == "__main__":
    main()
