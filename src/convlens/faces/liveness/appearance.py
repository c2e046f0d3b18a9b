"""Frozen and looped pictures from the face's pixels, not its landmarks.

Landmark noise (about 0.01-0.02 inter-ocular distances frame to frame, more under blur) is as
large as a still person's micro-motion and as a looped clip's mismatch, so landmark-only rules
confused both (first benchmark: frozen and loop attacks accepted). The pixels are quieter:
each frame's face region is shrunk to CROP x CROP grey levels by area averaging (which also
averages the camera's sensor noise away), and the last WINDOW_S of crops is compared with every
earlier stretch of the same length (mean absolute difference, grey levels 0-255):

* `typical`: the median over those lags — how much the face's pixels change over time. A frozen
  frame changes only by sensor and codec noise (dev clips: ≤ 0.7 grey levels), a live face by
  several (dev: ≥ 4, a still person blinking included).
* `best`: the smallest over lags, and `best / typical`: a looped clip matches one earlier
  stretch (its period) down to noise while other lags differ by the face's motion (dev loops:
  best ≤ 0.41, ratio ≤ 0.12; live clips: best ≥ 1.3).

All comparisons use the *current* face region in every stored frame, so a looped picture that
does not move compares like for like. A hand-held replay of a loop moves the picture and is not
caught here (the screen cues apply instead).
"""

from __future__ import annotations

from collections import deque

import numpy as np

CROP = 24  # crop side after area averaging
HISTORY_S = 4.0
WINDOW_S = 0.4
MIN_LAG_S = 0.4
EVERY = 5  # measure every 5th frame: enough, and cheap


class FacePixels:
    """History of grey frames (halved) for one track; `observe` returns (typical, best) or
    None when there is not enough history yet or it is not a measuring frame."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.frames: deque = deque()  # (time, half-size grey frame)
        self._count = 0

    def observe(self, time: float, gray: np.ndarray, points: np.ndarray):
        import cv2  # here, not at import: `convlens --help` stays fast

        self.frames.append((time, cv2.pyrDown(gray)))
        while self.frames and time - self.frames[0][0] > HISTORY_S:
            self.frames.popleft()
        self._count += 1
        win = max(int(WINDOW_S * self.fps), 5)
        min_lag = max(int(MIN_LAG_S * self.fps), 3)
        n = len(self.frames)
        if n < win + min_lag or self._count % EVERY:
            return None
        crops = self._crops(points)
        if crops is None:
            return None
        recent = crops[n - win :]
        diffs = np.array(
            [np.abs(crops[s : s + win] - recent).mean() for s in range(n - win - min_lag + 1)]
        )
        return float(np.median(diffs)), float(diffs.min())

    def _crops(self, points: np.ndarray) -> np.ndarray | None:
        import cv2

        h, w = self.frames[-1][1].shape
        x0, y0 = np.floor(points.min(0) / 2).astype(int)
        x1, y1 = np.ceil(points.max(0) / 2).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        return np.stack(
            [
                cv2.resize(f[y0:y1, x0:x1], (CROP, CROP), interpolation=cv2.INTER_AREA)
                for _, f in self.frames
            ]
        ).astype(np.float32)
