"""Liveness error rates (ISO/IEC 30107-3 style) on live clips and generated attacks.

    nice python benchmarks/liveness.py [--per-kind 12] [--dump]

APCER per attack kind = attacks whose main track ends `live` / attacks; BPCER = live clips
whose main track does not end `live` (spoof or undecided: the door stays shut) / live clips.
Passive mode uses the stream alone; active mode also asks for a blink (clips with a blink
noted in ../shared/data/liveness/README.md) and counts the challenge as passed only when one
is seen. Clips are split: the "dev" half set the thresholds in decide.py, the "test" half is
reported. Writes benchmarks/results/liveness.{json,md}.

The tracker's output per clip (landmarks of every track, grey frames) is cached under
--work/tracks; the liveness monitor is replayed on it exactly as Watcher feeds it, so a
change to the cues or the rule re-runs in about a minute. Delete that folder after changing
the tracker or the clips.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

from attack_clips import KINDS, make_attack  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"
LIVE = DATA / "liveness" / "live_video"
# Live clips: (file, split, shows a blink); liveportrait_d9 is cut into six 3.2 s segments.
GRID = [
    ("grid_bbaf2n.mpg", "dev", True),
    ("grid_brbk7n.mpg", "dev", True),
    ("grid_lbax4n.mpg", "dev", False),
    ("grid_lbbc2a.mpg", "test", False),
    ("grid_sbwe5n.mpg", "test", True),
    ("grid_swiz3n.mpg", "test", False),
]
D9_BLINKS = (305, 382, 560)  # frames with a blink or wink (README)


def _frames(path, limit=None):
    from convlens.video import read_frames

    return [f.rgb for f in read_frames(path, max_frames=limit)]


def live_clips(work: Path) -> list[dict]:
    from convlens.video import VideoWriter

    clips = [{"path": LIVE / f, "split": s, "blink": b, "kind": "live"} for f, s, b in GRID]
    gif = LIVE / "intel_head-pose-face-detection-female.gif"
    clips.append({"path": gif, "split": "test", "blink": False, "kind": "live"})
    d9 = _frames(LIVE / "liveportrait_d9.mp4")
    seg = 96  # 3.2 s at 30 fps
    for i in range(len(d9) // seg):
        path = work / f"live_d9_{i}.mp4"
        if not path.exists():
            with VideoWriter(path, fps=30) as out:
                for f in d9[i * seg : (i + 1) * seg]:
                    out.write(f)
        blink = any(i * seg <= b < (i + 1) * seg for b in D9_BLINKS)
        clips.append(
            {"path": path, "split": "dev" if i % 2 == 0 else "test", "blink": blink, "kind": "live"}
        )
    return clips


def _lfw_people(split: str, n: int) -> list[Path]:
    lfw = DATA / "faces" / "lfw"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    half = people[: len(people) // 2] if split == "dev" else people[len(people) // 2 :]
    step = max(len(half) // n, 1)
    return [sorted(p.glob("*.jpg"))[0] for p in half[::step][:n]]


def attack_clips(work: Path, per_kind: int, room_blur: float = 3.0) -> list[dict]:
    from PIL import Image

    def rgb(path):
        return np.asarray(Image.open(path).convert("RGB"))

    grid = {s: [f for f, sp, _ in GRID if sp == s] for s in ("dev", "test")}
    out = []
    for split in ("dev", "test"):
        stills = _lfw_people(split, per_kind)
        textures = _lfw_people(split, per_kind + 7)[7:]
        for i in range(per_kind):
            seed = (0 if split == "dev" else 10_000) + i
            src = grid[split][i % len(grid[split])]
            live = _frames(LIVE / src)
            for kind in KINDS:
                path = work / f"{split}_{kind}_{i:02d}.mpg"
                source = rgb(stills[i]) if kind in ("print", "screen") else live
                if not path.exists():
                    fill = 0.95 if kind == "replay" else 0.75
                    make_attack(
                        kind, source, path, seed=seed, texture=rgb(textures[i]), fill=fill,
                        room_blur=room_blur,
                    )  # fmt: skip
                out.append(
                    {
                        "path": path,
                        "split": split,
                        "blink": kind in ("replay", "loop"),
                        "kind": kind,
                    }
                )
    return out


def observe(clip: dict, work: Path) -> dict:
    """Run the tracker over a clip once (no liveness) and keep what the liveness monitor is
    fed: every visible track's landmarks per frame, and the grey frames. Cached in `work`:
    the cues and the rule are then replayed in seconds instead of re-tracking for minutes."""
    from convlens.faces.video import Watcher, WatchOptions
    from convlens.faces.video.stream import _gray

    cache = work / "tracks" / (Path(clip["path"]).name + ".npz")
    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    times, grays, rows = [], [], []  # rows: (frame number, track id, 68x2 landmarks)
    with Watcher(clip["path"], None, WatchOptions(liveness=False)) as w:
        fps = w.fps
        for frame, tracks, _ in w.frames():
            if frame is None:
                break
            for t in tracks:
                rows.append((len(times), t.id, t.landmarks.copy()))
            times.append(frame.time)
            grays.append(_gray(frame.rgb))
    rec = {
        "fps": np.float64(fps),
        "times": np.asarray(times, np.float64),
        "gray": np.stack(grays) if grays else np.zeros((0, 1, 1), np.uint8),
        "frame": np.asarray([r[0] for r in rows], np.int64),
        "track": np.asarray([r[1] for r in rows], np.int64),
        "points": np.asarray([r[2] for r in rows], np.float64).reshape(-1, 68, 2),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **rec)
    return rec


def evaluate(rec: dict, active: bool) -> dict:
    """The main (longest) track's final verdict, replaying what Watcher feeds the monitor:
    observe then verdict on every frame the track is visible."""
    from convlens.faces.liveness import Challenge, LivenessMonitor

    if not len(rec["track"]):
        return {"verdict": "no-face", "reasons": [], "measures": {}}
    ids, counts = np.unique(rec["track"], return_counts=True)
    main = ids[np.argmax(counts)]
    mon = LivenessMonitor(float(rec["fps"]), Challenge(("blink",)) if active else None)
    for i in np.flatnonzero(rec["track"] == main):
        f = rec["frame"][i]
        mon.observe(float(rec["times"][f]), rec["points"][i], rec["gray"][f])
        mon.verdict()
    v = mon.verdict()
    return {"verdict": v.verdict, "reasons": v.reasons, "measures": v.measures}


def rates(rows: list[dict], split: str, mode: str) -> dict:
    out = {}
    for kind in ("live", *KINDS):
        sel = [r for r in rows if r["split"] == split and r["kind"] == kind]
        if mode == "active" and kind == "live":  # only clips where the person does blink
            sel = [r for r in sel if r["blink"]]
        if not sel:
            continue
        if kind == "live":
            bad = sum(r[mode]["verdict"] != "live" for r in sel)
            out["BPCER"] = {"rate": bad / len(sel), "errors": bad, "clips": len(sel)}
        else:
            bad = sum(r[mode]["verdict"] == "live" for r in sel)
            out[f"APCER {kind}"] = {"rate": bad / len(sel), "errors": bad, "clips": len(sel)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-kind", type=int, default=12)
    ap.add_argument("--work", type=Path, default=Path("/tmp/convlens-liveness-clips"))
    ap.add_argument("--dump", action="store_true", help="print every clip's measures")
    ap.add_argument("--room-blur", type=float, default=3.0,
                    help="σ of the room behind the attacks; other than 3 writes "
                    "results/liveness_room{σ}.* (use its own --work)")  # fmt: skip
    ap.add_argument("--report-only", action="store_true", help="recompute rates from the JSON")
    args = ap.parse_args()
    if args.report_only:
        result = json.loads((HERE / "results" / "liveness.json").read_text())
        result["rates"] = {s: {m: rates(result["clips"], s, m) for m in ("passive", "active")}
                           for s in ("dev", "test")}  # fmt: skip
        _write(result)
        return
    import torch

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    clips = live_clips(args.work) + attack_clips(args.work, args.per_kind, args.room_blur)
    rows = []
    for c in clips:
        row = {k: (str(v) if isinstance(v, Path) else v) for k, v in c.items()}
        rec = observe(c, args.work)
        row["passive"] = evaluate(rec, active=False)
        row["active"] = (
            evaluate(rec, active=True)
            if c["blink"] or c["kind"] != "live"
            else {"verdict": "undecided", "reasons": ["no blink in clip"], "measures": {}}
        )
        rows.append(row)
        if args.dump:
            m = row["passive"]["measures"]
            print(
                f"{c['split']:4s} {c['kind']:7s} {Path(c['path']).name:28s} "
                f"{row['passive']['verdict']:9s} {row['active']['verdict']:9s} "
                + " ".join(f"{k}={v:.3f}" for k, v in m.items()),
                flush=True,
            )
    result = {
        "command": "nice python benchmarks/liveness.py " + " ".join(sys.argv[1:]),
        "name": "liveness" if args.room_blur == 3.0 else f"liveness_room{args.room_blur:g}",
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "seconds": time.perf_counter() - t0,
        "rates": {
            s: {m: rates(rows, s, m) for m in ("passive", "active")} for s in ("dev", "test")
        },
        "clips": rows,
    }
    _write(result)


def _write(result: dict) -> None:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = result.get("name", "liveness")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=float))
    (out / f"{name}.md").write_text(_markdown(result))
    _plot(result, out / f"{name}.png")
    print(_markdown(result))


# The cues the rule compares with a threshold: (measure, Thresholds field, log scale)
PLOTTED = (
    ("carried", "carried_fraction", False),
    ("pixel_change", "frozen_pixels", True),
    ("pixel_loop", "loop_pixels", True),
)


def _plot(result: dict, path: Path) -> None:
    """Each clip's measures (passive, final verdict) by kind, dev and test, with the rule's
    thresholds: where the margins are, at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convlens.faces.liveness import THRESHOLDS

    kinds = ("live", *KINDS)
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 4))
    for ax, (measure, field, log) in zip(axes, PLOTTED, strict=True):
        for split, marker, dy in (("dev", "o", -0.12), ("test", "^", 0.12)):
            for row, kind in enumerate(kinds):
                xs = [c["passive"]["measures"].get(measure) for c in result["clips"]
                      if c["split"] == split and c["kind"] == kind]  # fmt: skip
                xs = [x for x in xs if x is not None and x >= 0]
                ax.scatter(xs, [row + dy] * len(xs), marker=marker, s=18, alpha=0.7,
                           color="tab:green" if kind == "live" else "tab:red",
                           label=split if row == 1 else None)  # fmt: skip
        ax.axvline(getattr(THRESHOLDS, field), color="k", lw=1, ls="--")
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xscale("log" if log else "linear")
        ax.set_title(f"{measure} (threshold {getattr(THRESHOLDS, field):g})")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Liveness measures per clip ({result['command']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(result: dict) -> str:
    lines = [
        "# Liveness: APCER per attack kind and BPCER (ISO/IEC 30107-3 style)",
        "",
        f"`{result['command']}`; load average {result['load_average_start']} at start, "
        f"{result['load_average_end']} at end; {result['seconds']:.0f} s.",
        "",
        "| split | mode | measure | rate | errors / clips |",
        "|---|---|---|---|---|",
    ]
    for split, modes in result["rates"].items():
        for mode, table in modes.items():
            for name, r in table.items():
                lines.append(
                    f"| {split} | {mode} | {name} | {r['rate']:.1%} | "
                    f"{r['errors']} / {r['clips']} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
