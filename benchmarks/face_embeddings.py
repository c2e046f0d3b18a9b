"""Embeddings of every photo of a face set, once per set-up, cached: the input of lfw.py and
open_set.py (protocol variants then cost nothing).

Set-ups (the largest face of each photo; when the detector finds none, the whole image is the
face, as face_recognition's users do, and `found` records the miss):
  dlib          HOG "auto" (HOG, more upsampling, then dlib's CNN), dlib 5 points, dlib ResNet
                (convlens' pipeline before issue 10)
  dlib-yunet    YuNet box, dlib 5 points, dlib ResNet
  sface-hog     HOG "auto", dlib 68 points mapped to ArcFace's five, SFace
  sface-yunet   YuNet, its five points, SFace
  face_recognition  the reference library 1.3.0, HOG at `ref_upsample`, its own pipeline

Detection and alignment run once per photo for all set-ups (2 threads; dlib releases the GIL),
encoders in batches of 64 on the CPU. Cache: benchmarks/results/cache/<set>.npz (git-ignored).
LFW (5,373 photos) runs the three set-ups the conclusions need (dlib, sface-yunet, reference):
on the shared 2-core machine the five cost ~0.27 CPU s a photo.

    python benchmarks/face_embeddings.py lfw|orl [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data" / "faces"
CACHE = ROOT / "benchmarks" / "results" / "cache"
SETUPS = ("dlib", "dlib-yunet", "sface-hog", "sface-yunet", "face_recognition")
SET_SETUPS = {"orl": SETUPS, "lfw": ("dlib", "sface-yunet", "face_recognition")}
# face_recognition's upsampling per set: ORL's faces are ~60 px, LFW's ~110 px.
REF_UPSAMPLE = {"orl": 2, "lfw": 1}


def photos(name: str) -> tuple[list[Path], np.ndarray]:
    """Every photo of the set, sorted by person then file name, and its person."""
    folder = SHARED / name
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if name == "orl":
        people = sorted(people, key=lambda p: int(p.name[1:]))
    paths, labels = [], []
    for person in people:
        files = sorted(person.glob("*.*"), key=lambda p: (len(p.stem), p.stem))
        paths += files
        labels += [person.name] * len(files)
    return paths, np.asarray(labels)


def _largest(dets: list, shape) -> tuple[list, bool]:
    from convlens.faces import detect

    if dets:
        return [max(dets, key=lambda d: d.area)], True
    return [detect.whole_image(shape)], False


def _reference(img: np.ndarray, upsample: int) -> tuple[np.ndarray, bool]:
    import face_recognition

    locs = face_recognition.face_locations(img, number_of_times_to_upsample=upsample)
    found = bool(locs)
    if not found:
        locs = [(0, img.shape[1], img.shape[0], 0)]
    loc = max(locs, key=lambda t: (t[2] - t[0]) * (t[1] - t[3]))
    return face_recognition.face_encodings(img, [loc])[0].astype(np.float32), found


def prepare(path: Path, ref_upsample: int, setups=SETUPS) -> dict:
    """Chips of each set-up and the reference embedding for one photo."""
    from convlens.faces import align, align_arcface, detect
    from convlens.faces.pipeline import _five_points
    from convlens.images import load_image

    img = load_image(path)
    out: dict = {}
    if {"dlib", "sface-hog"} & set(setups):
        hog, out["hog_found"] = _largest(detect.detect(img, "auto", 1), img.shape)
    if {"dlib-yunet", "sface-yunet"} & set(setups):
        yun, out["yunet_found"] = _largest(detect.detect(img, "yunet", 1), img.shape)
    if "dlib" in setups:
        out["dlib"] = align.align_image(img, detect.landmarks(img, hog, 5))[0]
    if "dlib-yunet" in setups:
        out["dlib-yunet"] = align.align_image(img, detect.landmarks(img, yun, 5))[0]
    if "sface-hog" in setups:
        out["sface-hog"] = align_arcface.align_image(img, _five_points(img, hog))[0]
    if "sface-yunet" in setups:
        out["sface-yunet"] = align_arcface.align_image(img, _five_points(img, yun))[0]
    if "face_recognition" in setups:
        out["face_recognition"], out["ref_found"] = _reference(img, ref_upsample)
    return out


def build(name: str) -> dict:
    import torch

    from convlens.faces.pipeline import embed_chips, resolve_model

    torch.set_num_threads(1)
    paths, labels = photos(name)
    setups = SET_SETUPS[name]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        done = []
        work = pool.map(lambda p: prepare(p, REF_UPSAMPLE[name], setups), paths)
        for i, r in enumerate(work):
            done.append(r)
            if i % 250 == 0:
                print(
                    f"{name}: {i}/{len(paths)} photos, {time.perf_counter() - t0:.0f} s", flush=True
                )
    t_detect = time.perf_counter() - t0
    models = {"dlib": "dlib-resnet", "dlib-yunet": "dlib-resnet", "sface-hog": "sface",
              "sface-yunet": "sface"}  # fmt: skip
    arrays = {"paths": np.asarray([str(p) for p in paths]), "labels": labels}
    for setup, model in models.items():
        if setup in setups:
            chips = np.stack([d[setup] for d in done])
            arrays[setup] = embed_chips(chips, resolve_model(model, "cpu"), batch_size=64)
    arrays["face_recognition"] = np.stack([d["face_recognition"] for d in done])
    for key in ("hog_found", "yunet_found", "ref_found"):
        arrays[key] = np.asarray([d[key] for d in done])
    arrays["seconds"] = np.asarray([t_detect, time.perf_counter() - t0])
    return arrays


def load(name: str, force: bool = False) -> dict:
    """The cached embeddings of set `name` ("lfw" or "orl"), built on first use."""
    path = CACHE / f"{name}.npz"
    if path.exists() and not force:
        with np.load(path) as f:
            return dict(f)
    arrays = build(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", choices=["lfw", "orl"])
    p.add_argument("--force", action="store_true")
    args = p.parse_args()
    a = load(args.set, args.force)
    n = len(a["labels"])
    print(f"{args.set}: {n} photos; found by HOG-auto {a['hog_found'].sum()}, YuNet "
          f"{a['yunet_found'].sum()}, face_recognition {a['ref_found'].sum()}; "
          f"{a['seconds'][1]:.0f} s, load {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
