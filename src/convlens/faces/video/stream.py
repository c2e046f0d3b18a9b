"""Video in, identities out: face tracks, their identities and liveness, as events.

    from convlens.faces.video import watch
    with Gallery("staff.db") as g:
        for event in watch("door.mp4", g):        # or watch(0) for a webcam, "rtsp://..."
            print(event.to_json())                # appeared / identified / liveness / left

Each track is encoded a few times, not every frame: when it appears, then every
`encode_every` frames until it holds `max_embeddings`, and again when a sharper, more frontal
view comes (a larger, less turned face than any so far). Chips of all tracks due in a frame
go through the encoder in one batch. A track's identity is the gallery's open-set rule on
the median, over its embeddings, of the distance to each candidate person; it is re-decided
after every new embedding and an `identified` event is emitted when the answer changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import align as _align
from convlens.faces import detect as _detect
from convlens.faces.box import Box
from convlens.faces.liveness import Challenge, LivenessMonitor, LivenessVerdict
from convlens.faces.liveness.geometry import interocular, yaw
from convlens.faces.video.tracker import FaceTracker, Track
from convlens.video import ClosedOnExit, FrameReader

RELINK_DISTANCE = 0.45  # a new track within this of a recently lost one is the same person
RELINK_S = 2.0


@dataclass
class TrackEvent:
    kind: str  # "appeared" | "identified" | "liveness" | "left"
    track: int
    frame: int
    time: float
    box: Box
    name: str | None = None
    distance: float | None = None
    threshold: float | None = None
    liveness: LivenessVerdict | None = None

    def to_json(self) -> dict:
        out = {"event": self.kind, "track": self.track, "frame": self.frame}
        out["time"] = round(self.time, 3)
        out["box"] = list(self.box)
        if self.kind in ("identified", "left"):
            out["name"] = self.name
            out["distance"] = None if self.distance is None else round(self.distance, 4)
            out["threshold"] = self.threshold
        if self.liveness is not None:
            out["liveness"] = self.liveness.to_json()
        return out


@dataclass
class WatchOptions:
    detector: str = "hog"  # "auto" falls back to the CNN on every face-less frame: ~1 s each
    upsample: int | None = None  # None: 1 for frames under 480 px wide, else 0
    detect_every: int = 5
    detect_width: int = 640
    encode_every: int = 10
    max_embeddings: int = 5
    liveness: bool = True
    challenge: tuple[str, ...] | None = None  # active mode: the actions to ask for
    challenge_seed: int | None = None
    max_frames: int | None = None
    timeout: float = 10.0
    model: object = None
    device: object = None


@dataclass
class TrackState:
    embeddings: list = field(default_factory=list)
    quality: list = field(default_factory=list)
    last_encoded: int = -(10**9)
    name: str | None = None
    distance: float | None = None
    decided: bool = False
    monitor: LivenessMonitor | None = None
    verdict: str = "undecided"
    announced: bool = False


def _quality(t: Track) -> float:
    """Larger and more frontal is better (the encoder was trained on frontal faces)."""
    return interocular(t.landmarks) * (1.0 - abs(yaw(t.landmarks)))


class Watcher(ClosedOnExit):
    """Runs the tracker, encoder, gallery and liveness over one source. Iterate `frames()` for
    (frame, visible tracks, events) — e.g. to draw — or `events()` for the events alone."""

    def __init__(self, source, gallery=None, options: WatchOptions | None = None) -> None:
        self.options = o = options or WatchOptions()
        if o.detect_every < 1 or o.encode_every < 1 or o.max_embeddings < 1:
            raise ConvlensError("detect_every, encode_every and max_embeddings must be ≥ 1")
        self.gallery = gallery
        self.reader = FrameReader(source, timeout=o.timeout, max_frames=o.max_frames)
        self.tracker = FaceTracker(o.detector, o.upsample, o.detect_every, o.detect_width)
        self._lost: list[tuple[Track, float]] = []
        self._net = None

    @property
    def fps(self) -> float:
        return self.reader.fps

    def close(self) -> None:
        self.reader.close()

    def _encoder(self):
        if self._net is None:
            if self.gallery is not None:
                self._net = self.gallery.encoder
            else:
                from convlens.faces.pipeline import resolve_model

                self._net = resolve_model(self.options.model, self.options.device)
        return self._net

    def frames(self) -> Iterator[tuple]:
        for frame in self.reader:
            tracks, started, lost = self.tracker.step(frame.index, frame.time, frame.rgb)
            events = [self._left(t, frame) for t in lost]
            for t in started:
                t.state = TrackState(monitor=self._monitor())
            self._encode(frame, tracks)
            self._relink(frame, started, tracks)
            events += self._updates(frame, tracks)
            yield frame, tracks, events
        events = [self._left(t, None) for t in self.tracker.tracks]
        self.tracker.tracks.clear()
        yield None, [], events

    def events(self) -> Iterator[TrackEvent]:
        for _, _, events in self.frames():
            yield from events

    def _monitor(self) -> LivenessMonitor | None:
        o = self.options
        if not o.liveness:
            return None
        challenge = Challenge(o.challenge, seed=o.challenge_seed) if o.challenge else None
        return LivenessMonitor(self.fps, challenge)

    def _encode(self, frame, tracks: list[Track]) -> None:
        o = self.options
        due = []
        for t in tracks:
            s: TrackState = t.state
            q = _quality(t)
            fresh = frame.index - s.last_encoded >= o.encode_every
            if (fresh and len(s.embeddings) < o.max_embeddings) or (
                s.quality and fresh and q > 1.2 * max(s.quality)
            ):
                due.append((t, q))
        if not due:
            return
        from convlens.faces.pipeline import embed_chips

        net = self._encoder()
        embs = embed_chips(_chips(frame.rgb, [t for t, _ in due], net), net)
        for (t, q), e in zip(due, embs, strict=True):
            s = t.state
            if len(s.embeddings) >= o.max_embeddings:  # a better view replaces the worst
                worst = int(np.argmin(s.quality))
                s.embeddings.pop(worst), s.quality.pop(worst)
            s.embeddings.append(e)
            s.quality.append(q)
            s.last_encoded = frame.index
            s.decided = False

    def _relink(self, frame, started: list[Track], tracks: list[Track]) -> None:
        """A new track whose face matches a track lost moments ago continues it (same id)."""
        self._lost = [(t, tl) for t, tl in self._lost if frame.time - tl <= RELINK_S]
        for t in started:
            if not t.state.embeddings or not self._lost:
                continue
            e = t.state.embeddings[0]
            dists = [np.linalg.norm(np.mean(o.state.embeddings, 0) - e) for o, _ in self._lost]
            best = int(np.argmin(dists))
            if dists[best] <= RELINK_DISTANCE:
                old, _ = self._lost.pop(best)
                old.state.embeddings += t.state.embeddings
                old.state.quality += t.state.quality
                old.box, old.landmarks, old.framing = t.box, t.landmarks, t.framing
                old.missed = 0
                old.state.announced = True
                tracks[tracks.index(t)] = old
                self.tracker.tracks[self.tracker.tracks.index(t)] = old

    def _updates(self, frame, tracks: list[Track]) -> list[TrackEvent]:
        events = []
        gray = None
        for t in tracks:
            s: TrackState = t.state
            if not s.announced:
                s.announced = True
                events.append(TrackEvent("appeared", t.id, frame.index, frame.time, t.box))
            if self.gallery is not None and s.embeddings and not s.decided:
                events += self._identify(frame, t)
            if s.monitor is not None:
                if gray is None:
                    gray = _gray(frame.rgb)
                s.monitor.observe(frame.time, t.landmarks, gray)
                v = s.monitor.verdict()
                if v.verdict != s.verdict:
                    s.verdict = v.verdict
                    events.append(
                        TrackEvent("liveness", t.id, frame.index, frame.time, t.box, liveness=v)
                    )
        return events

    def _identify(self, frame, t: Track) -> list[TrackEvent]:
        s: TrackState = t.state
        s.decided = True
        name, dist, tau = identify_track(self.gallery, s.embeddings)
        if s.name == name and s.distance is not None and name is not None:
            s.distance = dist
            return []
        changed = name != s.name or s.distance is None
        s.name, s.distance = name, dist
        if not changed:
            return []
        return [TrackEvent("identified", t.id, frame.index, frame.time, t.box, name, dist, tau)]

    def _left(self, t: Track, frame) -> TrackEvent:
        if frame is not None and t.state.embeddings:
            self._lost.append((t, frame.time))
        v = t.state.monitor.verdict() if t.state.monitor is not None else None
        return TrackEvent("left", t.id, t.last_frame, t.last_time, t.box, t.state.name,
                          t.state.distance, liveness=v)  # fmt: skip


def _chips(rgb: np.ndarray, tracks: list[Track], net) -> np.ndarray:
    """The encoder's own chips of each track's face: ArcFace 112x112 from the track's 68
    points mapped to five (SFace), else dlib's 150x150 from dlib's 5-point model."""
    from convlens.models.face_models import encoder_extras

    if encoder_extras(net)["aligner"] == "arcface-5":
        from convlens.faces.align_arcface import align_image, five_points_from_dlib68

        return align_image(rgb, [five_points_from_dlib68(t.landmarks) for t in tracks])
    dets = [_detect.Detection(t.rect, 0.0, "track") for t in tracks]
    return _align.align_image(rgb, _detect.landmarks(rgb, dets, 5))


def identify_track(gallery, embeddings: list) -> tuple[str | None, float | None, float]:
    """(name or None, distance, τ): per candidate person, the median over the track's
    embeddings of the gallery's distance (min rule over that person's photos); the nearest
    person is the answer when that median is within the gallery's τ."""
    k = min(3, max(len(gallery.people()), 1))
    matches = gallery.identify_embeddings(np.stack(embeddings), k=k)
    if not matches:
        return None, None, gallery.decision_threshold().value
    tau = matches[0].threshold
    per_name: dict[str, list[float]] = {}
    for m in matches:
        for c in m.candidates:
            per_name.setdefault(c.name, []).append(c.distance)
    if not per_name:
        return None, None, tau
    # A person missing from some embeddings' top k counts as beyond τ there.
    n = len(matches)
    score = {nm: float(np.median(d + [np.inf] * (n - len(d)))) for nm, d in per_name.items()}
    best = min(score, key=score.get)
    dist = score[best]
    return (best if dist <= tau else None), (dist if np.isfinite(dist) else None), tau


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def watch(source: str | os.PathLike | int, gallery=None, **options) -> Iterator[TrackEvent]:
    """Events (appeared, identified, liveness, left) of every face track in a video file,
    camera number or stream URL; `gallery` (a faces.Gallery) names the people. Options: see
    WatchOptions (detect_every, encode_every, liveness, challenge, ...)."""
    with Watcher(source, gallery, WatchOptions(**options)) as w:
        yield from w.events()
