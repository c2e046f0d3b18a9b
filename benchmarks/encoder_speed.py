"""Face encoder speed: convlens' DlibFaceResNet vs dlib on the same aligned chips, one run.

    flock /tmp/convlens-bench.lock python benchmarks/encoder_speed.py [--chips 256] [--rounds 3]

Chips: dlib HOG + 5-point landmarks + get_face_chip(150, 0.25) on ORL (upsample 2, the whole
image when nothing is found) and the shared photos. Per round, interleaved: dlib's
compute_face_descriptor(chip) one chip at a time, then ours (torch.inference_mode) at batch
1, 32 and 256 with 2 and 1 torch threads. Best round counts (wall clock); CPU seconds per
chip (process time, all threads) are given too, being steadier on a busy machine.
Also: load time of the encoder (parse of the .dat, then from the cache) and the largest
difference to dlib's embeddings. Writes benchmarks/results/encoder.md and encoder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import convlens  # noqa: F401 - before torch loads: sets OpenMP's passive waiting

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVLENS_SHARED", ROOT.parent / "shared")) / "data" / "faces"
OUT = ROOT / "benchmarks" / "results" / "encoder"  # .md and .json
BATCHES = (1, 32, 256)
THREADS = (2, 1)


def dlib_chips(limit: int) -> np.ndarray:
    import dlib

    from convlens.images import list_images, load_image
    from convlens.models.weights import dlib_model_file

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks")))
    chips = []
    jobs = [(p, 1) for p in list_images(SHARED / "photos")] + [
        (p, 2) for p in list_images(SHARED / "orl")
    ]
    for path, upsample in jobs:
        img = load_image(path)
        rects = list(detector(img, upsample)) or [
            dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        ]
        chips += [dlib.get_face_chip(img, predictor(img, r), 150, 0.25) for r in rects]
        if len(chips) >= limit:
            break
    return np.stack(chips[:limit])


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=256)
    ap.add_argument("--dlib-chips", type=int, default=64, help="chips dlib encodes per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import dlib
    import torch

    from convlens.models import dlib_resnet
    from convlens.models.weights import dlib_model_file

    load_start = os.getloadavg()[0]
    # Load times: a cold cache parses the .dat, a warm one reads the converted weights.
    with tempfile.TemporaryDirectory() as cache:
        os.environ["CONVLENS_CACHE"] = cache
        parse_s, _ = timed(dlib_resnet.load_dlib_face_resnet)
        warm_s = min(timed(dlib_resnet.load_dlib_face_resnet)[0] for _ in range(3))
        del os.environ["CONVLENS_CACHE"]
    model = dlib_resnet.load_dlib_face_resnet()

    chips = dlib_chips(args.chips)
    n_dlib = min(args.dlib_chips, len(chips))
    facerec = dlib.face_recognition_model_v1(str(dlib_model_file(dlib_resnet.MODEL_ID)))
    x_all = torch.from_numpy(chips).permute(0, 3, 1, 2).float()  # channels_last, as a pipeline's

    def ours(bs: int, n: int):
        def run():
            with torch.inference_mode():
                for s in range(0, n, bs):
                    model(x_all[s : s + bs])

        return run

    def ref():
        for c in chips[:n_dlib]:
            facerec.compute_face_descriptor(c)

    configs = [(t, bs) for t in THREADS for bs in BATCHES]
    n_ours = {1: min(64, len(chips)), 32: len(chips), 256: len(chips)}
    best: dict = {}
    with torch.inference_mode():
        model(x_all[:2])  # warm-up
    for r in range(args.rounds):
        w, c = timed(ref)
        best["dlib"] = min(best.get("dlib", (1e9, 1e9)), (w / n_dlib, c / n_dlib))
        for t, bs in configs:
            torch.set_num_threads(t)
            n = n_ours[bs]
            ours(bs, min(n, bs))()  # warm this shape
            w, c = timed(ours(bs, n))
            best[(t, bs)] = min(best.get((t, bs), (1e9, 1e9)), (w / n, c / n))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    torch.set_num_threads(THREADS[0])

    want = np.array([np.asarray(facerec.compute_face_descriptor(c)) for c in chips[:n_dlib]])
    with torch.inference_mode():
        got = model(x_all[:n_dlib]).numpy()
    max_diff = float(np.abs(got - want).max())

    dlib_w, dlib_c = best["dlib"]
    rows = [
        f"| dlib compute_face_descriptor(chip), one at a time | 1 | 1 (dlib) "
        f"| {1 / dlib_w:.1f} | {dlib_c * 1e3:.1f} | 1.0 |"
    ]
    for t, bs in configs:
        w, c = best[(t, bs)]
        rows.append(
            f"| convlens DlibFaceResNet, torch.inference_mode | {bs} | {t} "
            f"| {1 / w:.1f} | {c * 1e3:.1f} | {dlib_w / w:.1f} |"
        )
    cmd = "flock /tmp/convlens-bench.lock .venv/bin/python benchmarks/encoder_speed.py"
    text = f"""# Face encoder speed: convlens DlibFaceResNet vs dlib

Command: `{cmd}`

Best of {args.rounds} interleaved rounds; {len(chips)} chips from the shared ORL and photos
(dlib HOG, 5 landmarks, get_face_chip), dlib encodes {n_dlib} of them per round.

Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()},
torch {torch.__version__}, dlib {dlib.__version__}. Load average {load_start:.1f} at the start,
{os.getloadavg()[0]:.1f} at the end: where other work shares the CPUs, wall-clock rates are
noisy (CPU ms per chip less so), and torch's 2 threads compete with that work, so 1 thread
can come out ahead. CPU only: no GPU in this session.

| encoder | batch | threads | chips/s (wall) | CPU ms / chip | speed-up vs dlib (wall) |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Largest |convlens - dlib| over {n_dlib} chips' 128 components: {max_diff:.1e}
(tests/test_dlib_encoder.py checks <= 1e-4 on every shared face).

Loading the encoder: {parse_s:.2f} s parsing dlib's .dat (first run),
{warm_s:.3f} s from the converted-weights cache (later runs), torch already imported.
"""
    report = {
        "command": cmd,
        "rounds": args.rounds,
        "chips": len(chips),
        "dlib_chips_per_round": n_dlib,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "dlib": dlib.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0],
            "gpu": None,
        },
        "dlib_one_chip_at_a_time": {"chips_per_s": 1 / dlib_w, "cpu_ms_per_chip": dlib_c * 1e3},
        "convlens": [
            {
                "batch": bs,
                "threads": t,
                "chips_per_s": 1 / best[(t, bs)][0],
                "cpu_ms_per_chip": best[(t, bs)][1] * 1e3,
                "speedup_vs_dlib": dlib_w / best[(t, bs)][0],
            }
            for t, bs in configs
        ],
        "max_abs_diff_to_dlib": max_diff,
        "load_seconds": {"parse_dat": parse_s, "from_cache": warm_s},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".md").write_text(text)
    OUT.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
