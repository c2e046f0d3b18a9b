"""Verification metrics on pair distances (lower = more alike): ROC, TAR at FAR, EER, accuracy.

Scores where higher means "same" (a classifier's probability) go in negated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from convlens.errors import ConvlensError


def all_pairs(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared-free Euclidean distance and same-identity flag for every unordered pair."""
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    i, j = np.triu_indices(len(x), k=1)
    return np.sqrt(d2[i, j]), labels[i] == labels[j]


@dataclass
class RocCurve:
    thresholds: np.ndarray  # accept a pair when distance <= threshold
    far: np.ndarray  # impostor pairs accepted / impostor pairs
    tar: np.ndarray  # genuine pairs accepted / genuine pairs


def roc_curve(distances: np.ndarray, same: np.ndarray) -> RocCurve:
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    if n_gen == 0 or n_imp == 0:
        raise ConvlensError(
            f"need genuine and impostor pairs for a ROC (got {n_gen} genuine, {n_imp} impostor)"
        )
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    # One point per distinct distance: everything up to and including it is accepted.
    last = np.r_[np.nonzero(np.diff(d))[0], len(d) - 1]
    tar = np.cumsum(s)[last] / n_gen
    far = np.cumsum(~s)[last] / n_imp
    return RocCurve(np.r_[-np.inf, d[last]], np.r_[0.0, far], np.r_[0.0, tar])


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """Highest TAR whose FAR does not exceed `far`, and the threshold that gives it."""
    curve = roc_curve(distances, same)
    ok = np.nonzero(curve.far <= far)[0]
    k = ok[-1]
    return float(curve.tar[k]), float(curve.thresholds[k])


