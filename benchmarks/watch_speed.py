"""Frames per second of `faces watch` (decode, track, encode, identify, liveness) on this CPU.

    nice python benchmarks/watch_speed.py [--frames 150]

Input: the first frames of liveportrait_d9.mp4 (one face) scaled into 640x480 and 1280x720
frames, H.264 like a camera file. Each configuration runs over the same frames with a gallery of
one enrolled person; the first 10 frames (model loading) are not timed. One torch thread.
Writes benchmarks/results/watch_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
CLIP = HERE.parent.parent / "shared" / "data" / "liveness" / "live_video" / "liveportrait_d9.mp4"
CONFIGS = [  # (detector, detect_every, liveness)
    ("hog", 1, True),
    ("hog", 5, True),
    ("hog", 10, True),
    ("hog", 5, False),
    ("auto", 5, True),
]


def _clip(folder: Path, size: tuple[int, int], frames: int) -> Path:
    import cv2

    from convlens.video import VideoWriter, read_frames

    w, h = size
    path = folder / f"d9_{w}x{h}.mp4"
    with VideoWriter(path, fps=30) as out:
        for f in read_frames(CLIP, max_frames=frames):
            s = h / f.rgb.shape[0]  # full height, centred, grey bars at the sides
            img = cv2.resize(f.rgb, (int(f.rgb.shape[1] * s), h))
            canvas = np.full((h, w, 3), 90, np.uint8)
            x0 = (w - img.shape[1]) // 2
            canvas[:, x0 : x0 + img.shape[1]] = img
            out.write(canvas)
    return path


def _run(path: Path, gallery, detector: str, every: int, liveness: bool) -> dict:
    from convlens.faces.video import Watcher, WatchOptions

    opts = WatchOptions(detector=detector, detect_every=every, liveness=liveness)
    n, t0, names = 0, None, set()
    with Watcher(path, gallery, opts) as w:
        for frame, _, events in w.frames():
            names |= {e.name for e in events if e.kind == "identified"}
            if frame is None:
                break
            n += 1
            if n == 10:
                t0 = time.perf_counter()
    secs = time.perf_counter() - t0
    return {"fps": (n - 10) / secs, "frames": n - 10, "names": sorted(map(str, names))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    import torch
    from PIL import Image

    from convlens.faces.gallery import Gallery
    from convlens.video import read_frames

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = next(iter(read_frames(CLIP, max_frames=1))).rgb
        Image.fromarray(first).save(folder / "d9.png")
        with Gallery(folder / "g.db") as g:
            g.enroll("d9", [folder / "d9.png"])
            for size in ((640, 480), (1280, 720)):
                path = _clip(folder, size, args.frames)
                for det, every, live in CONFIGS:
                    r = _run(path, g, det, every, live)
                    rows.append({"size": f"{size[0]}x{size[1]}", "detector": det,
                                 "detect_every": every, "liveness": live, **r})  # fmt: skip
                    print(rows[-1], flush=True)
    result = {
        "command": f"nice python benchmarks/watch_speed.py --frames {args.frames}",
        "cpu": f"{os.cpu_count()} cores, one torch thread",
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "watch_speed.json").write_text(json.dumps(result, indent=1))
    md = ["# faces watch: frames per second", "", f"`{result['command']}`; {result['cpu']}; "
          f"load average {load0} at start, {result['load_average_end']} at end (other jobs "
          "shared the CPU).", "", "| frame | detector | detect every | liveness | fps | named |",
          "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        md.append(f"| {r['size']} | {r['detector']} | {r['detect_every']} | {r['liveness']} | "
                  f"{r['fps']:.1f} | {', '.join(r['names'])} |")  # fmt: skip
    (out / "watch_speed.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
