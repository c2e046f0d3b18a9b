"""A 1-D ConvNet speaker encoder: waveform -> log-mel frames -> 128-d unit embedding.

The same `NdConvNet` definition that runs on images and volumes, built with nd=1 over the
40 log-mel bands as channels; trained from scratch with the face encoders' triplet trainer
(`convlens train triplet VOICES/ --model speaker-cnn --init scratch`). Input: mono float
waveforms (N, samples) at 8 kHz, any length of 0.1 s or more. 8 kHz on purpose: the shared
voices mix 8 kHz studio prompts with full-band home recordings, and a model given the full band
could tell the two sources apart by bandwidth alone.
"""

from __future__ import annotations

import torch

from convlens.audio.features import LogMel
from convlens.models.face_models import load_trained
from convlens.models.registry import InputFormat, register_model
from convlens.nd.layers import NdConvNet

RATE = 8000


class SpeakerCNN(NdConvNet):
    """Log-mel front end (fixed, in the module so the model file is self-contained), then
    stem and stages of 1-D conv-BN-ReLU blocks over time, global average over time, linear."""

    def __init__(
        self,
        embedding_dim: int = 128,
        n_mels: int = 40,
        widths: tuple[int, ...] = (64, 128, 128),
        model_id: str = "speaker_cnn-untrained",
    ) -> None:
        super().__init__(1, n_mels, widths, embedding_dim, normalize=True)
        self.rate = RATE
        self.frontend = LogMel(RATE, n_fft=256, hop=80, n_mels=n_mels)
        self.model_id = model_id

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return super().forward(self.frontend(wave))


@register_model(
    name="speaker-cnn",
    aliases=("speaker_cnn",),
    tasks=("speaker-encoder",),
    about="a 1-D ConvNet over log-mel frames (NdConvNet, nd=1): speech -> 128-d",
    build=SpeakerCNN,
    input=InputFormat(None, channels="mono", value_range=1.0, note="8 kHz waveform"),
    extras={"modality": "audio", "rate": RATE},
)
def _load(path=None) -> SpeakerCNN:
    how = "train it (convlens train triplet VOICES --model speaker-cnn --init scratch)"
    return load_trained(path, "speaker-cnn", how)
