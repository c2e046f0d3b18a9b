"""The networks `convlens inspect` opens: registry entries for the task "inspectable" (see
`convlens models`), or a face encoder file; and how an entry's InputFormat becomes the
InputSpec of the scan.

Face encoders (task "face-encoder") see aligned face chips, one per face found; every other
network sees the whole image scaled and centre-cropped to its input size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.faces.align import CHIP_SIZE
from convlens.faces.detect import DEFAULT_DETECTOR
from convlens.inspection.inputs import InputSpec, fit_image, scale_01
from convlens.models import registry
from convlens.models.registry import InputFormat, ModelEntry

# For a network that takes any input size (VGG19) and none is given: ImageNet's.
DEFAULT_SIZE = (224, 224)
# Every face encoder takes aligned RGB chips, values 0..255 (convlens.models.face_models).
FACE_FORMAT = InputFormat((CHIP_SIZE, CHIP_SIZE), note="aligned face chips")


def face_views(
    image: np.ndarray, detector: str = DEFAULT_DETECTOR, upsample: int | None = None
) -> list[np.ndarray]:
    """One aligned 150x150 chip per face found; the whole image fitted to 150x150 when none."""
    from convlens.faces import face_chips

    kwargs = {} if upsample is None else {"upsample": upsample}
    _, chips = face_chips(image, detector=detector, aligner="dlib-5", **kwargs)
    if len(chips):
        return list(chips)
    return [fit_image(image, FACE_FORMAT.size)]


@dataclass(frozen=True)
class TensorFormat:
    """uint8 RGB batch (N, H, W, 3) -> the float tensor (N, 3, H, W) an InputFormat asks for:
    channel order, value range, then mean/std when the network does not normalise inside."""

    format: InputFormat

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        fmt = self.format
        if fmt.channels == "BGR":
            batch = np.ascontiguousarray(batch[..., ::-1])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        if fmt.value_range != 255.0:
            x = x.div_(255.0 / fmt.value_range)
        if fmt.mean is not None:
            x = x.sub_(torch.tensor(fmt.mean).view(1, -1, 1, 1))
        if fmt.std is not None:
            x = x.div_(torch.tensor(fmt.std).view(1, -1, 1, 1))
        return x


def input_spec(
    fmt: InputFormat | None, face: bool, size: tuple[int, int] | None = None
) -> InputSpec:
    """The scan's InputSpec for a network of this input format; `face`: a face encoder.

    size: another input size, for networks that take one (a face encoder's chips are fixed).
    """
    fmt = fmt or InputFormat(None)
    native = tuple(fmt.size) if fmt.size is not None else None
    if face:
        if size is not None and tuple(size) != native:
            raise ConvlensError(f"a face encoder takes a fixed input size {native}")
        # dlib's detectors crash when called from several threads at once: one preparer.
        return InputSpec(native, TensorFormat(fmt), face_views, max_workers=1)
    return InputSpec(tuple(size or native or DEFAULT_SIZE), TensorFormat(fmt))


def _load(entry: ModelEntry, weights: str | os.PathLike | None) -> nn.Module:
    if weights is not None and "face-encoder" in entry.tasks:
        # Any encoder file convlens loads (a trained SmallConvNet .pt, a dlib .dat).
        from convlens.models.face_models import load_face_model

        return load_face_model(weights)
    return entry.load() if weights is None else entry.load(weights)


def resolve_model(
    model: str | os.PathLike | nn.Module,
    input_size: int | tuple[int, int] | None = None,
    preprocess: Callable[[np.ndarray], torch.Tensor] | None = None,
    prepare: Callable[[np.ndarray], list[np.ndarray]] | None = None,
    weights: str | os.PathLike | None = None,
) -> tuple[nn.Module, InputSpec, str]:
    """(module, input spec, display name) for a registry name, a face encoder file, or a
    user's module.

    `weights`: for a registry name, a weights file instead of its pretrained default (for a
    face encoder: any encoder file convlens loads, e.g. a trained SmallConvNet .pt).
    """
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    if isinstance(model, os.PathLike) or (
        isinstance(model, str) and registry.looks_like_path(model)
    ):
        if weights is not None:
            raise ConvlensError(f"{model}: a model file carries its own weights")
        from convlens.models.face_models import load_face_model

        return load_face_model(model), input_spec(FACE_FORMAT, True, size), Path(model).name
    if isinstance(model, str):
        entry = registry.get(model, task="inspectable")
        spec = input_spec(entry.input, "face-encoder" in entry.tasks, size)
        return _load(entry, weights), spec, model
    if not isinstance(model, nn.Module):
        raise ConvlensError(
            f"model must be a name, a file or a torch.nn.Module, not {type(model).__name__}"
        )
    if size is None:
        raise ConvlensError("give the input size (H, W) for a module")
    if weights is not None:
        raise ConvlensError("weights apply to a named model; load your module's weights yourself")
    return model, InputSpec(tuple(size), preprocess or scale_01, prepare), type(model).__name__
