"""Presentation-attack clips made from stills and live clips (there are no licensed spoof videos).

    from attack_clips import make_attack
    make_attack("print", source_rgb, "out.mpg", seed=3)           # a printed photo held by hand
    make_attack("replay", list_of_live_frames, "out.mp4", seed=3)  # a live clip on a phone

Kinds:
* print: the photo on paper (white border, lower contrast, a little warmth), held by hand: the
  paper is a plane rotated and moved in 3-D in front of a pinhole camera (slow sway of 8-22°
  yaw, 5-12° pitch, 2-6° roll, distance ±10%, plus 8-12 Hz tremor), lighting drifting ±15%,
  defocus blur and sensor noise.
* screen: the photo on a phone/tablet: black bezel, display gamma and brightness, moiré (a
  fine interference pattern on the screen plane, aliased by the camera), a glare spot, moved
  by hand the same way.
* replay: a live clip played on that hand-held screen.
* frozen: one frame of a live clip, repeated (camera noise added per frame).
* loop: the first 0.6-1.0 s of a live clip, looped.

Every clip is encoded like the live clip it imitates (MPEG-1 360x288 25 fps at GRID's 1.2 Mbit/s
for .mpg, H.264 for .mp4), so the container and codec cannot separate attacks from live clips.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from convlens.video import VideoWriter

KINDS = ("print", "screen", "replay", "frozen", "loop")


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (
        f(np.radians(a)) for a in (yaw, pitch, roll) for f in (np.cos, np.sin)
    )
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


class HandMotion:
    """A hand holding something: slow sway in 3-D plus physiological tremor, seeded."""

    def __init__(self, rng: np.random.Generator, still: bool = False) -> None:
        k = 0.0 if still else 1.0
        self.amp = np.array([rng.uniform(8, 22), rng.uniform(5, 12), rng.uniform(2, 6)]) * k
        self.freq = rng.uniform(0.25, 0.7, 3)
        self.phase = rng.uniform(0, 2 * np.pi, 3)
        self.shift = rng.uniform(0.02, 0.06, 2) * k  # of the frame size
        self.depth = rng.uniform(0.03, 0.1) * k
        self.tremor = rng.uniform(0.2, 0.5) * k  # degrees
        self.rng = rng

    def pose(self, t: float):
        ang = self.amp * np.sin(2 * np.pi * self.freq * t + self.phase)
        ang = ang + self.tremor * self.rng.standard_normal(3)
        shift = self.shift * np.sin(2 * np.pi * self.freq[:2] * 0.7 * t + self.phase[1:])
        depth = 1.0 + self.depth * np.sin(2 * np.pi * self.freq[2] * 0.5 * t)
        return ang, shift, depth


def _homography(plane_hw, frame_hw, ang, shift, depth, fill: float) -> np.ndarray:
    """Plane pixels -> frame pixels for a plane `fill` of the frame height wide at depth 1."""
    ph, pw = plane_hw
    fh, fw = frame_hw
    f = 1.1 * fw  # focal length in pixels (about 48° horizontal field of view)
    z = f / (fill * fh) * depth  # the plane is 1 unit high: fill x frame height when square on
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    centred = np.c_[(corners - [pw / 2, ph / 2]) / ph, np.zeros(4)]
    world = centred @ _rotation(*ang).T + [shift[0] * z * fw / f, shift[1] * z * fh / f, z]
    proj = world[:, :2] / world[:, 2:] * f + [fw / 2, fh / 2]
    return cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32))


def _paper(photo: np.ndarray, rng) -> np.ndarray:
    """A print: lower contrast and saturation, warm paper white, a white border."""
    x = photo.astype(np.float32)
    grey = x.mean(2, keepdims=True)
    x = 0.8 * (grey + 0.8 * (x - grey)) + 30 + np.array([6, 3, -4])
    b = int(0.06 * max(photo.shape[:2]))
    return cv2.copyMakeBorder(
        np.clip(x, 0, 255).astype(np.uint8), b, b, b, b, cv2.BORDER_CONSTANT, value=(235, 232, 222)
    )


def _screen(photo: np.ndarray, rng, t: float) -> np.ndarray:
    """A display: gamma and brightness, moiré, a glare spot, a black bezel."""
    x = (photo.astype(np.float32) / 255.0) ** rng.uniform(0.8, 0.95) * 255 * 1.05
    h, w = x.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period, angle = rng.uniform(2.2, 3.5), rng.uniform(0, np.pi)
    wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    x *= (1 + rng.uniform(0.04, 0.1) * wave)[..., None]
    cx, cy = w * (0.3 + 0.4 * rng.random()) + 5 * np.sin(t), h * (0.2 + 0.3 * rng.random())
    glare = np.exp(-(((xx - cx) / (0.25 * w)) ** 2 + ((yy - cy) / (0.15 * h)) ** 2))
    x += rng.uniform(40, 90) * glare[..., None]
    b = int(0.08 * max(h, w))
    return cv2.copyMakeBorder(
        np.clip(x, 0, 255).astype(np.uint8),
        b,
        b,
        b // 2,
        b // 2,
        cv2.BORDER_CONSTANT,
        value=(12, 12, 14),
    )


def _camera(frame: np.ndarray, rng, gain: float) -> np.ndarray:
    x = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.5, 1.1)).astype(np.float32) * gain
    x += rng.normal(0, 2.5, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def background(shape, rng, texture: np.ndarray | None = None, blur: float = 3.0) -> np.ndarray:
    """A room behind the attack: a photo blurred by `blur` (σ, pixels; 0: sharp), or a smooth
    gradient."""
    h, w = shape
    if texture is None:
        yy, xx = np.mgrid[:h, :w] / max(h, w)
        base = np.stack([150 + 60 * xx, 140 + 40 * yy, 120 + 30 * xx * yy], -1)
        return base.astype(np.uint8)
    big = cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), blur) if blur > 0 else big


def render(frames, size, fps, seconds, kind, rng, bg: np.ndarray, fill: float):
    """Frames of a print/screen/replay attack: `frames` are the picture(s) shown (one for a
    still, a list for a replay)."""
    hand = HandMotion(rng)
    h, w = size
    gain0, gain_amp, gain_f = rng.uniform(0.9, 1.05), rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.4)
    out = []
    for i in range(int(round(seconds * fps))):
        t = i / fps
        shown = frames[min(i, len(frames) - 1)] if len(frames) > 1 else frames[0]
        if kind != "print":
            plane = _screen(shown, rng, t)
        elif i == 0 or len(frames) > 1:  # paper does not change: render it once for a still
            plane = _paper(shown, rng)
        hmat = _homography(plane.shape[:2], (h, w), *hand.pose(t), fill=fill)
        warped = cv2.warpPerspective(plane, hmat, (w, h), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones(plane.shape[:2], np.uint8), hmat, (w, h))
        frame = np.where(mask[..., None] > 0, warped, bg)
        out.append(_camera(frame, rng, gain0 + gain_amp * np.sin(2 * np.pi * gain_f * t)))
    return out


def make_attack(
    kind: str,
    source,
    path,
    seed: int = 0,
    seconds: float = 3.0,
    size=(288, 360),
    fps: float = 25.0,
    texture=None,
    fill: float = 0.75,
    room_blur: float = 3.0,
) -> Path:
    """Write one attack clip. source: an RGB still (print, screen, frozen) or a list of live
    RGB frames (replay, loop; a still is also accepted for frozen). fill: the shown picture's
    height as a fraction of the frame height when held square to the camera. room_blur: how
    blurred the room behind is (σ in pixels; 0: sharp, full of corners that stay still)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng(seed)
    frames = source if isinstance(source, list) else [source]
    # What is shown is at most 480 px: more detail than the camera resolves, and fast.
    frames = [_shrink(f, 480) for f in frames]
    frames = [
        cv2.resize(f, (int(f.shape[1] * size[0] / f.shape[0]), size[0]))
        if kind in ("frozen", "loop")
        else f
        for f in frames
    ]
    n = int(round(seconds * fps))
    if kind in ("print", "screen", "replay"):
        shown = frames[:1] if kind != "replay" else frames
        bg = background(size, rng, texture, room_blur)
        clip = render(shown, size, fps, seconds, kind, rng, bg, fill)
    elif kind == "frozen":
        still = _fit(frames[len(frames) // 2], size)
        clip = [_camera(still, rng, 1.0) for _ in range(n)]
    else:
        period = max(int(rng.uniform(0.6, 1.0) * fps), 2)
        loop = [_fit(f, size) for f in frames[:period]]
        clip = [loop[i % len(loop)] for i in range(n)]
    path = Path(path)
    with VideoWriter(path, fps=fps) as out:
        for f in clip:
            out.write(f)
    return path


def _shrink(rgb: np.ndarray, longest: int) -> np.ndarray:
    s = longest / max(rgb.shape[:2])
    if s >= 1:
        return rgb
    return cv2.resize(
        rgb, (int(rgb.shape[1] * s), int(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA
    )


def _fit(rgb: np.ndarray, size) -> np.ndarray:
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
