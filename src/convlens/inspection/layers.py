"""The named layers of a network: output shape and receptive field for one input size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection.receptive import LayerInfo, analyze
from convlens.models.devices import resolve_device

# The analysis pass keeps every layer's output (float32) until it ends: measured for VGG19,
# its peak RSS over the weights is the sum of the outputs (0.6 GB at 512x512, so ~10 GB at
# 2048x2048). A pass on a probe PROBE_SIDE a side, scaled by area, predicts it up front.
PROBE_SIDE = 64
MAX_MEMORY_FRACTION = 0.8


def analysis_bytes(model: nn.Module, input_size: Sequence[int], channels: int = 3) -> int:
    """Bytes of all layer outputs analyze() holds for this input size, from a pass on a
    probe (the input itself when every side is already under PROBE_SIDE)."""
    size = [int(n) for n in input_size]
    probe = [min(n, PROBE_SIDE) for n in size]
    infos = analyze(model, probe, channels).values()
    held = sum(math.prod(i.shape) * 4 for i in infos)
    return int(held * math.prod(size) / math.prod(probe))


def check_analysis_memory(model: nn.Module, input_size: Sequence[int], channels: int = 3) -> None:
    """ConvlensError, with the number, when the analysis would not fit in free memory."""
    from convlens.style.plan import available_bytes

    if math.prod(int(n) for n in input_size) <= PROBE_SIDE ** len(input_size):
        return
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    need, free = analysis_bytes(model, input_size, channels), available_bytes(device)
    if need > MAX_MEMORY_FRACTION * free:
        size = "x".join(str(n) for n in input_size)
        raise ConvlensError(
            f"analysing layers at input size {size} needs about {need / 2**30:.1f} GiB but only "
            f"{free / 2**30:.1f} GiB is available on {device}; use a smaller input size"
        )


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
    check_analysis_memory(model, input_size, channels)
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
