"""The named layers of a network: output shape and receptive field for one input size."""

from __future__ import annotations

from torch import nn

from convlens.inspection.receptive import LayerInfo, analyze


def list_layers(
    model: nn.Module, input_size: tuple[int, int], channels: int = 3
) -> list[LayerInfo]:
    """Every named module whose output is a map (C, H, W) or a vector (C,), in execution order.

    These names are what `convlens inspect units --layer` and `scan(layers=...)` accept.
    """
    return [i for i in analyze(model, input_size, channels).values() if len(i.shape) in (1, 3)]


def format_layers(layers: list[LayerInfo], input_size: tuple[int, int]) -> str:
    """A plain-text table: name, module type, output shape, receptive field."""
    rows = [("layer", "type", "output", "receptive field")]
    for info in layers:
        shape = "x".join(str(s) for s in info.shape)
        rows.append((info.name, info.kind, shape, info.rf.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"input {input_size[0]}x{input_size[1]}"]
    for r in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        )
    return "\n".join(lines)
