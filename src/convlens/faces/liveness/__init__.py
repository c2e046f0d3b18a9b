"""Face liveness on a video stream: is the tracked face a live person, or a photo or screen?

    from convlens.faces.liveness import LivenessMonitor
    mon = LivenessMonitor(fps=25)                 # passive; challenge=Challenge() for active
    for t, landmarks68, gray in frames: mon.observe(t, landmarks68, gray)
    v = mon.verdict()          # v.verdict: "live" | "spoof" | "undecided"; v.score, v.reasons

The passive cues (cues.py) and the rule (decide.py) need 68-point landmarks: dlib's 68-point
model is trained on iBUG 300-W, whose licence excludes commercial use. See
docs/liveness/README.md for the rule, its thresholds and measured error rates.
"""

from __future__ import annotations

import numpy as np

from convlens.faces.liveness.challenge import Challenge
from convlens.faces.liveness.cues import CueState
from convlens.faces.liveness.decide import THRESHOLDS, LivenessVerdict, Thresholds, decide

__all__ = ["Challenge", "CueState", "LivenessMonitor", "LivenessVerdict", "Thresholds"]


class LivenessMonitor:
    """Passive cues for one face track, plus an optional active Challenge.

    With a challenge, `live` needs the challenge passed and no spoof cue; a failed challenge is
    `spoof` (reason "challenge-failed"), a pending one `undecided`.
    """

    def __init__(
        self,
        fps: float = 25.0,
        challenge: Challenge | None = None,
        thresholds: Thresholds = THRESHOLDS,
    ) -> None:
        self.cues = CueState(fps=fps)
        self.challenge = challenge
        self.thresholds = thresholds
        self._held: LivenessVerdict | None = None

    def verdict(self) -> LivenessVerdict:
        """The current verdict, with hysteresis: once `live` it stays live unless a spoof cue
        fires (a live person may pause), and `spoof` is final."""
        v = self._verdict()
        held = self._held
        if held is not None and (held.verdict == "spoof" or v.verdict == "undecided"):
            return held
        if v.verdict != "undecided":
            self._held = v
        return v

    def observe(self, time: float, landmarks: np.ndarray, gray: np.ndarray | None = None) -> None:
        self.cues.observe(time, landmarks, gray)
        if self.challenge is not None:
            self.challenge.observe(time, landmarks)

    def _verdict(self) -> LivenessVerdict:
        v = decide(self.cues, self.thresholds)
        ch = self.challenge
        if ch is None or v.verdict == "spoof":
            return v
        v.measures["challenge_done"] = float(len(ch.done))
        if ch.status == "failed":
            return LivenessVerdict("spoof", 0.2, ["challenge-failed"], v.measures)
        if ch.status == "pending":
            return LivenessVerdict("undecided", 0.5, [f"challenge:{ch.prompt}"], v.measures)
        return LivenessVerdict(
            "live", max(v.score, 0.75), ["challenge-passed", *v.reasons], v.measures
        )
