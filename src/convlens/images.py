"""Robust image loading: every format Pillow reads, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convlens.errors import ConvlensError

# Decode limits, checked on the header before any pixel is decoded (benchmarks/fuzz_images.py
# measures them): 50 megapixels covers every camera's native output (phones bin 108/200 MP
# sensors to 12 MP); decoding a 50 MP JPEG costs ~1 s and 150 MB of RGB. Wider than 20:1 is
# not a photo (phone panoramas stay under ~12:1) and thin strips crash dlib. A 16-bit or
# float image decodes to more bytes per pixel than its RGB result: MAX_DECODED_BYTES bounds
# the decoded buffer plus our conversion's temporaries.
MAX_PIXELS = 50_000_000
MAX_ASPECT = 20
MAX_DECODED_BYTES = 600_000_000

ImageInput = str | os.PathLike | np.ndarray | Image.Image


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (16-bit, grey, palette, RGBA, CMYK) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not turn into black blobs.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def check_size(width: int, height: int, what: str = "image") -> None:
    """Refuse an empty image, one over MAX_PIXELS or one longer than MAX_ASPECT:1."""
    if width < 1 or height < 1:
        raise ConvlensError(f"{what}: image is {width}x{height}, it has no pixels")
    if width * height > MAX_PIXELS:
        raise ConvlensError(
            f"{what}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, "
            f"over the {MAX_PIXELS // 1_000_000} megapixel limit"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ConvlensError(
            f"{what}: image is {width}x{height}, an aspect ratio over the {MAX_ASPECT}:1 limit"
        )


def decoded_bytes(mode: str, width: int, height: int) -> int:
    """Bytes Pillow's decoded buffer of this mode plus our conversion to RGB take at peak."""
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    per_band = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(mode, 1)
    # 16-bit and float modes go through a float32 copy and an 8-bit grey one.
    extra = 5 if per_band > 1 else 0
    # Decoded buffer, its RGB(A) conversion, the array handed on.
    return width * height * (bands * per_band + extra + 4 + 3)


def regular_file_stat(path: str | os.PathLike, what: str = "an image") -> os.stat_result:
    """The stat of a regular file; ConvlensError (one line) for a missing file, a folder or
    anything else (a pipe, socket or device would block a reader or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConvlensError(f"{path}: no such file") from None
    except OSError as e:
        raise ConvlensError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConvlensError(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ConvlensError(f"{path}: not a regular file (a pipe, socket or device)")
    return st


def _open_regular(path: Path):
    """An open binary file for a regular file; ConvlensError for anything else. Never
    blocks: a FIFO is opened non-blocking and refused, a socket or device file is refused."""
    regular_file_stat(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ConvlensError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after the stat above
        os.close(fd)
        raise ConvlensError(f"{path}: not a regular file (a pipe, socket or device)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def load_image(source: ImageInput) -> np.ndarray:
    """Load a path, PIL image or array as an RGB uint8 array of shape (H, W, 3).

    Raises ConvlensError naming the file and the reason when it cannot be read, and before
    decoding anything when its header declares an image over the limits (MAX_PIXELS,
    MAX_ASPECT, MAX_DECODED_BYTES).
    """
    if isinstance(source, np.ndarray):
        arr = _array_to_rgb8(source)
        check_size(arr.shape[1], arr.shape[0], "image array")
        return arr
    if isinstance(source, Image.Image):
        check_size(*source.size, "PIL image")
        return np.asarray(_to_rgb8(ImageOps.exif_transpose(source) or source))
    path = Path(source)
    try:
        with _open_regular(path) as f, warnings.catch_warnings():
            # Our own limits below replace Pillow's decompression-bomb warning; its warnings
            # about damaged metadata (TIFF tags, EXIF) would print lines to the terminal.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(f) as img:  # reads the header only
                _check_header(path, img)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return np.asarray(_to_rgb8(img))
    except ConvlensError:
        raise
    except Image.DecompressionBombError as e:
        raise ConvlensError(f"{path}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise ConvlensError(f"{path}: not an image file (format not recognised)") from None
    except MemoryError:
        raise ConvlensError(f"{path}: out of memory decoding the image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConvlensError(f"{path}: cannot decode image ({reason})") from None


def _check_header(path: Path, img: Image.Image) -> None:
    w, h = img.size
    check_size(w, h, str(path))
    need = decoded_bytes(img.mode, w, h)
    if need > MAX_DECODED_BYTES:
        raise ConvlensError(
            f"{path}: a {w}x{h} {img.mode} image decodes to about {need / 1e6:.0f} MB, "
            f"over the {MAX_DECODED_BYTES // 1_000_000} MB limit"
        )


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
