"""Which torch device to run on: one rule for every capability."""

from __future__ import annotations

import torch

from convlens.errors import ConvlensError


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The device asked for (None or "auto": CUDA when available), checked to exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConvlensError(f"unknown device {device!r}; use cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConvlensError(f"unknown device {device!r}; use cpu or cuda[:N]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConvlensError(f"device {device!r} asked for, but no CUDA GPU is available here")
    return dev
