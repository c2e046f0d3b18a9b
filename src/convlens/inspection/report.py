"""`inspect_units`: the scan, then per layer its receptive field, patch cells, grid and JSON."""

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
from convlens.inspection.inputs import InputSpec, resolve_sources
from convlens.inspection.models import resolve_model
from convlens.inspection.receptive import LayerInfo, ReceptiveField, analyze
from convlens.inspection.render import Cell, cells_for_layer, draw_grid, layer_json, output_paths
from convlens.inspection.taps import check_layers, gradient_maps
from convlens.inspection.topk import LayerTop, parse_units
from convlens.inspection.units import ScanProgress, ScanResult, check_scan_options, load_items, scan
from convlens.models.devices import resolve_device


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
    model: str | os.PathLike | nn.Module,
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
    callback: Callable[[ScanProgress], None] | None = None,
) -> InspectReport:
    """Top-`top` patches for `units` of each of `layers` over `images` (a folder or a list).

    `model`: a registry name (`convlens models`, task "inspectable"), a face encoder file, or
    a torch.nn.Module. `units` applies to every layer, or is a dict layer -> units. With `out`
    ("grid.png"), writes one PNG per layer (grid-<layer>.png when there are several) and
    grid.json beside them. `callback` receives a ScanProgress after each source image.
    """
    check_scan_options(top, batch_size)
    if patch < 1:
        raise ConvlensError(f"patch size must be at least 1 pixel (got {patch})")
    device = resolve_device(device)
    sources = resolve_sources(images)  # bad folders fail before any model loads
    module, spec, name = resolve_model(model, input_size, preprocess, prepare, weights)
    layer_list = [layers] if isinstance(layers, str) else list(layers)
    infos, chosen = _check_layers(module, spec, layer_list, units)
    result = scan(module, sources, chosen, spec, top=top, batch_size=batch_size,
                  device=device, per_image=per_image, callback=callback)  # fmt: skip
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
        _write(report, out, layer_list)
    return report


def _check_layers(
    module: nn.Module, spec: InputSpec, layers: list[str], units
) -> tuple[dict[str, LayerInfo], dict[str, list[int]]]:
    """Layers, their fields and units, checked before the pass rather than after a batch."""
    check_layers(module, layers)
    unit_map = units if isinstance(units, dict) else dict.fromkeys(layers, units)
    infos = analyze(module, spec.size)
    chosen = {}
    for layer in layers:
        info = infos.get(layer)
        if info is None or len(info.shape) not in (1, 3):
            raise ConvlensError(f"layer {layer!r} does not output a (C, H, W) map or a vector")
        if info.rf.unknown:
            raise ConvlensError(f"layer {layer!r}: receptive field unknown ({info.rf.unknown})")
        chosen[layer] = parse_units(unit_map.get(layer), info.shape[0], layer)
    return infos, chosen


def _write(report: InspectReport, out: str | os.PathLike, layers: list[str]) -> None:
    report.paths, report.json_path = output_paths(out, layers)
    for layer, path in report.paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        report.grids[layer].save(path)
    report.json_path.write_text(json.dumps(report.data, indent=1) + "\n")


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


def _gradients(
    module: nn.Module,
    layer: str,
    top_l: LayerTop,
    views: dict[int, np.ndarray],
    spec: InputSpec,
    batch_size: int,
) -> dict[tuple[int, int], np.ndarray]:
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
