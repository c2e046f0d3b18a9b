"""What a unit of a 3-D network sees: its top-k sub-volumes with exact 3-D receptive fields.

    from convlens.volumes.units import volume_units, render_units
    top = volume_units(model, volume, "features.relu2_1", units=range(8))
    render_units(top, "units.png")          # one row per unit: 9 orthogonal-slice triplets

One pass over the volume; per unit, the k strongest positions of its feature map, greedily
kept at least half a receptive field apart (so the k sub-volumes are k different places, as
the image scan takes its top patches from different images); each position's field comes
from convlens.inspection.receptive (per axis, exact at the borders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection.receptive import analyze


@dataclass
class UnitTop:
    unit: int
    values: list[float]
    positions: list[tuple[int, int, int]]  # in the layer's feature map
    bounds: list[tuple[tuple[int, int], ...]]  # per position: (lo, hi) per input axis


@dataclass
class VolumeUnits:
    layer: str
    volume: np.ndarray  # the network input (D, H, W), 0..1
    field: dict  # the layer's receptive field (JSON form)
    units: list[UnitTop]


def _layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    captured = {}
    module = model.get_submodule(layer)
    handle = module.register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    return captured["out"][0]


def _spread_top(a: np.ndarray, k: int, spacing: Sequence[float]) -> list[tuple[int, ...]]:
    """The k largest positions of `a`, each at least `spacing` (per axis) from those kept."""
    order = np.argsort(a, axis=None)[::-1]
    kept: list[tuple[int, ...]] = []
    for flat in order:
        pos = np.unravel_index(flat, a.shape)
        if all(any(abs(p - q) >= s for p, q, s in zip(pos, o, spacing, strict=True))
               for o in kept):  # fmt: skip
            kept.append(tuple(int(p) for p in pos))
            if len(kept) == k:
                break
    return kept


def volume_units(
    model: nn.Module,
    volume: np.ndarray,
    layer: str,
    units: Sequence[int] | slice | None = None,
    top: int = 9,
) -> VolumeUnits:
    """Each unit's `top` strongest sub-volumes of `volume` (D, H, W, values 0..1)."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ConvlensError(f"volume must be (D, H, W), got shape {vol.shape}")
    names = dict(model.named_modules())
    if layer not in names:
        raise ConvlensError(f"{layer!r}: no such layer")
    info = analyze(model, vol.shape, channels=1)[layer]
    if info.rf.unknown or info.rf.is_global:
        raise ConvlensError(f"{layer!r}: its units have no local 3-D receptive field")
    model.eval()
    out = _layer_output(model, layer, torch.from_numpy(vol)[None, None]).float().numpy()
    everything = range(out.shape[0])
    if units is None or isinstance(units, slice):
        chosen = list(everything if units is None else everything[units])
    else:
        chosen = [int(u) for u in units]
    bad = [u for u in chosen if not 0 <= u < out.shape[0]]
    if bad:
        raise ConvlensError(f"{layer!r} has {out.shape[0]} units; no unit {bad[0]}")
    spacing = [max(1.0, a.size / a.jump / 2) for a in info.rf.axes]
    tops = []
    for u in chosen:
        positions = _spread_top(out[u], top, spacing)
        tops.append(
            UnitTop(
                u,
                [float(out[u][p]) for p in positions],
                positions,
                [info.rf.bounds(p, vol.shape) for p in positions],
            )
        )
    return VolumeUnits(layer, vol, info.rf.to_json(), tops)


def sub_volume(result: VolumeUnits, bounds) -> np.ndarray:
    return result.volume[tuple(slice(lo, hi) for lo, hi in bounds)]


def render_units(result: VolumeUnits, path, scale: int = 3) -> None:
    """One row per unit, its top sub-volumes as orthogonal slice triplets through their
    centres (axis 0 | axis 1 | axis 2 cut), all on the volume's 0..1 grey scale."""
    from PIL import Image, ImageDraw

    from convlens.volumes.render import triplet_image

    rows = []
    for unit in result.units:
        tiles = [triplet_image(sub_volume(result, b), window=(0, 1), scale=scale)
                 for b in unit.bounds]  # fmt: skip
        h = max(t.shape[0] for t in tiles)
        w = sum(t.shape[1] for t in tiles) + 6 * (len(tiles) - 1)
        row = np.full((h + 14, w + 60, 3), 255, np.uint8)
        x = 60
        for t in tiles:
            row[14 : 14 + t.shape[0], x : x + t.shape[1]] = t
            x += t.shape[1] + 6
        img = Image.fromarray(row)
        ImageDraw.Draw(img).text((2, 14), f"unit {unit.unit}", fill=(0, 0, 0))
        rows.append(np.asarray(img))
    width = max(r.shape[1] for r in rows)
    sheet = np.full((sum(r.shape[0] for r in rows), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        sheet[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0]
    Image.fromarray(sheet).save(path)
