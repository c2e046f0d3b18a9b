"""Speech clips for speaker embeddings: a folder of speakers -> fixed-length training clips,
embeddings of clips, and the mean-MFCC baseline.

    voices/
      alice/ 1.wav 2.flac ...
      bob/   ...

Each clip is read at the encoder's rate, trimmed to its speech (frames within 35 dB of the
loudest 20 ms frame, first to last), and tiled (wrapped around) to a fixed length, so the
training batches stack and short syllables fill the window with speech, not silence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convlens.audio.io import list_audio, read_audio
from convlens.errors import ConvlensError

SECONDS = 3.0
SPEECH_DB = 35.0


def speech_span(samples: np.ndarray, rate: int, db: float = SPEECH_DB) -> np.ndarray:
    """The samples from the first to the last 20 ms frame within `db` of the loudest one."""
    frame = max(1, rate // 50)
    n = len(samples) // frame
    if n == 0:
        return samples
    rms = np.sqrt((samples[: n * frame].reshape(n, frame) ** 2).mean(1) + 1e-12)
    keep = np.nonzero(20 * np.log10(rms / rms.max()) > -db)[0]
    return samples[keep[0] * frame : (keep[-1] + 1) * frame]


def prepare_clip(samples: np.ndarray, rate: int, seconds: float = SECONDS) -> np.ndarray:
    """Speech trimmed, tiled to `seconds`, scaled to unit RMS: float32 (seconds * rate,)."""
    speech = speech_span(np.asarray(samples, dtype=np.float32), rate)
    if len(speech) == 0 or not np.any(speech):
        raise ConvlensError("clip is silent")
    out = np.resize(speech, int(round(seconds * rate)))
    return (out / (np.sqrt((out**2).mean()) + 1e-8)).astype(np.float32)


def load_clip(path: str | os.PathLike, rate: int, seconds: float = SECONDS) -> np.ndarray:
    """One file as an encoder input (see prepare_clip); ConvlensError names the file."""
    clip = read_audio(path, rate=rate)
    try:
        return prepare_clip(clip.samples, rate, seconds)
    except ConvlensError as e:
        raise ConvlensError(f"{path}: {e}") from None


def list_speakers(root: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """(speaker, clip paths) for every subfolder holding audio files, in name order."""
    root = Path(root)
    if not root.is_dir():
        raise ConvlensError(f"{root}: no such folder")
    people = [(d.name, list_audio(d)) for d in sorted(p for p in root.iterdir() if p.is_dir())]
    people = [(name, clips) for name, clips in people if clips]
    if not people:
        raise ConvlensError(
            f"{root}: no speaker subfolders with audio (expected {root}/NAME/x.wav)"
        )
    return people


def embed_waves(
    model, waves: np.ndarray | Sequence[np.ndarray], batch_size: int = 64, device=None
) -> np.ndarray:
    """Embeddings (N, D) float32 of waveforms at the model's rate (equal lengths per batch)."""
    import torch

    waves = np.asarray(waves, dtype=np.float32)
    if waves.ndim != 2:
        raise ConvlensError(f"waveforms must be (N, samples), got shape {waves.shape}")
    dev = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(waves), batch_size):
            x = torch.from_numpy(waves[start : start + batch_size]).to(dev)
            out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def mfcc_baseline(waves: np.ndarray, rate: int, n_mfcc: int = 20) -> np.ndarray:
    """The classic baseline: each clip's mean MFCC vector (c1..c19, c0 = loudness dropped),
    L2-normalised so that Euclidean distance ranks like cosine similarity."""
    import torch

    from convlens.audio.features import mfcc

    with torch.inference_mode():
        m = mfcc(torch.from_numpy(np.asarray(waves, np.float32)), rate, n_mfcc)[:, 1:].mean(-1)
    m = m.numpy()
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)


def load_speaker_model(model: str | os.PathLike, device=None):
    """A speaker encoder: a registry name (task speaker-encoder) or a trained .pt file (from
    `convlens train triplet VOICES --model speaker-cnn`); refuses a face encoder's file."""
    from convlens.models import registry
    from convlens.models.devices import resolve_device
    from convlens.models.face_models import load_face_model

    if isinstance(model, str) and not registry.looks_like_path(model):
        net = registry.get(model, task="speaker-encoder").load()
    else:
        net = load_face_model(model)
    if not hasattr(net, "rate"):
        raise ConvlensError(f"{model}: not a speaker encoder (it takes no audio)")
    return net.to(resolve_device(device)).eval()


def embed_clips(model, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """One embedding per clip file (read at the model's rate, prepared as in training)."""
    return embed_waves(model, [load_clip(p, model.rate) for p in paths])
