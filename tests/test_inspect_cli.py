"""`convlens inspect`: output files, and bad input as one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.cli import main
from convlens.inspection.models import MODELS, NamedModel
from convlens.inspection.units import InputSpec


def _tiny(weights=None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2)).eval()


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch):
    monkeypatch.setitem(MODELS, "tiny", NamedModel(_tiny, lambda: InputSpec((20, 20)), "test"))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return d


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convlens: error: ") and "\n" not in err, err
    return err


def test_layers_lists_names_shapes_and_fields(capsys):
    assert main(["inspect", "layers", "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "input 20x20" in out
    assert any(
        line.split()[:3] == ["2", "Conv2d", "4x8x8"] and "5 px, stride 2" in line
        for line in out.splitlines()
    )


def test_units_writes_grid_and_json(capsys, folder, tmp_path):
    out = tmp_path / "g.png"
    argv = [
        "inspect",
        "units",
        "--model",
        "tiny",
        "--layer",
        "2",
        "--images",
        str(folder),
        "--units",
        "0:2",
        "--top",
        "3",
        "-o",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert out.exists() and (tmp_path / "g.json").exists()
    assert "4 images" in capsys.readouterr().out


def test_unknown_layer_lists_valid_names(capsys, folder, tmp_path):
    err = _error(
        capsys,
        [
            "inspect",
            "units",
            "--model",
            "tiny",
            "--layer",
            "conv9",
            "--images",
            str(folder),
            "-o",
            str(tmp_path / "g.png"),
        ],
    )
    assert "unknown layer 'conv9'; valid layers: 0, 1, 2" in err


def _units(images, tmp_path, *extra: str, model: str = "tiny", layer: str = "2") -> list[str]:
    """argv for `convlens inspect units` writing its grid into tmp_path."""
    out = str(tmp_path / "g.png")
    return ["inspect", "units", "--model", model, "--layer", layer, "--images", str(images),
            *extra, "-o", out]  # fmt: skip


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no image files" in _error(capsys, _units(tmp_path / "empty", tmp_path))


def test_unknown_model(capsys, folder, tmp_path):
    err = _error(capsys, ["inspect", "layers", "--model", "alexnet"])
    assert "unknown model 'alexnet'; known: face, efficientnet-lite0" in err
    err = _error(capsys, _units(folder, tmp_path, model="alexnet", layer="x"))
    assert "unknown model 'alexnet'" in err


def test_bad_units_and_missing_folder(capsys, folder, tmp_path):
    assert "bad unit list" in _error(capsys, _units(folder, tmp_path, "--units", "2:9x"))
    assert "not a folder" in _error(capsys, _units(tmp_path / "nowhere", tmp_path))


def test_bad_device(capsys, folder, tmp_path):
    assert "unknown device 'gpu0'" in _error(capsys, _units(folder, tmp_path, "--device", "gpu0"))


def test_face_model_from_a_trained_encoder_file(capsys, tmp_path):
    # A trained SmallConvNet, as `convlens train` saves it: it resizes chips inside (a shape
    # test torch.fx cannot trace), yet its stages get receptive fields.
    from convlens.models.face_models import save_face_model
    from convlens.models.small_convnet import SmallConvNet

    save_face_model(SmallConvNet(), tmp_path / "enc.pt", "small_convnet", {})
    assert (
        main(["inspect", "layers", "--model", "face", "--weights", str(tmp_path / "enc.pt")]) == 0
    )
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "128x8x8" in rows["stage3"] and "px, stride" in rows["stage3"]
