"""Face detection and landmarks: dlib's HOG and MMOD CNN, an "auto" chain, or YuNet.

Boxes are `Box(x0, y0, x1, y1)` in pixels, x1/y1 exclusive (width = x1 - x0), clipped to
the image (faces/box.py); each detection keeps dlib's unclipped rectangle for the landmark
predictor. dlib models are used by one thread at a time: dlib's detectors keep scratch state
(not thread-safe) but release the GIL, so a thread pool detects in parallel, each thread with
its own copy. A thread's copies go back to an idle pool when the thread ends, so the next
thread (each `faces.encode` call runs in a new one) reuses them instead of reading the model
files again (~0.7 s). YuNet (faces/yunet.py) also gives five landmarks per face.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.box import Box

DETECTORS = ("hog", "cnn", "auto", "yunet")
# The one default for every caller (encode, gallery, calibrate, training, inspect): YuNet,
# several times faster than HOG on photos, finding as many faces as HOG's "auto" chain on ORL
# (400/400) and the shared photos, with the five points SFace's chips need
# (benchmarks/faces_speed.py, benchmarks/face_embeddings.py; docs/faces/README.md).
DEFAULT_DETECTOR = "yunet"
# Each upsampling doubles both sides: at 3 a 1080p photo is searched at 15360x8640 (about
# 400 MB of RGB plus HOG features per thread); at 4 it would be 1.6 GB, beyond reason.
MAX_UPSAMPLE = 3
# dlib takes no image it cannot handle (a side-sweep in a child process, tests/
# test_hardening_detect.py): the MMOD CNN raises on sides under ~10 px and corrupts its heap
# (segfault or abort, sometimes later) on thin strips such as 2x10000. Every image handed to
# dlib is padded on the right and bottom (coordinates unchanged) to at least DLIB_MIN_SIDE.
DLIB_MIN_SIDE = 32
# Work is bounded by the pixels searched (image pixels x 4**upsample), measured on this CPU
# (benchmarks/fuzz_images.py): the CNN keeps ~1 kB and ~4 ms of CPU per searched pixel
# (1 MP: ~1 GB, ~4 s); HOG ~12 bytes and ~65 ns (48 MP: ~0.6 GB, ~3 s). So a 12 MP photo
# with no face costs HOG at upsample 1 and 0, then the CNN: < 2 GB, ~9 s CPU. Beyond a bound
# the search runs at the highest resolution within it (upsampling lowered, the image shrunk
# for that detector only): on a 12 MP photo the CNN misses faces under ~280 px; HOG, run
# first, still searches it at full resolution.
CNN_MAX_PIXELS = 1_000_000
HOG_MAX_PIXELS = 48_000_000
_LOCK = threading.Lock()
_LOCAL = threading.local()
_IDLE: dict[tuple, list] = {}  # models whose thread has ended, by (maker, args)
BUILT: dict[str, int] = {}  # how many of each model were built (tests watch it)


class _ThreadModels(dict):
    """One thread's models; when the thread ends they go back to the idle pool."""

    def __del__(self) -> None:
        # No lock here: this may run in any thread, at any time; list.append is atomic.
        for key, obj in self.items():
            _IDLE.setdefault(key, []).append(obj)


def _per_thread(make):
    """make(*args)'s result for this thread: its own, an idle one, or a new one."""

    def get(*args):
        cache = _LOCAL.__dict__.get("models")
        if cache is None:
            cache = _LOCAL.__dict__["models"] = _ThreadModels()
        key = (make.__name__, *args)
        if key not in cache:
            try:
                cache[key] = _IDLE.get(key, []).pop()
            except IndexError:
                cache[key] = make(*args)
                BUILT[make.__name__] = BUILT.get(make.__name__, 0) + 1
        return cache[key]

    get.__name__ = make.__name__
    get.__doc__ = make.__doc__
    return get


