"""Robust audio reading and writing (WAV, FLAC, OGG/Vorbis and whatever libsndfile reads).

    from convlens.audio import read_audio
    clip = read_audio("rain.wav", rate=22050)   # mono float32 samples, resampled
    clip.samples, clip.rate, clip.seconds

Like the image reader: one ConvlensError line naming the file and the problem for a missing,
empty, unreadable, truncated or absurdly long file; sizes are checked from the header before
any samples are decoded. Channels are averaged to mono.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError

MAX_SECONDS = 3600.0  # one hour
MAX_SAMPLES = 200_000_000  # frames x channels decoded at most (800 MB as float32)
RATES = (1_000, 384_000)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3", ".opus"}


@dataclass(frozen=True)
class Audio:
    """Mono samples (float32, nominally in -1..1) at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _wav_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk declares more bytes than the file holds
    (libsndfile then silently returns the samples that are there)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            tag, length = struct.unpack("<4sI", f.read(8))
            if tag == b"data":
                return length != 0xFFFFFFFF and pos + 8 + length > size
            pos += 8 + length + (length & 1)
    return False


def _open_info(path: Path):
    import soundfile as sf

    if not path.exists():
        raise ConvlensError(f"{path}: no such file")
    if path.is_dir():
        raise ConvlensError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise ConvlensError(f"{path}: empty file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        reason = str(e).split(": ", 1)[-1].strip() or "format not recognised"
        raise ConvlensError(f"{path}: not a readable audio file ({reason})") from None
    if not RATES[0] <= info.samplerate <= RATES[1]:
        raise ConvlensError(
            f"{path}: sample rate {info.samplerate} Hz outside {RATES[0]}..{RATES[1]}"
        )
    if info.frames <= 0:
        raise ConvlensError(f"{path}: holds no audio samples")
    seconds = info.frames / info.samplerate
    if seconds > MAX_SECONDS or info.frames * info.channels > MAX_SAMPLES:
        raise ConvlensError(
            f"{path}: {seconds:.0f} s of {info.channels}-channel audio, over the "
            f"{MAX_SECONDS:.0f} s / {MAX_SAMPLES // 1_000_000} M sample limit"
        )
    if _wav_truncated(path):
        raise ConvlensError(
            f"{path}: truncated (the header promises more samples than the file holds)"
        )
    return info


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling with an anti-aliasing filter (scipy's resample_poly)."""
    if rate == new_rate:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(new_rate))
    return resample_poly(samples, new_rate // g, rate // g).astype(np.float32)


def read_audio(path: str | os.PathLike, rate: int | None = None) -> Audio:
    """Mono float32 samples of an audio file, resampled to `rate` Hz when given."""
    import soundfile as sf

    path = Path(path)
    info = _open_info(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ConvlensError(f"{path}: cannot decode audio ({e})") from None
    if len(data) == 0:
        raise ConvlensError(f"{path}: holds no audio samples")
    if len(data) < info.frames:
        raise ConvlensError(f"{path}: truncated ({len(data)} of {info.frames} frames decoded)")
    samples = data.mean(axis=1)
    if not np.isfinite(samples).all():
        raise ConvlensError(f"{path}: holds NaN or infinite samples")
    if rate is not None:
        samples = resample(samples, sr, int(rate))
        sr = int(rate)
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(sr))


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV (or FLAC/OGG by suffix), peak-limited to just under full scale."""
    import soundfile as sf

    x = np.asarray(samples, dtype=np.float32)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    path = Path(path)
    subtype = "PCM_16" if path.suffix.lower() in (".wav", ".flac", "") else None
    sf.write(str(path), x, int(rate), subtype=subtype)
    return path


def list_audio(folder: str | os.PathLike) -> list[Path]:
    """Audio files under a folder, recursively, in a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvlensError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
