"""faces.box.Box: the one box type, x1/y1 exclusive, and its conversions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.faces.box import Box
from convlens.faces.detect import Detection
from convlens.faces.gallery import Gallery


def test_from_dlib_is_exclusive_and_clipped():
    # dlib's inclusive rectangle (left, top, right, bottom), partly outside a 100x80 image.
    d = Detection((-5, 10, 99, 90), 1.0, "hog")
    box = d.box(100, 80)
    assert isinstance(box, Box) and box == (0, 10, 100, 80)
    assert (box.width, box.height) == (100, 70)
    inside = Box.from_dlib((10, 20, 49, 59))
    assert inside == Box(10, 20, 50, 60) and inside.to_dlib() == (10, 20, 49, 59)
    assert inside.to_face_recognition() == (20, 49, 59, 10)  # (top, right, bottom, left)
    assert json.dumps({"box": list(inside)}) == '{"box": [10, 20, 50, 60]}'
    image = np.zeros((80, 100), np.uint8)
    assert image[inside.y0 : inside.y1, inside.x0 : inside.x1].shape == (40, 40)


def test_face_boxes_are_boxes(photos_dir):
    from convlens import faces

    (face,) = faces.encode(photos_dir / "obama_small.jpg")
    assert isinstance(face.box, Box) and face.to_json(embedding=False)["box"] == list(face.box)
    x0, y0, x1, y1 = face.rect  # dlib's unclipped rectangle, inclusive
    assert face.box == Box.from_dlib(face.rect, *face_size(photos_dir / "obama_small.jpg"))
    assert x1 - x0 + 1 >= face.box.width


def face_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_identify_many_streams_in_order_with_errors(tmp_path, photos_dir):
    with Gallery(tmp_path / "g.db") as g:
        g.enroll("obama", [photos_dir / "obama.jpg"])
        photos = [photos_dir / "obama2.jpg", tmp_path / "missing.jpg", photos_dir / "biden.jpg"]
        out = list(g.identify_many(photos))
        assert [p for p, _ in out] == photos
        (m,) = out[0][1]
        assert m.name == "obama" and isinstance(m.box, Box)
        assert isinstance(out[1][1], ConvlensError) and "missing.jpg" in str(out[1][1])
        assert out[2][1][0].name is None
        tau = g.decision_threshold()
        assert (tau.value, tau.scorer) == (g.threshold, "distance") and m.threshold == tau.value
        v = g.verify(photos_dir / "obama2.jpg", "obama")
        assert v.box == m.box and v.distance == pytest.approx(m.distance, abs=1e-6)
        with pytest.raises(ConvlensError, match="k must be"):
            g.identify_many(photos, k=0)
