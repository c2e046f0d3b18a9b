"""Liveness from a short clip: every face track's verdict and reasons with its identity, and
verify-with-liveness (is the longest-seen face this person, and live?).

Both are convlens.faces.video.live (identify_live, verify_live) on the uploaded clip. A clip
is bounded before a frame is decoded: its bytes, then, from the container's header, its
frame size, duration and frame count (declared, or duration × rate); decoding then stops at
the same frame and time bounds whatever the header said. It runs on the worker pool.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import APIRouter, Request

from convlens.errors import ConvlensError
from convlens.service import images
from convlens.service.app import check_name, require, service
from convlens.service.errors import ApiError
from convlens.service.routes_faces import threshold_json, uncalibrated

router = APIRouter(tags=["liveness"])


@dataclass
class ClipInfo:
    width: int
    height: int
    fps: float
    seconds: float | None  # None: the header does not say
    frames: int | None


def probe(path: Path, config) -> ClipInfo:
    """The clip's header, checked against the service's clip limits (ApiError 400)."""
    import av

    try:
        container = av.open(str(path), timeout=(5.0, 5.0))
    except (av.error.FFmpegError, OSError, ValueError):
        raise ApiError(400, "bad_video", "video: not a video (format not recognised)") from None
    with container:
        if not container.streams.video:
            raise ApiError(400, "bad_video", "video: no video stream")
        s = container.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        rate = s.average_rate or s.guessed_rate
        fps = float(rate) if rate else 25.0
        seconds = container.duration / 1e6 if container.duration else None
        frames = int(s.frames) or (math.ceil(seconds * fps) if seconds else None)
    if not w or not h:
        raise ApiError(400, "bad_video", "video: no frame size in the header")
    if w * h > config.clip_max_pixels:
        raise ApiError(
            400,
            "too_many_pixels",
            f"video: frames are {w}x{h}, over the {config.clip_max_pixels} pixel limit",
        )
    if seconds is not None and seconds > config.clip_max_seconds:
        raise ApiError(
            400,
            "clip_too_long",
            f"video: {seconds:.1f} s, over the {config.clip_max_seconds:g} s limit",
        )
    if frames is not None and frames > config.clip_max_frames:
        raise ApiError(
            400,
            "clip_too_long",
            f"video: {frames} frames, over the {config.clip_max_frames} frame limit",
        )
    return ClipInfo(w, h, round(fps, 3), seconds and round(seconds, 3), frames)


async def _clip_bytes(request: Request) -> tuple[dict, bytes]:
    """The form fields and the one clip, `video` (a file, or base64 in JSON)."""
    config = service(request).config
    fields, files = await images.request_parts(request)
    found = files.get("video", [])
    if len(found) != 1:
        raise ApiError(400, "bad_request", "send exactly one clip as 'video'")
    if len(found[0]) > config.clip_max_bytes:
        raise ApiError(
            413, "too_large", f"video: over the {config.clip_max_bytes // 1024} KiB clip limit"
        )
    if not found[0]:
        raise ApiError(400, "bad_video", "video: empty")
    return fields, found[0]


@contextlib.contextmanager
def clip_file(data: bytes, config):
    """(path, ClipInfo) of the clip in a private temporary folder, removed afterwards. A
    library error names the file: the client sees "video" instead of a server path."""
    with tempfile.TemporaryDirectory(prefix="convlens-clip-") as tmp:
        path = Path(tmp) / "clip"
        path.write_bytes(data)
        info = probe(path, config)
        try:
            yield path, info
        except ConvlensError as e:
            text = str(e).replace(str(path), "video")
            raise ApiError(400, "no_face" if "no face" in text else "bad_video", text) from None


def _bounds(config) -> dict:
    return {"seconds": config.clip_max_seconds, "max_frames": config.clip_max_frames}


@router.post("/liveness", dependencies=[require("recognize")])
async def liveness(request: Request) -> dict:
    """Every face track in a short clip (`video`): its liveness verdict ("live", "spoof" or
    "undecided"), score and reasons, and who it is (open set, name null beyond τ). `verdict`
    is the longest-seen face's."""
    svc = service(request)
    _, data = await _clip_bytes(request)

    def work(g):
        from convlens.faces.video.live import identify_live

        if g.threshold is None:
            raise uncalibrated()
        with clip_file(data, svc.config) as (path, info):
            tracks = identify_live(g, path, **_bounds(svc.config))
        return {
            "verdict": tracks[0].liveness.verdict if tracks else None,
            "tracks": [t.to_json() for t in tracks],
            "clip": asdict(info),
            "threshold": threshold_json(g),
        }

    return await svc.pool.run(work)


@router.post("/verify/live", dependencies=[require("recognize")])
async def verify_live(request: Request) -> dict:
    """Is the longest-seen face in `video` the person `name`, and live? `open` is both."""
    svc = service(request)
    fields, data = await _clip_bytes(request)
    name = check_name(fields.get("name"))

    def work(g):
        from convlens.faces.video.live import verify_live as verify

        if name not in {p.name for p in g.people()}:
            raise ApiError(404, "not_found", f"no one called {name!r}")
        with clip_file(data, svc.config) as (path, info):
            decision = verify(g, path, name, **_bounds(svc.config))
        return {**decision.to_json(), "clip": asdict(info), "threshold": threshold_json(g)}

    return await svc.pool.run(work)
