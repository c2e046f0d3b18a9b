"""Alignment matches dlib.get_face_chip on every face of the shared photos and ORL."""

from __future__ import annotations

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")

from convlens.faces import align, detect  # noqa: E402
from convlens.faces.pipeline import _find  # noqa: E402
from convlens.images import list_images, load_image  # noqa: E402

MAX_MEAN_ABS_DIFF = 2.0  # 0-255 scale


def _faces_and_reference(paths, upsample, points=5):
    """(image, landmarks) items for our batched call and dlib's own chips for each face."""
    items, reference, names = [], [], []
    predictor = detect.shape_predictor(points)
    for path in paths:
        img = load_image(path)
        # ORL needs upsample 2; the odd ORL photo with no detection uses the whole image.
        faces, shapes = _find(img, "hog", upsample, points, whole_image_fallback=True)
        assert faces, path
        for face, pts in zip(faces, shapes, strict=True):
            shape = predictor(img, dlib.rectangle(*face.rect))
            reference.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
            items.append((img, pts))
            names.append(f"{path.name}:{face.box}")
    return items, np.stack(reference), names


def _assert_close(ours, reference, names):
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16)).mean(axis=(1, 2, 3))
    worst = int(np.argmax(diff))
    assert diff[worst] <= MAX_MEAN_ABS_DIFF, f"{names[worst]}: mean |diff| {diff[worst]:.3f}"


def test_chips_match_dlib_on_every_shared_photo(photos_dir):
    items, reference, names = _faces_and_reference(list_images(photos_dir), upsample=1)
    ours = align.align_faces(items)  # all faces of all photos in one call
    assert ours.shape == reference.shape
    _assert_close(ours, reference, names)


def test_chips_match_dlib_on_every_orl_photo(orl_dir):
    paths = list_images(orl_dir)
    assert len(paths) == 400
    items, reference, names = _faces_and_reference(paths, upsample=2)
    _assert_close(align.align_faces(items), reference, names)


def test_68_point_chips_match_dlib(photos_dir):
    paths = [photos_dir / "obama.jpg", photos_dir / "two_people.jpg"]
    items, reference, names = _faces_and_reference(paths, upsample=1, points=68)
    _assert_close(align.align_faces(items), reference, names)


def test_chip_details_match_dlib(photos_dir):
    img = load_image(photos_dir / "obama_and_biden.jpg")
    dets = detect.detect(img)
    for points in (5, 68):
        predictor = detect.shape_predictor(points)
        for d in dets:
            shape = predictor(img, dlib.rectangle(*d.rect))
            ref = dlib.get_face_chip_details(shape, 150, 0.25)
            pts = np.array([(p.x, p.y) for p in shape.parts()])
            rect, angle = align.face_chip_details(pts)
            r = ref.rect
            expected = [r.left(), r.top(), r.right(), r.bottom()]
            np.testing.assert_allclose(rect[0], expected, atol=1e-6)
            assert angle[0] == pytest.approx(ref.angle, abs=1e-9)


def test_batched_equals_one_by_one(photos_dir):
    items, _, _ = _faces_and_reference(
        [photos_dir / "two_people.jpg", photos_dir / "obama_small.jpg"], upsample=1
    )
    together = align.align_faces(items)
    for i, item in enumerate(items):
        assert (align.align_faces([item]) == together[i]).all()


def test_pyramid_matches_dlib_shapes():
    img = np.random.default_rng(0).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    down = align.pyramid_down(img)
    assert down.shape == ((41 - 3) // 2, (57 - 3) // 2, 3)
    assert align.pyramid_down(img[:8]).shape[0] == 0


def test_face_off_the_image_gives_a_black_chip():
    img = np.full((50, 50, 3), 200, np.uint8)
    far_away = np.array([[900, 900], [880, 900], [800, 900], [820, 900], [850, 950]])
    chip = align.align_faces([(img, far_away)])
    assert chip.shape == (1, 150, 150, 3) and chip.max() == 0
