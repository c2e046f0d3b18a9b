"""CLI fuzz: every subcommand, every numeric option at 0, −1, NaN, a huge value and a wrong type;
missing, unwritable and same-as-input paths. No traceback ever; exit 2 for usage errors; nothing
written; the user's files byte-identical.

The commands and their options are read from the parser itself, so a new option is fuzzed
without touching this file. Values a command accepts on purpose (a seed of 0, no upsampling)
are listed in ACCEPTED with the reason; anything else at those values must be refused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens.cli import build_parser, main

BAD_ALWAYS = ("nan", "inf", "abc")  # never a valid number
HUGE = {"int": "1000000000000", "float": "1e30"}

# (command, option) -> values accepted on purpose. Everything else in 0, -1, huge is refused.
ACCEPTED: dict[tuple[str, str], set[str]] = {
    # a seed is any non-negative integer
    **{
        (c, "--seed"): {"0"}
        for c in ("style", "train triplet", "train siamese", "texture audio", "texture solid")
    },
    # upsampling 0 = detect at the photo's own resolution
    **{
        (c, "--upsample"): {"0"}
        for c in (
            "faces encode",
            "faces enroll",
            "faces identify",
            "faces verify",
            "faces calibrate",
            "faces train-verifier",
            "train triplet",
            "train siamese",
        )
    },
    ("style", "--tv"): {"0"},  # no total-variation smoothing
    ("style", "--frame-every"): {"0"},  # 0 = about 30 frames
    ("style", "--pad"): {"0"},  # no reflect padding
    ("style", "--content-weight"): {"0"},  # pure texture synthesis
    ("style", "--style-weight"): {"0"},  # content reconstruction only
    ("style", "--noise-ratio"): {"0"},  # no noise in the content+noise start
    # a blend or layer weight of 0 leaves that style image or layer out
    ("style", "--style-weights"): {"0"},
    ("style", "--layer-weights"): {"0"},
    ("stylize", "--strength"): {"0"},  # the photo's own style vector
    ("stylize", "--smooth"): {"0"},  # no temporal stabilisation
    ("stylize", "--style-weights"): {"0"},  # a painting left out of the blend
    ("stylize-train", "--style-weight"): {"0"},  # content reconstruction only
    ("stylize-train", "--tv"): {"0"},  # no total-variation smoothing
    ("faces encode", "--jitter"): {"0"},  # no jittered copies
    ("faces watch", "--camera"): {"0"},  # the first webcam
    ("train triplet", "--weight-decay"): {"0"},
    ("train siamese", "--weight-decay"): {"0"},
    ("train triplet", "--grad-clip"): {"0"},  # 0 = no clipping
    ("train siamese", "--grad-clip"): {"0"},
    ("serve", "--port"): {"0"},  # 0 = a free port, printed at startup (tests use it)
    ("serve", "--queue"): {"0"},  # no waiting: busy workers answer 503 at once
    ("serve", "--rate"): {"0"},  # no per-key rate limit (benchmarks, trusted networks)
}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*prefix, name))


def _numeric_kind(action: argparse.Action) -> str | None:
    t = action.type
    if t is int or getattr(t, "__name__", "") == "integer":
        return "int"
    if t is float or getattr(t, "__name__", "") in ("number", "numbers"):
        return "float"
    return None


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    img = root / "photo.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(img)
    people = root / "people"
    for person in ("a", "b"):
        (people / person).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(
                people / person / f"{i}.png"
            )
    return {"root": root, "img": img, "dir": people, "db": root / "g.db"}


def _base_argv(command: str, parser: argparse.ArgumentParser, f: dict[str, Path]) -> list[str]:
    """Valid positionals and required options for `command`, with harmless placeholders."""
    argv = command.split()
    out = str(f["root"] / "out.png")
    for a in parser._actions:
        if a.option_strings and not a.required:
            continue
        if isinstance(a, argparse._HelpAction):
            continue
        dest = a.dest
        if dest in ("name", "old", "new"):
            value = ["alice"]
        elif dest in ("folder", "dir"):
            value = [str(f["dir"])]
        elif dest in ("images", "photos", "photo", "content", "style"):
            value = [str(f["img"])]
        elif dest == "output":
            suffix = ".pt" if command.startswith("train") or command.endswith("-train") else None
            suffix = ".onnx" if command == "faces export-onnx" else suffix
            value = [str(Path(out).with_suffix(suffix)) if suffix else out]
        elif dest == "layer":
            value = ["stage1"]
        elif dest == "model":
            value = ["face"]
        else:
            value = ["x"]
        argv += [a.option_strings[0], *value] if a.option_strings else value
    if any("--db" in a.option_strings for a in parser._actions):
        argv += ["--db", str(f["db"])]
    return argv


def _run(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stderr, stdout) of one in-process run."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue(), out.getvalue()


def _numeric_cases():
    for command, parser in _leaves(build_parser()):
        for a in parser._actions:
            kind = _numeric_kind(a)
            if kind is None or not a.option_strings:
                continue
            for value in ("0", "-1", HUGE[kind], *BAD_ALWAYS):
                yield pytest.param(
                    command,
                    a.option_strings[-1],
                    value,
                    id=f"{command}:{a.option_strings[-1]}={value}",
                )


@pytest.mark.parametrize(("command", "option", "value"), list(_numeric_cases()))
def test_numeric_option_is_validated_before_work(command, option, value, files):
    parser = dict(_leaves(build_parser()))[command]
    argv = [*_base_argv(command, parser, files), option, value]
    accepted = value in ACCEPTED.get((command, option), set())
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            build_parser().parse_args(argv)
    except SystemExit as e:
        assert not accepted, f"{command} {option} {value} refused but listed as accepted"
        assert e.code == 2
        text = err.getvalue()
        assert "Traceback" not in text and "error:" in text
        assert option in text or value in text, text  # the message names what is wrong
        return
    assert accepted, f"{command} {option} {value}: accepted, but it is no meaningful value"


def test_every_command_is_fuzzed():
    commands = {c for c, _ in _leaves(build_parser())}
    assert {"faces encode", "faces identify", "style", "train triplet", "inspect units"} <= commands
    numeric = {c for c, _, _ in (p.values for p in _numeric_cases())}
    assert {"faces encode", "style", "train triplet", "inspect units"} <= numeric


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# Commands with an output file: (argv template, the output option or None for a positional).
OUTPUT_COMMANDS = [
    ("faces export-onnx {out}", None, ".onnx"),
    ("faces calibrate {dir} --plot {out}", "--plot", ".png"),
    ("faces train-verifier {dir} -o {out}", "-o", ".pt"),
    ("style {img} {img} -o {out} --steps 1 --size 32", "-o", ".png"),
    ("train triplet {dir} -o {out} --init scratch --epochs 1", "-o", ".pt"),
    ("inspect units --model face --layer stage1 --images {dir} -o {out}", "-o", ".png"),
]


def _unwritable_dir() -> Path:
    # Root bypasses permission bits; a kernel-owned folder stays unwritable even for root.
    candidate = Path("/proc/sys")
    if os.access(candidate, os.W_OK):
        pytest.skip("no unwritable folder on this machine")
    return candidate


@pytest.mark.parametrize(("template", "_opt", "suffix"), OUTPUT_COMMANDS)
@pytest.mark.parametrize("case", ["missing-folder", "same-as-input", "unwritable", "folder"])
def test_bad_output_path_refused_before_work(template, _opt, suffix, case, files):
    root = files["root"]
    out = {
        "missing-folder": root / "no" / "such" / f"out{suffix}",
        "same-as-input": files["img"] if "{img}" in template else files["dir"] / "a" / "0.png",
        "unwritable": _unwritable_dir() / f"out{suffix}" if case == "unwritable" else None,
        "folder": root,
    }[case]
    before = _snapshot(root)
    argv = template.format(out=out, img=files["img"], dir=files["dir"]).split()
    if argv[0] == "faces" and argv[1] in ("calibrate",):
        argv += ["--db", str(files["db"])]
    code, err, _ = _run(argv)
    assert code == 2, (argv, err)
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert _snapshot(root) == before  # nothing written, inputs byte-identical


INPUT_COMMANDS = [
    "faces encode {missing}",
    "faces enroll alice {missing}",
    "faces identify {missing}",
    "faces verify {missing} --as alice",
    "faces calibrate {missing}",
    "faces train-verifier {missing} -o {root}/v.pt",
    "style {missing} {img} -o {root}/s.png",
    "style {img} {missing} -o {root}/s.png",
    "train triplet {missing} -o {root}/m.pt",
    "inspect units --model face --layer stage1 --images {missing} -o {root}/g.png",
]


@pytest.fixture(scope="module")
def alice_db(files) -> Path:
    from convlens.faces.gallery import Gallery
    from convlens.models.dlib_resnet import MODEL_ID

    path = files["root"] / "alice.db"
    with Gallery(path, model_id=MODEL_ID) as g:
        g.enroll_embeddings("alice", np.full((1, 128), 0.05, np.float32))
    return path


@pytest.mark.parametrize("template", INPUT_COMMANDS)
def test_missing_input_is_one_line_error(template, files, alice_db):
    root = files["root"]
    before = _snapshot(root)
    argv = template.format(missing=root / "missing.jpg", img=files["img"], root=root).split()
    if argv[1] in ("enroll", "calibrate"):
        argv += ["--db", str(root / "fresh.db")]  # must not be created
    elif argv[1] in ("identify", "verify"):
        argv += ["--db", str(alice_db)]
    code, err, out = _run(argv)
    assert code in (1, 2), (argv, code, err)
    # `faces encode` reports a bad photo in its table (stdout) and goes on with the batch.
    assert "Traceback" not in err + out and "missing.jpg" in err + out, err
    assert _snapshot(root) == before
