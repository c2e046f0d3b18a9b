"""Reading named layers' outputs with forward hooks: for the scan and for gradient maps."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection.inputs import InputSpec


class _Stop(Exception):
    """Raised by the last hook: nothing after the requested layers needs computing."""


class LayerTaps:
    """Forward hooks on named modules; the forward pass stops once all of them have fired."""

    def __init__(self, model: nn.Module, layers: Sequence[str], stop_early: bool = True):
        self.outputs: dict[str, torch.Tensor] = {}
        self.names = list(layers)
        self.stop_early = stop_early
        modules = dict(model.named_modules())
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name):
        def hook(module, inputs, output):
            if name in self.outputs:
                return  # a module called twice keeps its first output
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output
            if self.stop_early and len(self.outputs) == len(self.names):
                raise _Stop

        return hook

    def run(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.outputs = {}
        with contextlib.suppress(_Stop):
            model(x)
        missing = [n for n in self.names if n not in self.outputs]
        if missing:
            raise ConvlensError(f"layer {missing[0]!r} was not run by the model's forward")
        return self.outputs

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def as_maps(out: torch.Tensor) -> torch.Tensor:
    """Layer output as (N, C, H, W): vectors (N, C) become 1x1 maps."""
    if out.dim() == 2:
        return out[:, :, None, None]
    if out.dim() != 4:
        raise ConvlensError(f"layer output has shape {tuple(out.shape)}; expected (N, C[, H, W])")
    return out


def check_layers(model: nn.Module, layers) -> None:
    """Every name is a named module of `model` (else the error lists the valid names)."""
    names = dict(model.named_modules())
    if not layers:
        raise ConvlensError("no layer given")
    for name in layers:
        if name not in names or not name:
            valid = ", ".join(n for n in names if n)
            raise ConvlensError(f"unknown layer {name!r}; valid layers: {valid}")


def gradient_maps(
    model: nn.Module,
    layer: str,
    inputs: np.ndarray,
    units: Sequence[int],
    positions: Sequence[tuple[int, int]],
    spec: InputSpec,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """|d unit / d input| summed over colour channels: (N, H, W) for N (view, unit, position)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    taps = LayerTaps(model, [layer])
    maps = []
    try:
        for s in range(0, len(inputs), batch_size):
            x = spec.to_tensor(np.asarray(inputs[s : s + batch_size])).to(device)
            x.requires_grad_(True)
            with torch.enable_grad():
                out = as_maps(taps.run(model, x)[layer])
                n = len(x)
                u = torch.tensor(units[s : s + n], device=device)
                yx = torch.tensor(np.asarray(positions[s : s + n]), device=device).reshape(n, 2)
                picked = out[torch.arange(n, device=device), u, yx[:, 0], yx[:, 1]]
                (grad,) = torch.autograd.grad(picked.sum(), x)
            maps.append(grad.abs().sum(1).cpu().numpy())
    finally:
        taps.close()
        model.train(was_training)
    return np.concatenate(maps) if maps else np.zeros((0, *spec.size), np.float32)
