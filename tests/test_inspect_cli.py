"""`convlens inspect`: output files, and bad input as one-line errors before any work."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.cli import main
from convlens.models import registry
from convlens.models.registry import InputFormat, ModelEntry


def _tiny(weights=None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2)).eval()


@pytest.fixture(autouse=True)
def tiny_model():
    """A tiny network registered as an inspectable model for these tests only."""
    entry = ModelEntry(
        name="tiny",
        tasks=("inspectable",),
        about="test",
        load=_tiny,
        input=InputFormat((20, 20), value_range=1.0),
    )
    registry.register(entry)
    yield entry
    registry._ENTRIES.pop("tiny", None)  # the registry has no removal: tests only


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return d


def _files(root) -> set:
    return {p for p in root.rglob("*")}


def _error(capsys, argv) -> str:
    """A library or input error: exit 2, one line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convlens: error: ") and "\n" not in err, err
    return err


def _usage(capsys, argv) -> str:
    """A usage error found by argparse: exit 2, one error line, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _units(images, tmp_path, *extra: str, model: str = "tiny", layer: str = "2") -> list[str]:
    """argv for `convlens inspect units` writing its grid into tmp_path."""
    out = str(tmp_path / "g.png")
    return ["inspect", "units", "--model", model, "--layer", layer, "--images", str(images),
            *extra, "-o", out, "--quiet"]  # fmt: skip


def test_layers_lists_names_shapes_and_fields(capsys):
    assert main(["inspect", "layers", "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "input 20x20" in out
    assert any(
        line.split()[:3] == ["2", "Conv2d", "4x8x8"] and "5 px, stride 2" in line
        for line in out.splitlines()
    )


def test_layers_json_is_one_object_per_layer(capsys):
    assert main(["inspect", "layers", "--model", "tiny", "--json", "--device", "cpu"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["layer"] for r in records] == ["0", "1", "2"]
    last = records[-1]
    assert last["shape"] == [4, 8, 8] and last["input_size"] == [20, 20]
    assert last["receptive_field"]["h"] == {"jump": 2, "start": 0, "size": 5}


def test_device_defaults_to_auto():
    from convlens.cli import build_parser

    for command in (["layers"], ["units", "--layer", "2", "--images", ".", "-o", "g.png"]):
        args = build_parser().parse_args(["inspect", *command, "--model", "tiny"])
        assert args.device == "auto"


def test_units_writes_grid_and_json(capsys, folder, tmp_path):
    out = tmp_path / "g.png"
    assert main(_units(folder, tmp_path, "--units", "0:2", "--top", "3")) == 0
    assert out.exists() and (tmp_path / "g.json").exists()
    assert "4 images" in capsys.readouterr().out


def test_units_json_is_one_summary_line(capsys, folder, tmp_path):
    assert main(_units(folder, tmp_path, "--units", "0:2", "--top", "3", "--json")) == 0
    (line,) = capsys.readouterr().out.splitlines()
    summary = json.loads(line)
    assert summary["model"] == "tiny" and summary["images"] == 4 and summary["inputs"] == 4
    assert summary["layers"]["2"]["grid"] == str(tmp_path / "g.png")
    assert summary["data"] == str(tmp_path / "g.json")


def test_unknown_layer_lists_valid_names(capsys, folder, tmp_path):
    err = _error(capsys, _units(folder, tmp_path, layer="conv9"))
    assert "unknown layer 'conv9'; valid layers: 0, 1, 2" in err


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no image files" in _error(capsys, _units(tmp_path / "empty", tmp_path))


def test_unknown_model_lists_the_registry(capsys, folder, tmp_path):
    err = _error(capsys, ["inspect", "layers", "--model", "alexnet"])
    assert "unknown inspectable model 'alexnet'; known: " in err
    for name in ("dlib-resnet", "efficientnet-lite0", "small-convnet", "tiny", "vgg19"):
        assert name in err
    err = _error(capsys, _units(folder, tmp_path, model="alexnet", layer="x"))
    assert "unknown inspectable model 'alexnet'" in err


# Values just outside each option's limits, refused as "OPTION: VALUE is out of range".
OUT_OF_RANGE = {
    "--top": ["0", "101"],
    "--patch": ["7", "513"],
    "--batch-size": ["0", "5000"],
    "--input-size": ["20000"],
}
RANGE_ERRORS = [
    ([opt, v], f"{opt}: {v} is out of range") for opt, vs in OUT_OF_RANGE.items() for v in vs
]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        *RANGE_ERRORS,
        (["--top", "x"], "--top: expected a whole number"),
        (["--input-size", "224x0"], "--input-size: 0 is out of range"),
        (["--input-size", "2x2x2"], "--input-size: bad size"),
        (["--units", "2:9x"], "--units: bad unit list"),
        (["--units", "::0"], "--units: bad unit list"),
    ],
)
def test_bad_numbers_are_usage_errors_before_work(capsys, folder, tmp_path, extra, message):
    before = _files(tmp_path)
    assert message in _usage(capsys, _units(folder, tmp_path, *extra))
    assert _files(tmp_path) == before


def test_layers_input_size_is_capped(capsys):
    # 20000x20000 was killed by the kernel at 15-22 GB; now refused before the model loads.
    assert "--input-size: 20000 is out of range" in _usage(
        capsys, ["inspect", "layers", "--model", "tiny", "--input-size", "20000"]
    )


def test_missing_images_folder_is_a_usage_error(capsys, tmp_path):
    assert "nowhere: no such path" in _usage(capsys, _units(tmp_path / "nowhere", tmp_path))


def test_images_may_be_one_file(capsys, folder, tmp_path):
    assert main(_units(folder / "0.jpg", tmp_path, "--units", "0", "--top", "1", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1


def test_output_into_a_missing_folder_writes_nothing(capsys, folder, tmp_path):
    argv = _units(folder, tmp_path)
    argv[argv.index("-o") + 1] = str(tmp_path / "no" / "g.png")
    before = _files(tmp_path)
    assert "no such folder" in _error(capsys, argv)
    assert _files(tmp_path) == before


def test_output_over_an_input_image_is_refused(capsys, folder, tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "g.png")
    argv = _units(folder, tmp_path)
    argv[argv.index("-o") + 1] = str(folder / "g.png")
    data = (folder / "g.png").read_bytes()
    assert "is also an input" in _error(capsys, argv)
    assert (folder / "g.png").read_bytes() == data and not (folder / "g.json").exists()


def test_output_that_is_a_folder_is_refused(capsys, folder, tmp_path):
    (tmp_path / "g.png").mkdir()
    assert "is a folder" in _error(capsys, _units(folder, tmp_path))


def test_bad_device(capsys, folder, tmp_path):
    assert "unknown device 'gpu0'" in _error(capsys, _units(folder, tmp_path, "--device", "gpu0"))
    assert not (tmp_path / "g.png").exists()


def test_face_model_from_a_trained_encoder_file(capsys, tmp_path):
    # A trained SmallConvNet, as `convlens train` saves it: it resizes chips inside (a shape
    # test torch.fx cannot trace), yet its stages get receptive fields.
    from convlens.models.face_models import save_face_model
    from convlens.models.small_convnet import SmallConvNet

    save_face_model(SmallConvNet(), tmp_path / "enc.pt", "small_convnet", {})
    for argv in (
        ["--model", "face", "--weights", str(tmp_path / "enc.pt")],
        ["--model", str(tmp_path / "enc.pt")],  # --model PATH
    ):
        assert main(["inspect", "layers", *argv]) == 0
        out = capsys.readouterr().out
        assert out.startswith("input 150x150")
        rows = {line.split()[0]: line for line in out.splitlines()[2:]}
        assert "128x8x8" in rows["stage3"] and "px, stride" in rows["stage3"]


def test_missing_model_file(capsys, tmp_path):
    err = _error(capsys, ["inspect", "layers", "--model", str(tmp_path / "enc.pt")])
    assert "enc.pt: no such model file" in err


def test_output_naming_an_existing_folder_is_refused(capsys, folder, tmp_path):
    # Before: -o FOLDER wrote FOLDER.png and FOLDER.json beside the folder.
    argv = _units(folder, tmp_path)
    argv[argv.index("-o") + 1] = str(folder)
    before = _files(tmp_path)
    assert "is a folder" in _error(capsys, argv)
    assert _files(tmp_path) == before
