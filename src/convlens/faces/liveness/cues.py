"""Per-track cue measurements, fed one frame at a time.

`CueState.observe(time, landmarks68, gray)` keeps a short history of one face and measures:

* pose / parallax / nonrigid between this frame and frames ~0.2 s and ~0.5 s earlier
  (geometry.pair_motion);
* loop: whether the landmark sequence repeats itself exactly (a looped clip);
* pixels (appearance.FacePixels, when grey frames are given): how much the face's pixels change
  over time (a frozen frame: sensor noise only) and whether an earlier stretch repeats
  (a looped clip) — quieter than the landmarks, so these decide frozen and loop when present;
* context: whether the image *around* the face (the paper or screen it is on) moves with the
  face. A live head moves in front of a still background; a photo moves its surroundings with
  it. Measured by Lucas-Kanade flow on corners around the face (context.py).

The decision from these numbers is in decide.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from convlens.faces.liveness.appearance import FacePixels
from convlens.faces.liveness.context import CONTEXT_LAG_S, carried_share, shrink
from convlens.faces.liveness.geometry import RIGID, interocular, pair_motion

LAGS_S = (0.2, 0.5)  # frame-pair spans: long enough to see motion, short enough to track
HISTORY_S = 4.0
LOOP_MIN_LAG_S = 0.4
LOOP_WINDOW_S = 0.4  # shorter than the shortest loop worth catching


@dataclass
class CueState:
    fps: float = 25.0
    times: deque = field(default_factory=deque)
    points: deque = field(default_factory=deque)
    pose: list = field(default_factory=list)
    parallax: list = field(default_factory=list)
    nonrigid: list = field(default_factory=list)
    follow: list = field(default_factory=list)  # fraction of context points moving with the face
    loop_error: float = float("inf")
    pixel_typical: list = field(default_factory=list)  # FacePixels measures, one per evaluation
    pixel_best: list = field(default_factory=list)
    pixels: FacePixels | None = None
    _recent_grays: deque = field(default_factory=deque)  # (time, shrunk grey, points)

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def observe(self, time: float, points: np.ndarray, gray: np.ndarray | None = None) -> None:
        p = np.asarray(points, np.float64)
        if len(p) != 68:
            raise ValueError("liveness cues need 68-point landmarks")
        if self.times:
            self._pairs(time, p)
        if gray is not None:
            self._context(time, gray, p)
            if self.pixels is None:
                self.pixels = FacePixels(self.fps)
            m = self.pixels.observe(time, gray, p)
            if m is not None:
                self.pixel_typical.append(m[0])
                self.pixel_best.append(m[1])
        self.times.append(time)
        self.points.append(p)
        while self.times and time - self.times[0] > HISTORY_S:
            self.times.popleft(), self.points.popleft()
        self._loop()

    def _pairs(self, time: float, p: np.ndarray) -> None:
        for lag in LAGS_S:
            j = _index_at(self.times, time - lag)
            if j is None:
                continue
            pose, par, nr = pair_motion(self.points[j], p)
            self.pose.append(pose)
            self.parallax.append(par)
            self.nonrigid.append(nr)

    def _loop(self) -> None:
        """Smallest mean landmark error between the last LOOP_WINDOW_S of frames and an earlier
        stretch at least LOOP_MIN_LAG_S before (similarity-normalised, IOD units)."""
        n = len(self.points)
        win = max(int(LOOP_WINDOW_S * self.fps), 5)
        min_lag = max(int(LOOP_MIN_LAG_S * self.fps), 3)
        if n < win + min_lag or n % 5:  # every 5th frame: enough, and cheap
            return
        shapes = np.stack([_canonical(q) for q in self.points])
        recent = shapes[n - win :]
        best = min(
            float(np.abs(shapes[s : s + win] - recent).mean())
            for s in range(0, n - win - min_lag + 1)
        )
        self.loop_error = min(self.loop_error, best)

    def _context(self, time: float, gray: np.ndarray, p: np.ndarray) -> None:
        """Does the picture around the face move with it (a plane carrying both)? context.py"""
        small, scale = shrink(gray)
        q = p * scale
        recent = self._recent_grays
        j = _index_at([t for t, _, _ in recent], time - CONTEXT_LAG_S)
        if j is not None and recent[j][1].shape == small.shape:
            share = carried_share(recent[j][1], small, recent[j][2], q)
            if share is not None:
                self.follow.append(share)
        recent.append((time, small, q))
        while len(recent) > 1 and time - recent[1][0] >= CONTEXT_LAG_S:
            recent.popleft()


def _index_at(times: Sequence[float], t: float) -> int | None:
    """Index of the newest stored frame at or before time t (None if none is)."""
    for j in range(len(times) - 1, -1, -1):
        if times[j] <= t + 1e-6:
            return j
    return None


def _canonical(p: np.ndarray) -> np.ndarray:
    """Landmarks mapped by a similarity onto a fixed frame (eyes level, IOD 1)."""
    iod = interocular(p)
    centre = p[RIGID].mean(0)
    d = p[45] - p[36]
    c, s = d / max(np.linalg.norm(d), 1e-9)
    rot = np.array([[c, s], [-s, c]])
    return (p - centre) @ rot.T / iod
