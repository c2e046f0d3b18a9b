"""Audio texture synthesis and texture transfer (Ulyanov & Lebedev 2016).

    from convlens.audio.texture import synthesize
    result = synthesize("rain.wav", seconds=5)                  # texture from an exemplar
    result = synthesize("rain.wav", content="speech.wav")       # the rain's texture on speech
    write_audio("out.wav", result.samples, result.rate)

The log-magnitude STFT of the output is optimised (L-BFGS) so that the Gram matrices of a
random-weight wide 1-D ConvNet's features over time (models/audio_random.py) match the
exemplar's, with the style cost of convlens.style.losses (the same N-d Gram code as image
style transfer); with a content clip, plus the content cost on the same features. Phase comes
from Griffin-Lim. `shuffled_frames` is the baseline: the exemplar's STFT frames in random order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from convlens.audio.features import istft, stft
from convlens.audio.io import read_audio
from convlens.errors import ConvlensError
from convlens.style.losses import ContentLoss, StyleLoss

RATE = 22050
N_FFT = 512
HOP = 128
MAX_SECONDS = 120.0


@dataclass
class TextureResult:
    samples: np.ndarray  # float32 mono
    rate: int
    log_magnitude: np.ndarray  # (n_freq, frames), what was optimised
    losses: list[float] = field(default_factory=list)  # total cost per L-BFGS evaluation


def log_magnitude(samples: np.ndarray) -> torch.Tensor:
    """(n_freq, frames) log(1 + |STFT|)."""
    return torch.log1p(stft(torch.as_tensor(samples, dtype=torch.float32), N_FFT, HOP).abs())


def griffin_lim(magnitude: torch.Tensor, length: int, iterations: int = 100, seed: int = 0):
    """A waveform whose STFT magnitude is close to `magnitude` (Griffin & Lim 1984), with the
    momentum of Perraudin et al. (2013) for faster convergence."""
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen))
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        wave = istft(magnitude * angles, N_FFT, HOP, length)
        rebuilt = stft(wave, N_FFT, HOP)
        accelerated = rebuilt - 0.99 * previous
        previous = rebuilt
        angles = accelerated / accelerated.abs().clamp_min(1e-8)
    return istft(magnitude * angles, N_FFT, HOP, length)


def _read(source, seconds: float | None = None) -> np.ndarray:
    samples = source if isinstance(source, np.ndarray) else read_audio(source, RATE).samples
    if seconds is not None:
        samples = samples[: int(seconds * RATE)]
    if len(samples) < N_FFT * 2:
        raise ConvlensError(f"{_name(source)}: too short for a texture ({len(samples)} samples)")
    return np.asarray(samples, dtype=np.float32)


def _name(source) -> str:
    return "audio array" if isinstance(source, np.ndarray) else str(source)


def synthesize(
    style: str | os.PathLike | np.ndarray,
    content: str | os.PathLike | np.ndarray | None = None,
    seconds: float = 5.0,
    steps: int = 150,
    channels: int = 1024,
    kernel: int = 11,
    content_weight: float = 1e-2,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> TextureResult:
    """N seconds of the exemplar's texture (or the content clip with it), see the module doc.

    steps: L-BFGS function evaluations; callback(step, loss) after each.
    """
    from convlens.models import registry

    if not 0.1 <= seconds <= MAX_SECONDS:
        raise ConvlensError(f"seconds {seconds}: must be in 0.1..{MAX_SECONDS:g}")
    torch.manual_seed(seed)
    target = log_magnitude(_read(style, MAX_SECONDS))
    net = registry.get("audio-random-cnn", task="audio-features").load(
        n_freq=target.shape[0], channels=channels, kernel=kernel, seed=seed
    )
    style_loss = StyleLoss(StyleLoss.get_target(net(target[None])))
    terms = []
    if content is None:
        length = int(seconds * RATE)
        frames = length // HOP + 1
        x = target.mean(1, keepdim=True) + 0.1 * torch.randn(target.shape[0], frames)
    else:
        samples = _read(content, MAX_SECONDS)
        length = len(samples)
        x = log_magnitude(samples)
        content_loss = ContentLoss(net(x[None]))
        terms.append(lambda f: content_weight * content_loss(f))
    # L-BFGS flattens the gradient with .view: the STFT gives a non-contiguous tensor
    x = x.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    losses = _optimise(x, net, style_loss, terms, steps, callback)
    magnitude = torch.expm1(x.detach()).clamp_min(0)
    wave = griffin_lim(magnitude, length, seed=seed).numpy().astype(np.float32)
    return TextureResult(wave, RATE, x.detach().numpy(), losses)


def _optimise(x, net, style_loss, terms, steps: int, callback) -> list[float]:
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=0,
                            tolerance_change=0, line_search_fn="strong_wolfe")  # fmt: skip
    losses: list[float] = []

    def closure():
        opt.zero_grad()
        features = net(x[None])
        loss = style_loss(features) * 1e3
        for term in terms:
            loss = loss + term(features)
        loss.backward()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(len(losses), losses[-1])
        return loss

    opt.step(closure)
    return losses


def shuffled_frames(style: str | os.PathLike | np.ndarray, seconds: float, seed: int = 0):
    """The baseline: the exemplar's STFT frames (magnitude and phase) in random order, as
    many as `seconds` needs: the same spectrum frame by frame, no temporal structure."""
    spec = stft(torch.from_numpy(_read(style, MAX_SECONDS)), N_FFT, HOP)
    length = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, spec.shape[1], size=length // HOP + 1)
    return istft(spec[:, torch.from_numpy(order)], N_FFT, HOP, length).numpy()
