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
  it. Measured by pyramidal Lucas-Kanade flow (OpenCV) on points beside the face.

The decision from these numbers is in decide.py.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from convlens.faces.liveness.appearance import FacePixels
from convlens.faces.liveness.geometry import (
    RIGID,
    apply_homography,
    fit_similarity,
    interocular,
    pair_motion,
)

LAGS_S = (0.2, 0.5)  # frame-pair spans: long enough to see motion, short enough to track
HISTORY_S = 4.0
LOOP_MIN_LAG_S = 0.4
LOOP_WINDOW_S = 0.4  # shorter than the shortest loop worth catching


def _cv2():
    import cv2

    return cv2


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
    _prev_gray: np.ndarray | None = None
    _prev_points: np.ndarray | None = None

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
            self._context(gray, p)
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

    def _context(self, gray: np.ndarray, p: np.ndarray) -> None:
        """Do the points beside the face follow the face's own motion (a plane carrying both)?"""
        prev_gray, prev_p = self._prev_gray, self._prev_points
        self._prev_gray, self._prev_points = gray, p
        if prev_gray is None or prev_gray.shape != gray.shape:
            return
        iod = interocular(p)
        sim = fit_similarity(prev_p[RIGID], p[RIGID])
        face_move = np.linalg.norm(apply_homography(sim, prev_p[RIGID]) - prev_p[RIGID], axis=1)
        if np.median(face_move) < 0.03 * iod:  # the face hardly moved: no evidence either way
            return
        ring = _ring_points(prev_p, gray.shape)
        if len(ring) < 6:
            return
        cv2 = _cv2()
        moved, ok, _ = cv2.calcOpticalFlowPyrLK(
            prev_gray, gray, ring.astype(np.float32), None, winSize=(21, 21), maxLevel=3
        )
        ok = ok.ravel() == 1
        if ok.sum() < 6:
            return
        want = apply_homography(sim, ring[ok])
        err = np.linalg.norm(moved[ok] - want, axis=1)
        self.follow.append(float((err < 0.35 * np.median(face_move) + 0.5).mean()))


def _index_at(times: deque, t: float) -> int | None:
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


def _ring_points(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A grid of points in two bands beside the face (0.35-0.9 face widths out), inside the
    frame: on a photo or screen they lie on the same plane as the face; in front of a live
    person they are the room behind."""
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    w = x1 - x0
    ys = np.linspace(y0, y1, 5)
    xs = np.r_[
        np.linspace(x0 - 0.9 * w, x0 - 0.35 * w, 3), np.linspace(x1 + 0.35 * w, x1 + 0.9 * w, 3)
    ]
    pts = np.array([(x, y) for x in xs for y in ys])
    h, wd = shape
    keep = (pts[:, 0] >= 2) & (pts[:, 0] < wd - 2) & (pts[:, 1] >= 2) & (pts[:, 1] < h - 2)
    return pts[keep]