@dataclass
class Detection:
    rect: tuple[int, int, int, int]  # dlib's rectangle: left, top, right, bottom (inclusive)
    score: float
    source: str  # "hog", "cnn", "yunet" or "whole-image"
    points: np.ndarray | None = None  # YuNet's five landmarks (5, 2), ArcFace order

    def box(self, width: int, height: int) -> Box:
        """The detection as a Box clipped to a width x height image."""
        return Box.from_dlib(self.rect, width, height)

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.rect
        return (x1 - x0 + 1) * (y1 - y0 + 1)


def whole_image(shape: tuple[int, ...]) -> Detection:
    """The whole image as one face (for photos that are already face crops)."""
    return Detection((0, 0, shape[1] - 1, shape[0] - 1), 0.0, "whole-image")


def _dlib():
    try:
        import dlib
    except ImportError:  # pragma: no cover - dlib-bin is a dependency
        raise ConvlensError("dlib is not installed (pip install dlib-bin)") from None
    return dlib


@_per_thread
def hog_detector():
    with _LOCK:
        return _dlib().get_frontal_face_detector()


@_per_thread
def cnn_detector():
    from convlens.models.weights import dlib_model_file

    with _LOCK:
        return _dlib().cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector")))


@_per_thread
def shape_predictor(points: int = 5):
    from convlens.models.weights import dlib_model_file

    names = {5: "shape_predictor_5_face_landmarks", 68: "shape_predictor_68_face_landmarks"}
    if points not in names:
        raise ConvlensError(f"landmarks must be 5 or 68, not {points!r}")
    with _LOCK:
        return _dlib().shape_predictor(str(dlib_model_file(names[points])))


def pad_for_dlib(image: np.ndarray) -> np.ndarray:
    """The image padded on the right and bottom (edge pixels repeated) to DLIB_MIN_SIDE, so
    that pixel coordinates are unchanged; itself when already large enough."""
    h, w = image.shape[:2]
    if h >= DLIB_MIN_SIDE and w >= DLIB_MIN_SIDE:
        return image
    pad = ((0, max(0, DLIB_MIN_SIDE - h)), (0, max(0, DLIB_MIN_SIDE - w)), (0, 0))
    return np.pad(image, pad, mode="edge")


def search_plan(shape: tuple[int, ...], upsample: int, max_pixels: int) -> tuple[int, float]:
    """(upsample, scale): dlib upsamples an image resized by `scale` (<= 1), searching the
    most pixels within max_pixels, at most 2**upsample times the image's resolution."""
    factor = min(2.0**upsample, math.sqrt(max_pixels / (shape[0] * shape[1])))
    if factor >= 2.0**upsample:
        return upsample, 1.0
    up = max(0, math.ceil(math.log2(factor)))
    return up, factor / 2**up


def _bounded(run, image: np.ndarray, upsample: int, max_pixels: int) -> list[Detection]:
    """run(image, upsample) on an image shrunk to max_pixels if needed, padded for dlib;
    rectangles back in the caller's pixels."""
    up, scale = search_plan(image.shape, upsample, max_pixels)
    if scale < 1.0:
        from PIL import Image

        h, w = image.shape[:2]
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        fx, fy = w / size[0], h / size[1]
        found = run(pad_for_dlib(small), up)
        for d in found:
            x0, y0, x1, y1 = d.rect
            d.rect = (int(x0 * fx), int(y0 * fy), int((x1 + 1) * fx) - 1, int((y1 + 1) * fy) - 1)
        return found
    return run(pad_for_dlib(image), up)


def _hog(image: np.ndarray, upsample: int, adjust_threshold: float) -> list[Detection]:
    def run(img, up):
        rects, scores, _ = hog_detector().run(img, up, adjust_threshold)
        return [
            Detection((r.left(), r.top(), r.right(), r.bottom()), float(s), "hog")
            for r, s in zip(rects, scores, strict=True)
        ]

    return _bounded(run, image, upsample, HOG_MAX_PIXELS)


