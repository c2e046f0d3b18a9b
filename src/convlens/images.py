"""Robust image loading: every format Pillow reads, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convlens.errors import ConvlensError

MAX_PIXELS = 100_000_000

ImageInput = str | os.PathLike | np.ndarray | Image.Image


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (16-bit, grey, palette, RGBA, CMYK) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not turn into black blobs.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(source: ImageInput) -> np.ndarray:
    """Load a path, PIL image or array as an RGB uint8 array of shape (H, W, 3).

    Raises ConvlensError naming the file and the reason when it cannot be read.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb8(source)
    if isinstance(source, Image.Image):
        return np.asarray(_to_rgb8(ImageOps.exif_transpose(source) or source))
    path = Path(source)
    if not path.exists():
        raise ConvlensError(f"{path}: no such file")
    if path.is_dir():
        raise ConvlensError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ConvlensError(
                    f"{path}: image is {w}x{h} = {w * h / 1e6:.0f} megapixels, "
                    f"over the {MAX_PIXELS // 1_000_000} megapixel limit"
                )
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return np.asarray(_to_rgb8(img))
    except ConvlensError:
        raise
    except Image.DecompressionBombError as e:
        raise ConvlensError(f"{path}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise ConvlensError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ConvlensError(f"{path}: cannot decode image ({e})") from None


def _array_to_rgb8(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ConvlensError(f"image array has shape {arr.shape}; expected (H, W), (H, W, 3/4)")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".gif", ".webp", ".bmp", ".tif"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under a folder, recursively, in a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvlensError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def natural_key(name: str) -> list:
    """'s2' < 's10': digits compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_people(folder: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """A labelled folder (one subfolder per person): (person, photo paths) for every subfolder
    holding images (searched recursively), in natural order. Callers decide how many people
    they need."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvlensError(f"{root}: no such folder")
    people = []
    for sub in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        photos = sorted(list_images(sub), key=lambda f: natural_key(str(f.relative_to(sub))))
        if photos:
            people.append((sub.name, photos))
    return people