def equal_error_rate(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """EER (where FAR meets 1-TAR) and its threshold."""
    curve = roc_curve(distances, same)
    frr = 1.0 - curve.tar
    k = int(np.argmin(np.abs(curve.far - frr)))
    return float((curve.far[k] + frr[k]) / 2.0), float(curve.thresholds[k])


def best_accuracy(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Best pair accuracy over thresholds, and the threshold (midpoint between distances)."""
    curve = roc_curve(distances, same)
    same = np.asarray(same, dtype=bool)
    n_gen, n_imp = same.sum(), (~same).sum()
    correct = curve.tar * n_gen + (1.0 - curve.far) * n_imp
    k = int(np.argmax(correct))
    return float(correct[k] / (n_gen + n_imp)), float(curve.thresholds[k])


def verification_report(
    distances: np.ndarray, same: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
) -> dict:
    """EER, best accuracy and TAR at each FAR, with thresholds, as a JSON-ready dict.

    A FAR below 1/impostor-pairs cannot be measured; it is reported with "measurable": false.
    """
    same = np.asarray(same, dtype=bool)
    eer, eer_t = equal_error_rate(distances, same)
    acc, acc_t = best_accuracy(distances, same)
    n_imp = int((~same).sum())
    report = {
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": n_imp,
        "eer": eer,
        "eer_threshold": eer_t,
        "best_accuracy": acc,
        "best_accuracy_threshold": acc_t,
        "tar_at_far": {},
    }
    for far in fars:
        tar, t = tar_at_far(distances, same, far)
        report["tar_at_far"][f"{far:g}"] = {
            "tar": tar,
            "threshold": t,
            "measurable": far * n_imp >= 1.0,
        }
    return report


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike) -> None:
    """ROC (TAR vs FAR, log FAR axis) and DET (FRR vs FAR, log-log) side by side in a PNG.

    Rates of exactly 0 cannot sit on a log axis; they are drawn at half the smallest rate the
    pairs can measure (1 / pair count), the dotted line, so perfectly separated scores still
    give a readable plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(11, 4.5))
    far_floor = frr_floor = 1.0
    for name, (distances, same) in curves.items():
        same = np.asarray(same, dtype=bool)
        c = roc_curve(distances, same)
        eer, _ = equal_error_rate(distances, same)
        far_min, frr_min = 0.5 / (~same).sum(), 0.5 / same.sum()
        far_floor, frr_floor = min(far_floor, far_min), min(frr_floor, frr_min)
        far = np.maximum(c.far, far_min)
        ax_roc.plot(far, c.tar, label=f"{name} (EER {eer:.3%})")
        ax_det.plot(far, np.maximum(1.0 - c.tar, frr_min), label=name)
    ax_roc.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    ax_det.set(xscale="log", yscale="log", xlabel="false accept rate", ylabel="false reject rate")
    ax_det.set_title("DET")
    for ax in (ax_roc, ax_det):
        ax.axvline(far_floor, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    ax_det.axhline(frr_floor, color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- open-set identification (1:K with "nobody") --------------------------------------------


@dataclass
class OpenSetSplit:
    """Indices into one labelled set: the gallery (one photo per enrolled person), mated probes
    (enrolled people's other photos) and non-mated probes (every photo of everyone else)."""

    gallery: np.ndarray
    mated: np.ndarray
    non_mated: np.ndarray


def one_shot_split(labels: np.ndarray, enrolled: int | None = None, seed: int = 0) -> OpenSetSplit:
    """Enrol `enrolled` people (default: half of all people), drawn with `seed` among those
    with at least two photos, each from their first photo; probe everything else."""
    labels = np.asarray(labels)
    people, counts = np.unique(labels, return_counts=True)
    eligible = people[counts >= 2]
    n = len(people) // 2 if enrolled is None else int(enrolled)
    if not 1 <= n <= len(eligible) or n == len(people):
        raise ConvlensError(
            f"cannot enrol {n} people: {len(eligible)} of {len(people)} have two photos or "
            "more, and someone must stay out as a stranger"
        )
    chosen = set(np.random.default_rng(seed).choice(eligible, n, replace=False).tolist())
    is_enrolled = np.array([label in chosen for label in labels])
    _, first = np.unique(labels, return_index=True)
    gallery = np.sort(first[is_enrolled[first]])
    mated = np.setdiff1d(np.nonzero(is_enrolled)[0], gallery)
    return OpenSetSplit(gallery, mated, np.nonzero(~is_enrolled)[0])


def nearest(
    embeddings: np.ndarray, labels: np.ndarray, gallery: np.ndarray, probes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's distance to its nearest gallery embedding, and that embedding's label."""
    x = np.asarray(embeddings, np.float64)
    g, p = x[gallery], x[probes]
    d2 = (p * p).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * p @ g.T
    k = np.argmin(d2, axis=1)
    return np.sqrt(np.maximum(d2[np.arange(len(p)), k], 0.0)), np.asarray(labels)[gallery][k]


def tau_at_fpir(non_mated: np.ndarray, fpir: float) -> float:
    """The largest τ that names at most fpir of the strangers (nearest distances given)."""
    d = np.sort(np.asarray(non_mated, np.float64))
    allowed = int(np.floor(fpir * len(d) + 1e-9))
    if allowed >= len(d):
        return float("inf")
    return float(np.nextafter(d[allowed], -np.inf))  # the (allowed+1)-th stranger is refused


def open_set_report(
    embeddings: np.ndarray,
    labels: np.ndarray,
    split: OpenSetSplit,
    fpirs: tuple[float, ...] = (1e-2, 1e-3),
    taus: dict[str, float] | None = None,
) -> dict:
    """DIR (mated probes named correctly within τ) and FPIR (strangers given a name) at the τ
    of each FPIR, and at each given τ (name -> value), as a JSON-ready dict. An FPIR below
    1/strangers cannot be measured ("measurable": false)."""
    labels = np.asarray(labels)
    d_m, who = nearest(embeddings, labels, split.gallery, split.mated)
    right = who == labels[split.mated]
    d_n, _ = nearest(embeddings, labels, split.gallery, split.non_mated)

    def at(tau: float) -> dict:
        return {
            "threshold": tau,
            "dir": float(np.mean(right & (d_m <= tau))),
            "fpir": float(np.mean(d_n <= tau)),
        }

    report = {
        "enrolled": len(split.gallery),
        "mated_probes": len(split.mated),
        "non_mated_probes": len(split.non_mated),
        "rank1": float(np.mean(right)),
        "at_fpir": {},
        "at_threshold": {name: at(t) for name, t in (taus or {}).items()},
    }
    for f in fpirs:
        report["at_fpir"][f"{f:g}"] = {
            **at(tau_at_fpir(d_n, f)),
            "measurable": f * len(d_n) >= 1.0,
        }
    return report
