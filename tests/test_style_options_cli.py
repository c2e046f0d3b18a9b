"""StyleOptions is the one list of style options: the CLI is generated from it, its limits
hold for the CLI (usage error, exit 2, nothing written) and for Python callers
(ConvlensError naming the value, never a flag), and outputs never overwrite inputs."""

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from convlens.cli import build_parser, main
from convlens.errors import ConvlensError
from convlens.style import StyleOptions, transfer
from convlens.style.cli import COMMAND_ARGUMENTS, options_from_args
from convlens.style.options import MAX_THREADS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def style_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "group")
    return sub.choices["style"]


def test_every_field_has_one_cli_option_and_vice_versa():
    dests = {a.dest for a in style_parser()._actions} - {"help"}
    field_dests = {
        "quiet" if f.metadata["shared"] == "quiet" else f.name
        for f in dataclasses.fields(StyleOptions)
    }
    assert dests - set(COMMAND_ARGUMENTS) == field_dests
    # every field documents itself
    assert all(f.metadata["help"] for f in dataclasses.fields(StyleOptions))


def test_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["style", "c.png", "s.png", "-o", "out.png"])
    assert options_from_args(args) == dataclasses.asdict(StyleOptions())
    assert StyleOptions().device == "auto"
    quiet = build_parser().parse_args(["style", "c.png", "s.png", "-o", "o.png", "--json"])
    assert options_from_args(quiet)["progress"] is False  # stdout carries the JSON


def test_backbone_and_model_name_registry_entries():
    for flag in ("--backbone", "--model"):
        args = build_parser().parse_args(["style", "c.png", "s.png", "-o", "o.png", flag, "vgg19"])
        assert args.backbone == "vgg19"


BAD_CLI_VALUES = [
    ("--size", "8"),
    ("--size", "0"),
    ("--size", "abc"),
    ("--size", "100000"),
    ("--steps", "0"),
    ("--lr", "0"),
    ("--lr", "nan"),
    ("--lr", "11"),
    ("--tv", "-1"),
    ("--content-weight", "inf"),
    ("--style-weight", "-0.5"),
    ("--style-weights", "1,-1"),
    ("--layer-weights", "x"),
    ("--scales", "0"),
    ("--scales", "9"),
    ("--style-scale", "0.01"),
    ("--seed", "-1"),
    ("--frame-every", "-1"),
    ("--pad", "-1"),
    ("--threads", "0"),
    ("--threads", str(MAX_THREADS + 1)),
    ("--noise-ratio", "1.5"),
    ("--max-memory-fraction", "0"),
    ("--optimizer", "sgd"),
    ("--backbone", "resnet"),
    ("--gif", "run.png"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_CLI_VALUES)
def test_bad_cli_values_are_usage_errors_before_work(flag, value, tmp_path, capsys):
    out = tmp_path / "out.png"
    with pytest.raises(SystemExit) as e:
        main(["style", "c.png", "s.png", "-o", str(out), flag, value])
    assert e.value.code == 2
    assert flag.lstrip("-").split("-")[0] in capsys.readouterr().err
    assert not out.exists()


def _bad_value(f: dataclasses.Field):
    limits = f.metadata["limits"]
    value = limits.hi * 2 + 1 if limits.hi is not None else limits.lo - 1
    value = int(value) if limits.integer else float(value)
    return [value] if f.name in ("style_weights", "layer_weights") else value


LIMITED = [f for f in dataclasses.fields(StyleOptions) if f.metadata["limits"] is not None]


@pytest.mark.parametrize("f", LIMITED, ids=[f.name for f in LIMITED])
def test_library_enforces_the_same_limits_naming_the_field(f):
    bad = _bad_value(f)
    with pytest.raises(ConvlensError, match=f.name) as e:
        StyleOptions(**{f.name: bad}).validate()
    assert "--" not in str(e.value)
    shown = bad[0] if isinstance(bad, list) else bad
    assert repr(shown) in str(e.value)


def test_library_refuses_wrong_types_and_nan():
    with pytest.raises(ConvlensError, match="size must be a whole number, not '512'"):
        StyleOptions(size="512").validate()
    with pytest.raises(ConvlensError, match="lr must be a finite number"):
        StyleOptions(lr=math.nan).validate()
    with pytest.raises(ConvlensError, match="steps must be a whole number"):
        StyleOptions(steps=True).validate()
    StyleOptions().validate()  # the defaults are valid


def _images(tmp_path):
    yy, xx = np.mgrid[0:40, 0:60]
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray(np.stack([xx * 4, yy * 6, xx + yy], -1).astype(np.uint8)).save(c)
    Image.fromarray(np.full((40, 40, 3), (200, 80, 20), np.uint8)).save(s)
    return c, s


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the transfer gets as far as loading the network."""

    def refuse(*a, **k):
        raise AssertionError("work started before the check")

    monkeypatch.setattr("convlens.style.optimize.load_backbone", refuse)


@pytest.mark.parametrize("target", ["content", "style", "gif", "frames"])
def test_outputs_never_overwrite_inputs(target, tmp_path, capsys, no_work):
    c, s = _images(tmp_path)
    g = tmp_path / "s2.gif"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(g)
    before = {p: p.read_bytes() for p in (c, s, g)}
    out = {"content": ["-o", str(c)], "style": ["-o", str(s)]}.get(
        target, ["-o", str(tmp_path / "o.png")]
    )
    extra = {"gif": ["--gif", str(g)], "frames": ["--frames", str(c)]}.get(target, [])
    code = main(["style", str(c), str(s), str(g), *out, *extra, "--quiet", "--size", "32"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "--" not in err.split("error:")[1]
    assert {p: p.read_bytes() for p in (c, s, g)} == before


def test_output_into_missing_folder_fails_before_work(tmp_path, capsys, no_work):
    c, s = _images(tmp_path)
    out = tmp_path / "missing" / "out.png"
    assert main(["style", str(c), str(s), "-o", str(out), "--quiet"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_library_refuses_gif_and_frames_over_inputs(tmp_path, no_work):
    c, s = _images(tmp_path)
    g = tmp_path / "s2.gif"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(g)
    before = g.read_bytes(), c.read_bytes()
    with pytest.raises(ConvlensError, match="also an input"):
        transfer(str(c), [str(s), str(g)], gif=g, progress=False)
    with pytest.raises(ConvlensError, match="not a folder"):
        transfer(str(c), str(s), frames=c, progress=False)
    assert (g.read_bytes(), c.read_bytes()) == before


def test_memory_refusal_names_no_flag():
    content = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(ConvlensError, match="GiB") as e:
        transfer(content, content, size=30_000, progress=False)
    assert "--" not in str(e.value) and "smaller size" in str(e.value)


def test_json_output(tmp_path, capsys):
    import json

    c, s = _images(tmp_path)
    out = tmp_path / "out.png"
    args = ["style", str(c), str(s), "-o", str(out), "--size", "32", "--steps", "2", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["output"] == str(out) and (row["width"], row["height"]) == (32, 21)
    assert row["seconds"] > 0 and Image.open(out).size == (32, 21)
