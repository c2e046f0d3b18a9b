"""What the style benchmarks share: paths, the benchmark lock, the photos and paintings,
convlens' transfer call as every run makes it, and the picture helpers (labels, grids, the JPEG
size cap, the speckle measure). Used by style.py and its parts, style_vgg.py, style_fast.py."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "style"
SHARED = ROOT.parent / "shared" / "data"
STYLES = SHARED / "styles"
LOCK = "/tmp/convlens-bench.lock"
# The library's device default is "auto" (CUDA when present); these numbers, the naive
# reference and the docs images are CPU ones.
DEVICE = "cpu"


_HELD = False


@contextmanager
def bench_lock():
    """flock LOCK; re-entrant within this process (a second flock on a new fd would block)."""
    global _HELD
    if _HELD:
        yield
        return
    with open(LOCK, "w") as f:
        t = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.perf_counter() - t
        if waited > 1:
            print(f"(waited {waited:.0f} s for {LOCK})", flush=True)
        _HELD = True
        try:
            yield
        finally:
            _HELD = False
            fcntl.flock(f, fcntl.LOCK_UN)


def contents() -> dict[str, np.ndarray]:
    import skimage.data as D

    from convlens.images import load_image

    out = {"astronaut": D.astronaut(), "chelsea": D.chelsea()}
    obama = SHARED / "faces" / "photos" / "obama.jpg"
    out["obama" if obama.exists() else "coffee"] = (
        load_image(obama) if obama.exists() else D.coffee()
    )
    return out


def style_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(STYLES.glob("*.jpg"))}


def transfer(content, style, size: int, steps: int, **kw):
    """convlens' run_transfer as every run here makes it: on DEVICE, no progress bar."""
    from convlens.style import run_transfer

    return run_transfer(content, style, size=size, steps=steps, progress=False, device=DEVICE, **kw)


def label(img: Image.Image, text: str) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    d.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    d.text((3, 1), text, fill=(255, 255, 255))
    return out


def grid(images: list[list[Image.Image]], pad: int = 4) -> Image.Image:
    """Rows of tiles; each row as tall as its tallest tile, columns as wide as the widest."""
    w = max(i.width for row in images for i in row)
    heights = [max(i.height for i in row) for row in images]
    cols = max(len(r) for r in images)
    canvas = Image.new("RGB", (cols * (w + pad) + pad, sum(heights) + pad * (len(images) + 1)),
                       "white")  # fmt: skip
    y = pad
    for row, h in zip(images, heights, strict=True):
        for c, img in enumerate(row):
            canvas.paste(img, (pad + c * (w + pad), y))
        y += h + pad
    return canvas


def save_jpeg(img: Image.Image, path: Path, max_kb: int = 300) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for q in (88, 82, 75, 68, 60):
        img.save(path, quality=q, optimize=True)
        if path.stat().st_size <= max_kb * 1024:
            return


def speckle(img: Image.Image) -> float:
    """Fine colour speckle: mean |pixel - 3x3 box mean| of the chroma channels (0..255 scale).
    High-frequency colour energy; a photo's flat areas score near 0."""
    arr = np.asarray(img.convert("YCbCr"), np.float64)[..., 1:]
    pad = np.pad(arr, ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(pad[i : i + arr.shape[0], j : j + arr.shape[1]] for i in range(3) for j in range(3))
    return float(np.abs(arr - box / 9).mean())
