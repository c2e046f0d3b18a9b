"""Spectral features in torch (differentiable): STFT magnitude, log-mel, MFCC.

    from convlens.audio.features import LogMel
    frames = LogMel(rate=8000)(waveforms)       # (N, samples) -> (N, n_mels, frames)

Mel filters follow the HTK formula (mel = 2595 log10(1 + f/700)) with triangles normalised
to unit peak; MFCCs are the orthonormal DCT-II of the log-mel energies. Nothing here depends
on librosa or scipy, so the encoder's front end is part of the network and runs anywhere the
network does.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, peak 1, evenly spaced in mel."""
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(fmax)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) orthonormal DCT-II."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    n = torch.arange(n_in, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m.float()


def stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Complex STFT (..., n_fft // 2 + 1, frames) with a periodic Hann window, centred."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    shape = x.shape[:-1]
    spec = torch.stft(
        x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, center=True, return_complex=True
    )
    return spec.reshape(*shape, *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=spec.device)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)


class LogMel(nn.Module):
    """Waveforms (N, samples) or (N, 1, samples) -> log-mel energies (N, n_mels, frames).

    norm: "band" subtracts each band's mean over the clip (cepstral mean normalisation: removes
    a fixed channel colouring, but also the clip's long-term spectral envelope, much of which
    is the speaker's); "clip" subtracts one mean over everything (loudness only); None: raw.
    """

    def __init__(
        self,
        rate: int = 8000,
        n_fft: int = 256,
        hop: int = 80,
        n_mels: int = 40,
        fmin: float = 60.0,
        fmax: float | None = None,
        norm: str | None = "clip",
    ) -> None:
        super().__init__()
        if norm not in ("band", "clip", None):
            raise ValueError(f"norm must be 'band', 'clip' or None, not {norm!r}")
        self.rate, self.n_fft, self.hop, self.n_mels, self.norm = rate, n_fft, hop, n_mels, norm
        fb = mel_filterbank(rate, n_fft, n_mels, fmin, fmax or rate / 2 * 0.95)
        self.register_buffer("filters", fb, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 3:
            wave = wave[:, 0]
        power = stft(wave.float(), self.n_fft, self.hop).abs().pow(2)
        mel = torch.log(self.filters @ power + 1e-6)
        if self.norm is None:
            return mel
        dims = (-1,) if self.norm == "band" else (-2, -1)
        return mel - mel.mean(dims, keepdim=True)


def mfcc(wave: torch.Tensor, rate: int, n_mfcc: int = 20, n_mels: int = 40) -> torch.Tensor:
    """(N, samples) -> MFCCs (N, n_mfcc, frames) of 32 ms frames every 10 ms (no CMN)."""
    n_fft = 1 << max(6, round(math.log2(0.032 * rate)))
    logmel = LogMel(rate, n_fft, max(1, rate // 100), n_mels, norm=None).to(wave.device)(wave)
    return dct_matrix(n_mels, n_mfcc).to(wave.device) @ logmel
