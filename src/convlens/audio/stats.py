"""Texture statistics of a sound (after McDermott & Simoncelli 2011), to measure a synthesis
without listening: per frequency band, the envelope's mean, its coefficient of variation, and
the fraction of its fluctuation power in slow/medium/fast modulation bands.

    from convlens.audio.stats import texture_stats, stats_distance
    d = stats_distance(texture_stats(exemplar, rate), texture_stats(synthesis, rate))
"""

from __future__ import annotations

import numpy as np
import torch

from convlens.audio.features import mel_filterbank, stft

N_BANDS = 24
N_FFT, HOP = 1024, 256
MODULATION_HZ = ((0.5, 2.0), (2.0, 8.0), (8.0, 32.0))


def band_envelopes(samples: np.ndarray, rate: int) -> np.ndarray:
    """(N_BANDS, frames) compressed (^0.3) amplitude envelopes of mel-spaced bands."""
    power = stft(torch.as_tensor(samples, dtype=torch.float32), N_FFT, HOP).abs().pow(2)
    fb = mel_filterbank(rate, N_FFT, N_BANDS, 50.0, rate / 2 * 0.95)
    return (fb @ power).clamp_min(1e-10).pow(0.15).numpy()  # sqrt for amplitude, then ^0.3


def texture_stats(samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """Per band: mean envelope (normalised to the loudest band), coefficient of variation, and
    the share of envelope modulation power in each MODULATION_HZ band."""
    env = band_envelopes(samples, rate)
    mean = env.mean(1)
    cv = env.std(1) / (mean + 1e-12)
    frame_rate = rate / HOP
    centred = env - mean[:, None]
    spectrum = np.abs(np.fft.rfft(centred, axis=1)) ** 2
    freqs = np.fft.rfftfreq(env.shape[1], 1.0 / frame_rate)
    total = spectrum[:, freqs >= MODULATION_HZ[0][0]].sum(1) + 1e-12
    shares = [spectrum[:, (freqs >= lo) & (freqs < hi)].sum(1) / total for lo, hi in MODULATION_HZ]
    return {"mean": mean / mean.max(), "cv": cv, "modulation": np.stack(shares, 1)}


def stats_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean absolute difference per statistic (mean envelope in dB), lower is closer."""
    return {
        "mean_db": float(np.mean(np.abs(20 * np.log10((a["mean"] + 1e-6) / (b["mean"] + 1e-6))))),
        "cv": float(np.mean(np.abs(a["cv"] - b["cv"]))),
        "modulation": float(np.mean(np.abs(a["modulation"] - b["modulation"]))),
    }


def save_spectrograms(clips: dict[str, np.ndarray], rate: int, path, title: str = "") -> None:
    """Log-magnitude spectrograms of several clips, one panel each, same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {
        k: 20 * np.log10(stft(torch.as_tensor(v, dtype=torch.float32), N_FFT, HOP).abs().numpy()
                         + 1e-5)
        for k, v in clips.items()
    }  # fmt: skip
    top = max(s.max() for s in specs.values())
    fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], specs.items(), strict=True):
        seconds = s.shape[1] * HOP / rate
        ax.imshow(s, origin="lower", aspect="auto", vmin=top - 80, vmax=top, cmap="magma",
                  extent=(0, seconds, 0, rate / 2000))  # fmt: skip
        ax.set(title=name, xlabel="s", ylabel="kHz")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
