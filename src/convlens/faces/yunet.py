"""Faces with YuNet (convlens.models.yunet): boxes, scores and five landmarks, batched.

Decoding follows OpenCV's FaceDetectorYN (modules/objdetect/src/face_detect.cpp, 2023mar
model): the image is zero-padded at the bottom and right to multiples of 32; each cell of
each stride s in (8, 16, 32) predicts score sqrt(cls * obj), a box centre ((col, row) + offset)
* s with sides exp(.) * s, and five points ((col, row) + offset) * s; boxes scoring at least
SCORE_THRESHOLD go through non-maximum suppression at IoU NMS_THRESHOLD.

Scales: YuNet finds faces down to ~10 pixels (HOG at upsample 1: ~40), so a photo is searched
once, at its own size or, when its longer side passes SEARCH_SIDE, on a copy shrunk to it (a
1080p photo: faces from ~30 pixels, still below HOG's floor, at a fifth of the cost). Only
when nothing is found is it searched again at 2x, 4x... up to 2**upsample ("auto"-style: a
photo with a findable face costs one pass).
Landmark order is the ArcFace template's: the eye on the image's left, the other eye, the nose
tip, the mouth corner on the image's left, the other one.
"""

from __future__ import annotations

import threading

import numpy as np

from convlens.models.yunet import DIVISOR, STRIDES

# OpenCV's FaceDetectorYN default is 0.9; ORL's frame-filling faces (s37) score 0.87-0.89 and
# were missed, while the shared photos show no extra detection down to 0.5 (measured).
SCORE_THRESHOLD = 0.8
NMS_THRESHOLD = 0.3
TOP_K = 5000
# The first search runs on a copy whose longer side is at most this (faces/README.md: speed).
SEARCH_SIDE = 640
# Upscaled searches stop before the image's longer side passes this (memory and time).
MAX_UPSCALED_SIDE = 2048

_MODELS: dict = {}
_LOCK = threading.Lock()


def detector(device=None):
    """The YuNet module (loaded once per device; inference is thread-safe)."""
    from convlens.models.devices import resolve_device
    from convlens.models.yunet import load_yunet

    dev = resolve_device(device)
    with _LOCK:
        if str(dev) not in _MODELS:
            _MODELS[str(dev)] = load_yunet().to(dev)
        return _MODELS[str(dev)]


def _sizes(images: list[np.ndarray], scales: list[float]) -> list[tuple[int, int]]:
    """(height, width) of each image resized by its scale (at least 1x1)."""
    return [
        (max(1, round(im.shape[0] * f)), max(1, round(im.shape[1] * f)))
        for im, f in zip(images, scales, strict=True)
    ]


def _batch(images: list[np.ndarray], sizes: list[tuple[int, int]]):
    """RGB float tensor (N, 3, H, W), each image resized to its size and zero-padded at the
    bottom and right to one size, a multiple of 32."""
    import torch
    import torch.nn.functional as F

    h = -(-max(s[0] for s in sizes) // DIVISOR) * DIVISOR
    w = -(-max(s[1] for s in sizes) // DIVISOR) * DIVISOR
    x = torch.zeros((len(images), 3, h, w))
    for i, (im, (ih, iw)) in enumerate(zip(images, sizes, strict=True)):
        t = torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float()
        if (ih, iw) != im.shape[:2]:
            t = F.interpolate(t[None], size=(ih, iw), mode="bilinear", antialias=True)[0]
        x[i, :, :ih, :iw] = t
    return x


def _decode(outputs: list[np.ndarray], h: int, w: int, threshold: float):
    """(boxes (M, 4) x0 y0 x1 y1, scores (M,), points (M, 5, 2)) of one image's candidates."""
    boxes, scores, points = [], [], []
    for k, s in enumerate(STRIDES):
        cls, obj, bbox, kps = (outputs[k + 3 * j] for j in range(4))
        score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        keep = np.nonzero(score >= threshold)[0]
        cols = w // s
        c, r = (keep % cols).astype(np.float64), (keep // cols).astype(np.float64)
        b = bbox[keep].astype(np.float64)
        cx, cy = (c + b[:, 0]) * s, (r + b[:, 1]) * s
        bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
        p = kps[keep].astype(np.float64).reshape(-1, 5, 2)
        points.append((p + np.stack([c, r], 1)[:, None, :]) * s)
        scores.append(score[keep])
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_THRESHOLD, top_k: int = TOP_K):
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while len(order):
        i, order = order[0], order[1:]
        kept.append(int(i))
        x0 = np.maximum(boxes[i, 0], boxes[order, 0])
        y0 = np.maximum(boxes[i, 1], boxes[order, 1])
        x1 = np.minimum(boxes[i, 2], boxes[order, 2])
        y1 = np.minimum(boxes[i, 3], boxes[order, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        order = order[inter <= iou * (area[i] + area[order] - inter)]
    return np.array(kept, np.int64)


def run(images: list[np.ndarray], scales: list[float], threshold: float = SCORE_THRESHOLD):
    """One batched YuNet pass, each image at its scale: per image (boxes, scores, points) in
    the image's own pixels."""
    import torch

    net = detector()
    sizes = _sizes(images, scales)
    x = _batch(images, sizes)
    dev = next(net.parameters()).device
    with torch.inference_mode():
        outs = [o.float().cpu().numpy() for o in net(x.to(dev))]
    h, w = x.shape[-2:]
    found = []
    for i in range(len(images)):
        boxes, scores, points = _decode([o[i] for o in outs], h, w, threshold)
        keep = nms(boxes, scores)
        # back to the image's pixels, per axis (the copy's sides were rounded)
        unscale = np.array(images[i].shape[1::-1], np.float64) / sizes[i][::-1]
        found.append((boxes[keep] * np.tile(unscale, 2), scores[keep], points[keep] * unscale))
    return found


def detect_many(
    images: list[np.ndarray], upsample: int = 1, threshold: float = SCORE_THRESHOLD
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Faces in RGB uint8 images, batched: per image (boxes (M, 4) float x0 y0 x1 y1 with
    x1/y1 exclusive, scores (M,), points (M, 5, 2)), best score first. Images with no face
    at the first scale are searched again at 2x, 4x, ... up to 2**upsample."""
    first = [min(1.0, SEARCH_SIDE / max(im.shape[:2])) for im in images]
    results = run(images, first, threshold)
    for level in range(1, upsample + 1):
        scale = 2.0**level
        todo = [
            i
            for i, (b, _, _) in enumerate(results)
            if not len(b) and max(images[i].shape[:2]) * scale <= MAX_UPSCALED_SIDE
        ]
        if not todo:
            break
        again = run([images[i] for i in todo], [scale] * len(todo), threshold)
        for i, found in zip(todo, again, strict=True):
            results[i] = found
    return results