def _cnn(image: np.ndarray, upsample: int) -> list[Detection]:
    def run(img, up):
        return [
            Detection(
                (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()),
                float(d.confidence),
                "cnn",
            )  # fmt: skip
            for d in cnn_detector()(img, up)
        ]

    return _bounded(run, image, upsample, CNN_MAX_PIXELS)


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous RGB uint8 array dlib takes; ConvlensError for one it
    cannot (not (H, W, 3) uint8, empty, over the size or aspect limits of convlens.images)."""
    from convlens.images import check_size

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConvlensError(
            f"detection needs an RGB uint8 (H, W, 3) array, not {image.dtype} {image.shape}"
        )
    check_size(image.shape[1], image.shape[0], "image array")
    return np.ascontiguousarray(image)


def _yunet(image: np.ndarray, upsample: int) -> list[Detection]:
    from convlens.faces import yunet

    ((boxes, scores, points),) = yunet.detect_many([image], upsample)
    # dlib rectangles are inclusive; YuNet's x1/y1 are exclusive edges.
    rects = np.floor(boxes + 0.5).astype(np.int64) - np.array([0, 0, 1, 1])
    return [
        Detection(tuple(int(v) for v in r), float(s), "yunet", p.astype(np.float32))
        for r, s, p in zip(rects, scores, points, strict=True)
    ]


def check_options(detector: str, upsample: int) -> None:
    """Refuse an unknown detector or an upsampling outside 0..MAX_UPSAMPLE."""
    if detector not in DETECTORS:
        raise ConvlensError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if isinstance(upsample, bool) or not isinstance(upsample, int | np.integer):
        raise ConvlensError(f"upsample must be a whole number, not {upsample!r}")
    if not 0 <= upsample <= MAX_UPSAMPLE:
        raise ConvlensError(f"upsample must be 0..{MAX_UPSAMPLE}, not {upsample}")


def detect(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    adjust_threshold: float = 0.0,
    whole_image_fallback: bool = False,
    max_upsample: int = 2,
) -> list[Detection]:
    """Faces in an RGB uint8 image, largest first.

    detector: "hog" (dlib's HOG + linear SVM; fast, frontal), "cnn" (dlib's MMOD CNN; slower
    on CPU, finds more poses), "yunet" (OpenCV Zoo's YuNet, in torch: fast, small faces,
    five landmarks; searched again at 2x.. 2**upsample only when nothing is found) or "auto":
    HOG at `upsample`, then HOG at the other upsamplings from 0 to `max_upsample` (small
    faces, e.g. ORL's 92x112 photos), then the CNN at `upsample`.
    whole_image_fallback: when nothing is found, treat the whole image as one face (for
    photos that are already face crops).
    """
    check_options(detector, upsample)
    image = check_image(image)
    if detector == "hog":
        found = _hog(image, upsample, adjust_threshold)
    elif detector == "cnn":
        found = _cnn(image, upsample)
    elif detector == "yunet":
        found = _yunet(image, upsample)
    else:
        # HOG at the asked upsampling, then the other levels up to max_upsample (higher
        # first: smaller faces; then lower: HOG is not monotonic in upsampling), then the CNN.
        top = max(max_upsample, upsample)
        levels = [upsample, *range(upsample + 1, top + 1), *range(upsample - 1, -1, -1)]
        # Levels beyond HOG's pixel bound would repeat a lower one: search each once.
        plans: dict = {}
        for up in levels:
            plans.setdefault(search_plan(image.shape, up, HOG_MAX_PIXELS), up)
        for up in plans.values():
            found = _hog(image, up, adjust_threshold)
            if found:
                break
        if not found:
            found = _cnn(image, upsample)
    if not found and whole_image_fallback:
        found = [whole_image(image.shape)]
    return sorted(found, key=lambda d: -d.area)


def landmarks(image: np.ndarray, detections: list[Detection], points: int = 5) -> list[np.ndarray]:
    """(points, 2) int landmark arrays, one per detection, from dlib's shape predictor."""
    dlib = _dlib()
    predictor = shape_predictor(points)
    image = pad_for_dlib(check_image(image)) if detections else image
    out = []
    for d in detections:
        shape = predictor(image, dlib.rectangle(*d.rect))
        out.append(np.array([(p.x, p.y) for p in shape.parts()], np.int32))
    return out
