"""Load, detect, align, encode: images in, `Face`s with 128-d embeddings out.

Detection (dlib, CPU) runs in a thread pool (dlib releases the GIL); the encoder runs on
batches of chips gathered across images. With `min_face`, big photos are searched on a
lower-resolution copy, then landmarks are found on the full image.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import align as _align
from convlens.faces import detect as _detect
from convlens.faces.box import Box
from convlens.faces.detect import DEFAULT_DETECTOR
from convlens.images import ImageInput, list_images, load_image

# dlib's HOG detector scans an 80x80 window over an image pyramid, so at upsample u the
# smallest face it finds is about 80 / 2**u pixels.
HOG_WINDOW = 80
MAX_BATCH_SIZE = 4096
# dlib's num_jitters: each jittered copy costs one forward pass; 100 is dlib's own
# "slow but more accurate" upper example, and beyond that the average no longer moves.
MAX_JITTER = 100


@dataclass
class Face:
    """One face: box, a Box (x0, y0, x1, y1) with x1/y1 exclusive; landmarks (5|68, 2) in
    image pixels; detector score (HOG margin or CNN confidence; 0 for a whole-image
    fallback); embedding float32 (D,) or None before encoding."""

    box: Box
    landmarks: np.ndarray
    score: float
    embedding: np.ndarray | None = None
    detector: str = "hog"  # what found it: "hog", "cnn" or "whole-image"
    rect: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), repr=False)

    def to_json(self, embedding: bool = True) -> dict:
        out = {"box": list(self.box), "score": round(float(self.score), 4)}
        if embedding and self.embedding is not None:
            out["embedding"] = [round(float(v), 6) for v in self.embedding]
        return out


def distance(a, b) -> np.ndarray | float:
    """Euclidean distance between embeddings (or Faces); each encoder ships the τ that
    separates people (registry extras "threshold"). Broadcasts: (D,) vs (N, D) gives (N,)."""
    a = a.embedding if isinstance(a, Face) else a
    b = b.embedding if isinstance(b, Face) else b
    if a is None or b is None:
        raise ConvlensError("distance needs encoded faces (embedding is None)")
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return float(d) if np.ndim(d) == 0 else d


# -- encoder -------------------------------------------------------------------------------

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def resolve_model(model=None, device=None):
    """A face encoder module on `device`: None (DEFAULT_ENCODER), a registry name (`convlens
    models`), a file path, or a module."""
    import torch

    from convlens.models.devices import resolve_device
    from convlens.models.face_models import DEFAULT_ENCODER, load_face_model

    if isinstance(model, torch.nn.Module):
        if device is not None:
            model = model.to(resolve_device(device))
        return model.eval()

    dev = resolve_device(device)
    model = DEFAULT_ENCODER if model is None else model
    key = (os.fspath(model), str(dev))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_face_model(model).to(dev).eval()
        return _MODELS[key]


def _jitter_grids(n: int, size: int, rng: np.random.Generator):
    """Affine grids like dlib's jitter_image: up to 3 deg rotation, 0.97-1.0 scale, 2% shift,
    and a left-right flip half the time."""
    import torch

    angle = rng.uniform(-3, 3, n) * np.pi / 180
    scale = 1.0 / rng.uniform(0.97, 0.99999, n)  # the crop box grows: the face shrinks
    shift = rng.uniform(-0.02, 0.02, (n, 2)) * 2  # in [-1, 1] grid units
    flip = np.where(rng.random(n) > 0.5, -1.0, 1.0)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    row0 = np.stack([c * flip, -s, shift[:, 0]], 1)
    row1 = np.stack([s * flip, c, shift[:, 1]], 1)
    theta = np.stack([row0, row1], 1)
    return torch.nn.functional.affine_grid(
        torch.from_numpy(theta).float(), (n, 3, size, size), align_corners=False
    )


def embed_chips(
    chips: np.ndarray,
    model=None,
    batch_size: int = 64,
    flip: bool = False,
    jitter: int = 0,
    device=None,
    seed: int = 0,
) -> np.ndarray:
    """Embeddings (N, D) float32 of aligned uint8 chips (N, S, S, 3), S the encoder's chip
    size (150 for dlib's ResNet, 112 for SFace); unit length for encoders compared by cosine.

    flip: average with the mirrored chip's embedding. jitter: average the embeddings of N
    randomly jittered copies instead (dlib's num_jitters; seeded, so repeatable).
    """
    import torch

    from convlens.models.face_models import encoder_extras

    net = resolve_model(model, device)
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[-1] != 3:
        raise ConvlensError(f"chips must be (N, H, W, 3) uint8, got shape {chips.shape}")
    try:
        dev = next(net.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    rng = np.random.default_rng(seed)
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), max(1, batch_size)):
            x = torch.from_numpy(np.ascontiguousarray(chips[start : start + batch_size]))
            x = x.to(dev).permute(0, 3, 1, 2).float()
            if jitter and jitter > 0:
                n = len(x)
                grids = _jitter_grids(n * jitter, x.shape[-1], rng).to(dev)
                xs = x.repeat_interleave(jitter, 0)
                xs = torch.nn.functional.grid_sample(xs, grids, align_corners=False)
                e = net(xs).reshape(n, jitter, -1).mean(1)
            elif flip:
                e = net(torch.cat([x, x.flip(-1)])).reshape(2, len(x), -1).mean(0)
            else:
                e = net(x)
            out.append(e.float().cpu().numpy())
    if not out:
        dim = getattr(net, "embedding_dim", 128)
        return np.zeros((0, dim), np.float32)
    embs = np.concatenate(out).astype(np.float32, copy=False)
    if encoder_extras(net)["normalize"]:  # compared by cosine: unit length, then Euclidean
        embs /= np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-12)
    return embs


# -- detection + alignment -----------------------------------------------------------------


def _detection_plan(shape: tuple[int, ...], upsample: int, min_face: float | None):
    """(upsample, downscale) that still finds faces of min_face * the shorter side.

    min_face None keeps dlib's resolution. Otherwise resolution is halved (first by less
    upsampling, then by shrinking the image by a power of two) while HOG's smallest face,
    in original pixels, stays at most min_face * the shorter side.
    """
    if not min_face:
        return upsample, 1
    target = min_face * min(shape[:2])
    halvings = 0
    while HOG_WINDOW * 2 ** (halvings + 1) / 2**upsample <= target:
        halvings += 1
    return max(upsample - halvings, 0), 2 ** max(halvings - upsample, 0)


def _shrink(image: np.ndarray, f: int) -> np.ndarray:
    h, w = image.shape[0] // f * f, image.shape[1] // f * f
    blocks = image[:h, :w].reshape(h // f, f, w // f, f, 3).astype(np.float32)
    return (blocks.mean((1, 3)) + 0.5).astype(np.uint8)


def _find(
    image: np.ndarray,
    detector: str,
    upsample: int,
    landmarks: int,
    whole_image_fallback: bool,
    min_face: float | None = None,
    aligner: str = "dlib-5",
) -> tuple[list[Face], list[np.ndarray]]:
    h, w = image.shape[:2]
    # The plan sizes HOG's window; "auto" starts with HOG, so it follows the same plan.
    planned = detector in ("hog", "auto")
    up, f = _detection_plan(image.shape, upsample, min_face) if planned else (upsample, 1)
    if f > 1:
        dets = _detect.detect(_shrink(image, f), detector, up)
        for d in dets:  # back to full-resolution pixels
            x0, y0, x1, y1 = d.rect
            d.rect = (x0 * f, y0 * f, (x1 + 1) * f - 1, (y1 + 1) * f - 1)
    else:
        dets = _detect.detect(image, detector, up)
    if not dets and whole_image_fallback:
        dets = [_detect.whole_image(image.shape)]
    if aligner == "arcface-5":
        from convlens.faces.align_arcface import detection_points

        shapes = detection_points(image, dets)
    else:
        shapes = _detect.landmarks(image, dets, landmarks)
    faces = [
        Face(d.box(w, h), pts, d.score, None, d.source, d.rect)
        for d, pts in zip(dets, shapes, strict=True)
    ]
    return faces, shapes


def face_chips(
    image: ImageInput,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    landmarks: int = 5,
    whole_image_fallback: bool = False,
    min_face: float | None = None,
    aligner: str | None = None,
) -> tuple[list[Face], np.ndarray]:
    """Faces (embedding None), largest first, and their aligned chips uint8 (N, S, S, 3).

    detector "hog" | "cnn" | "auto" | "yunet" and upsample: see convlens.faces.detect.detect.
    aligner: "dlib-5" (dlib's 150x150 chips from `landmarks`, 5 or 68 dlib points) or
    "arcface-5" (112x112 ArcFace chips from YuNet's five points, or dlib's 68 mapped to five;
    Face.landmarks are then those five); None: the default encoder's (DEFAULT_ENCODER), so
    embed_chips(face_chips(photo)[1]) works with defaults. whole_image_fallback: when no face is
    found, use the whole image (already-cropped faces). min_face: with HOG, detect at the
    lowest resolution that still finds faces this fraction of the shorter side (e.g. 0.1:
    much faster on big photos); None keeps dlib's full resolution.
    """
    from convlens.models.face_models import ALIGNERS, encoder_extras

    aligner = encoder_extras(None)["aligner"] if aligner is None else aligner
    if aligner not in ALIGNERS:
        raise ConvlensError(f"unknown aligner {aligner!r}; choose one of {', '.join(ALIGNERS)}")
    img = load_image(image)
    found, shapes = _find(
        img, detector, upsample, landmarks, whole_image_fallback, min_face, aligner
    )
    return found, _aligned(img, shapes, aligner)


def _aligned(image: np.ndarray, shapes: list[np.ndarray], aligner: str) -> np.ndarray:
    if aligner == "arcface-5":
        from convlens.faces.align_arcface import align_image as arcface_chips

        return arcface_chips(image, shapes)
    return _align.align_image(image, shapes)


def encode(
    image: ImageInput,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    landmarks: int = 5,
    model=None,
    device=None,
    flip: bool = False,
    jitter: int = 0,
    whole_image_fallback: bool = False,
    min_face: float | None = None,
) -> list[Face]:
    """Every face in one photo (path, PIL image or RGB array), largest first, encoded.

    model: None (DEFAULT_ENCODER), a registry name ("sface"), an encoder file or a loaded
    module; device: torch device
    (default CUDA when available). flip: also encode the mirrored chip and average. jitter:
    average N randomly jittered chips (dlib's num_jitters). Other options: see face_chips.
    """
    # One photo through the batch path: it already overlaps loading the encoder (torch
    # import, weights) with dlib's detection, which releases the GIL.
    ((_, result),) = encode_many(
        [image], 64, detector, upsample, landmarks, model, device, flip, jitter,
        whole_image_fallback, min_face, workers=1, progress=False,
    )  # fmt: skip
    if isinstance(result, ConvlensError):
        raise result
    return result


def item_error(item, error: Exception) -> ConvlensError:
    """Any failure on one photo (Pillow's MemoryError, a dlib RuntimeError, ...) as that
    photo's one-line ConvlensError."""
    if isinstance(error, ConvlensError):
        return error
    name = os.fspath(item) if isinstance(item, str | os.PathLike) else type(item).__name__
    lines = str(error).strip().splitlines()
    reason = next((ln.strip() for ln in lines if ln.strip()), "")
    return ConvlensError(f"{name}: {type(error).__name__}{': ' + reason if reason else ''}")


def photo_items(photos) -> list:
    """The photos to encode: one path, a folder (its images, sorted), or an iterable of
    paths, PIL images and RGB arrays. A lone image array or PIL image is one photo."""
    from PIL import Image

    if isinstance(photos, np.ndarray | Image.Image):
        return [photos]
    if isinstance(photos, str | os.PathLike):
        return list_images(photos) if os.path.isdir(photos) else [photos]
    return list(photos)


def check_encode_options(
    batch_size: int,
    detector: str,
    upsample: int,
    jitter: int,
    min_face: float | None,
    landmarks: int = 5,
) -> None:
    """Refuse bad options once, before any photo is read (not once per photo)."""
    _detect.check_options(detector, upsample)
    if landmarks not in (5, 68):
        raise ConvlensError(f"landmarks must be 5 or 68, not {landmarks!r}")
    if isinstance(batch_size, bool) or not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
        raise ConvlensError(f"batch size must be 1..{MAX_BATCH_SIZE}, not {batch_size!r}")
    if not 0 <= int(jitter) <= MAX_JITTER:
        raise ConvlensError(f"jitter must be 0..{MAX_JITTER}, not {jitter!r}")
    if min_face is not None and not (np.isfinite(min_face) and 0 < min_face <= 1):
        raise ConvlensError(f"min_face must be a fraction in (0, 1], not {min_face!r}")


def encode_many(
    paths,
    batch_size: int = 64,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    landmarks: int = 5,
    model=None,
    device=None,
    flip: bool = False,
    jitter: int = 0,
    whole_image_fallback: bool = False,
    min_face: float | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Iterator[tuple[ImageInput, list[Face] | ConvlensError]]:
    """(item, faces) for every photo, in input order; a photo that cannot be read gives
    (item, ConvlensError) and the rest go on. `paths`: one path, a folder (its images) or an
    iterable (see photo_items). Load + detect + align run in `workers` threads (default: CPU
    count); chips are encoded `batch_size` at a time across photos. Bad options raise
    ConvlensError here, before any photo is read.
    """
    check_encode_options(batch_size, detector, upsample, jitter, min_face, landmarks)
    items = photo_items(paths)
    return _encode_stream(
        items, batch_size, detector, upsample, landmarks, model, device, flip, jitter,
        whole_image_fallback, min_face, workers, progress,
    )  # fmt: skip


def _encode_stream(
    items: list,
    batch_size: int,
    detector: str,
    upsample: int,
    landmarks: int,
    model,
    device,
    flip: bool,
    jitter: int,
    whole_image_fallback: bool,
    min_face: float | None,
    workers: int | None,
    progress: bool,
) -> Iterator[tuple[ImageInput, list[Face] | ConvlensError]]:
    from convlens.models.face_models import encoder_extras
    from convlens.models.registry import looks_like_path

    if isinstance(model, str | os.PathLike) and looks_like_path(str(model)):
        model = resolve_model(model, device)  # a model file: its architecture names the aligner
    aligner = encoder_extras(model)["aligner"]
    net = None
    workers = workers or min(8, os.cpu_count() or 1)

    def prepare(item):
        try:
            return face_chips(
                item, detector, upsample, landmarks, whole_image_fallback, min_face, aligner
            )
        except Exception as e:  # noqa: BLE001 - one bad photo must not end the batch
            return item_error(item, e)

    def flush(pending):
        chips = [c for _, r in pending if not isinstance(r, ConvlensError) for c in r[1]]
        embs = embed_chips(np.stack(chips), net, batch_size, flip, jitter) if chips else []
        k = 0
        for item, result in pending:
            if isinstance(result, ConvlensError):
                yield item, result
                continue
            faces = result[0]
            for f in faces:
                f.embedding = embs[k]
                k += 1
            yield item, faces

    from convlens.progress import ProgressBar

    with (
        ThreadPoolExecutor(workers) as pool,
        ProgressBar("encoding", len(items), unit="photo", disable=not progress) as bar,
    ):
        window: deque = deque()
        pending: list = []
        n_chips = 0
        it = iter(items)
        for item in it:
            window.append((item, pool.submit(prepare, item)))
            if len(window) >= 4 * workers:
                break
        # Load the encoder while the first photos are detected (dlib releases the GIL).
        net = resolve_model(model, device)
        while window:
            item, fut = window.popleft()
            nxt = next(it, None)
            if nxt is not None:
                window.append((nxt, pool.submit(prepare, nxt)))
            result = fut.result()
            pending.append((item, result))
            if not isinstance(result, ConvlensError):
                n_chips += len(result[0])
            if n_chips >= batch_size or not window:
                for out in flush(pending):
                    bar.advance(1)
                    yield out
                pending, n_chips = [], 0
