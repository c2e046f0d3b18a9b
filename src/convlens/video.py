"""Video in and out with PyAV (its wheels ship their own FFmpeg libraries).

    from convlens.video import read_frames, VideoWriter
    for frame in read_frames("clip.mp4"):           # Frame(index, time, rgb uint8 (H, W, 3))
        ...
    with VideoWriter("out.mp4", fps=25) as out:
        out.write(rgb)

Sources: a file (MP4, MPG, AVI, WebM, MKV, MOV, animated GIF), a webcam by number ("0" or 0,
through the platform's capture device), or a network stream (rtsp://, http(s)://). Every open
and read is bounded by a timeout, so a dead stream is an error, never a hang. A corrupt or
truncated file yields the frames that decode and then stops; `FrameReader.damaged` says
whether decoding hit damage, and no frame at all is a one-line ConvlensError.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import numpy as np

from convlens.errors import ConvlensError

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v"}
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
# Frames larger than this are refused before decoding (a 8K frame is 33 MP).
MAX_FRAME_PIXELS = 40_000_000
DEFAULT_TIMEOUT_S = 10.0
MPEG1_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)  # the only ones it encodes


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based count of decoded frames
    time: float  # seconds from the start of the stream
    rgb: np.ndarray  # uint8 (H, W, 3)


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise ConvlensError("video support needs PyAV (pip install av)") from None
    return av


def _camera_index(source: str | int) -> int | None:
    if isinstance(source, int):
        return source
    return int(source) if isinstance(source, str) and source.isdigit() else None


def describe_source(source: str | os.PathLike | int) -> str:
    return f"camera {source}" if _camera_index(source) is not None else str(source)


def _open_container(source: str | os.PathLike | int, timeout: float):
    av = _av()
    camera = _camera_index(source)
    options = {}
    if camera is not None:
        target, fmt = f"/dev/video{camera}", "v4l2"
    else:
        target, fmt = str(source), None
        if not target.startswith(NETWORK_SCHEMES):
            _check_file(Path(target))
        elif target.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
    try:
        return av.open(target, format=fmt, options=options, timeout=(timeout, timeout))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ConvlensError(
            f"{describe_source(source)}: cannot open video ({_reason(e)})"
        ) from None


def _check_file(path: Path) -> None:
    from convlens.images import regular_file_stat

    if regular_file_stat(path, "a video").st_size == 0:
        raise ConvlensError(f"{path}: empty file")


def _reason(e: Exception) -> str:
    text = str(e).split(": '")[0].strip() or e.__class__.__name__
    return text.replace("\n", " ")[:200]


class ClosedOnExit:
    """`with obj:` closes obj at the end, whatever happened (for classes with close())."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameReader(ClosedOnExit):
    """Frames of one source, decoded lazily; use as an iterator, close when done."""

    def __init__(
        self,
        source: str | os.PathLike | int,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_frames: int | None = None,
        every: int = 1,
    ) -> None:
        if every < 1:
            raise ConvlensError(f"frame step must be at least 1, not {every}")
        self.source = source
        self.name = describe_source(source)
        self.max_frames = max_frames
        self.every = every
        self.damaged = False
        self._container = _open_container(source, timeout)
        streams = self._container.streams.video
        if not streams:
            self._container.close()
            raise ConvlensError(f"{self.name}: no video stream")
        self._stream = streams[0]
        self._stream.thread_type = "AUTO"
        w, h = self._stream.codec_context.width, self._stream.codec_context.height
        if w * h > MAX_FRAME_PIXELS:
            self._container.close()
            raise ConvlensError(
                f"{self.name}: frames are {w}x{h}, over the {MAX_FRAME_PIXELS // 10**6} "
                "megapixel limit"
            )
        self.size = (w, h)

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 25.0

    @property
    def frame_count(self) -> int | None:
        """Frames the container declares (None when unknown, e.g. a live stream)."""
        return int(self._stream.frames) or None

    def __iter__(self) -> Iterator[Frame]:
        av = _av()
        index = kept = 0
        base = self._stream.time_base or Fraction(1, 25)
        try:
            for frame in self._container.decode(self._stream):
                if index % self.every == 0:
                    t = float(frame.pts * base) if frame.pts is not None else index / self.fps
                    yield Frame(index, t, frame.to_ndarray(format="rgb24"))
                    kept += 1
                    if self.max_frames is not None and kept >= self.max_frames:
                        return
                index += 1
        except (av.error.FFmpegError, OSError, EOFError) as e:
            if index == 0:
                raise ConvlensError(f"{self.name}: cannot decode video ({_reason(e)})") from None
            self.damaged = True  # truncated or corrupt: keep what decoded
        if index == 0:
            raise ConvlensError(f"{self.name}: no frame could be decoded")

    def close(self) -> None:
        self._container.close()


def read_frames(source: str | os.PathLike | int, **options) -> Iterator[Frame]:
    """Every frame of a file, camera or stream (see FrameReader for the options)."""
    with FrameReader(source, **options) as reader:
        yield from reader


def is_video(path: str | os.PathLike) -> bool:
    text = str(path)
    return text.startswith(NETWORK_SCHEMES) or Path(text).suffix.lower() in VIDEO_SUFFIXES


class VideoWriter:
    """Writes RGB uint8 frames to MP4 (H.264), WebM (VP9), MPEG-1 (.mpg) or an animated GIF.

    The frame size is taken from the first frame (even sizes are padded for H.264). bit_rate
    (bits/s) sets the encoder's target where the codec takes one (MPEG-1 needs one: 1.2 Mbit/s,
    the GRID corpus's, by default). The file
    is written under a temporary name and renamed on close, so a failed run leaves no half
    video at the output path.
    """

    CODECS = {
        ".mp4": "libx264",
        ".m4v": "libx264",
        ".mkv": "libx264",
        ".webm": "libvpx-vp9",
        ".mpg": "mpeg1video",
    }

    def __init__(
        self, path: str | os.PathLike, fps: float = 25.0, bit_rate: int | None = None
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (*self.CODECS, ".gif"):
            raise ConvlensError(f"{self.path}: write .mp4, .webm, .mkv, .mpg or .gif")
        if suffix == ".mpg" and round(float(fps), 3) not in MPEG1_RATES:
            raise ConvlensError(
                f"{self.path}: MPEG-1 takes only {', '.join(map(str, MPEG1_RATES))} fps"
            )
        self._suffix = suffix
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part{suffix}")
        self.fps = Fraction(fps).limit_denominator(1000)
        self.bit_rate = bit_rate or (1_200_000 if suffix == ".mpg" else None)
        self._container = None
        self._stream = None
        self.frames = 0

    def _start(self, h: int, w: int) -> None:
        av = _av()
        self._container = av.open(str(self._tmp), "w")
        if self._suffix == ".gif":
            self._stream = self._container.add_stream("gif", rate=self.fps)
            self._stream.pix_fmt = "rgb8"
        else:
            self._stream = self._container.add_stream(self.CODECS[self._suffix], rate=self.fps)
            self._stream.pix_fmt = "yuv420p"
            if self.bit_rate:
                self._stream.bit_rate = int(self.bit_rate)
        self._stream.width, self._stream.height = w + w % 2, h + h % 2

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self._container is None:
            self._start(*rgb.shape[:2])
        pad_h = self._stream.height - rgb.shape[0]
        pad_w = self._stream.width - rgb.shape[1]
        if pad_h < 0 or pad_w < 0:
            raise ConvlensError(
                f"{self.path}: frame {rgb.shape[1]}x{rgb.shape[0]} differs from the first frame"
            )
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
