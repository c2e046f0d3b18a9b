"""Face alignment: 150x150 chips exactly as dlib's get_face_chip(img, shape, 150, 0.25) makes them.

The geometry follows dlib/image_transforms/interpolation.h (get_face_chip_details,
chip_details, extract_image_chips) and image_pyramid.h (pyramid_down<2>), re-implemented in
numpy so many faces from many images are aligned in one vectorised call:

1. A similarity transform (Umeyama least squares, no reflection) maps the mean-face template
   (5 points, or 33 of the 68 points: nose, eyes, outer and upper lips) to the landmarks.
2. Its scale and angle give a rotated square `rect` in the image, 150 chip pixels wide.
3. Where that square is much larger than the chip, dlib first builds a 5x5 Gaussian pyramid
   (integer arithmetic, halving each level) of a crop around the face and samples from the
   level whose rectangle still has more than 150*150 pixels; we do the same, bit for bit.
4. Bilinear interpolation (black where a sample's 2x2 neighbourhood leaves the crop),
   truncated to uint8 like dlib's assign_pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHIP_SIZE = 150
PADDING = 0.25

# dlib's mean face, 5-point model order: right eye outer/inner, left eye outer/inner, nose.
_TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
# dlib's mean face for 68-point parts 17..67.
_MEAN_X_17_67 = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
]  # fmt: skip
_MEAN_Y_17_67 = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
]  # fmt: skip
# dlib ignores the jaw (0-16), the eyebrows (17-26) and the lower lip (55-59, 65-67).
_PARTS_68 = np.array([i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67)])
_TEMPLATE_68 = np.stack(
    [np.array(_MEAN_X_17_67)[_PARTS_68 - 17], np.array(_MEAN_Y_17_67)[_PARTS_68 - 17]], axis=1
)


def _template(n_points: int, size: int, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Chip-space template points and which landmark indices they pair with."""
    if n_points == 5:
        template, parts = _TEMPLATE_5, np.arange(5)
    elif n_points == 68:
        template, parts = _TEMPLATE_68, _PARTS_68
    else:
        raise ValueError(f"alignment needs 5 or 68 landmarks, got {n_points}")
    return (padding + template) / (2 * padding + 1) * size, parts


