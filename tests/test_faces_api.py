"""The public faces API: encode, encode_many, face_chips, embed_chips, distance."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convlens.faces as faces
from convlens.errors import ConvlensError
from convlens.images import load_image


def test_import_is_cheap():
    code = (
        "import sys, convlens.faces as f; "
        "heavy = [m for m in ('torch', 'dlib') if m in sys.modules]; "
        "assert not heavy, heavy; assert callable(f.encode)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_encode_path_array_and_pil_agree(photos_dir):
    path = photos_dir / "obama_small.jpg"
    by_path = faces.encode(path)
    assert len(by_path) == 1
    f = by_path[0]
    assert f.embedding.dtype == np.float32 and f.embedding.shape == (128,)
    assert f.landmarks.shape == (5, 2) and f.score > 0
    x0, y0, x1, y1 = f.box
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
    arr = load_image(path)
    for other in (faces.encode(arr), faces.encode(Image.fromarray(arr))):
        assert other[0].box == f.box
        assert faces.distance(other[0], f) < 1e-5


def test_embedding_matches_dlib(photos_dir):
    dlib = pytest.importorskip("dlib")
    from convlens.faces import detect
    from convlens.models.weights import dlib_model_file

    img = load_image(photos_dir / "obama_small.jpg")
    found = faces.encode(img, model="dlib-resnet")
    net = dlib.face_recognition_model_v1(
        str(dlib_model_file("dlib_face_recognition_resnet_model_v1"))
    )
    shape = detect.shape_predictor(5)(img, dlib.rectangle(*found[0].rect))
    ref = np.array(net.compute_face_descriptor(img, shape))
    assert faces.distance(found[0].embedding, ref) < 0.01


def test_same_and_different_people(photos_dir):
    obama = faces.encode(photos_dir / "obama.jpg")[0]
    obama2 = faces.encode(photos_dir / "obama2.jpg")[0]
    biden = faces.encode(photos_dir / "biden.jpg")[0]
    tau = faces.encoder_extras()["threshold"]  # the default encoder's shipped τ
    assert faces.distance(obama, obama2) < tau < faces.distance(obama, biden)
    many = faces.distance(obama.embedding, np.stack([obama2.embedding, biden.embedding]))
    assert many.shape == (2,) and many[0] < many[1]


def test_largest_face_first(photos_dir):
    found = faces.encode(photos_dir / "two_people.jpg")
    assert len(found) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in found]
    assert areas == sorted(areas, reverse=True)


def test_no_face_is_an_empty_list():
    assert faces.encode(np.full((120, 160, 3), 90, np.uint8)) == []
    found = faces.encode(np.full((120, 160, 3), 90, np.uint8), whole_image_fallback=True)
    assert len(found) == 1 and found[0].box == (0, 0, 160, 120)
    assert found[0].detector == "whole-image"


def test_unreadable_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ConvlensError, match="bad.png"):
        faces.encode(bad)


def test_face_chips_and_embed_chips(photos_dir):
    found, chips = faces.face_chips(photos_dir / "two_people.jpg")
    size = faces.encoder_extras()["chip_size"]  # the default encoder's chips
    assert chips.dtype == np.uint8 and chips.shape == (2, size, size, 3)
    assert all(f.embedding is None for f in found)
    embs = faces.embed_chips(chips, batch_size=1)
    assert embs.shape == (2, 128) and embs.dtype == np.float32
    direct = faces.encode(photos_dir / "two_people.jpg")
    np.testing.assert_allclose(embs, np.stack([f.embedding for f in direct]), atol=1e-5)
    assert faces.embed_chips(chips[:0]).shape == (0, 128)


def test_flip_and_jitter(photos_dir):
    _, chips = faces.face_chips(photos_dir / "obama_small.jpg", aligner="dlib-5")
    net = faces.resolve_model("dlib-resnet")
    plain = faces.embed_chips(chips, net)
    mirrored = faces.embed_chips(chips[:, :, ::-1], net)
    flipped = faces.embed_chips(chips, net, flip=True)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-5)
    jit = faces.embed_chips(chips, net, jitter=4)
    np.testing.assert_allclose(jit, faces.embed_chips(chips, net, jitter=4), atol=1e-6)
    assert 0 < faces.distance(jit[0], plain[0]) < 0.25
    assert 0 < faces.distance(flipped[0], plain[0]) < 0.25


def test_encode_many_batches_across_images_in_order(photos_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not a photo")
    paths = [
        photos_dir / "obama_small.jpg",
        bad,
        photos_dir / "two_people.jpg",
        tmp_path / "missing.jpg",
        photos_dir / "obama-240p.jpg",
    ]
    results = list(faces.encode_many(paths, batch_size=2, workers=2, progress=False))
    assert [p for p, _ in results] == paths
    assert isinstance(results[1][1], ConvlensError) and "broken.jpg" in str(results[1][1])
    assert isinstance(results[3][1], ConvlensError)
    assert [len(results[i][1]) for i in (0, 2, 4)] == [1, 2, 1]
    for i in (0, 2):
        single = faces.encode(paths[i])
        for a, b in zip(results[i][1], single, strict=True):
            assert a.box == b.box and faces.distance(a, b) < 1e-4


def test_detectors_and_landmarks(photos_dir, orl_dir):
    small = photos_dir / "obama_small.jpg"
    cnn = faces.encode(small, detector="cnn", model="dlib-resnet")
    assert len(cnn) == 1 and cnn[0].detector == "cnn"
    hog = faces.encode(small, detector="hog", model="dlib-resnet")[0]
    assert faces.distance(cnn[0], hog) < 0.2
    f68 = faces.encode(small, detector="hog", landmarks=68, model="dlib-resnet")[0]
    assert f68.landmarks.shape == (68, 2) and faces.distance(f68, hog) < 0.2
    # HOG at upsample 2 misses a few ORL faces; "auto" tries other levels, then the CNN.
    missed = [orl_dir / "s33" / "10.pgm", orl_dir / "s35" / "2.pgm"]
    assert not any(faces.face_chips(p, detector="hog", upsample=2)[0] for p in missed)
    for p in missed:
        found, chips = faces.face_chips(p, detector="auto", upsample=2, aligner="dlib-5")
        assert len(found) == 1 and chips.shape == (1, 150, 150, 3)


def test_min_face_detects_big_photos_at_lower_resolution(photos_dir):
    path = photos_dir / "obama-1080p.jpg"
    # min_face plans HOG's resolution (YuNet sizes its own search: faces/yunet.py)
    full = faces.encode(path, detector="auto", model="dlib-resnet")[0]
    fast = faces.encode(path, detector="auto", model="dlib-resnet", min_face=0.15)[0]
    hog = faces.encode(path, detector="hog", model="dlib-resnet", min_face=0.15)[0]
    assert fast.box == hog.box
    assert np.abs(np.subtract(full.box, fast.box)).max() < 0.1 * (full.box[2] - full.box[0])
    assert faces.distance(full, fast) < 0.1


def test_bad_options():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ConvlensError, match="detector"):
        faces.encode(img, detector="haar")
    with pytest.raises(ConvlensError, match="landmarks"):
        faces.encode(img, landmarks=7)
