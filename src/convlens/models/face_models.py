"""Face encoders by file: dlib's pretrained .dat, or a convlens model file (.pt).

A convlens model file is a torch.save'd dict:
    {"format": "convlens-face-model", "version": 1, "arch": NAME, "config": {...},
     "state_dict": {...}, "model_id": "..."}
`arch` names a face encoder in the model registry, built as entry.build(**config).

Every face encoder is an nn.Module taking float RGB chips (N, 3, S, S) with values 0..255 (S
from its registry entry: 150 for dlib's ResNet, 112 for SFace) and returning (N, D)
embeddings, and has a `model_id: str` attribute. Galleries store the
model_id and refuse to mix encoders.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from convlens.errors import ConvlensError
from convlens.models.files import load_torch_file, save_torch_file

if TYPE_CHECKING:  # torch loads on first use: `import convlens.faces` stays cheap
    from torch import nn

FORMAT = "convlens-face-model"
# The encoder `faces.encode` and new galleries use when none is named: SFace, measured better
# than dlib's ResNet on ORL and LFW, pairs and open set (docs/faces/README.md). Galleries
# built with dlib's encoder keep it (their model_id names it).
DEFAULT_ENCODER = "sface"


def build_architecture(arch: str, config: dict) -> nn.Module:
    """An untrained face encoder of a registered architecture (the model file's `arch`)."""
    from convlens.models import registry

    entry = registry.get_encoder(arch)
    if entry.build is None:
        raise ConvlensError(f"face encoder {arch!r} cannot be built untrained")
    return entry.build(**config)


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
    """The default pretrained encoder (path=None: DEFAULT_ENCODER), a registry name (`convlens
    models`), a dlib .dat file, or a convlens .pt file."""
    from convlens.models import registry

    path = DEFAULT_ENCODER if path is None else path
    if isinstance(path, str) and not registry.looks_like_path(path):
        return registry.get(path, task="face-encoder").load()
    if str(path).endswith(".dat"):
        from convlens.models.dlib_resnet import load_dlib_face_resnet

        return load_dlib_face_resnet(path)
    payload = load_torch_file(path, FORMAT, "model")
    model = build_architecture(payload["arch"], payload["config"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.model_id = payload["model_id"]
    return model.eval()


def load_trained(path: str | os.PathLike | None, name: str, how: str) -> nn.Module:
    """The loader of an encoder with no pretrained weights: the model file at `path`, or,
    without one, a one-line error saying how to train it."""
    if path is None:
        raise ConvlensError(f"{name} has no pretrained weights; {how} and load its .pt file")
    return load_face_model(path)


def open_set_threshold(threshold: float, dir_median: float) -> dict:
    """A pretrained face encoder's shipped τ (its registry extras) and its provenance: every
    encoder's is chosen from data, by `python benchmarks/open_set.py --choose`, under the same
    protocol; `dir_median` is the DIR that τ gives, median over the draws."""
    return {
        "threshold": threshold,
        "threshold_source": {
            "set": "LFW folds 1-5, K=100 people enrolled from their first photo, seeds 1-10",
            "protocol": "one-shot open set; the largest τ with FPIR ≤ fpir on every draw",
            "fpir": 0.01,
            "dir": dir_median,
            "chosen_by": "python benchmarks/open_set.py --choose",
        },
    }


ALIGNERS = ("dlib-5", "arcface-5")


def face_encoder_extras(
    chip_size: int, aligner: str, model_id: str, shipped: dict, normalize: bool = False
) -> dict:
    """A pretrained face encoder's registry extras, the keys `encoder_extras` reads: its chips
    (chip_size, aligner), whether its embeddings are L2-normalised before comparing, its
    model_id and its shipped τ (`open_set_threshold`)."""
    if aligner not in ALIGNERS:
        raise ValueError(f"unknown aligner {aligner!r}; known: {', '.join(ALIGNERS)}")
    extras = {"chip_size": chip_size, "aligner": aligner, "normalize": normalize}
    return {**extras, "model_id": model_id, **shipped}


def encoder_entry(model=None):
    """The registry entry of a face encoder given as None (the default), a registry name or a
    loaded module; None for a model file or a module no entry builds (trained encoders)."""
    import torch

    from convlens.models import registry

    if model is None:
        return registry.get(DEFAULT_ENCODER, task="face-encoder")
    if isinstance(model, str) and not registry.looks_like_path(model):
        return registry.get(model, task="face-encoder")
    if isinstance(model, torch.nn.Module):
        for entry in registry.entries("face-encoder"):
            if entry.build is type(model):
                return entry
    return None


def encoder_extras(model=None) -> dict:
    """How chips are made for an encoder and what its embeddings mean, from its registry
    entry: aligner ("dlib-5" by default, "arcface-5"), chip_size (150 by default, 112 for
    ArcFace chips), normalize (L2)."""
    entry = encoder_entry(model)
    extras = dict(entry.extras) if entry is not None else {}
    return {"aligner": "dlib-5", "chip_size": 150, "normalize": False, **extras}
