"""One bad file never ends a batch, and no file makes reading block or decode unbounded:
poisoned items (truncated JPEG, zero bytes, FIFO, socket, huge-declared headers, not an
image, a folder, a dlib error) each get their own one-line error; the good photos are
encoded; the CLI exits 1 with no traceback."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import MAX_ASPECT, MAX_PIXELS, load_image

ROOT = Path(__file__).resolve().parents[1]


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A small real PNG whose header (IHDR, CRC fixed) declares width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 120, 150)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # type + 13 bytes of IHDR
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A small real JPEG whose SOF0 marker declares width x height (the data is far short)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def poisoned(tmp_path, photos_dir):
    good = [photos_dir / "obama.jpg", photos_dir / "biden.jpg"]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((photos_dir / "obama.jpg").read_bytes()[:3000])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image\n")
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    bad = {
        truncated: "cannot decode",
        tmp_path / "empty.jpg": "not an image",
        tmp_path / "notes.jpg": "not an image",
        tmp_path / "folder.jpg": "folder",
        tmp_path / "pipe.jpg": "not a regular file",
        png_declaring(tmp_path / "tall.png", 320, 50000): f"{MAX_ASPECT}:1 limit",
        png_declaring(tmp_path / "line.png", 100_000_000, 1): "megapixel limit",
        jpeg_declaring(tmp_path / "huge.jpg", 10000, 10000): "megapixel limit",
        png_declaring(tmp_path / "strip.png", 40, 2000): f"{MAX_ASPECT}:1 limit",
        # libjpeg pads missing data with grey: a blank 3 MP photo, searched within bounds.
        jpeg_declaring(tmp_path / "big-short.jpg", 2000, 1500): None,
    }
    return good, bad


def unblock_after(fifo: Path, seconds: float) -> threading.Thread:
    """Open the FIFO's write end later, so that a reader that blocks fails instead of hanging."""

    def run():
        time.sleep(seconds)
        try:
            fd = os.open(fifo, os.O_RDWR)
            os.close(fd)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_every_poisoned_item_is_its_own_error(poisoned, monkeypatch):
    from convlens.faces import detect, encode_many

    good, bad = poisoned
    # A dlib failure on one photo (not a ConvlensError) is that photo's error too.
    real = detect.landmarks

    def flaky(image, dets, points=5):
        if image.shape[0] == 123:
            raise RuntimeError("dlib exploded\nsecond line")
        return real(image, dets, points)

    monkeypatch.setattr(detect, "landmarks", flaky)
    odd = np.full((123, 200, 3), 100, np.uint8)
    items = [good[0], *bad, odd, good[1]]
    unblock_after(next(p for p in bad if p.name == "pipe.jpg"), 20)
    start = time.perf_counter()
    results = list(encode_many(items, detector="hog", progress=False))
    assert time.perf_counter() - start < 60
    assert [item is it for (item, _), it in zip(results, items, strict=True)] == [True] * len(items)
    out = dict(zip(range(len(items)), (r for _, r in results), strict=True))
    assert all(len(out[i]) == 1 and out[i][0].embedding is not None for i in (0, len(items) - 1))
    for i, (path, expected) in enumerate(bad.items(), start=1):
        if expected is None:
            assert out[i] == [], path  # a blank photo: no face
            continue
        assert isinstance(out[i], ConvlensError), path
        msg = str(out[i])
        assert "\n" not in msg and str(path) in msg and expected in msg, msg
    assert str(out[len(items) - 2]) == "ndarray: RuntimeError: dlib exploded"


def test_special_files_are_refused_without_blocking(tmp_path):
    sock_path = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        for path in (sock_path, Path("/dev/zero"), Path("/dev/null")):
            with pytest.raises(ConvlensError, match="not a regular file"):
                load_image(path)


def test_limits_are_checked_on_the_header_before_decoding(tmp_path):
    """The header alone decides: 100 MP declared is refused in milliseconds, with the limit."""
    path = jpeg_declaring(tmp_path / "huge.jpg", 12000, 9000)
    start = time.perf_counter()
    with pytest.raises(ConvlensError, match=f"over the {MAX_PIXELS // 10**6} megapixel limit"):
        load_image(path)
    assert time.perf_counter() - start < 0.5
    with pytest.raises(ConvlensError, match="decodes to about"):
        Image.new("I;16", (7000, 7000)).save(tmp_path / "deep.png")
        load_image(tmp_path / "deep.png")
    with pytest.raises(ConvlensError, match="aspect ratio"):
        load_image(np.zeros((2, 10000, 3), np.uint8))


def test_cli_batch_goes_on_past_poisoned_files(poisoned):
    good, bad = poisoned
    # On the command line a folder stands for the photos in it: not an item of its own.
    bad = {p: e for p, e in bad.items() if not p.is_dir()}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "convlens", "faces", "encode", "--json", "--detector", "hog"]
    proc = subprocess.run(
        [*argv, str(good[0]), *map(str, bad), str(good[1])],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    import json

    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    accepted = [True, *(e is None for e in bad.values()), True]
    assert [r["error"] is None for r in rows] == accepted
    assert all(len(rows[i]["faces"]) == 1 for i in (0, -1))
