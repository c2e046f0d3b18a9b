"""Pictures of volumes: orthogonal slice triplets and slice-sweep GIFs.

A volume is (D, H, W) grey (any range: shown through a window) or (D, H, W, 3) RGB in 0..1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(
    volume: np.ndarray, window: tuple[float, float] | None = None, rgb: bool | None = None
) -> np.ndarray:
    """Grey values through `window` (default: the 1st..99th percentile), RGB 0..1 scaled.
    `rgb` says whether the last axis is colour (default: a 4-D array); a slice of an RGB
    volume is 3-D and must say so, or it is stretched like grey values."""
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim == 4 if rgb is None else rgb:
        return (np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8)
    lo, hi = window if window is not None else np.percentile(v, (1, 99))
    return (np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1) * 255 + 0.5).astype(np.uint8)


def orthogonal_slices(volume: np.ndarray, center: Sequence[int] | None = None) -> list[np.ndarray]:
    """The three slices through `center` (default the middle): axis 0, 1 and 2 cut."""
    d, h, w = volume.shape[:3]
    c = tuple(center) if center is not None else (d // 2, h // 2, w // 2)
    return [volume[c[0]], volume[:, c[1]], volume[:, :, c[2]]]


def triplet_image(
    volume: np.ndarray,
    center: Sequence[int] | None = None,
    window: tuple[float, float] | None = None,
    scale: int = 1,
    gap: int = 2,
) -> np.ndarray:
    """The three orthogonal slices side by side (RGB uint8), each scaled up `scale` times."""
    rgb = np.ndim(volume) == 4
    slices = [to_uint8(s, window, rgb) for s in orthogonal_slices(np.asarray(volume), center)]
    slices = [np.repeat(s[..., None], 3, -1) if s.ndim == 2 else s for s in slices]
    slices = [s.repeat(scale, 0).repeat(scale, 1) for s in slices]
    height = max(s.shape[0] for s in slices)
    width = sum(s.shape[1] for s in slices) + gap * (len(slices) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for s in slices:
        out[: s.shape[0], x : x + s.shape[1]] = s
        x += s.shape[1] + gap
    return out


def save_slices(volume: np.ndarray, stem: str | os.PathLike, scale: int = 2) -> list[Path]:
    """STEM_axis0.png, STEM_axis1.png, STEM_axis2.png (middle slices) and STEM_slices.png."""
    stem = Path(stem)
    paths = []
    for axis, s in enumerate(orthogonal_slices(np.asarray(volume))):
        img = to_uint8(s, rgb=np.ndim(volume) == 4)
        path = stem.with_name(f"{stem.name}_axis{axis}.png")
        Image.fromarray(img.repeat(scale, 0).repeat(scale, 1)).save(path)
        paths.append(path)
    path = stem.with_name(f"{stem.name}_slices.png")
    Image.fromarray(triplet_image(volume, scale=scale)).save(path)
    return [*paths, path]


def save_sweep_gif(
    volume: np.ndarray,
    path: str | os.PathLike,
    axis: int = 0,
    scale: int = 2,
    ms: int = 60,
    window: tuple[float, float] | None = None,
) -> Path:
    """An animated GIF of the slices along `axis`, first to last and back."""
    v = to_uint8(np.moveaxis(np.asarray(volume), axis, 0), window)
    frames = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in v]
    frames = frames + frames[-2:0:-1]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return Path(path)
