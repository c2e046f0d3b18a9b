"""ORL (40 people x 10 photos) accuracy: convlens vs face_recognition, on the same photos.

For each encoder set-up:
  * faces found (photos where the detector found a face; the reference falls back to the whole
    image when HOG finds none, as its users do);
  * one-shot rank-1: the first photo (1.pgm) of each person enrolled, the other nine identified
    by the nearest enrolled embedding; also "rank-1 within τ" (right person and distance ≤ 0.6);
  * TAR at FAR = 1e-3 (and EER) over all 79,800 pairs of the 400 photos.
Then, on the best convlens set-up:
  * several photos per person: min distance vs mean embedding vs mean distance, enrolling the
    first n = 1, 2, 3, 5 photos and scoring every (probe, person) pair of the rest;
  * the learned verifier (abs and chi2 features) trained on s1-s20, tested on s21-s40 (people it
    never saw) against the plain distance: ROC/DET plot and TAR at FAR.
Run under flock /tmp/convlens-bench.lock:
    flock /tmp/convlens-bench.lock .venv/bin/python benchmarks/orl_accuracy.py [ORL_DIR]
Writes benchmarks/results/orl_accuracy.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_ORL = ROOT.parent / "shared" / "data" / "faces" / "orl"
TOLERANCE = 0.6


def orl_photos(folder: Path) -> tuple[list[Path], np.ndarray]:
    people = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
    paths, labels = [], []
    for person in people:
        for photo in sorted(person.glob("*.pgm"), key=lambda p: int(p.stem)):
            paths.append(photo)
            labels.append(person.name)
    return paths, np.asarray(labels)


# -- encoders ------------------------------------------------------------------------------


def reference_embeddings(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """face_recognition: HOG, upsample 2, largest face, whole image when none is found."""
    import face_recognition

    embs, found = [], []
    for path in paths:
        img = face_recognition.load_image_file(str(path))
        locs = face_recognition.face_locations(img, number_of_times_to_upsample=2, model="hog")
        if locs:
            loc = max(locs, key=lambda t: (t[2] - t[0]) * (t[1] - t[3]))
        else:
            h, w = img.shape[:2]
            loc = (0, w, h, 0)
        found.append(bool(locs))
        embs.append(face_recognition.face_encodings(img, known_face_locations=[loc])[0])
    return np.asarray(embs, np.float32), np.asarray(found)


def convlens_embeddings(paths: list[Path], **options) -> tuple[np.ndarray, np.ndarray]:
    """convlens.faces.encode with the given options; largest face; whole image when none."""
    from convlens import faces
    from convlens.models.face_models import load_face_model

    model = load_face_model("dlib-resnet")
    embs, found = [], []
    for path in paths:
        result = faces.encode(path, model=model, whole_image_fallback=True, **options)
        embs.append(np.asarray(result[0].embedding, np.float32))
        found.append(result[0].detector != "whole-image")
    return np.asarray(embs, np.float32), np.asarray(found)


# -- measures ------------------------------------------------------------------------------


def pairwise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    sq = (x * x).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))


def evaluate(embs: np.ndarray, labels: np.ndarray, found: np.ndarray) -> dict:
    from convlens import metrics

    d = pairwise(embs)
    people = sorted(set(labels.tolist()), key=lambda s: int(s[1:]))
    first = np.asarray([np.nonzero(labels == p)[0][0] for p in people])
    probes = np.setdiff1d(np.arange(len(labels)), first)
    dd = d[np.ix_(probes, first)]
    best = dd.argmin(1)
    right = np.asarray(people)[best] == labels[probes]
    within = right & (dd[np.arange(len(probes)), best] <= TOLERANCE)
    pd, same = metrics.all_pairs(embs, labels)
    rep = metrics.verification_report(pd, same, (1e-2, 1e-3, 1e-4))
    return {
        "photos": len(labels),
        "faces_found": int(found.sum()),
        "without_face": int((~found).sum()),
        "rank1": float(right.mean()),
        "rank1_errors": int((~right).sum()),
        "rank1_within_tau": float(within.mean()),
        "tar_at_far_1e-3": rep["tar_at_far"]["0.001"]["tar"],
        "tau_at_far_1e-3": rep["tar_at_far"]["0.001"]["threshold"],
        "tar_at_far_1e-4": rep["tar_at_far"]["0.0001"]["tar"],
        "eer": rep["eer"],
        "eer_threshold": rep["eer_threshold"],
    }


def aggregation_study(embs: np.ndarray, labels: np.ndarray, shots=(1, 2, 3, 5)) -> dict:
    """Enrol the first n photos of each person; score every (probe, person) pair of the rest."""
    from convlens import metrics

    people = sorted(set(labels.tolist()), key=lambda s: int(s[1:]))
    out = {}
    for n in shots:
        gal = {p: np.nonzero(labels == p)[0][:n] for p in people}
        probes = np.asarray(
            [i for p in people for i in np.nonzero(labels == p)[0][n:]], dtype=np.int64
        )
        rules = {}
        for rule in ("min", "mean_embedding", "mean_distance"):
            score = np.empty((len(probes), len(people)))
            for j, p in enumerate(people):
                g = embs[gal[p]]
                if rule == "mean_embedding":
                    score[:, j] = np.linalg.norm(embs[probes] - g.mean(0), axis=1)
                else:
                    dist = np.linalg.norm(embs[probes][:, None, :] - g[None], axis=2)
                    score[:, j] = dist.min(1) if rule == "min" else dist.mean(1)
            truth = np.asarray([people.index(lab) for lab in labels[probes]])
            rank1 = float((score.argmin(1) == truth).mean())
            same = np.zeros_like(score, dtype=bool)
            same[np.arange(len(probes)), truth] = True
            rep = metrics.verification_report(score.ravel(), same.ravel(), (1e-2, 1e-3))
            rules[rule] = {
                "rank1": rank1,
                "eer": rep["eer"],
                "tar_at_far_1e-3": rep["tar_at_far"]["0.001"]["tar"],
                "tar_at_far_1e-2": rep["tar_at_far"]["0.01"]["tar"],
            }
        out[str(n)] = {"probes": len(probes), **rules}
    return out


def verifier_study(embs: np.ndarray, labels: np.ndarray, model_id: str, plot: Path) -> dict:
    """Train on s1-s20, test on s21-s40: verifier (abs, chi2) vs plain distance."""
    from convlens import metrics
    from convlens.faces.calibrate import pair_scores
    from convlens.faces.verifier import train_verifier

    num = np.asarray([int(s[1:]) for s in labels])
    train, test = num <= 20, num > 20
    curves = {}
    d, same = pair_scores(embs[test], labels[test])
    curves["Euclidean distance"] = (d, same)
    out = {"train_people": 20, "test_people": 20}
    for kind in ("abs", "chi2"):
        t = time.perf_counter()
        model = train_verifier(embs[train], labels[train], kind=kind, model_id=model_id)
        train_s = time.perf_counter() - t
        dv, same_v = pair_scores(embs[test], labels[test], scorer=model)
        curves[f"verifier ({kind})"] = (dv, same_v)
        out[f"train_s_{kind}"] = train_s
    for name, (dist, s) in curves.items():
        rep = metrics.verification_report(dist, s, (1e-2, 1e-3))
        out[name] = {
            "eer": rep["eer"],
            "tar_at_far_1e-2": rep["tar_at_far"]["0.01"]["tar"],
            "tar_at_far_1e-3": rep["tar_at_far"]["0.001"]["tar"],
            "genuine_pairs": rep["genuine_pairs"],
            "impostor_pairs": rep["impostor_pairs"],
        }
    metrics.plot_roc(curves, plot)
    return out


def to_markdown(res: dict) -> str:
    lines = [
        "| set-up | faces found | rank-1 (errors) | rank-1 within τ 0.6 | TAR@FAR 1e-3 | "
        "TAR@FAR 1e-4 | EER | encode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["setups"].items():
        lines.append(
            f"| {name} | {r['faces_found']}/{r['photos']} | {r['rank1']:.4f} "
            f"({r['rank1_errors']}) | {r['rank1_within_tau']:.4f} | {r['tar_at_far_1e-3']:.4f} | "
            f"{r['tar_at_far_1e-4']:.4f} | {r['eer']:.4f} | {r['encode_s']:.0f} |"
        )
    for key, title in (
        ("aggregation", f"Several photos per person ({res.get('aggregation_setup')})"),
        ("aggregation_reference", "The same with face_recognition's embeddings"),
    ):
        if key not in res:
            continue
        lines += [
            "",
            f"{title}: rank-1 / TAR@FAR 1e-3 over (probe, person) pairs",
            "",
            "| photos enrolled | probes | min distance | mean embedding | mean distance |",
            "|---|---|---|---|---|",
        ]
        for n, r in res[key].items():
            cells = " | ".join(
                f"{r[k]['rank1']:.4f} / {r[k]['tar_at_far_1e-3']:.4f}"
                for k in ("min", "mean_embedding", "mean_distance")
            )
            lines.append(f"| {n} | {r['probes']} | {cells} |")
    if "verifier" in res:
        v = res["verifier"]
        lines += [
            "",
            f"Verifier trained on s1-s20, tested on s21-s40 ({res['aggregation_setup']}):",
            "",
            "| scorer | EER | TAR@FAR 1e-2 | TAR@FAR 1e-3 |",
            "|---|---|---|---|",
        ]
        for name in ("Euclidean distance", "verifier (abs)", "verifier (chi2)"):
            r = v[name]
            lines.append(
                f"| {name} | {r['eer']:.4f} | {r['tar_at_far_1e-2']:.4f} | "
                f"{r['tar_at_far_1e-3']:.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orl", nargs="?", type=Path, default=DEFAULT_ORL)
    parser.add_argument("--out", type=Path, default=RESULTS / "orl_accuracy")
    parser.add_argument(
        "--setups",
        default="default,auto,auto+flip",
        help="convlens set-ups: default (HOG upsample 2), auto (detector fallback), +flip",
    )
    parser.add_argument("--reference-only", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    paths, labels = orl_photos(args.orl)
    res: dict = {"orl": str(args.orl), "setups": {}, "loadavg_1min": os.getloadavg()[0]}
    embeddings = {}
    t = time.perf_counter()
    embs, found = reference_embeddings(paths)
    res["setups"]["face_recognition (HOG, upsample 2)"] = {
        **evaluate(embs, labels, found),
        "encode_s": time.perf_counter() - t,
    }
    embeddings["face_recognition"] = embs
    model_id = "face_recognition"
    if not args.reference_only:
        from convlens.models.face_models import load_face_model

        model_id = load_face_model("dlib-resnet").model_id
        options = {
            "default": {"upsample": 2},
            "auto": {"detector": "auto", "upsample": 2},
            "auto+flip": {"detector": "auto", "upsample": 2, "flip": True},
        }
        for name in args.setups.split(","):
            t = time.perf_counter()
            embs, found = convlens_embeddings(paths, **options[name])
            res["setups"][f"convlens {name} {options[name]}"] = {
                **evaluate(embs, labels, found),
                "encode_s": time.perf_counter() - t,
            }
            embeddings[name] = embs
            print(name, res["setups"][f"convlens {name} {options[name]}"], flush=True)
    best = list(embeddings)[-1]
    res["aggregation_setup"] = best
    res["aggregation"] = aggregation_study(embeddings[best], labels)
    # The best set-up saturates ORL; the reference's embeddings show the rules apart.
    res["aggregation_reference"] = aggregation_study(embeddings["face_recognition"], labels)
    res["verifier"] = verifier_study(
        embeddings[best], labels, model_id, args.out.with_suffix(".png")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    table = to_markdown(res)
    md = args.out.with_suffix(".md")
    notes = md.read_text().split("<!-- table -->")[0] if md.exists() else ""
    md.write_text(notes + "<!-- table -->\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
