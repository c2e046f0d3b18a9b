"""convlens' own torch files (models, verifiers, checkpoints): atomic writes, checked reads."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch

from convlens.errors import ConvlensError


def save_torch_file(payload: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary name, then rename: a crash never leaves half a file.

    The temporary name is unique per writer, so processes writing the same file (a shared
    weights cache) never interleave; it gets normal permissions, unlike mkstemp's 0600.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_torch_file(path: str | os.PathLike, fmt: str, what: str) -> dict:
    """Load a dict saved with `"format": fmt`; anything else is a one-line ConvlensError."""
    path = Path(path)
    if not path.exists():
        raise ConvlensError(f"{path}: no such {what} file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ConvlensError(
            f"{path}: not a convlens {what} file ({e.__class__.__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ConvlensError(f"{path}: not a convlens {what} file")
    return payload
