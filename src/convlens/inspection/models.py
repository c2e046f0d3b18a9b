"""The networks convlens ships, by name: how to load each and how images become its input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection.units import InputSpec, fit_image, scale_01

FACE_SIZE = 150


def face_views(image: np.ndarray, detector: str = "auto", upsample: int | None = None) -> list:
    """One aligned 150x150 chip per face found; the whole image fitted to 150x150 when none."""
    from convlens.faces import face_chips

    kwargs = {} if upsample is None else {"upsample": upsample}
    _, chips = face_chips(image, detector=detector, **kwargs)
    if len(chips):
        return list(chips)
    return [fit_image(image, (FACE_SIZE, FACE_SIZE))]


def _face_tensor(batch: np.ndarray) -> torch.Tensor:
    # The face encoder takes RGB chips with values 0..255 (it normalises inside).
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float()


def _load_face(path=None) -> nn.Module:
    from convlens.models.face_models import load_face_model

    return load_face_model(path)


def _load_efficientnet(path=None) -> nn.Module:
    from convlens.models.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0(path)


@dataclass(frozen=True)
class NamedModel:
    load: Callable[..., nn.Module]  # load(weights_path=None): None = the pretrained default
    spec: Callable[[], InputSpec]
    about: str


MODELS: dict[str, NamedModel] = {
    "face": NamedModel(
        _load_face,
        # dlib's detectors crash when called from several threads at once: one preparer.
        lambda: InputSpec((FACE_SIZE, FACE_SIZE), _face_tensor, face_views, max_workers=1),
        "a face encoder (default: dlib's ResNet; or a trained convlens .pt / dlib .dat file); "
        "inputs: aligned 150x150 face chips, one per face",
    ),
    "efficientnet-lite0": NamedModel(
        _load_efficientnet,
        # The network takes RGB in 0..1 and normalises inside.
        lambda: InputSpec((224, 224), scale_01),
        "EfficientNet-Lite0 (ImageNet); inputs: images scaled and centre-cropped to 224x224",
    ),
}


def named_model(name: str) -> NamedModel:
    if name not in MODELS:
        raise ConvlensError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]
