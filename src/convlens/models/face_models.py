"""Face encoders by file: dlib's pretrained .dat, or a convlens model file (.pt).

A convlens model file is a torch.save'd dict:
    {"format": "convlens-face-model", "version": 1, "arch": NAME, "config": {...},
     "state_dict": {...}, "model_id": "..."}
`arch` names a constructor in ARCHITECTURES, called as constructor(**config).

Every face encoder is an nn.Module taking float RGB chips (N, 3, 150, 150) with values 0..255
and returning (N, D) embeddings, and has a `model_id: str` attribute. Galleries store the
model_id and refuse to mix encoders.
"""

from __future__ import annotations

import importlib
import os

from torch import nn

from convlens.errors import ConvlensError
from convlens.models.files import load_torch_file, save_torch_file

FORMAT = "convlens-face-model"

# name -> "module:callable"; resolved lazily so importing this module stays cheap.
ARCHITECTURES: dict[str, str] = {
    "dlib_resnet": "convlens.models.dlib_resnet:DlibFaceResNet",
    "small_convnet": "convlens.models.small_convnet:SmallConvNet",
}


def build_architecture(arch: str, config: dict) -> nn.Module:
    if arch not in ARCHITECTURES:
        known = sorted(ARCHITECTURES)
        raise ConvlensError(f"unknown encoder architecture {arch!r}; known: {known}")
    module_name, attr = ARCHITECTURES[arch].split(":")
    return getattr(importlib.import_module(module_name), attr)(**config)


def save_face_model(model: nn.Module, path: str | os.PathLike, arch: str, config: dict) -> None:
    """Write a convlens model file atomically (a crash never leaves half a file)."""
    payload = {
        "format": FORMAT,
        "version": 1,
        "arch": arch,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_id": model.model_id,
    }
    save_torch_file(payload, path)


def load_face_model(path: str | os.PathLike | None = None) -> nn.Module:
    """The default pretrained encoder (path=None), a dlib .dat file, or a convlens .pt file."""
    if path is None or str(path).endswith(".dat"):
        from convlens.models.dlib_resnet import load_dlib_face_resnet

        return load_dlib_face_resnet(path)
    payload = load_torch_file(path, FORMAT, "model")
    model = build_architecture(payload["arch"], payload["config"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.model_id = payload["model_id"]
    return model.eval()
