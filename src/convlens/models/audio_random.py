"""A random-weight wide shallow 1-D ConvNet over spectrogram frames, for audio texture
statistics (Ulyanov & Lebedev 2016): frequency bins are the input channels, time is the one
spatial axis, and the Gram matrix of its ReLU features over time is the texture's signature.

Untrained on purpose: with enough random filters the Grams already pin down which spectral
patterns co-occur over ~`kernel` frames. The seed makes the filters repeatable, so the
exemplar and the synthesis are measured by the same network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.registry import InputFormat, Weights, register_model
from convlens.nd.layers import conv


class RandomSpectralConv(nn.Module):
    """(N, n_freq, frames) log-magnitudes -> (N, channels, frames) ReLU features."""

    def __init__(self, n_freq: int, channels: int = 1024, kernel: int = 11, seed: int = 0):
        super().__init__()
        self.conv = conv(1, n_freq, channels, kernel, bias=True)
        gen = torch.Generator().manual_seed(int(seed))
        scale = math.sqrt(2.0 / (n_freq * kernel))  # He init: unit-scale features
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * scale)
            self.conv.bias.copy_(torch.randn(channels, generator=gen) * 0.1)
        self.requires_grad_(False)
        self.act = nn.ReLU()

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(spec))


@register_model(
    name="audio-random-cnn",
    tasks=("audio-features",),
    about="random-weight wide shallow 1-D conv over log-magnitude STFT frames "
    "(Ulyanov & Lebedev 2016), for audio texture Gram statistics",
    build=RandomSpectralConv,
    weights=Weights(None, licence="-", source="none: random filters from a seed"),
    input=InputFormat(
        None,
        channels="spectrogram",
        value_range=1.0,
        note="log(1+|STFT|), frequency bins as channels",
    ),
)
def _load(weights=None, **config) -> RandomSpectralConv:
    if weights is not None:
        raise ConvlensError("audio-random-cnn has no weights file: its filters come from a seed")
    return RandomSpectralConv(**{"n_freq": 257, **config}).eval()
