"""Active liveness: ask for actions in a random order, each within a time budget.

    ch = Challenge(seed=None)                # blink, turn-left, turn-right in random order
    for t, pts in frames: ch.observe(t, pts)  # 68-point landmarks
    ch.prompt, ch.status                     # "blink" ...; "pending" | "passed" | "failed"

Actions, checked from 68-point landmarks (dlib's iBUG 300-W model: not for commercial use):

* blink: the eye aspect ratio (Soukupová & Čech 2016) dips below BLINK_DIP x the person's own
  open-eye baseline (the 75th percentile of their EAR over the last 1.5 s) and comes back
  above REOPEN x baseline. A baseline of the person's own eyes, not a fixed 0.2-0.3, copes with
  narrow eyes and glasses.
* turn-left / turn-right: yaw (geometry.yaw) moves by TURN from its value when the step began.
  "Left" is the person's left: the nose moves toward the image's right on an unmirrored camera.
* closer: the inter-ocular distance grows by CLOSER (face 20% larger).

A replay of a video that happens to show the action passes the challenge itself; the passive
cues (carried, frozen, loop) still apply to the same frames, and the random order makes a recorded
answer unlikely to arrive in time.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np

from convlens.faces.liveness.geometry import eye_aspect_ratio, interocular, yaw

ACTIONS = ("blink", "turn-left", "turn-right", "closer")
DEFAULT_ACTIONS = ("blink", "turn-left", "turn-right")
BUDGET_S = 5.0
BLINK_DIP = 0.65
REOPEN = 0.9
BASELINE_S = 1.5
TURN = 0.25
CLOSER = 1.2


class BlinkDetector:
    """Counts blinks from a stream of EAR values (see the module docstring)."""

    def __init__(self) -> None:
        self.history: deque = deque()
        self.blinks = 0
        self._closed = False

    def baseline(self) -> float:
        return float(np.percentile([e for _, e in self.history], 75)) if self.history else 0.0

    def update(self, time: float, ear: float) -> bool:
        """Feed one frame; True when a blink has just completed."""
        base = self.baseline()
        self.history.append((time, ear))
        while self.history and time - self.history[0][0] > BASELINE_S:
            self.history.popleft()
        if len(self.history) < 3 or base <= 0:
            return False
        if not self._closed and ear < BLINK_DIP * base:
            self._closed = True
        elif self._closed and ear > REOPEN * base:
            self._closed = False
            self.blinks += 1
            return True
        return False


class Challenge:
    def __init__(self, actions=DEFAULT_ACTIONS, budget_s: float = BUDGET_S, seed=None) -> None:
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown or not actions:
            raise ValueError(f"challenge actions must be among {', '.join(ACTIONS)}")
        self.actions = list(actions)
        random.Random(seed).shuffle(self.actions)
        self.budget_s = budget_s
        self.step = 0
        self.status = "pending"
        self.done: list[str] = []
        self._start: float | None = None
        self._yaw0 = self._iod0 = 0.0
        self._blink = BlinkDetector()

    @property
    def prompt(self) -> str | None:
        return self.actions[self.step] if self.status == "pending" else None

    def observe(self, time: float, points: np.ndarray) -> str:
        """Feed one frame's 68 landmarks; returns the status."""
        if self.status != "pending":
            return self.status
        p = np.asarray(points, np.float64)
        blinked = self._blink.update(time, eye_aspect_ratio(p))
        if self._start is None:
            self._start, self._yaw0, self._iod0 = time, yaw(p), interocular(p)
            return self.status
        action = self.actions[self.step]
        dyaw = yaw(p) - self._yaw0
        ok = {
            "blink": blinked,
            "turn-left": dyaw >= TURN,
            "turn-right": dyaw <= -TURN,
            "closer": interocular(p) >= CLOSER * self._iod0,
        }[action]
        if ok:
            self.done.append(action)
            self.step += 1
            self._start = None
            if self.step == len(self.actions):
                self.status = "passed"
        elif time - self._start > self.budget_s:
            self.status = "failed"
        return self.status
