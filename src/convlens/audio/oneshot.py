"""One-shot evaluation through the gallery: enrol one clip per person, identify the rest.

Works on any embeddings (speakers, faces) with a model_id; every trial enrols into a fresh
convlens gallery (the same SQLite/FAISS code `convlens faces enroll/identify` uses) and asks it.

- closed set: every held-out person enrolled with one random clip; rank-1 = the nearest
  enrolled person is the right one (no threshold).
- open set: one person left out of the gallery each trial; with threshold tau, a known probe
  counts when it is accepted *and* named right (detection-and-identification rate), an unknown
  probe when it is rejected ("unknown").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def _gallery_answers(emb, labels, enrolled: dict[int, int], tau: float, model_id: str):
    from convlens.faces.gallery import Gallery

    probes = np.array([i for i in range(len(labels)) if i not in set(enrolled.values())])
    with tempfile.TemporaryDirectory() as tmp, Gallery(Path(tmp) / "g.db", model_id=model_id) as g:
        for person, row in enrolled.items():
            g.enroll_embeddings(f"p{person}", emb[row : row + 1])
        g.set_threshold(float(tau))
        matches = g.identify_embeddings(emb[probes])
    return probes, matches


def one_shot(
    emb: np.ndarray,
    labels: np.ndarray,
    tau: float,
    model_id: str,
    trials: int = 20,
    seed: int = 0,
) -> dict:
    """Closed-set rank-1 and open-set rates over `trials` random one-shot galleries."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    rank1, dir_known, reject_unknown = [], [], []
    for _ in range(trials):
        enrolled = {int(p): int(rng.choice(np.nonzero(labels == p)[0])) for p in people}
        # distances of unit vectors are at most 2: a threshold of 4 accepts every nearest match
        probes, matches = _gallery_answers(emb, labels, enrolled, 4.0, model_id)
        rank1.append(
            np.mean([m.name == f"p{labels[i]}" for i, m in zip(probes, matches, strict=True)])
        )
        left_out = int(rng.choice(people))
        del enrolled[left_out]
        probes, matches = _gallery_answers(emb, labels, enrolled, tau, model_id)
        for i, m in zip(probes, matches, strict=True):
            if labels[i] == left_out:
                reject_unknown.append(m.name is None)
            else:
                dir_known.append(m.name == f"p{labels[i]}")
    return {
        "trials": trials,
        "people": int(len(people)),
        "rank1": float(np.mean(rank1)),
        "rank1_std": float(np.std(rank1)),
        "open_set_tau": float(tau),
        "open_set_known_identified": float(np.mean(dir_known)),
        "open_set_unknown_rejected": float(np.mean(reject_unknown)),
    }
