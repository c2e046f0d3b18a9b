"""Grids of top patches: one row per unit, its top-k patches cut from the network-input images
through the receptive field, resized to one size and labelled; plus the same data as JSON.

A patch is the unit's full receptive-field box: where the box runs past the image edge (the
network saw zero padding there) the patch shows mid-grey, so every patch of a layer has the same
geometry; along an axis where the field is at least as long as the image, the patch is simply
the whole image along it. The optional second view weights each patch by |d unit / d input|,
normalised per patch (to its 99th percentile, square-rooted): which pixels drive the unit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convlens.inspection.receptive import ReceptiveField
from convlens.inspection.units import LayerTop, ScanResult

PAD_GREY = 128
GAP = 4
LABEL_W = 72
CAPTION_H = 13
TITLE_H = 22
BACKGROUND = (255, 255, 255)


def grid_size(units: int, top: int, patch: int, gradient: bool) -> tuple[int, int]:
    """(width, height) in pixels of a layer's grid."""
    rows = 2 if gradient else 1
    width = LABEL_W + top * (patch + GAP) + GAP
    height = TITLE_H + units * (rows * patch + CAPTION_H + GAP) + GAP
    return width, height


def crop_box(view: np.ndarray, box: tuple[int, int, int, int], fill=PAD_GREY) -> np.ndarray:
    """The unclipped box (top, left, bottom, right) of an (H, W[, C]) array; outside = fill."""
    t, lft, b, r = box
    h, w = view.shape[:2]
    out = np.full((b - t, r - lft, *view.shape[2:]), fill, dtype=view.dtype)
    ct, cl, cb, cr = max(t, 0), max(lft, 0), min(b, h), min(r, w)
    if cb > ct and cr > cl:
        out[ct - t : cb - t, cl - lft : cr - lft] = view[ct:cb, cl:cr]
    return out


def display_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box a patch shows: the field's box, except that along an axis where the field is
    at least as long as the image (every unit sees all of it) the patch spans the image."""
    t, lft, b, r = box
    h, w = size
    if b - t >= h:
        t, b = 0, h
    if r - lft >= w:
        lft, r = 0, w
    return t, lft, b, r


def _resize(patch: np.ndarray, size: int) -> Image.Image:
    img = Image.fromarray(patch)
    # Small fields are magnified: nearest keeps their pixels visible instead of a blur.
    small = max(patch.shape[:2]) * 2 <= size
    return img.resize((size, size), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)


def weight_by_gradient(patch: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Patch pixels scaled by |gradient|: normalised to its 99th percentile, clipped to 1, and
    square-rooted so that weak but non-zero influence stays visible."""
    scale = np.percentile(grad, 99) if grad.size else 0.0
    if not scale > 0:
        scale = grad.max() if grad.size and grad.max() > 0 else 1.0
    weight = np.sqrt(np.clip(grad / scale, 0.0, 1.0))[..., None]
    return (patch.astype(np.float32) * weight).round().astype(np.uint8)


@dataclass
class Cell:
    value: float
    item: int
    source: str
    view: int
    position: tuple[int, int]  # (y, x) in the layer's output map
    box: tuple[int, int, int, int]  # nominal field (top, left, bottom, right), may pass the edges
    pixels: tuple[int, int, int, int]  # the input pixels the unit really depends on
    patch: np.ndarray
    gradient: np.ndarray | None = None  # the gradient-weighted patch


