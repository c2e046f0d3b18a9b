"""Gallery decisions: the threshold τ and where it came from, the optional verifier, the min
rule, and the answers (Verdict for 1:1, FaceMatch with Candidates for 1:K).

Photos of one person are combined by the *min* rule: a query's distance to a person is the
distance to that person's nearest enrolled embedding (measured against the mean embedding in
benchmarks/orl_accuracy.py; see benchmarks/results/orl_accuracy.md). With a trained verifier
the score is 1 − p(same), the best over the person's embeddings, and τ is 1 − its threshold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.box import Box
from convlens.faces.gallery.storage import GalleryStore

DEFAULT_THRESHOLD = 0.6  # dlib's convention for its ResNet encoder, until calibrated


@dataclass(frozen=True)
class DecisionThreshold:
    """The τ a decision uses: `value`, and `scorer` "distance" (Euclidean, stored or default
    τ) or "verifier" (1 − the verifier's probability threshold)."""

    value: float
    scorer: str


@dataclass(frozen=True)
class Verdict:
    """1:1 answer. `distance` is Euclidean, or 1 − p(same) when a verifier scored it."""

    match: bool
    distance: float
    threshold: float
    name: str = ""
    box: Box | None = None
    scorer: str = "distance"


@dataclass(frozen=True)
class Candidate:
    name: str
    distance: float


@dataclass
class FaceMatch:
    """1:K answer for one face: the best name (None when farther than the threshold)."""

    box: Box | None
    name: str | None
    distance: float | None
    candidates: list[Candidate]
    threshold: float
    scorer: str = "distance"

    def to_json(self) -> dict:
        return {
            "box": list(self.box) if self.box is not None else None,
            "name": self.name,
            "distance": None if self.distance is None else round(float(self.distance), 6),
            "candidates": [
                {"name": c.name, "distance": round(float(c.distance), 6)} for c in self.candidates
            ],
        }


class ThresholdPolicy:
    """τ (stored in the gallery, or dlib's 0.6), the verifier, and the decisions they make."""

    def __init__(self, store: GalleryStore, verifier=None):
        self.store = store
        self._verifier = verifier

    @property
    def threshold(self) -> float:
        """τ for raw distances: calibrated if `set_threshold` stored one, else 0.6."""
        value = self.store.meta_value("threshold", float)
        return value if value is not None else DEFAULT_THRESHOLD

    @property
    def threshold_info(self) -> dict:
        info = self.store.meta_value("threshold_info", json.loads)
        if not isinstance(info, dict):
            info = {"source": "default (dlib convention)"}
        info["threshold"] = self.threshold
        return info

    def set_threshold(self, tau: float, info: dict | None = None) -> None:
        tau = float(tau)
        if not np.isfinite(tau) or tau <= 0:
            raise ConvlensError(f"threshold must be a positive number, got {tau}")
        model_id = (info or {}).get("model_id")
        if model_id is not None:
            self.store.check_model(model_id)
        self.store.store_threshold(tau, info or {})

    @property
    def verifier(self):
        if self._verifier is not None and isinstance(self._verifier, str | os.PathLike):
            from convlens.faces.verifier import load_verifier

            self._verifier = load_verifier(self._verifier)
        if self._verifier is not None:
            vid = getattr(self._verifier, "model_id", None)
            stored = self.store.model_id
            if vid and stored and vid != stored:
                raise ConvlensError(
                    f"verifier was trained on encoder {vid!r} embeddings; gallery holds {stored!r}"
                )
        return self._verifier

    def decision_threshold(self) -> DecisionThreshold:
        v = self.verifier
        if v is not None:
            return DecisionThreshold(1.0 - float(v.threshold), "verifier")
        return DecisionThreshold(self.threshold, "distance")

    def score(self, query: np.ndarray, vectors: np.ndarray) -> float:
        """Min over the person's embeddings of distance, or of 1 − p(same) with a verifier."""
        v = self.verifier
        if v is not None:
            p = v.probability(np.broadcast_to(query, vectors.shape), vectors)
            return float(1.0 - np.max(p))
        return float(np.sqrt(((vectors - query) ** 2).sum(1)).min())

    def shortlist_size(self, k: int) -> int:
        """How many people to fetch by distance: a verifier re-ranks a shortlist of ≥ 5."""
        return max(k, 5) if self.verifier is not None else k

    def decide(
        self,
        queries: np.ndarray,
        ranked: list[list[tuple[str, float]]],
        k: int,
        boxes: Sequence | None = None,
    ) -> list[FaceMatch]:
        """FaceMatches from each query's people ranked by distance (a shortlist_size list)."""
        tau = self.decision_threshold()
        out = []
        for r, cands in enumerate(ranked):
            if tau.scorer == "verifier":
                # Shortlist by distance, then score each candidate person with the verifier.
                cands = [
                    (nm, self.score(queries[r], self.store.person_vectors(nm))) for nm, _ in cands
                ]
                cands = sorted(cands, key=lambda t: t[1])[:k]
            candidates = [Candidate(nm, d) for nm, d in cands]
            best = candidates[0] if candidates else None
            name = best.name if best is not None and best.distance <= tau.value else None
            box = Box.of(boxes[r]) if boxes is not None and boxes[r] is not None else None
            distance = best.distance if best else None
            out.append(FaceMatch(box, name, distance, candidates, tau.value, tau.scorer))
        return out

    def verdict(self, query: np.ndarray, name: str, box: Box | None = None) -> Verdict:
        d = self.score(query, self.store.person_vectors(name))
        tau = self.decision_threshold()
        return Verdict(d <= tau.value, d, tau.value, name, box, tau.scorer)
