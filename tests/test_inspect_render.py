"""Grids and JSON from the Python API on a small module: sizes, patches, files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.inspection import inspect_units
from convlens.inspection.render import crop_box, grid_size


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU()
    ).eval()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    return tmp_path


def test_grid_png_and_json(folder, tmp_path):
    out = tmp_path / "out" / "grid.png"
    rep = inspect_units(
        _net(),
        folder,
        ["1", "4"],
        "0:3",
        top=4,
        input_size=(24, 20),
        gradient=True,
        out=out,
        patch=32,
    )
    assert set(rep.paths) == {"1", "4"}
    for path in rep.paths.values():
        with Image.open(path) as img:
            # 72 px labels + 4 patches of 32 + gaps; title + 3 units x (2 rows + caption + gap)
            assert img.size == grid_size(3, 4, 32, gradient=True) == (220, 269)
    assert rep.json_path == tmp_path / "out" / "grid.json"
    data = json.loads(rep.json_path.read_text())
    assert data["images"] == 6 and data["input_size"] == [24, 20]
    layer = data["layers"]["4"]
    assert layer["shape"] == [6, 10, 8]
    assert layer["receptive_field"]["h"] == {"jump": 2, "start": -1, "size": 8}
    first = layer["units"][0]["top"][0]
    y, x = first["position"]
    assert first["box"] == [-1 + 2 * y, -1 + 2 * x, 7 + 2 * y, 7 + 2 * x]
    t, lft, b, r = first["box"]  # here no pixel is dropped: exact = nominal clipped to 24x20
    assert first["pixels"] == [max(t, 0), max(lft, 0), min(b, 24), min(r, 20)]
    assert first["image"].endswith(".png") and len(layer["units"][0]["top"]) == 4


def test_patch_is_the_receptive_field_crop(folder):
    rep = inspect_units(_net(), folder, "4", [2], top=1, input_size=(24, 20))
    cell = rep.cells["4"][0][0]
    view = np.asarray(Image.open(cell.source).convert("RGB"))
    t, lft, b, r = cell.box
    assert cell.patch.shape == (b - t, r - lft, 3) == (8, 8, 3)
    np.testing.assert_array_equal(cell.patch, crop_box(view, cell.box))
    assert rep.grids["4"].size == grid_size(1, 1, 64, gradient=False)


def test_crop_box_pads_outside_with_grey():
    view = np.arange(16, dtype=np.uint8).reshape(4, 4)
    patch = crop_box(view, (-1, 2, 2, 5))
    assert patch.tolist() == [[128, 128, 128], [2, 3, 128], [6, 7, 128]]