def cells_for_layer(
    result: ScanResult,
    layer: str,
    rf: ReceptiveField,
    views: dict[int, np.ndarray],
    size: tuple[int, int],
    grads: dict[tuple[int, int], np.ndarray] | None = None,
) -> list[list[Cell]]:
    """Per unit, its top cells with patches cut from `views` (item id -> network input).

    `grads` maps (unit row, rank) to |d unit / d input| over the whole input, for the second view.
    """
    top: LayerTop = result.layers[layer]
    rows = []
    for u in range(len(top.units)):
        row = []
        for k in range(top.values.shape[1]):
            item = int(top.ids[u, k])
            if item < 0 or not np.isfinite(top.values[u, k]):
                continue
            y, x = (int(v) for v in top.positions[u, k])
            box = rf.box(y, x, *size, clip=False)
            shown = display_box(box, size)
            patch = crop_box(views[item], shown)
            grad = None
            if grads is not None:
                g = crop_box(grads[(u, k)], shown, fill=0.0)
                grad = weight_by_gradient(patch, g)
            source, view = result.source_of(item)
            name = str(source) if isinstance(source, (str, os.PathLike)) else f"image {item}"
            exact = rf.box(y, x, *size)
            value = float(top.values[u, k])
            row.append(Cell(value, item, name, view, (y, x), box, exact, patch, grad))
        rows.append(row)
    return rows


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def draw_grid(
    title: str, top: LayerTop, cells: list[list[Cell]], k: int, patch: int = 64
) -> Image.Image:
    gradient = any(c.gradient is not None for row in cells for c in row)
    width, height = grid_size(len(cells), k, patch, gradient)
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font, small = _font(12), _font(10)
    draw.text((GAP, 4), title, fill=(0, 0, 0), font=font)
    row_h = (2 if gradient else 1) * patch + CAPTION_H + GAP
    for u, row in enumerate(cells):
        y0 = TITLE_H + u * row_h
        unit = top.units[u]
        draw.text((GAP, y0 + 2), f"unit {unit}", fill=(0, 0, 0), font=font)
        draw.text((GAP, y0 + 18), f"mean {top.mean[u]:.3g}", fill=(90, 90, 90), font=small)
        draw.text((GAP, y0 + 31), f"max {top.max[u]:.3g}", fill=(90, 90, 90), font=small)
        if not top.max[u] > 0:
            draw.text((GAP, y0 + 44), "dead", fill=(200, 0, 0), font=font)
        for k_i, cell in enumerate(row):
            x0 = LABEL_W + k_i * (patch + GAP)
            img.paste(_resize(cell.patch, patch), (x0, y0))
            if cell.gradient is not None:
                img.paste(_resize(cell.gradient, patch), (x0, y0 + patch))
            cy = y0 + row_h - GAP - CAPTION_H
            draw.text((x0 + 1, cy), f"{cell.value:.3g}", fill=(0, 0, 0), font=small)
    return img


def layer_json(top: LayerTop, rf: ReceptiveField, cells: list[list[Cell]]) -> dict:
    units = []
    for u, row in enumerate(cells):
        units.append(
            {
                "unit": top.units[u],
                "mean": float(top.mean[u]),
                "max": float(top.max[u]),
                "dead": not top.max[u] > 0,
                "top": [
                    {
                        "activation": c.value,
                        "image": c.source,
                        "view": c.view,
                        "position": list(c.position),
                        "box": list(c.box),
                        "pixels": list(c.pixels),
                    }
                    for c in row
                ],
            }
        )
    return {
        "shape": list(top.shape),
        "receptive_field": rf.to_json(),
        "units": units,
        "dead_units": top.dead,
    }


def png_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out if out.suffix.lower() == ".png" else out.with_name(out.name + ".png")


def grid_paths(out: str | os.PathLike, layers: list[str]) -> dict[str, Path]:
    """grid.png for one layer; grid-<layer>.png for each of several."""
    out = png_path(out)
    if len(layers) == 1:
        return {layers[0]: out}
    safe = {n: "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in n) for n in layers}
    return {n: out.with_name(f"{out.stem}-{safe[n]}{out.suffix}") for n in layers}


def output_paths(out: str | os.PathLike, layers: list[str]) -> tuple[dict[str, Path], Path]:
    """(grid PNG per layer, the JSON beside them) that a report written to `out` creates."""
    return grid_paths(out, layers), png_path(out).with_suffix(".json")
