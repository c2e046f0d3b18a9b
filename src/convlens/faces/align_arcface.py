"""ArcFace-style alignment: 112x112 chips with five landmarks on the standard template.

The encoders trained on insightface-style data (SFace among them) expect faces warped so the
eye centres, nose tip and mouth corners land on the ArcFace template below, as OpenCV's
FaceRecognizerSF::alignCrop does:

1. five points per face, in template order; from dlib's 68 landmarks: eye centres (mean of
   the six points of each eye), nose tip (30), mouth corners (48, 54);
2. the least-squares similarity transform (Umeyama, no reflection) from them to the template,
   shared with the dlib aligner (convlens.faces.align.similarity_transforms);
3. a bilinear warp with OpenCV's warpAffine conventions (pixel centres at integer
   coordinates; a neighbour outside the image counts as black, BORDER_CONSTANT), rounded to
   uint8; all faces of one image in one vectorised call.

dlib's 5-point model has no mouth corners, so these chips need 68-point landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convlens.faces.align import similarity_transforms

CHIP_SIZE = 112
# The ArcFace template for 112x112 chips, (x, y): the eye on the image's left (the subject's
# right), the other eye, the nose tip, the mouth corner on the image's left, the other one.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
_RIGHT_EYE_68 = slice(36, 42)  # the subject's right eye: on the image's left
_LEFT_EYE_68 = slice(42, 48)
_NOSE_TIP_68, _MOUTH_LEFT_68, _MOUTH_RIGHT_68 = 30, 48, 54  # image-left corner is 48


def five_points_from_dlib68(landmarks: np.ndarray) -> np.ndarray:
    """dlib 68-point landmarks (68, 2) or (N, 68, 2) -> ArcFace's five points, float64."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 landmarks of (x, y), got shape {pts.shape}")
    five = [
        pts[..., _RIGHT_EYE_68, :].mean(-2),
        pts[..., _LEFT_EYE_68, :].mean(-2),
        pts[..., _NOSE_TIP_68, :],
        pts[..., _MOUTH_LEFT_68, :],
        pts[..., _MOUTH_RIGHT_68, :],
    ]
    return np.stack(five, axis=-2)


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, np.float64)
    if pts.shape == (5, 2):  # already in template order
        return pts
    return five_points_from_dlib68(pts)


def arcface_transforms(points: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Image -> chip affine matrices (N, 2, 3) for five points (N, 5, 2) in template order."""
    points = np.asarray(points, np.float64)
    if points.ndim == 2:
        points = points[None]
    template = ARCFACE_TEMPLATE * (size / CHIP_SIZE)
    a, t = similarity_transforms(points, np.broadcast_to(template, points.shape))
    return np.concatenate([a, t[:, :, None]], axis=2)


def _invert(matrices: np.ndarray) -> np.ndarray:
    """Inverses of affine maps (N, 2, 3): chip pixel -> image point."""
    a, t = matrices[:, :, :2], matrices[:, :, 2]
    inv = np.linalg.inv(a)
    return np.concatenate([inv, -np.einsum("nij,nj->ni", inv, t)[:, :, None]], axis=2)


def warp_affine(image: np.ndarray, matrices: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Chips (N, size, size, C) uint8 from one image (H, W, C) uint8 under maps (N, 2, 3).

    matrices map image points to chip points (cv2.warpAffine's convention); bilinear, and a
    neighbour outside the image counts as 0.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    inv = _invert(np.asarray(matrices, np.float64).reshape(-1, 2, 3))
    cols = np.arange(size, dtype=np.float64)[None, None, :]
    rows = np.arange(size, dtype=np.float64)[None, :, None]
    m = inv[:, :, :, None, None]
    # source coordinates of every chip pixel: (N, size rows, size columns)
    x = m[:, 0, 0] * cols + m[:, 0, 1] * rows + m[:, 0, 2]
    y = m[:, 1, 0] * cols + m[:, 1, 1] * rows + m[:, 1, 2]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    pixels = image.reshape(h, w, -1)
    out = np.zeros((*x.shape, pixels.shape[2]), np.float64)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):  # fmt: skip
        xi, yi = x0 + dx, y0 + dy
        inside = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[..., None]
        value = pixels[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        out += np.where(inside, weight * value, 0.0)
    chips = np.floor(out + 0.5).clip(0, 255).astype(np.uint8)
    return chips.reshape(len(inv), size, size, *image.shape[2:])


def align_faces(
    items: Sequence[tuple[np.ndarray, np.ndarray]], size: int = CHIP_SIZE
) -> np.ndarray:
    """ArcFace chips for many faces: items are (RGB uint8 image, landmarks (68, 2) or five
    points (5, 2) in template order) per face; faces of one image may share the image object.
    Returns uint8 (N, size, size, 3)."""
    out = np.empty((len(items), size, size, 3), np.uint8)
    if len(items) == 0:
        return out
    matrices = arcface_transforms(np.stack([_five_points(pts) for _, pts in items]), size)
    by_image: dict[int, list[int]] = {}
    for i, (image, _) in enumerate(items):
        by_image.setdefault(id(image), []).append(i)
    for idx in by_image.values():
        out[idx] = warp_affine(np.asarray(items[idx[0]][0]), matrices[idx], size)
    return out


def align_image(image: np.ndarray, landmarks: Sequence[np.ndarray], size: int = CHIP_SIZE):
    """ArcFace chips for every face of one image: landmarks is a list of (68|5, 2) arrays."""
    return align_faces([(image, pts) for pts in landmarks], size)


def detection_points(image: np.ndarray, detections: list) -> list[np.ndarray]:
    """ArcFace's five points per detection: the detector's own (YuNet), else dlib's 68 mapped."""
    from convlens.faces.detect import landmarks

    need = [d for d in detections if d.points is None]
    dlib68 = iter(landmarks(image, need, 68))
    return [
        d.points
        if d.points is not None
        else five_points_from_dlib68(next(dlib68)).astype(np.float32)
        for d in detections
    ]
