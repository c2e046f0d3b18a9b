"""What the trainer needs to know about its data, per modality: how stored chips become a
tensor batch, how a batch is augmented, and how validation chips are embedded.

The training loop, losses, mining, checkpoints and logs are the same for every modality; a
registry entry's `extras["modality"]` (default "face") says which one its encoder takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from convlens.errors import ConvlensError


@dataclass(frozen=True)
class Modality:
    name: str
    to_tensor: Callable[[np.ndarray], torch.Tensor]
    augment: Callable[[torch.Tensor, np.random.Generator, int], torch.Tensor]
    embed: Callable[[np.ndarray, torch.nn.Module, torch.device], np.ndarray]


def _face_tensor(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2)


def _face_augment(x: torch.Tensor, rng: np.random.Generator, jitter: int) -> torch.Tensor:
    from convlens.train.objective import augment_batch

    return augment_batch(x, rng, jitter)


def _face_embed(chips: np.ndarray, encoder, device) -> np.ndarray:
    from convlens.faces.pipeline import embed_chips

    return embed_chips(chips, encoder, device=device)


CROP = 2 / 3  # audio training windows: two thirds of the stored clip


def _audio_tensor(waves: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))


def _audio_augment(x: torch.Tensor, rng: np.random.Generator, jitter: int) -> torch.Tensor:
    """A random window of CROP of each clip and a random gain of -6..+6 dB (the encoder's
    log-mel front end removes a constant gain only up to its floor, so this is not a no-op).
    `jitter` is the faces' shift in pixels, unused here."""
    n, length = x.shape
    width = max(1, int(length * CROP))
    starts = rng.integers(0, length - width + 1, size=n)
    gains = torch.from_numpy(10 ** (rng.uniform(-6, 6, size=n) / 20)).float().to(x.device)
    crops = torch.stack([x[i, s : s + width] for i, s in enumerate(starts.tolist())])
    return crops * gains[:, None]


def _audio_embed(waves: np.ndarray, encoder, device) -> np.ndarray:
    from convlens.audio.speakers import embed_waves

    return embed_waves(encoder, waves, device=device)


MODALITIES = {
    "face": Modality("face", _face_tensor, _face_augment, _face_embed),
    "audio": Modality("audio", _audio_tensor, _audio_augment, _audio_embed),
}


def modality_of(name: str) -> Modality:
    if name not in MODALITIES:
        raise ConvlensError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}")
    return MODALITIES[name]
