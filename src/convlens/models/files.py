"""convlens' own torch files (models, verifiers, checkpoints): atomic writes, checked reads."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

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


def read_torch(path: str | os.PathLike, not_this: str, missing: str = "weights file") -> Any:
    """torch.load onto the CPU, tensors and plain containers only; a missing file is
    "PATH: no such <missing>", any file torch cannot read "PATH: not <not_this> (<error>)"."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConvlensError(f"{path}: no such {missing}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not this format"
        raise ConvlensError(f"{path}: not {not_this} ({e.__class__.__name__})") from None


def load_torch_file(path: str | os.PathLike, fmt: str, what: str) -> dict:
    """Load a dict saved with `"format": fmt`; anything else is a one-line ConvlensError."""
    path = Path(path)
    payload = read_torch(path, f"a convlens {what} file", missing=f"{what} file")
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ConvlensError(f"{path}: not a convlens {what} file")
    return payload


def load_strict(
    model: torch.nn.Module, state: dict, path: str | os.PathLike, what: str
) -> torch.nn.Module:
    """`model` with `state` loaded strictly, in eval mode; keys or shapes that do not match
    are "PATH: weights do not fit <what> (...)"."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConvlensError(f"{path}: weights do not fit {what} ({e})") from None
    return model.eval()
