"""Child process for the hardening tests: runs one image size (or many) through every dlib
entry point, printing one line per step, so that a native crash (segfault, abort) kills only
this process and the parent test names the size that did it.

    python tests/hardening_child.py WxH[:noise][:full] ...

noise: random pixels instead of flat grey; full: also encode() and inspect's face views
(the encoder's forward pass makes those the slow steps).
"""

from __future__ import annotations

import sys

import numpy as np


def image(w: int, h: int, noise: bool) -> np.ndarray:
    if noise:
        return np.random.default_rng(w * 7919 + h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.full((h, w, 3), 128, np.uint8)


def steps(img: np.ndarray, full: bool):
    from convlens.faces import detect as d
    from convlens.faces.pipeline import encode
    from convlens.inspection.models import face_views

    whole = [d.whole_image(img.shape)]
    yield "hog", lambda: d.detect(img, "hog", 0)
    yield "hog-up3", lambda: d.detect(img, "hog", 3)
    yield "cnn", lambda: d.detect(img, "cnn", 0)
    yield "cnn-up1", lambda: d.detect(img, "cnn", 1)
    yield "auto", lambda: d.detect(img, "auto", 1)
    yield "landmarks5", lambda: d.landmarks(img, whole, 5)
    yield "landmarks68", lambda: d.landmarks(img, whole, 68)
    if full:
        yield "encode", lambda: encode(img, whole_image_fallback=True)
        yield "face_views", lambda: face_views(img)


def main(args: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    from convlens.errors import ConvlensError

    for arg in args:
        size, *kinds = arg.split(":")
        w, h = (int(v) for v in size.split("x"))
        for name, call in steps(image(w, h, "noise" in kinds), "full" in kinds):
            print("start", arg, name, flush=True)
            try:
                call()
                print("ok", arg, name, flush=True)
            except ConvlensError as e:
                print("refused", arg, name, str(e).replace("\n", " "), flush=True)
            except Exception as e:  # noqa: BLE001 - reported to the parent as a failure
                print("error", arg, name, type(e).__name__, str(e)[:200].replace("\n", " "))


if __name__ == "__main__":
    main(sys.argv[1:])
