"""Gallery decisions: the threshold τ and where it came from, the optional verifier, the min
rule, and the answers (Verdict for 1:1, FaceMatch with Candidates for 1:K).

τ is the gallery's own when `calibrate` stored one; else the default its encoder's registry
entry ships (extras "threshold", chosen from data, provenance in "threshold_source"); else
there is none: the gallery is uncalibrated, identify names nobody and verify refuses. τ never
comes from another encoder (a scratch encoder once borrowed dlib's 0.6 and named strangers).

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


def shipped_threshold(model_id: str | None) -> tuple[float | None, dict]:
    """The default τ the registry ships for the encoder with this model_id, and its
    provenance; (None, {}) when no registered encoder has one."""
    from convlens.models import registry

    for entry in registry.entries("face-encoder"):
        extras = entry.extras
        if model_id and extras.get("model_id") == model_id and "threshold" in extras:
            info = dict(extras.get("threshold_source", {}))
            return float(extras["threshold"]), {"encoder": entry.name, **info}
    return None, {}


@dataclass(frozen=True)
class DecisionThreshold:
    """The τ a decision uses: `value` (None: uncalibrated, nobody is named), `scorer`
    "distance" (Euclidean) or "verifier" (1 − the verifier's probability threshold), and
    whether this gallery was calibrated (False: the encoder's shipped default, or none)."""

    value: float | None
    scorer: str
    calibrated: bool = True


@dataclass(frozen=True)
class Verdict:
    """1:1 answer. `distance` is Euclidean, or 1 − p(same) when a verifier scored it."""

    match: bool
    distance: float
    threshold: float
    name: str = ""
    box: Box | None = None  # the face that decided (the best one when several)
    scorer: str = "distance"
    calibrated: bool = True  # False: the encoder's shipped default τ
    faces: int = 1  # faces in the photo that were compared


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
    threshold: float | None  # None: the gallery is uncalibrated (nobody is named)
    scorer: str = "distance"
    calibrated: bool = True

    def to_json(self) -> dict:
        return {
            "calibrated": self.calibrated,
            "box": list(self.box) if self.box is not None else None,
            "name": self.name,
            "distance": None if self.distance is None else round(float(self.distance), 6),
            "candidates": [
                {"name": c.name, "distance": round(float(c.distance), 6)} for c in self.candidates
            ],
        }


class ThresholdPolicy:
    """τ (calibrated in the gallery, or the encoder's shipped default), the verifier, and the
    decisions they make. `model_id()` gives the encoder (the stored one, else the one the
    gallery was opened with)."""

    def __init__(self, store: GalleryStore, verifier=None, model_id=None):
        self.store = store
        self._verifier = verifier
        self._model_id = model_id or (lambda: store.model_id)

    @property
    def calibrated(self) -> bool:
        return self.store.meta_value("threshold", float) is not None

    @property
    def threshold(self) -> float | None:
        """τ for raw distances: calibrated if `set_threshold` stored one, else the encoder's
        shipped default, else None (uncalibrated)."""
        value = self.store.meta_value("threshold", float)
        return value if value is not None else shipped_threshold(self._model_id())[0]

    @property
    def threshold_info(self) -> dict:
        """τ and where it came from; "calibrated" False for a shipped default or none."""
        tau = self.store.meta_value("threshold", float)
        if tau is not None:
            info = self.store.meta_value("threshold_info", json.loads)
            info = info if isinstance(info, dict) else {}
            return {**info, "threshold": tau, "calibrated": True}
        model_id = self._model_id()
        tau, shipped = shipped_threshold(model_id)
        if tau is None:
            source = f"none: no threshold for encoder {model_id or '(none yet)'}; calibrate"
            return {"threshold": None, "calibrated": False, "source": source}
        source = f"shipped default for {shipped['encoder']} (gallery not calibrated)"
        return {"source": source, **shipped, "threshold": tau, "calibrated": False}

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
        return DecisionThreshold(self.threshold, "distance", self.calibrated)

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
            close = best is not None and tau.value is not None and best.distance <= tau.value
            name = best.name if close else None
            box = Box.of(boxes[r]) if boxes is not None and boxes[r] is not None else None
            distance = best.distance if best else None
            out.append(
                FaceMatch(box, name, distance, candidates, tau.value, tau.scorer, tau.calibrated)
            )
        return out

    def verdict(self, queries: np.ndarray, name: str, boxes: Sequence | None = None) -> Verdict:
        """Is any of the faces (queries (F, D), one per face) `name`? The closest face decides
        and its box is reported; `faces` says how many were compared."""
        tau = self.decision_threshold()
        if tau.value is None:
            raise ConvlensError(
                f"{self.store.path}: no threshold for encoder {self._model_id()!r}; calibrate "
                "the gallery on labelled photos first"
            )
        queries = np.atleast_2d(queries)
        vectors = self.store.person_vectors(name)
        scores = [self.score(q, vectors) for q in queries]
        best = int(np.argmin(scores))
        box = Box.of(boxes[best]) if boxes is not None and boxes[best] is not None else None
        d = scores[best]
        return Verdict(
            d <= tau.value, d, tau.value, name, box, tau.scorer, tau.calibrated, len(queries)
        )
