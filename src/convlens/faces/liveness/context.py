"""The "carried" cue: does the picture around the face move *with* the face?

A photo or a screen held in front of a fixed camera carries its surroundings (the paper's
border, the bezel, the rest of the replayed picture) along with the face; a live head moves in
front of a room that stays still. Between two frames about CONTEXT_LAG_S apart:

1. corners (Shi-Tomasi) are found outside the head-and-body column: the face box widened by
   0.35 face widths on each side, from 0.8 face heights above the face down to the bottom of
   the frame (hair, neck and shoulders move with a live head, so they are left out);
2. each corner is followed with pyramidal Lucas-Kanade flow, forward then backward (points
   that do not come back within a pixel are dropped: flat walls, occlusions);
3. a corner *agrees* with the face when its displacement points the way the face's similarity
   (fitted to the rigid landmarks) would move it (cosine > 0.7) and is 0.4-2.5 times as long.

The share of agreeing corners is the pair's measure; decide.py takes the median over the pairs
in which the face moved (≥ 0.03 inter-ocular distances). The direction-and-length test is loose
on purpose: a plane turning in 3-D moves points away from the face by a homography, not by the
face's similarity, and an exact prediction (the previous version of this cue, with a fixed grid
of points beside the face) missed most replays and a third of the screens.

It assumes a fixed camera (a door, a kiosk): a hand-held phone moves the whole room with the
face. Frames wider than CONTEXT_WIDTH are halved first, so the cost and the pixel scales stay
those of the clips the thresholds were read from (360x288).
"""

from __future__ import annotations

import numpy as np

from convlens.faces.liveness.geometry import RIGID, apply_homography, fit_similarity, interocular

CONTEXT_LAG_S = 0.08  # two frames at 25 fps: enough motion to measure, little blur between
CONTEXT_WIDTH = 400
FACE_MOVED_IOD = 0.03  # below this the face hardly moved: no evidence either way
MAX_CORNERS = 80


def shrink(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame at most CONTEXT_WIDTH wide (by halving), and the scale applied."""
    import cv2  # here, not at import: `convlens --help` stays fast

    scale = 1.0
    while gray.shape[1] > CONTEXT_WIDTH:
        gray = cv2.pyrDown(gray)
        scale *= 0.5
    return gray, scale


def context_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """255 where the surroundings are looked at: everything but the head-and-body column."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    w, h = x1 - x0, y1 - y0
    mask = np.full(shape, 255, np.uint8)
    left, right = max(int(x0 - 0.35 * w), 0), max(int(x1 + 0.35 * w), 0)
    mask[max(int(y0 - 0.8 * h), 0) :, left:right] = 0
    return mask


def carried_share(
    before: np.ndarray, after: np.ndarray, p_before: np.ndarray, p_after: np.ndarray
) -> float | None:
    """Share (0..1) of corners around the face that move as the face does, between two grey
    frames (already shrunk) with the face's 68 landmarks in each; None when the face did not
    move enough or too few corners could be followed."""
    sim = fit_similarity(p_before[RIGID], p_after[RIGID])
    face_move = np.linalg.norm(apply_homography(sim, p_before[RIGID]) - p_before[RIGID], axis=1)
    if np.median(face_move) < FACE_MOVED_IOD * interocular(p_after):
        return None
    import cv2

    found = cv2.goodFeaturesToTrack(
        before, MAX_CORNERS, 0.02, 7, mask=context_mask(p_before, before.shape)
    )
    if found is None or len(found) < 6:
        return None
    flow = {"winSize": (21, 21), "maxLevel": 3}
    moved, ok, _ = cv2.calcOpticalFlowPyrLK(before, after, found, None, **flow)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(after, before, moved, None, **flow)
    start, moved = found.reshape(-1, 2), moved.reshape(-1, 2)
    good = (ok.ravel() == 1) & (ok_back.ravel() == 1)
    good &= np.linalg.norm(back.reshape(-1, 2) - start, axis=1) < 1.0
    if good.sum() < 6:
        return None
    seen = moved[good] - start[good]
    wanted = apply_homography(sim, start[good]) - start[good]
    seen_len, wanted_len = np.linalg.norm(seen, axis=1), np.linalg.norm(wanted, axis=1)
    cosine = (seen * wanted).sum(1) / np.maximum(seen_len * wanted_len, 1e-9)
    ratio = seen_len / np.maximum(wanted_len, 1e-9)
    agree = (cosine > 0.7) & (ratio > 0.4) & (ratio < 2.5) & (wanted_len > 0.5)
    return float(agree.mean())
