"""Face tracks across frames: detect every N frames, follow the landmarks in between.

Between detections a track is followed by running dlib's 68-point shape predictor inside the
track's previous box (about 5 ms a face on this CPU, against about 30 ms for a HOG detection of
a 640x480 frame): the predictor pulls the landmarks onto the moved face, and the box follows
the landmarks. On detection frames detections are matched to tracks by box overlap (IoU);
an unmatched detection starts a new track, and a track unmatched for `max_missed` detection
rounds is lost. Identity across a gap is by embedding (stream.py re-links a new track to a
recently lost one when their embeddings agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convlens.faces import detect as _detect
from convlens.faces.box import Box

DEAD_BAND = 0.08  # of the box width


@dataclass
class Track:
    id: int
    box: Box
    landmarks: np.ndarray  # (68, 2) float, full-frame pixels
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    missed: int = 0  # detection rounds without a matching detection
    # box = landmark bounding box scaled by this (x0, y0, x1, y1 offsets in landmark-box units),
    # learnt at the last detection so the followed box keeps the detector's framing.
    framing: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    state: dict = field(default_factory=dict)  # identity and liveness (stream.py)

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.box.to_dlib()


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def _framing(box: Box, points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = _landmark_box(points)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    return ((box.x0 - x0) / w, (box.y0 - y0) / h, (box.x1 - x1) / w, (box.y1 - y1) / h)


def _box_from(points: np.ndarray, framing, width: int, height: int) -> Box:
    x0, y0, x1, y1 = _landmark_box(points)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    fx0, fy0, fx1, fy1 = framing
    box = (x0 + fx0 * w, y0 + fy0 * h, x1 + fx1 * w, y1 + fy1 * h)
    return Box(
        int(max(round(box[0]), 0)),
        int(max(round(box[1]), 0)),
        int(min(round(box[2]), width)),
        int(min(round(box[3]), height)),
    )


class FaceTracker:
    """Tracks faces in successive RGB frames. `step(index, time, rgb)` returns
    (tracks now visible, tracks started this frame, tracks lost this frame).

    detect_every: run the detector on every Nth frame (1: every frame). detect_width: detect
    on a copy shrunk by a whole factor to at most this width (faces smaller than about
    80 px x the factor are then missed at upsample 0; None: 1 for frames under 480 px wide,
    else 0). max_missed: detection rounds a track
    may go unconfirmed before it is lost.
    """

    def __init__(
        self,
        detector: str = "hog",
        upsample: int | None = None,
        detect_every: int = 5,
        detect_width: int = 640,
        max_missed: int = 2,
        min_iou: float = 0.3,
    ) -> None:
        _detect.check_options(detector, upsample or 0)
        self.detector, self.upsample = detector, upsample
        self.detect_every, self.detect_width = detect_every, detect_width
        self.max_missed, self.min_iou = max_missed, min_iou
        self.tracks: list[Track] = []
        self._next_id = 1

    def _detect(self, rgb: np.ndarray) -> list[_detect.Detection]:
        f = max(1, int(np.ceil(rgb.shape[1] / self.detect_width)))
        small = rgb[::f, ::f] if f > 1 else rgb
        # None: upsample small frames once (HOG's 80 px window misses faces in a 360x288 clip).
        up = self.upsample if self.upsample is not None else int(small.shape[1] < 480)
        found = _detect.detect(small, self.detector, up)
        for d in found:
            x0, y0, x1, y1 = d.rect
            d.rect = (x0 * f, y0 * f, (x1 + 1) * f - 1, (y1 + 1) * f - 1)
        return found

    def _follow(self, rgb: np.ndarray, index: int, time: float) -> list[Track]:
        """Move every track to the landmarks found inside its previous box; drop a track whose
        landmarks collapse (the face is gone)."""
        h, w = rgb.shape[:2]
        dets = [_detect.Detection(t.rect, 0.0, "track") for t in self.tracks]
        shapes = _detect.landmarks(rgb, dets, 68) if dets else []
        lost = []
        for t, pts in zip(list(self.tracks), shapes, strict=True):
            pts = pts.astype(np.float64)
            x0, y0, x1, y1 = _landmark_box(pts)
            if x1 - x0 < 0.3 * t.box.width or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                lost.append(t)
                self.tracks.remove(t)
                continue
            t.landmarks = pts
            # Move the box only when the face moved beyond a dead band: re-framing on every
            # frame feeds the predictor's jitter back into its own input box (a random walk
            # that makes a still photo look alive).
            moved = _box_from(pts, t.framing, w, h)
            shift = max(abs(a - b) for a, b in zip(moved, t.box, strict=True))
            if shift > DEAD_BAND * t.box.width:
                t.box = moved
            t.last_frame, t.last_time = index, time
        return lost

    def step(self, index: int, time: float, rgb: np.ndarray):
        lost = self._follow(rgb, index, time)
        started: list[Track] = []
        if index % self.detect_every == 0 or not self.tracks:
            started, gone = self._match(self._detect(rgb), rgb, index, time)
            lost += gone
        return list(self.tracks), started, lost

    def _match(self, found, rgb, index: int, time: float):
        h, w = rgb.shape[:2]
        boxes = [d.box(w, h) for d in found]
        pairs = sorted(
            (
                (iou(t.box, b), ti, di)
                for ti, t in enumerate(self.tracks)
                for di, b in enumerate(boxes)
            ),
            reverse=True,
        )
        used_t, used_d = set(), set()
        for score, ti, di in pairs:
            if score < self.min_iou or ti in used_t or di in used_d:
                continue
            used_t.add(ti), used_d.add(di)
            t = self.tracks[ti]
            t.missed = 0
            if max(abs(a - b) for a, b in zip(boxes[di], t.box, strict=True)) > (
                DEAD_BAND * t.box.width
            ):
                t.box = boxes[di]
                t.framing = _framing(t.box, t.landmarks)
        lost = []
        for ti, t in enumerate(list(self.tracks)):
            if ti not in used_t:
                t.missed += 1
                if t.missed > self.max_missed:
                    lost.append(t)
                    self.tracks.remove(t)
        new = [d for di, d in enumerate(found) if di not in used_d]
        started = []
        for d, pts in zip(new, _detect.landmarks(rgb, new, 68) if new else [], strict=True):
            pts = pts.astype(np.float64)
            box = d.box(w, h)
            t = Track(self._next_id, box, pts, index, time, index, time)
            t.framing = _framing(box, pts)
            self._next_id += 1
            self.tracks.append(t)
            started.append(t)
        return started, lost
