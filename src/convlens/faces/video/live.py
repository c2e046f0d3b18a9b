"""Gallery decisions on a video source that require a live person (the door's rule).

    with Gallery("staff.db") as g:
        r = verify_live(g, "door.mp4", "alice")         # r.open: live AND alice
        for track in identify_live(g, 0, seconds=5): ...

The gallery package is unchanged: these functions use Gallery.identify_embeddings /
verify_embedding on a track's embeddings, and the track's liveness verdict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.liveness import LivenessVerdict
from convlens.faces.video.stream import Watcher, WatchOptions, identify_track


@dataclass
class LiveDecision:
    track: int
    name: str | None  # verify: the claimed name; identify: the answer (None: unknown)
    match: bool
    distance: float | None
    threshold: float
    liveness: LivenessVerdict
    seconds: float

    @property
    def open(self) -> bool:
        """Open the door: a matching face that is judged live."""
        return self.match and self.liveness.verdict == "live"

    def to_json(self) -> dict:
        return {
            "track": self.track,
            "name": self.name,
            "match": self.match,
            "live": self.liveness.verdict == "live",
            "open": self.open,
            "distance": None if self.distance is None else round(float(self.distance), 4),
            "threshold": self.threshold,
            "seconds": round(self.seconds, 2),
            "liveness": self.liveness.to_json(),
        }


def _tracks(gallery, source, options: WatchOptions, seconds: float | None):
    """Every track's (id, embeddings, final liveness verdict, seconds seen), longest first."""
    done = {}
    with Watcher(source, gallery, options) as w:
        for frame, tracks, _ in w.frames():
            for t in tracks:
                done[t.id] = t
            if frame is not None and seconds is not None and frame.time >= seconds:
                break
    out = []
    for t in done.values():
        s = t.state
        if s.embeddings and s.monitor is not None:
            out.append((t.id, s.embeddings, s.monitor.verdict(), t.last_time - t.first_time))
    return sorted(out, key=lambda r: -r[3])


def verify_live(
    gallery,
    source: str | os.PathLike | int,
    name: str,
    seconds: float | None = None,
    **options,
) -> LiveDecision:
    """Is the (longest-seen) face in the video `name`, and live? Watches the whole file or
    `seconds` of a stream; options: see WatchOptions (e.g. challenge=("blink", "turn-left"))."""
    gallery.verify_embedding  # noqa: B018 - fail early on a gallery without this API
    if name not in {p.name for p in gallery.people()}:
        raise ConvlensError(f"{name!r} is not in the gallery {gallery.path}")
    found = _tracks(gallery, source, WatchOptions(liveness=True, **options), seconds)
    if not found:
        raise ConvlensError(f"{source}: no face found in the video")
    tid, embs, verdict, secs = found[0]
    dists = [gallery.verify_embedding(e, name) for e in embs]
    median = float(np.median([v.distance for v in dists]))
    tau = dists[0].threshold
    return LiveDecision(tid, name, median <= tau, median, tau, verdict, secs)


def identify_live(
    gallery, source: str | os.PathLike | int, seconds: float | None = None, **options
) -> list[LiveDecision]:
    """Every face track in the video with its identity (open-set) and liveness verdict."""
    found = _tracks(gallery, source, WatchOptions(liveness=True, **options), seconds)
    out = []
    for tid, embs, verdict, secs in found:
        name, dist, tau = identify_track(gallery, embs)
        out.append(LiveDecision(tid, name, name is not None, dist, tau, verdict, secs))
    return out
