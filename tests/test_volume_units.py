"""Units of a 3-D network over a volume: top places with exact 3-D receptive fields."""

import numpy as np
import torch
from torch import nn

from convlens.cli import main
from convlens.volumes.units import render_units, sub_volume, volume_units


def test_top_subvolumes_find_the_bright_blob_and_crop_its_field(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
                        nn.Conv3d(2, 2, 3, padding=1), nn.ReLU())  # fmt: skip
    with torch.no_grad():  # unit 0 = a blurred brightness detector
        for conv in (net[0], net[3]):
            conv.weight.fill_(1.0 / conv.weight[0].numel())
            conv.bias.zero_()
    vol = np.zeros((12, 16, 20), np.float32)
    vol[6:8, 3:5, 14:16] = 1.0  # a bright blob
    top = volume_units(net, vol, "4", units=[0], top=3)
    unit = top.units[0]
    assert len(unit.positions) == 3 and unit.values == sorted(unit.values, reverse=True)
    best = unit.bounds[0]
    assert all(lo <= c < hi for (lo, hi), c in zip(best, (6, 3, 14), strict=True))
    assert sub_volume(top, best).shape == tuple(hi - lo for lo, hi in best)
    assert top.field["d"]["size"] == 8  # 3 + 2 * (3 - 1) + 1 : conv, pool, conv
    render_units(top, tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0


def test_volume_units_cli_refuses_bad_input_before_work(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.float32))
    assert main(["inspect", "volume-units", str(tmp_path / "flat.npy"), "-o",
                 str(tmp_path / "u.png")]) == 2  # fmt: skip
    assert main(["inspect", "volume-units", str(tmp_path / "flat.npy"), "-o",
                 str(tmp_path / "u.jpg")]) == 2  # fmt: skip
    assert not (tmp_path / "u.png").exists()


def test_image_unit_scan_points_volumes_to_volume_units(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.zeros((8, 8, 8), np.float32))
    for model in ("vgg19-3d", "small-convnet"):  # a 3-D network; an image one given a volume
        args = ["inspect", "units", "--model", model, "--layer", "features.relu1_1",
                "--images", str(tmp_path / "v.npy"), "-o", str(tmp_path / "u.png")]  # fmt: skip
        assert main(args) == 2
        assert "inspect volume-units" in capsys.readouterr().err
    assert not (tmp_path / "u.png").exists()