def similarity_transforms(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Umeyama (dlib find_similarity_transform): src (N,P,2) -> dst as A, t."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mean_s, mean_d = src.mean(1), dst.mean(1)
    s0, d0 = src - mean_s[:, None], dst - mean_d[:, None]
    sigma_s = (s0**2).sum((1, 2)) / src.shape[1]
    cov = np.einsum("npi,npj->nij", d0, s0) / src.shape[1]
    u, d, vt = np.linalg.svd(cov)
    s = np.ones((len(src), 2))
    det_cov = np.linalg.det(cov)
    flip = (det_cov < 0) | ((det_cov == 0) & (np.linalg.det(u) * np.linalg.det(vt) < 0))
    # d is sorted descending, so dlib's "d(1,1) < d(0,0) ? s(1,1) : s(0,0)" is the last one
    # unless the two are equal.
    last = d[:, 1] < d[:, 0]
    s[flip & last, 1] = -1
    s[flip & ~last, 0] = -1
    r = u @ (s[:, :, None] * vt)
    c = np.where(sigma_s != 0, (d * s).sum(1) / np.where(sigma_s != 0, sigma_s, 1), 1.0)
    a = c[:, None, None] * r
    t = mean_d - np.einsum("nij,nj->ni", a, mean_s)
    return a, t


def face_chip_details(
    landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """dlib get_face_chip_details for landmarks (N, 5|68, 2): rects (N, 4) l,t,r,b, angles (N,)."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim == 2:
        landmarks = landmarks[None]
    template, parts = _template(landmarks.shape[1], size, padding)
    a, t = similarity_transforms(np.broadcast_to(template, (len(landmarks), *template.shape)),
                                 landmarks[:, parts])  # fmt: skip
    p = a[:, :, 0]  # the transform applied to (1, 0)
    angle = np.arctan2(p[:, 1], p[:, 0])
    scale = np.hypot(p[:, 0], p[:, 1])
    center = np.einsum("nij,j->ni", a, np.array([size / 2.0, size / 2.0])) + t
    half = (size * scale - 1.0) / 2.0  # dlib's centered_drect subtracts one from the width
    rects = np.stack(
        [center[:, 0] - half, center[:, 1] - half, center[:, 0] + half, center[:, 1] + half], 1
    )
    return rects, angle


# -- dlib's pyramid_down<2> -------------------------------------------------------------------


def _point_down(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x / 2.0 - 1.25, y / 2.0 - 0.75


def _rect_down(rect: np.ndarray) -> np.ndarray:
    x0, y0 = _point_down(rect[0], rect[1])
    x1, y1 = _point_down(rect[2], rect[3])
    return np.array([x0, y0, x1, y1])


def _area(rect: np.ndarray) -> float:
    w, h = rect[2] - rect[0] + 1.0, rect[3] - rect[1] + 1.0
    if rect[0] > rect[2] or rect[1] > rect[3]:
        return 0.0
    return w * h


def pyramid_down(img: np.ndarray) -> np.ndarray:
    """One level of dlib's pyramid_down<2> on an RGB uint8 image, integer maths and all."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    nc, nr = (w - 3) // 2, (h - 3) // 2
    x = img.astype(np.uint32)
    e = 2 * nc
    rows = x[:, 0:e:2] + 4 * x[:, 1 : e + 1 : 2] + 6 * x[:, 2 : e + 2 : 2]
    rows += 4 * x[:, 3 : e + 3 : 2] + x[:, 4 : e + 4 : 2]
    e = 2 * nr
    out = rows[0:e:2] + 4 * rows[1 : e + 1 : 2] + 6 * rows[2 : e + 2 : 2]
    out += 4 * rows[3 : e + 3 : 2] + rows[4 : e + 4 : 2]
    return (out // 256).astype(np.uint8)


def _rotate(cx, cy, x, y, cos_a, sin_a):
    dx, dy = x - cx, y - cy
    return cos_a * dx - sin_a * dy + cx, sin_a * dx + cos_a * dy + cy


def _rotated_corners(rect: np.ndarray, angle: float) -> np.ndarray:
    """tl, tr, bl, br of rect rotated about its centre: (4, 2)."""
    x0, y0, x1, y1 = rect
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    c, s = np.cos(angle), np.sin(angle)
    xs = np.array([x0, x1, x0, x1])
    ys = np.array([y0, y0, y1, y1])
    return np.stack(_rotate(cx, cy, xs, ys, c, s), 1)


def _round_rect(rect) -> tuple[int, int, int, int]:
    return tuple(int(np.floor(v + 0.5)) for v in rect)  # dlib drectangle -> rectangle


def _chip_source(image: np.ndarray, rect: np.ndarray, angle: float, size: int):
    """The image (crop or pyramid level) dlib samples one chip from, and the chip->source map.

    Returns (source uint8 (h, w, 3), origin (2,), ex (2,), ey (2,)) where chip pixel (c, r)
    samples the source at origin + c*ex + r*ey.
    """
    n_pixels = size * size
    h, w = image.shape[:2]
    depth, grow = 0, 2.0
    down = _rect_down(rect)
    while _area(down) > n_pixels:
        down = _rect_down(down)
        depth += 1
        grow = grow * 2 + 2
    corners = _rotated_corners(rect, angle)
    bb = np.array([corners[:, 0].min() - grow, corners[:, 1].min() - grow,
                   corners[:, 0].max() + grow, corners[:, 1].max() + grow])  # fmt: skip
    bb = np.array([max(bb[0], 0), max(bb[1], 0), min(bb[2], w - 1), min(bb[3], h - 1)])
    x0, y0, x1, y1 = _round_rect(bb)
    if x0 > x1 or y0 > y1:  # the face lies wholly outside the image: an all-black chip
        return np.zeros((1, 1, 3), np.uint8), np.array([-10.0, -10.0]), np.zeros(2), np.zeros(2)
    source = image[y0 : y1 + 1, x0 : x1 + 1]
    local = rect - np.array([x0, y0, x0, y0], np.float64)
    level = -1
    while _area(_rect_down(local)) > n_pixels:
        level += 1
        local = _rect_down(local)
    for _ in range(level + 1):
        source = pyramid_down(source)
    tl, tr, bl, _ = _rotated_corners(local, angle)
    return source, tl, (tr - tl) / (size - 1), (bl - tl) / (size - 1)


def _sample(sources, origins, exs, eys, size: int) -> np.ndarray:
    """Bilinear sampling of many chips from many sources in one vectorised gather."""
    n = len(sources)
    heights = np.array([s.shape[0] for s in sources])
    widths = np.array([s.shape[1] for s in sources])
    offsets = np.concatenate([[0], np.cumsum(heights * widths)[:-1]])
    flat = [np.ascontiguousarray(s).reshape(-1, 3) for s in sources]
    # Out-of-bounds samples read index `offset`; the tail keeps their neighbours in range.
    flat = np.concatenate([*flat, np.zeros((int(widths.max()) + 2, 3), np.uint8)])
    grid = np.arange(size, dtype=np.float64)
    o, ex, ey = np.asarray(origins), np.asarray(exs), np.asarray(eys)
    # (n, size, size): rows r, columns c
    x = o[:, 0, None, None] + grid[None, None, :] * ex[:, 0, None, None]
    x = x + grid[None, :, None] * ey[:, 0, None, None]
    y = o[:, 1, None, None] + grid[None, None, :] * ex[:, 1, None, None]
    y = y + grid[None, :, None] * ey[:, 1, None, None]
    left, top = np.floor(x), np.floor(y)
    hh, ww = heights[:, None, None], widths[:, None, None]
    ok = (left >= 0) & (top >= 0) & (left + 1 < ww) & (top + 1 < hh)
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    li = np.where(ok, left, 0).astype(np.int64)
    ti = np.where(ok, top, 0).astype(np.int64)
    base = offsets[:, None, None] + ti * ww + li
    tl = flat[base].astype(np.float64)
    tr = flat[base + 1]
    bl = flat[base + ww]
    br = flat[base + ww + 1]
    val = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    val = np.where(ok[..., None], val, 0.0)
    return np.clip(val, 0, 255).astype(np.uint8).reshape(n, size, size, 3)


_GROUP = 8


def align_faces(
    items: Sequence[tuple[np.ndarray, np.ndarray]],
    size: int = CHIP_SIZE,
    padding: float = PADDING,
) -> np.ndarray:
    """Aligned chips for many faces at once.

    items: (image RGB uint8 (H, W, 3), landmarks (5|68, 2)) per face; faces of one image
    share the image object. Returns uint8 (N, size, size, 3); each chip matches
    dlib.get_face_chip(image, shape, size, padding) to within rounding.
    """
    if len(items) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    by_count: dict[int, list[int]] = {}
    for i, (_, pts) in enumerate(items):
        by_count.setdefault(len(pts), []).append(i)
    rects = np.zeros((len(items), 4))
    angles = np.zeros(len(items))
    for _, idx in by_count.items():
        pts = np.stack([np.asarray(items[i][1], np.float64) for i in idx])
        rects[idx], angles[idx] = face_chip_details(pts, size, padding)
    out = np.empty((len(items), size, size, 3), np.uint8)
    # Gather in small groups: one vectorised call per group, temporaries stay in cache.
    for start in range(0, len(items), _GROUP):
        group = range(start, min(start + _GROUP, len(items)))
        parts = [
            _chip_source(np.asarray(items[i][0]), rects[i], float(angles[i]), size) for i in group
        ]
        out[group.start : group.stop] = _sample(*zip(*parts, strict=True), size)
    return out


def align_image(image: np.ndarray, landmarks: Sequence[np.ndarray], **kw) -> np.ndarray:
    """Chips for every face of one image: landmarks is a list of (5|68, 2) arrays."""
    return align_faces([(image, pts) for pts in landmarks], **kw)
