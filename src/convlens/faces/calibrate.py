"""Thresholds from data: encode a labelled folder, score every pair, read τ off the ROC; and
open-set figures with a one-shot protocol.

A labelled folder has one subfolder per person (images anywhere below it). Every genuine pair
is used; impostor pairs are all used up to `max_impostors`, sampled uniformly beyond.

Open set (metrics.one_shot_split): half the people (those with two photos or more, drawn with
a fixed seed) are enrolled from their first photo; their other photos are mated probes, every
photo of the other half a stranger. DIR is the share of mated probes named correctly within
τ, FPIR the share of strangers given a name; τ for an FPIR is read off the strangers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlens import metrics
from convlens.errors import ConvlensError
from convlens.faces.detect import DEFAULT_DETECTOR
from convlens.images import list_people

FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (1e-2, 1e-3)
MAX_IMPOSTORS = 5_000_000


@dataclass
class LabelledEmbeddings:
    embeddings: np.ndarray  # (n, D) float32, the largest face of each photo
    labels: np.ndarray  # (n,) person names
    paths: list[Path]
    model_id: str
    failed: list[tuple[Path, str]] = field(default_factory=list)  # photos without a usable face


def labelled_photos(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    people = list_people(folder)
    if len(people) < 2:
        raise ConvlensError(
            f"{folder}: needs one subfolder of photos per person, at least two people "
            f"(found {len(people)})"
        )
    return [(path, name) for name, photos in people for path in photos]


def encode_labelled(
    folder: str | os.PathLike,
    model=None,
    progress: bool = True,
    batch_size: int = 64,
    device=None,
    **encode_options,
) -> LabelledEmbeddings:
    """The largest face's embedding of every photo in a labelled folder (progress bar).

    model: None (dlib's ResNet), a registry name, a file or a module; device: where it runs.
    """
    from convlens import faces

    items = labelled_photos(folder)
    label_of = {str(p): name for p, name in items}
    model = faces.resolve_model(model, device)
    embs, labels, paths, failed = [], [], [], []
    encode_options = {"detector": DEFAULT_DETECTOR, **encode_options}  # as the gallery encodes
    stream = faces.encode_many(
        [p for p, _ in items],
        batch_size=batch_size,
        model=model,
        progress=progress,
        **encode_options,
    )
    for path, result in stream:
        if isinstance(result, Exception):
            failed.append((Path(path), str(result)))
        elif not result:
            failed.append((Path(path), "no face found"))
        else:
            embs.append(np.asarray(result[0].embedding, np.float32))
            labels.append(label_of[str(path)])
            paths.append(Path(path))
    if not embs:
        raise ConvlensError(f"{folder}: no face found in any photo")
    return LabelledEmbeddings(
        np.stack(embs), np.asarray(labels), paths, getattr(model, "model_id", ""), failed
    )


def pair_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    max_impostors: int = MAX_IMPOSTORS,
    seed: int = 0,
    scorer=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, same) for all genuine pairs and all or a sample of impostor pairs.

    score is the Euclidean distance, or scorer.distance(a, b) (1 − p) for a verifier.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(x)
    i, j = np.triu_indices(n, k=1)
    same = labels[i] == labels[j]
    imp = np.nonzero(~same)[0]
    if len(imp) > max_impostors:
        keep = np.random.default_rng(seed).choice(imp, max_impostors, replace=False)
        sel = np.sort(np.r_[np.nonzero(same)[0], keep])
        i, j, same = i[sel], j[sel], same[sel]
    if scorer is None:
        d = np.empty(len(i), np.float64)
        for s in range(0, len(i), 1_000_000):
            a, b = x[i[s : s + 1_000_000]], x[j[s : s + 1_000_000]]
            d[s : s + 1_000_000] = np.sqrt(((a.astype(np.float64) - b) ** 2).sum(1))
    else:
        d = np.concatenate(
            [
                scorer.distance(x[i[s : s + 500_000]], x[j[s : s + 500_000]])
                for s in range(0, len(i), 500_000)
            ]
        ).astype(np.float64)
    return d, same


def calibration_report(distances: np.ndarray, same: np.ndarray, fars=FARS) -> dict:
    return metrics.verification_report(distances, same, tuple(fars))


def open_set(data: LabelledEmbeddings, fpirs=FPIRS, seed: int = 0) -> dict:
    """One-shot open-set report (DIR and τ at each FPIR) of a labelled folder's embeddings."""
    split = metrics.one_shot_split(data.labels, seed=seed)
    return metrics.open_set_report(data.embeddings, data.labels, split, tuple(fpirs))


def choose_open_set_threshold(report: dict, fpir: float) -> float:
    """τ for a target FPIR, refusing one the strangers cannot measure."""
    entry = report["at_fpir"][f"{fpir:g}"]
    if not entry["measurable"]:
        raise ConvlensError(
            f"FPIR {fpir:g} needs at least {int(np.ceil(1 / fpir))} stranger photos; this "
            f"folder gives {report['non_mated_probes']}: add people or choose a larger FPIR"
        )
    return float(entry["threshold"])


def choose_threshold(report: dict, far: float) -> float:
    """τ for a target FAR, refusing one the data cannot measure (too few impostor pairs)."""
    key = f"{far:g}"
    entry = report["tar_at_far"].get(key)
    if entry is None:
        raise ConvlensError(
            f"FAR {far:g} was not computed (choose from {list(report['tar_at_far'])})"
        )
    if not entry["measurable"]:
        raise ConvlensError(
            f"FAR {far:g} needs at least {int(np.ceil(1 / far))} impostor pairs; this folder "
            f"gives {report['impostor_pairs']}: add people or choose a larger FAR"
        )
    tau = float(entry["threshold"])
    if not np.isfinite(tau):
        raise ConvlensError(f"no threshold reaches FAR {far:g} on this data")
    return tau


def format_report(report: dict, n_photos: int, n_people: int, failed: int) -> str:
    lines = [
        f"{n_photos} photos of {n_people} people ({failed} without a usable face, left out)",
        f"{report['genuine_pairs']} genuine pairs, {report['impostor_pairs']} impostor pairs",
        f"EER {report['eer']:.3%} at τ = {report['eer_threshold']:.4f}",
        f"best accuracy {report['best_accuracy']:.3%} at τ = "
        f"{report['best_accuracy_threshold']:.4f}",
    ]
    for far, e in report["tar_at_far"].items():
        note = "" if e["measurable"] else "  (too few impostor pairs to measure)"
        lines.append(f"FAR {far}: TAR {e['tar']:.3%} at τ = {e['threshold']:.4f}{note}")
    o = report.get("open_set")
    if o:
        lines.append(
            f"open set, one-shot: {o['enrolled']} people enrolled from one photo, "
            f"{o['mated_probes']} of their other photos, {o['non_mated_probes']} of strangers; "
            f"rank-1 {o['rank1']:.3%}"
        )
        for f, e in o["at_fpir"].items():
            note = "" if e["measurable"] else "  (too few strangers to measure)"
            lines.append(
                f"FPIR {f}: DIR {e['dir']:.3%} at τ = {e['threshold']:.4f} "
                f"(strangers named {e['fpir']:.3%}){note}"
            )
    return "\n".join(lines)
