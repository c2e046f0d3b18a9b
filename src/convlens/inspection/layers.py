"""The named layers of a network: output shape and receptive field for one input size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convlens.inspection.receptive import LayerInfo, analyze
from convlens.models.devices import resolve_device


def list_layers(
    model: nn.Module,
    input_size: Sequence[int],
    channels: int = 3,
    device: torch.device | str | None = None,
) -> list[LayerInfo]:
    """Every named module whose output is a map (C, *input axes) or a vector (C,), in
    execution order.

    These names are what `inspect_units(layers=...)` and `scan` accept. device: where the one
    analysis pass runs (None: the model's own device; "auto": CUDA when present).
    """
    if device is not None:
        model = model.to(resolve_device(device))
    ndim = len(input_size) + 1
    infos = analyze(model, input_size, channels).values()
    return [i for i in infos if len(i.shape) in (1, ndim)]


def format_layers(layers: list[LayerInfo], input_size: Sequence[int]) -> str:
    """A plain-text table: name, module type, output shape, receptive field."""
    rows = [("layer", "type", "output", "receptive field")]
    for info in layers:
        shape = "x".join(str(s) for s in info.shape)
        rows.append((info.name, info.kind, shape, info.rf.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"input {'x'.join(str(n) for n in input_size)}"]
    for r in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        )
    return "\n".join(lines)


def layers_json(layers: list[LayerInfo], input_size: Sequence[int]) -> list[dict]:
    """One JSON-ready dict per layer: the table's columns plus the field's numbers."""
    return [
        {
            "layer": info.name,
            "type": info.kind,
            "shape": list(info.shape),
            "input_size": list(input_size),
            "field": info.rf.describe(),
            "receptive_field": info.rf.to_json(),
        }
        for info in layers
    ]
