"""Landmark geometry for liveness: eye aspect ratio, yaw, face scale, and planarity.

All functions take dlib's 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67) as float (68, 2) arrays; `yaw` and `interocular` also accept the 5-point layout
(right eye outer/inner, left eye outer/inner, nose base). Distances are in units of the
inter-ocular distance (IOD, outer eye corners), so they do not depend on face size.

Planarity: a photo or a screen is a plane, and any two views of a plane are related by a
homography. Fit one homography to the *rigid* landmarks of two frames: for a plane the
residual is the landmark detector's noise; for a real head that turned, the nose (about 3 cm
in front of the eyes) and the face outline (behind them) move by different amounts
(parallax) and no homography fits them. `pose_change` measures how much the view changed
beyond a similarity (in-plane rotation, scale, shift): without such a change a real face gives
no parallax either, so planarity is only evidence when the pose changed.
"""

from __future__ import annotations

import numpy as np

# Points that do not move with expression: jaw near the ears (not the chin, which moves when
# talking), nose ridge and base, and the eye corners.
RIGID = np.array([0, 1, 2, 3, 13, 14, 15, 16, 27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45])
# Points that move with expression: eyelids and the whole mouth.
NONRIGID = np.array([37, 38, 40, 41, 43, 44, 46, 47, *range(48, 68)])
RIGHT_EYE = np.arange(36, 42)  # the subject's right eye (left in the image)
LEFT_EYE = np.arange(42, 48)


def interocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners (68: 36/45; 5-point: 0/2), at least 1 pixel."""
    p = np.asarray(points, np.float64)
    a, b = (p[36], p[45]) if len(p) == 68 else (p[0], p[2])
    return max(float(np.linalg.norm(a - b)), 1.0)


def eye_aspect_ratio(points: np.ndarray) -> float:
    """Soukupová & Čech (2016): mean over both eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|);
    about 0.25-0.35 open, near 0.1 closed (68-point landmarks only)."""
    p = np.asarray(points, np.float64)
    out = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        e = p[eye]
        vertical = np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])
        out.append(vertical / (2.0 * max(np.linalg.norm(e[0] - e[3]), 1e-6)))
    return float(np.mean(out))


def yaw(points: np.ndarray) -> float:
    """Head yaw as a signed ratio in [-1, 1]: where the nose sits between the two sides of the
    face, along the eye line (0 frontal; positive when the nose moves toward the image's
    right). 68 points: nose tip vs the jaw ends; 5 points: nose base vs outer eye corners."""
    p = np.asarray(points, np.float64)
    if len(p) == 68:
        left, right, nose = p[0], p[16], p[30]
    else:
        left, right, nose = p[2], p[0], p[4]
        if left[0] > right[0]:
            left, right = right, left
    axis = right - left
    length = np.linalg.norm(axis)
    if length < 1e-6:
        return 0.0
    t = float(np.dot(nose - left, axis) / length**2)  # 0 at the left side, 1 at the right
    return float(np.clip(2.0 * t - 1.0, -1.0, 1.0))


def _normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hartley normalisation: centred, mean distance sqrt(2); returns points and T (3x3)."""
    c = p.mean(0)
    s = np.sqrt(2.0) / max(np.linalg.norm(p - c, axis=1).mean(), 1e-9)
    t = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])
    return (p - c) * s, t


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares (normalised DLT) homography H (3x3) with dst ~ H src; needs ≥ 4 points."""
    a, ta = _normalise(np.asarray(src, np.float64))
    b, tb = _normalise(np.asarray(dst, np.float64))
    n = len(a)
    rows = np.zeros((2 * n, 9))
    rows[0::2, 0:2], rows[0::2, 2] = a, 1
    rows[0::2, 6:8], rows[0::2, 8] = -b[:, :1] * a, -b[:, 0]
    rows[1::2, 3:5], rows[1::2, 5] = a, 1
    rows[1::2, 6:8], rows[1::2, 8] = -b[:, 1:] * a, -b[:, 1]
    h = np.linalg.svd(rows)[2][-1].reshape(3, 3)
    h = np.linalg.inv(tb) @ h @ ta
    return h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h


def apply_homography(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.c_[np.asarray(p, np.float64), np.ones(len(p))] @ h.T
    return q[:, :2] / np.where(np.abs(q[:, 2:]) < 1e-12, 1e-12, q[:, 2:])


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) as a 3x3 matrix."""
    a, b = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ca, cb = a.mean(0), b.mean(0)
    a0, b0 = a - ca, b - cb
    za, zb = a0[:, 0] + 1j * a0[:, 1], b0[:, 0] + 1j * b0[:, 1]
    k = np.vdot(za, zb) / max(np.vdot(za, za).real, 1e-12)  # complex scale-rotation
    m = np.array([[k.real, -k.imag], [k.imag, k.real]])
    out = np.eye(3)
    out[:2, :2], out[:2, 2] = m, cb - m @ ca
    return out


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def pair_motion(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float]:
    """(pose_change, parallax, nonrigid) between two 68-point frames, in IOD units.

    pose_change: RMS of the rigid points after the best similarity (how much the view changed
    out of the image plane). parallax: RMS residual of the rigid points after the best
    homography (≈ detector noise for a plane). nonrigid: RMS residual of eyelids and mouth
    after that homography (expression: blinking, talking).
    """
    p, q = np.asarray(before, np.float64), np.asarray(after, np.float64)
    iod = interocular(q)
    sim = fit_similarity(p[RIGID], q[RIGID])
    pose = _rms(apply_homography(sim, p[RIGID]), q[RIGID]) / iod
    h = fit_homography(p[RIGID], q[RIGID])
    parallax = _rms(apply_homography(h, p[RIGID]), q[RIGID]) / iod
    nonrigid = _rms(apply_homography(h, p[NONRIGID]), q[NONRIGID]) / iod
    return pose, parallax, nonrigid
