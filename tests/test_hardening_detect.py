"""dlib never gets an image it cannot take: a size sweep over tiny and extreme-aspect images
through detect() (hog, cnn, auto), the landmark predictors, encode() and inspect's face views,
in a child process so that a native crash is a test failure, not a dead pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dlib")

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("hardening_child.py")

SMALL = [1, 2, 3, 8, 9, 10, 31, 33]
# Thin strips at and beyond the 20:1 aspect limit (2x10000 crashed dlib's CNN natively).
THIN = [(1, 20), (20, 1), (2, 40), (40, 2), (8, 160), (160, 8), (9, 180), (2, 10000), (10000, 2)]


def sweep(sizes: list[str], timeout: float = 240) -> list[list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(CHILD), *sizes], capture_output=True, text=True, env=env,
        timeout=timeout,
    )  # fmt: skip
    lines = [ln.split(" ", 3) for ln in proc.stdout.splitlines()]
    started = [ln for ln in lines if ln[0] == "start"]
    assert proc.returncode == 0, (
        f"child died with {proc.returncode} at {started[-1][1:] if started else '?'}: "
        f"{proc.stderr[-500:]}"
    )
    return [ln for ln in lines if ln[0] != "start"]


def test_small_and_thin_images_never_crash_dlib():
    # encode() and the face views (slow: the encoder runs) on the thin strips and a few.
    shapes = [(w, h, ":full" if w == h else "") for w in SMALL for h in SMALL]
    shapes += [(w, h, ":noise:full") for w, h in THIN] + [(3, 9, ":noise"), (33, 9, ":noise")]
    sizes = [f"{w}x{h}{kind}" for w, h, kind in shapes]
    results = sweep(sizes)
    assert len(results) == sum(9 if "full" in s else 7 for s in sizes)
    errors = [r for r in results if r[0] == "error"]
    assert not errors, errors[:5]
    refused = {r[1] for r in results if r[0] == "refused"}
    # Only what is over the aspect limit is refused; every other size runs every step.
    over = {f"{w}x{h}{kind}" for w, h, kind in shapes if max(w, h) > 20 * min(w, h)}
    assert refused == over
    for r in results:
        if r[0] == "refused":
            assert "aspect ratio over the 20:1 limit" in r[3]


def test_cnn_on_a_shrunk_copy_finds_the_face_where_hog_does(photos_dir):
    """A 2 MP photo at upsample 1 is 8 MP for the CNN (7.7 GB before the bound): it runs on a
    copy shrunk to CNN_MAX_PIXELS, and the box comes back in the photo's pixels."""
    from convlens.faces import detect as d
    from convlens.images import load_image

    img = load_image(photos_dir / "obama-1080p.jpg")
    up, scale = d.search_plan(img.shape, 1, d.CNN_MAX_PIXELS)
    assert up == 0 and scale < 0.75
    (hog,) = d.detect(img, "hog", 0)
    (cnn,) = d.detect(img, "cnn", 1)
    a, b = hog.box(img.shape[1], img.shape[0]), cnn.box(img.shape[1], img.shape[0])
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    assert inter / union > 0.5, (a, b)


def test_search_plan_bounds_pixels():
    from convlens.faces import detect as d

    assert d.search_plan((3000, 4000), 1, d.CNN_MAX_PIXELS) == (0, pytest.approx(0.2887, 1e-3))
    assert d.search_plan((3000, 4000), 2, d.HOG_MAX_PIXELS) == (1, 1.0)
    # 640x480 at upsample 1 is 1.2 MP: shrunk by 10% and upsampled, not searched at 1x.
    assert d.search_plan((480, 640), 1, d.CNN_MAX_PIXELS) == (1, pytest.approx(0.902, 1e-3))
    assert d.search_plan((100, 100), 3, d.CNN_MAX_PIXELS) == (3, 1.0)
    for shape in [(3000, 4000), (480, 640), (7000, 7000), (1, 20), (5000, 250)]:
        for up in range(4):
            u, s = d.search_plan(shape, up, d.CNN_MAX_PIXELS)
            assert shape[0] * shape[1] * (s * 2**u) ** 2 <= d.CNN_MAX_PIXELS * 1.0001
            assert u <= up and s <= 1
