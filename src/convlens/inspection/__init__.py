"""Looking inside a ConvNet: the image patches that excite a unit most (Zeiler & Fergus 2014).

    from convlens.inspection import inspect_units, list_layers
    report = inspect_units("face", "photos/", layers=["layer2"], units="0:16", out="grid.png")
    report = inspect_units(my_module, paths, layers=["features.8"], input_size=(224, 224),
                           preprocess=my_normalise, gradient=True, out="grid.png")

`model` is a name convlens ships ("face", "efficientnet-lite0") or any torch.nn.Module; for a
module give the input size and optionally `preprocess` (uint8 batch (N, H, W, 3) -> float
tensor (N, C, H, W); default: scale to 0..1) and `prepare` (one RGB image -> list of
network-input views; default: scale and centre-crop to the input size).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection.layers import format_layers, list_layers
from convlens.inspection.models import MODELS, named_model
from convlens.inspection.receptive import ReceptiveField, analyze
from convlens.inspection.render import (
    Cell,
    cells_for_layer,
    draw_grid,
    grid_paths,
    layer_json,
    png_path,
)
from convlens.inspection.units import (
    InputSpec,
    ScanResult,
    check_layers,
    gradient_maps,
    load_items,
    parse_units,
    resolve_sources,
    scale_01,
    scan,
)

__all__ = [
    "MODELS",
    "InputSpec",
    "InspectReport",
    "format_layers",
    "inspect_units",
    "list_layers",
    "resolve_model",
    "scan",
]


def resolve_model(
    model: str | nn.Module,
    input_size: int | tuple[int, int] | None = None,
    preprocess: Callable[[np.ndarray], torch.Tensor] | None = None,
    prepare: Callable[[np.ndarray], list[np.ndarray]] | None = None,
    weights: str | os.PathLike | None = None,
) -> tuple[nn.Module, InputSpec, str]:
    """(module, input spec, display name) for a shipped model's name or a user's module.

    `weights`: for a named model, a weights file instead of its pretrained default (for
    "face": any encoder file convlens loads, e.g. a trained SmallConvNet .pt).
    """
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    if isinstance(model, str):
        entry = named_model(model)
        spec = entry.spec()
        if size is not None and tuple(size) != spec.size:
            if spec.prepare is not None:
                raise ConvlensError(f"model {model!r} takes a fixed input size {spec.size}")
            spec = InputSpec(tuple(size), spec.to_tensor)
        return entry.load(weights), spec, model
    if not isinstance(model, nn.Module):
        raise ConvlensError(
            f"model must be a name or a torch.nn.Module, not {type(model).__name__}"
        )
    if size is None:
        raise ConvlensError("give the input size (H, W) for a module")
    if weights is not None:
        raise ConvlensError("weights apply to a named model; load your module's weights yourself")
    spec = InputSpec(tuple(size), preprocess or scale_01, prepare)
    return model, spec, type(model).__name__


@dataclass
class InspectReport:
    """What `inspect_units` found: the scan, and per layer its field, cells, grid and JSON."""

    result: ScanResult
    fields: dict[str, ReceptiveField]
    cells: dict[str, list[list[Cell]]]
    grids: dict[str, Image.Image]
    data: dict
    paths: dict[str, Path] = field(default_factory=dict)
    json_path: Path | None = None


def inspect_units(
    model: str | nn.Module,
    images: str | os.PathLike | Sequence,
    layers: str | Sequence[str],
    units: str | Sequence[int] | slice | dict | None = "0:16",
    top: int = 9,
    *,
    input_size: int | tuple[int, int] | None = None,
    preprocess: Callable[[np.ndarray], torch.Tensor] | None = None,
    prepare: Callable[[np.ndarray], list[np.ndarray]] | None = None,
    weights: str | os.PathLike | None = None,
    gradient: bool = False,
    out: str | os.PathLike | None = None,
    patch: int = 64,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    per_image: bool = True,
    progress: bool = True,
) -> InspectReport:
    """Top-`top` patches for `units` of each of `layers` over `images` (a folder or a list).

    `units` applies to every layer, or is a dict layer -> units. With `out` ("grid.png"), writes
    one PNG per layer (grid-<layer>.png when there are several) and grid.json beside them.
    """
    sources = resolve_sources(images)  # bad folders fail before any model loads
    module, spec, name = resolve_model(model, input_size, preprocess, prepare, weights)
    layer_list = [layers] if isinstance(layers, str) else list(layers)
    unit_map = units if isinstance(units, dict) else dict.fromkeys(layer_list, units)
    check_layers(module, layer_list)
    infos = analyze(module, spec.size)
    chosen = {}
    for layer in layer_list:  # units and fields checked before the pass, not after a batch
        info = infos.get(layer)
        if info is None or len(info.shape) not in (1, 3):
            raise ConvlensError(f"layer {layer!r} does not output a (C, H, W) map or a vector")
        if info.rf.unknown:
            raise ConvlensError(f"layer {layer!r}: receptive field unknown ({info.rf.unknown})")
        chosen[layer] = parse_units(unit_map.get(layer), info.shape[0], layer)
    result = scan(
        module,
        sources,
        chosen,
        spec,
        top=top,
        batch_size=batch_size,
        device=device,
        per_image=per_image,
        progress=progress,
    )
    needed = np.concatenate([t.ids.ravel() for t in result.layers.values()])
    views = load_items(result, needed, spec)
    report = InspectReport(result, {}, {}, {}, _header(name, spec, result))
    for layer in layer_list:
        top_l = result.layers[layer]
        rf = infos[layer].rf
        grads = _gradients(module, layer, top_l, views, spec, batch_size) if gradient else None
        cells = cells_for_layer(result, layer, rf, views, spec.size, grads)
        title = f"{name}  {layer}  {'x'.join(map(str, top_l.shape))}  field {rf.describe()}"
        report.fields[layer] = rf
        report.cells[layer] = cells
        report.grids[layer] = draw_grid(title, top_l, cells, top, patch)
        report.data["layers"][layer] = layer_json(top_l, rf, cells)
    if out is not None:
        report.paths = grid_paths(out, layer_list)
        for layer, path in report.paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            report.grids[layer].save(path)
        report.json_path = png_path(out).with_suffix(".json")
        report.json_path.write_text(json.dumps(report.data, indent=1) + "\n")
    return report


def _header(name: str, spec: InputSpec, result: ScanResult) -> dict:
    return {
        "model": name,
        "input_size": list(spec.size),
        "images": result.images,
        "inputs": result.items,
        "skipped": result.skipped,
        "seconds": round(result.seconds, 3),
        "layers": {},
    }


def _gradients(module, layer, top_l, views, spec, batch_size) -> dict[tuple[int, int], np.ndarray]:
    """|d unit / d input| for each (unit row, rank) of the layer's top cells."""
    keys, inputs, units, positions = [], [], [], []
    for u, unit in enumerate(top_l.units):
        for k in range(top_l.ids.shape[1]):
            item = int(top_l.ids[u, k])
            if item < 0:
                continue
            keys.append((u, k))
            inputs.append(views[item])
            units.append(unit)
            positions.append(tuple(int(v) for v in top_l.positions[u, k]))
    maps = gradient_maps(module, layer, np.stack(inputs), units, positions, spec, batch_size)
    return dict(zip(keys, maps, strict=True))
