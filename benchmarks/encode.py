"""Face encoding speed: convlens vs dlib / face_recognition, side by side in one run.

    python benchmarks/encode.py [--photos DIR] [--orl DIR] [--orl-limit N] [--rounds R]

Measures (CPU; each number is the best of R rounds, ours and the reference interleaved):
  1. encoder only: chips/s at batch 1, 32, 256 -- convlens' PyTorch ResNet vs dlib's
     face_recognition_model_v1.compute_face_descriptor on the same aligned chips;
  2. whole pipeline (load + detect + align + encode), images/s on the shared photos and on
     ORL -- convlens encode_many (and encode, one photo at a time) vs
     face_recognition.face_encodings(face_recognition.load_image_file(p));
  3. the cost of flip / jitter;
  4. cold start of `python -c "import convlens.faces as f; f.encode('obama.jpg')"`.
Writes benchmarks/results/encode.json and encode.md. Holds /tmp/convlens-bench.lock while it
runs so benchmarks do not overlap.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVLENS_SHARED", ROOT.parent / "shared")) / "data" / "faces"
RESULTS = ROOT / "benchmarks" / "results"


def embedding(face) -> np.ndarray:
    """A convlens Face's embedding, or a face_recognition encoding as is."""
    return np.asarray(getattr(face, "embedding", face))


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    """Best time of each function, running them in turn each round (fair under noisy load)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--orl", type=Path, default=SHARED / "orl")
    ap.add_argument("--orl-limit", type=int, default=120, help="ORL photos in the pipeline test")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()

    lock = open("/tmp/convlens-bench.lock", "w")  # noqa: SIM115 - held for the whole run
    if not args.no_lock:
        print("waiting for /tmp/convlens-bench.lock ...", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)

    warnings.filterwarnings("ignore")  # face_recognition_models' pkg_resources warning
    # convlens.faces first, as a user would: it sets OMP_WAIT_POLICY before torch loads.
    faces = importlib.import_module("convlens.faces")
    import dlib
    import face_recognition
    import torch

    from convlens.images import list_images
    from convlens.models.weights import dlib_model_file

    photos = list_images(args.photos)
    orl_all = list_images(args.orl)
    orl = orl_all[: args.orl_limit]
    obama = args.photos / "obama.jpg"
    R = args.rounds
    report: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "dlib": dlib.__version__,
            "load_average_at_start": os.getloadavg(),
            "gpu": "none in this session: GPU numbers not measured",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "rounds": R,
    }
    print(f"cpu_count {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}; CPU only (no GPU this session)")  # fmt: skip

    # ---- 1. encoder only -------------------------------------------------------------------
    # dlib's encoder against our port of it (the default encoder is SFace since issue 10)
    model = faces.resolve_model("dlib-resnet", "cpu")
    chip_list = []
    for p in orl_all + photos:
        chip_list.extend(faces.face_chips(p, detector="auto", upsample=2, aligner="dlib-5")[1])
        if len(chip_list) >= 256:
            break
    chips = np.stack(chip_list[:256])
    facerec = dlib.face_recognition_model_v1(
        str(dlib_model_file("dlib_face_recognition_resnet_model_v1"))
    )
    dlib_chips = [np.ascontiguousarray(c) for c in chips]
    faces.embed_chips(chips[:8], model)  # warm up
    encoder = {}
    for bs in (1, 32, 256):
        n = {1: 32, 32: 128, 256: 256}[bs]

        def ours(bs=bs, n=n):
            for s in range(0, n, bs):
                faces.embed_chips(chips[s : s + bs], model, batch_size=bs)

        def ref(bs=bs, n=n):
            for s in range(0, n, bs):
                facerec.compute_face_descriptor(dlib_chips[s : s + bs])

        t = interleaved({"convlens": ours, "dlib": ref}, R)
        encoder[bs] = {
            "chips": n,
            "convlens_chips_per_s": n / t["convlens"],
            "dlib_chips_per_s": n / t["dlib"],
            "speedup": t["dlib"] / t["convlens"],
        }
        e = encoder[bs]
        print(f"encoder batch {bs:3d}: convlens {e['convlens_chips_per_s']:7.1f} chips/s, "
              f"dlib {e['dlib_chips_per_s']:7.1f} chips/s, x{e['speedup']:.2f}")  # fmt: skip
    ours_e = faces.embed_chips(chips[:32], model)
    ref_e = np.array([np.array(v) for v in facerec.compute_face_descriptor(dlib_chips[:32])])
    encoder["max_distance_to_dlib"] = float(np.linalg.norm(ours_e - ref_e, axis=1).max())
    report["encoder"] = encoder

    # ---- 2. whole pipeline -------------------------------------------------------------------
    def fr_pipeline(paths):
        out = []
        for p in paths:
            out.append(face_recognition.face_encodings(face_recognition.load_image_file(p)))
        return out

    # Like for like with face_recognition: its detector (HOG) and encoder (dlib's ResNet). The
    # project's defaults (YuNet + SFace) are another pipeline: see benchmarks/faces_speed.py.
    def ours_many(paths, **kw):
        kw = {"detector": "hog", **kw}
        return [r for _, r in faces.encode_many(paths, model=model, progress=False, **kw)]

    def ours_one_by_one(paths):
        return [faces.encode(p, model=model, detector="hog") for p in paths]

    pipeline = {}
    for name, paths in (("photos", photos), ("orl", orl)):
        results: dict = {}
        methods = {
            "face_recognition": fr_pipeline,
            "convlens encode_many": ours_many,
            "convlens encode (one by one)": ours_one_by_one,
        }
        if name == "photos":
            methods["convlens encode_many min_face=0.1"] = lambda p: ours_many(p, min_face=0.1)
        fns = {
            k: (lambda k=k, f=f, paths=paths, results=results: results.__setitem__(k, f(paths)))
            for k, f in methods.items()
        }
        t = interleaved(fns, R)
        ref_faces = results["face_recognition"]
        row = {"images": len(paths)}
        for k, secs in t.items():
            found = results[k]
            n_faces = sum(len(r) for r in found)
            # Same faces as face_recognition? Largest-face embedding distance per photo.
            dists = [
                float(min(np.linalg.norm(embedding(r[0]) - e) for e in fr))
                for r, fr in zip(found, ref_faces, strict=True)
                if r and fr
            ]
            row[k] = {
                "seconds": secs,
                "images_per_s": len(paths) / secs,
                "faces": n_faces,
                "speedup_vs_face_recognition": t["face_recognition"] / secs,
                "max_distance_to_face_recognition": max(dists) if dists else None,
            }
            print(f"pipeline {name:6s} {k:34s} {len(paths) / secs:6.2f} img/s "
                  f"({n_faces} faces) x{t['face_recognition'] / secs:.2f}")  # fmt: skip
        pipeline[name] = row
    report["pipeline"] = pipeline

    # ---- 3. flip / jitter ----------------------------------------------------------------------
    c64 = chips[:64]
    fns = {
        "plain": lambda: faces.embed_chips(c64, model),
        "flip": lambda: faces.embed_chips(c64, model, flip=True),
        "jitter=5": lambda: faces.embed_chips(c64, model, jitter=5),
        "dlib num_jitters=5": lambda: facerec.compute_face_descriptor(dlib_chips[:64], 5),
    }
    t = interleaved(fns, R)
    report["flip_jitter"] = {
        k: {"chips_per_s": 64 / v, "cost_vs_plain": v / t["plain"]} for k, v in t.items()
    }
    for k, v in report["flip_jitter"].items():
        print(f"{k:20s} {v['chips_per_s']:7.1f} chips/s (x{v['cost_vs_plain']:.1f} the time)")

    # ---- 4. cold start -------------------------------------------------------------------------
    py = sys.executable
    cmds = {
        "convlens": f"import convlens.faces as f; f.encode({str(obama)!r})",
        "face_recognition": "import warnings; warnings.filterwarnings('ignore'); "
        f"import face_recognition as fr; fr.face_encodings(fr.load_image_file({str(obama)!r}))",
    }
    cold: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(3):
        for k, code in cmds.items():
            t0 = time.perf_counter()
            subprocess.run([py, "-c", code], check=True, capture_output=True)
            cold[k].append(time.perf_counter() - t0)
    report["cold_start_s"] = {
        k: {"median": statistics.median(v), "runs": v} for k, v in cold.items()
    }
    for k, v in cold.items():
        print(f"cold start {k:18s} median {statistics.median(v):.2f} s  runs {v}")
    report["load_average_at_end"] = os.getloadavg()

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "encode.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "encode.md").write_text(markdown(report))
    print(f"wrote {RESULTS / 'encode.json'} and encode.md")
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    out = [
        "# Face encoding speed (benchmarks/encode.py)",
        "",
        f"CPU only: {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"dlib {m['dlib']}, {m['platform']}. Load average at start "
        f"{m['load_average_at_start'][0]:.1f}, at end {r['load_average_at_end'][0]:.1f} (other "
        "work shared the machine: absolute numbers are noisy, ratios come from interleaved "
        f"runs, best of {r['rounds']}). **No GPU in this session: GPU numbers not measured.**",
        "",
        "## Encoder only (same aligned 150x150 chips)",
        "",
        "| batch | convlens chips/s | dlib compute_face_descriptor chips/s | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for bs in ("1", "32", "256"):
        e = r["encoder"][bs] if bs in r["encoder"] else r["encoder"][int(bs)]
        out.append(
            f"| {bs} | {e['convlens_chips_per_s']:.1f} | {e['dlib_chips_per_s']:.1f} "
            f"| x{e['speedup']:.2f} |"
        )
    out += [
        "",
        f"Largest embedding distance to dlib's on those chips: "
        f"{r['encoder']['max_distance_to_dlib']:.2e}.",
        "",
        "## Whole pipeline (load + detect + align + encode)",
        "",
        "Reference: `face_recognition.face_encodings(face_recognition.load_image_file(p))` "
        "(HOG, upsample 1, 5-point landmarks). convlens with the same settings; "
        "`min_face=0.1` detects at the lowest resolution that still finds faces a tenth of "
        "the shorter side.",
        "",
        "| data | method | images/s | faces | speed-up | max dist to face_recognition |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for data, row in r["pipeline"].items():
        for k, v in row.items():
            if k == "images":
                continue
            d = v["max_distance_to_face_recognition"]
            out.append(
                f"| {data} ({row['images']} images) | {k} | {v['images_per_s']:.2f} | "
                f"{v['faces']} | x{v['speedup_vs_face_recognition']:.2f} | "
                f"{'-' if d is None else f'{d:.2e}'} |"
            )
    out += [
        "",
        "## Flip / jitter (64 chips)",
        "",
        "| option | chips/s | time vs plain |",
        "|---|---:|---:|",
    ]
    for k, v in r["flip_jitter"].items():
        out.append(f"| {k} | {v['chips_per_s']:.1f} | x{v['cost_vs_plain']:.1f} |")
    out += [
        "",
        "## Cold start (`python -c \"import convlens.faces as f; f.encode('obama.jpg')\"`)",
        "",
        "| | median s | runs |",
        "|---|---:|---|",
    ]
    for k, v in r["cold_start_s"].items():
        runs = ", ".join(f"{x:.2f}" for x in v["runs"])
        out.append(f"| {k} | {v['median']:.2f} | {runs} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
