"""Face speed on the CPU, one run, reference beside: encoder chips/s (SFace vs dlib's ResNet at
batch 1/32/256), pipeline photos/s and missed faces on the shared photos (YuNet + SFace, HOG /
auto + dlib, face_recognition 1.3.0), a warm single `faces.encode(obama.jpg)`, cold start.

Pipelines (largest faces kept; `faces` counts every face found in the 14 shared photos):
  yunet+sface   convlens, detector "yunet", SFace
  yunet+dlib    convlens, detector "yunet", dlib ResNet
  hog+dlib      convlens, detector "hog" (upsample 1), dlib ResNet
  auto+dlib     convlens, detector "auto" (upsample 1), dlib ResNet
  face_recognition  face_locations (HOG, upsample 1) + face_encodings, one photo at a time
Rounds interleave the pipelines; the best round counts (wall clock, torch 1 thread and 2
detection workers). Cold start: a fresh interpreter importing the library and encoding
obama.jpg (subprocess wall time).

    python benchmarks/faces_speed.py [--rounds 3]   # writes benchmarks/results/faces_speed.*
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data" / "faces"
OUT = ROOT / "benchmarks" / "results" / "faces_speed"
PIPELINES = {"yunet+sface": ("yunet", "sface"), "yunet+dlib": ("yunet", "dlib-resnet"),
             "hog+dlib": ("hog", "dlib-resnet"), "auto+dlib": ("auto", "dlib-resnet")}  # fmt: skip
COLD = {
    "convlens yunet+sface": "import convlens.faces as f; f.encode({p!r}, detector='yunet', "
    "model='sface')",
    "convlens auto+dlib": "import convlens.faces as f; f.encode({p!r})",
    "face_recognition": "import face_recognition as fr; i = fr.load_image_file({p!r}); "
    "fr.face_encodings(i, fr.face_locations(i))",
}


def encoder_speed(rounds: int) -> dict:
    import torch

    from convlens.faces.pipeline import resolve_model

    out = {}
    for name, size in (("sface", 112), ("dlib-resnet", 150)):
        net = resolve_model(name, "cpu")
        for bs in (1, 32, 256):
            x = torch.rand(bs, 3, size, size) * 255
            best = np.inf
            with torch.inference_mode():
                net(x[:1])
                for _ in range(rounds):
                    t = time.perf_counter()
                    net(x)
                    best = min(best, time.perf_counter() - t)
            out[f"{name} batch {bs}"] = bs / best
    return out


def pipelines(rounds: int) -> dict:
    import face_recognition

    import convlens.faces as faces
    from convlens.images import list_images

    photos = list_images(SHARED / "photos")

    def ours(detector, model):
        n = 0
        for _, r in faces.encode_many(photos, detector=detector, model=model, progress=False,
                                      workers=2):  # fmt: skip
            n += len(r) if isinstance(r, list) else 0
        return n

    def ref():
        n = 0
        for p in photos:
            img = face_recognition.load_image_file(str(p))
            n += len(face_recognition.face_encodings(img, face_recognition.face_locations(img)))
        return n

    runs = {k: (lambda d=d, m=m: ours(d, m)) for k, (d, m) in PIPELINES.items()}
    runs["face_recognition"] = ref
    best, found = {k: np.inf for k in runs}, {}
    for fn in runs.values():  # warm up: models loaded, caches built
        fn()
    for _ in range(rounds):
        for k, fn in runs.items():
            t = time.perf_counter()
            found[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return {k: {"photos_per_s": len(photos) / best[k], "faces": found[k]} for k in runs}


def warm_single() -> dict:
    import convlens.faces as faces

    photo = SHARED / "photos" / "obama.jpg"
    out = {}
    for det, up, model in (("hog", 0, None), ("hog", 1, None), ("yunet", 1, "sface")):
        faces.encode(photo, detector=det, upsample=up, model=model)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            faces.encode(photo, detector=det, upsample=up, model=model)
            times.append(time.perf_counter() - t)
        out[f"{det} upsample {up} {model or 'dlib-resnet'}"] = min(times)
    return out


def cold() -> dict:
    photo = str(SHARED / "photos" / "obama.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = {}
    for k, code in COLD.items():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-W", "ignore", "-c", code.format(p=photo)], env=env,
                       check=True, capture_output=True)  # fmt: skip
        out[k] = time.perf_counter() - t
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = {"loadavg_start": os.getloadavg()}
    r["encoder_chips_per_s"] = encoder_speed(args.rounds)
    r["pipeline"] = pipelines(args.rounds)
    r["warm_single_s"], r["cold_s"] = warm_single(), cold()
    r["loadavg_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(r, indent=1))
    lines = ["# Face speed (CPU, torch 1 thread)", "",
             f"load average {r['loadavg_start'][0]:.1f} -> {r['loadavg_end'][0]:.1f}; "
             "command: `python benchmarks/faces_speed.py`", "",
             "| encoder | chips/s |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.1f} |" for k, v in r["encoder_chips_per_s"].items()]
    lines += ["", "| pipeline (14 shared photos) | photos/s | faces found |", "|---|---|---|"]
    lines += [f"| {k} | {v['photos_per_s']:.2f} | {v['faces']} |" for k, v in r["pipeline"].items()]
    lines += ["", "| warm faces.encode(obama.jpg) | s |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["warm_single_s"].items()]
    lines += ["", "| cold start (new process, obama.jpg) | s |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["cold_s"].items()]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
