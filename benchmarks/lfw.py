"""LFW View 2 folds 1-5, the standard protocol: dlib, SFace and a fused score beside
face_recognition 1.3.0 (HOG), from the same cached embeddings (benchmarks/face_embeddings.py).

Per set-up: accuracy mean ± std over the five folds, each fold's threshold being the best
accuracy threshold on the four others; TAR at FAR 1e-2 and 1e-3 over all 3,000 pairs (1,500
impostor pairs: FAR 1e-3 is 1 false accept); photos of the pairs where the detector found no
face (the whole image was encoded instead).
fusion: z-normalised distances summed, z from the training folds' pairs (mean and std of
each encoder's distances), dlib + sface-yunet.

    python benchmarks/face_embeddings.py lfw     # once: encodes the 5,373 photos (slow)
    python benchmarks/lfw.py                     # writes benchmarks/results/lfw.{json,md}
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import face_embeddings as fe  # noqa: E402

from convlens import metrics  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "lfw"
FUSED = ("dlib", "sface-yunet")
FOUND = {"dlib": "hog_found", "sface-hog": "hog_found", "dlib-yunet": "yunet_found",
         "sface-yunet": "yunet_found", "face_recognition": "ref_found"}  # fmt: skip


def read_pairs(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, same, fold) index arrays into `paths` for every pair of pairs.txt."""
    index = {Path(p).name: k for k, p in enumerate(paths)}
    lines = (fe.SHARED / "lfw" / "pairs.txt").read_text().split("\n")
    folds, per = (int(v) for v in lines[0].split())
    rows = [line.split() for line in lines[1:] if line.strip()]
    assert len(rows) == folds * 2 * per, "pairs.txt does not hold folds x 2 x pairs lines"
    i, j, same, fold = [], [], [], []
    for k, r in enumerate(rows):
        a, b = ((r[0], r[1]), (r[0], r[2])) if len(r) == 3 else ((r[0], r[1]), (r[2], r[3]))
        i.append(index[f"{a[0]}_{int(a[1]):04d}.jpg"])
        j.append(index[f"{b[0]}_{int(b[1]):04d}.jpg"])
        same.append(len(r) == 3)
        fold.append(k // (2 * per))
    return np.array(i), np.array(j), np.array(same), np.array(fold)


def pair_distances(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.linalg.norm(emb[i].astype(np.float64) - emb[j], axis=1)


def protocol(d_by_fold, same, fold, fuse_from=None) -> dict:
    """10-fold-style protocol on the folds: accuracy per fold at the training folds' best τ.
    fuse_from: a list of distance arrays to z-normalise (training folds' stats) and sum."""
    accs = []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        if fuse_from is not None:
            stats = [(d[train].mean(), d[train].std()) for d in fuse_from]
            d = sum((x - m) / s for x, (m, s) in zip(fuse_from, stats, strict=True))
        else:
            d = d_by_fold
        _, tau = metrics.best_accuracy(d[train], same[train])
        accs.append(float(np.mean((d[test] <= tau) == same[test])))
    return {"accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracy": accs}  # fmt: skip


def main() -> None:
    a = fe.load("lfw")
    i, j, same, fold = read_pairs(a["paths"])
    results = {}
    dists = {s: pair_distances(a[s], i, j) for s in fe.SET_SETUPS["lfw"]}
    for setup in (*fe.SET_SETUPS["lfw"], "fusion"):
        if setup == "fusion":
            r = protocol(None, same, fold, [dists[s] for s in FUSED])
            z = [(dists[s] - dists[s].mean()) / dists[s].std() for s in FUSED]
            d_all = sum(z)
            r["missed_photos"] = None
        else:
            r = protocol(dists[setup], same, fold)
            d_all = dists[setup]
            used = np.unique(np.r_[i, j])
            r["missed_photos"] = int((~a[FOUND[setup]][used]).sum())
        rep = metrics.verification_report(d_all, same, (1e-2, 1e-3))
        r["tar_at_far"] = {k: v["tar"] for k, v in rep["tar_at_far"].items()}
        r["eer"] = rep["eer"]
        results[setup] = r
    out = {"pairs": int(len(same)), "photos_in_pairs": int(len(np.unique(np.r_[i, j]))),
           "loadavg": os.getloadavg(), "results": results}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(out, indent=1))
    lines = [
        "# LFW View 2 folds 1-5 (standard protocol)",
        "",
        f"{out['pairs']} pairs, {out['photos_in_pairs']} photos; load average "
        f"{out['loadavg'][0]:.1f}. Command: `python benchmarks/lfw.py`.",
        "",
        "| set-up | accuracy (mean ± std) | TAR@FAR1e-2 | TAR@FAR1e-3 | EER | photos missed |",
        "|---|---|---|---|---|---|",
    ]
    for s, r in results.items():
        lines.append(
            f"| {s} | {r['accuracy_mean']:.2%} ± {r['accuracy_std']:.2%} | "
            f"{r['tar_at_far']['0.01']:.2%} | {r['tar_at_far']['0.001']:.2%} | {r['eer']:.2%} | "
            f"{'-' if r['missed_photos'] is None else r['missed_photos']} |"
        )
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
