"""The video reader and writer: round trip, truncated files, non-regular files, bad sources."""

from __future__ import annotations

import os

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.video import FrameReader, VideoWriter, read_frames


def _clip(path, n=12, size=(48, 64)):
    yy, xx = np.mgrid[: size[0], : size[1]]
    with VideoWriter(path, fps=10) as out:
        for i in range(n):
            rgb = np.stack([(xx * 4 + i * 10) % 256, yy * 5 % 256, np.full_like(xx, 128)], -1)
            out.write(rgb.astype(np.uint8))
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webm"])
def test_round_trip(tmp_path, suffix):
    path = _clip(tmp_path / f"c{suffix}")
    frames = list(read_frames(path))
    assert len(frames) == 12
    assert frames[0].rgb.shape == (48, 64, 3) and frames[0].rgb.dtype == np.uint8
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].time == pytest.approx(0.5, abs=0.06)
    # Lossy codecs: the gradient survives closely on average.
    assert np.abs(frames[3].rgb[..., 1].astype(int) - (np.mgrid[:48, :64][0] * 5 % 256)).mean() < 12


def test_every_and_max_frames(tmp_path):
    path = _clip(tmp_path / "c.mp4")
    frames = list(read_frames(path, every=3, max_frames=3))
    assert [f.index for f in frames] == [0, 3, 6]


def test_truncated_file_gives_the_frames_that_decode(tmp_path):
    # WebM is a streaming container: a cut file still holds its first frames.
    raw = _clip(tmp_path / "c.webm", n=40).read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with FrameReader(cut) as reader:
        frames = list(reader)
    assert 0 < len(frames) < 40


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(ConvlensError, match="no such file"):
        list(read_frames(tmp_path / "missing.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ConvlensError, match="empty"):
        list(read_frames(tmp_path / "empty.mp4"))
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4096))
    with pytest.raises(ConvlensError, match="junk.mp4"):
        list(read_frames(tmp_path / "junk.mp4"))
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(ConvlensError, match="not a regular file"):
        list(read_frames(fifo))
    with pytest.raises(ConvlensError, match="folder"):
        list(read_frames(tmp_path))


def test_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConvlensError, match="write .mp4"):
        VideoWriter(tmp_path / "o.txt")
