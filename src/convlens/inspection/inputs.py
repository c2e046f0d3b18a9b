"""How images become network inputs: the input spec, and images decoded ahead of the network.

An item (one network input) is identified by source index * VIEWS + view index: a source
image can give several network inputs (one per face found in it).
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import ImageInput, list_images, load_image

VIEWS = 1 << 12


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale the shorter side to fit, centre-crop to (H, W): RGB uint8 in and out."""
    h, w = size
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    img = Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)))


def scale_01(batch: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in 0..1, the default network input."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class InputSpec:
    """How images become network inputs.

    `prepare` turns one RGB uint8 image into the network-input views (uint8 (H, W, 3), the
    pixels patches are cropped from): by default the image fitted to `size`; the face encoder
    gives one aligned chip per face. `to_tensor` turns a uint8 batch (N, H, W, 3) into the
    float tensor the network takes (scaling, mean/std normalisation). Images are decoded and
    prepared by a thread pool ahead of the network; `max_workers` caps its size.
    """

    size: tuple[int, int]
    to_tensor: Callable[[np.ndarray], torch.Tensor] = scale_01
    prepare: Callable[[np.ndarray], list[np.ndarray]] | None = None
    # At most this many images prepared at once; 1 for code that is not thread-safe (dlib).
    max_workers: int | None = None

    def views(self, image: np.ndarray) -> list[np.ndarray]:
        if self.prepare is None:
            return [fit_image(image, self.size)]
        return list(self.prepare(image))


def resolve_sources(images: str | os.PathLike | Sequence[ImageInput]) -> list:
    """A folder (all images under it, sorted), one image file, or a list of paths / arrays /
    PIL images."""
    if isinstance(images, (str, os.PathLike)):
        if Path(images).is_file():
            return [Path(images)]
        sources = list_images(images)
        if not sources:
            raise ConvlensError(f"{images}: no image files in this folder")
        return sources
    sources = list(images)
    if not sources:
        raise ConvlensError("no images given")
    return sources


def load_views(source, spec: InputSpec) -> list[np.ndarray]:
    """The network-input views of one source image, checked to be the spec's size."""
    views = spec.views(load_image(source))
    for v in views:
        if v.shape[:2] != tuple(spec.size):
            raise ConvlensError(f"prepared view has size {v.shape[:2]}, expected {spec.size}")
    return views


def source_name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def iter_views(
    sources: Sequence, spec: InputSpec, skipped: list[str], workers: int = 4, ahead: int = 64
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(source index, views) in order, decoded `ahead` images in advance by a thread pool.

    An image that cannot be read or prepared is reported (warning + `skipped`) and passed over.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        it = iter(enumerate(sources))
        for i, src in it:
            pending.append((i, src, pool.submit(load_views, src, spec)))
            if len(pending) >= ahead:
                break
        while pending:
            i, src, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], pool.submit(load_views, nxt[1], spec)))
            try:
                views = fut.result()
            except ConvlensError as e:
                name = source_name(src)
                msg = str(e) if name in str(e) else f"{name}: {e}"
                skipped.append(msg)
                warnings.warn(f"skipped {msg}", stacklevel=2)
                continue
            yield i, views
