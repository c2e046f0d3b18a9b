"""Faces: detect, align and encode faces; verify and recognise them against a gallery.

    import convlens.faces as faces
    found = faces.encode("photo.jpg")          # list[faces.Face], largest first (SFace)
    faces.distance(found[0], other)            # ≤ faces.encoder_extras()["threshold"]: same
    for path, result in faces.encode_many(paths, batch_size=64): ...

Importing this package is cheap: torch, dlib and the models load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> module that defines it, imported on first attribute access.
_LAZY = {
    # pipeline (load, detect, align, encode)
    "Face": "convlens.faces.pipeline",
    "encode": "convlens.faces.pipeline",
    "encode_many": "convlens.faces.pipeline",
    "distance": "convlens.faces.pipeline",
    "face_chips": "convlens.faces.pipeline",
    "embed_chips": "convlens.faces.pipeline",
    "resolve_model": "convlens.faces.pipeline",
    "encoder_extras": "convlens.models.face_models",
    "align_faces": "convlens.faces.align",
    "Box": "convlens.faces.box",
    # gallery (verification / recognition)
    "Gallery": "convlens.faces.gallery",
    "Verdict": "convlens.faces.gallery",
    "FaceMatch": "convlens.faces.gallery",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from convlens.faces.box import Box  # noqa: F401
    from convlens.faces.gallery import FaceMatch, Gallery, Verdict  # noqa: F401
    from convlens.faces.pipeline import (  # noqa: F401
        Face,
        distance,
        embed_chips,
        encode,
        encode_many,
        face_chips,
    )
    from convlens.models.face_models import encoder_extras  # noqa: F401


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'convlens.faces' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
