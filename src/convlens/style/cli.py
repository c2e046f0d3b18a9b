"""`convlens style CONTENT STYLE [STYLE...] -o OUT.png [options]`.

The options are generated from `StyleOptions`' fields (help, limits, choices in each field's
metadata), so the CLI and the Python API cannot drift apart; a bad value is a usage error
(exit 2) before any work.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from convlens import cli_options
from convlens.errors import ConvlensError
from convlens.style.options import IMAGE_SUFFIXES, Limits, StyleOptions

# Arguments of the command that are not StyleOptions fields.
COMMAND_ARGUMENTS = ("content", "style", "output", "json")


def register(subparsers) -> None:
    p = cli_options.add_command(subparsers, "style", run)
    p.add_argument("content", help="content photo")
    p.add_argument("style", nargs="+", help="style image(s)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=cli_options.output_file(*IMAGE_SUFFIXES),
        help="output image (PNG/JPEG)",
    )
    add_style_options(p)
    cli_options.add_json(p)


def add_style_options(p: argparse.ArgumentParser) -> None:
    """One option per StyleOptions field, from the field's metadata."""
    hints = typing.get_type_hints(StyleOptions)
    for f in fields(StyleOptions):
        shared = f.metadata["shared"]
        if shared == "device":
            cli_options.add_device(p)
        elif shared == "quiet":
            cli_options.add_quiet(p)
        else:
            flags = f.metadata["flags"] or ("--" + f.name.replace("_", "-"),)
            p.add_argument(*flags, dest=f.name, default=f.default, **_argument(f, hints[f.name]))


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """StyleOptions keyword arguments from parsed arguments."""
    options = {}
    for f in fields(StyleOptions):
        shared = f.metadata["shared"]
        if shared == "quiet":
            options[f.name] = cli_options.show_progress(args)
        else:
            options[f.name] = getattr(args, f.name)
    return options


def _kind(hint: Any) -> str:
    """bool | int | float | floats | names | bool-or-str | str, from a field's type hint."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    if bool in args and str in args:
        return "bool-or-str"
    for simple in (bool, int, float):
        if simple in args:
            return simple.__name__
    for a in args:
        if typing.get_origin(a) is list:
            return "floats" if typing.get_args(a) == (float,) else "names"
    return "str"


def _argument(f: Field, hint: Any) -> dict[str, Any]:
    """add_argument keywords (action/type/choices/help) for one field."""
    meta, kind = f.metadata, _kind(hint)
    limits: Limits | None = meta["limits"]
    shown = "" if f.default in (None, MISSING) else f"default {f.default}"
    if limits is not None:
        shown += ("; " if shown else "") + f"range {limits.text()}"
    help_text = meta["help"] + (f" ({shown})" if shown else "")
    if kind == "bool":
        if f.default is False:
            return {"action": "store_true", "help": meta["help"]}
        return {"action": argparse.BooleanOptionalAction, "help": help_text}
    if kind == "bool-or-str":
        return {"nargs": "?", "const": True, "metavar": "MODE", "help": meta["help"]}
    metavar = {"int": "N", "float": "X", "floats": "X,...", "names": "NAME,..."}.get(kind)
    out: dict[str, Any] = {"help": help_text}
    if meta["path"] or metavar:
        out["metavar"] = metavar or ("DIR" if meta["path"] == "folder" else "PATH")
    if limits is not None:
        lo, hi = limits.lo, limits.hi
        if kind == "int":
            out["type"] = cli_options.int_range(lo, hi)
        elif kind == "float":
            out["type"] = cli_options.float_range(
                lo, hi, lo_open=limits.lo_open, hi_open=limits.hi_open
            )
        else:
            out["type"] = cli_options.number_list(lo, hi, lo_open=limits.lo_open)
    elif kind == "names":
        out["type"] = cli_options.name_list
    elif meta["path"] == "input":
        out["type"] = cli_options.existing_path("file")
    elif meta["path"] == "output":
        out["type"] = cli_options.output_file(*meta["suffixes"])
    choices = meta["choices"]
    if choices is not None:
        out["choices"] = list(choices() if callable(choices) else choices)
    return out


def run(args) -> int:
    """neural style transfer (Gatys): paint a photo in the style of one or more images

    Optimise the pixels of an image so that its content features match CONTENT and its
    Gram-matrix style statistics match STYLE (several STYLE images blend). Runs offline with
    the packaged EfficientNet-Lite0 weights."""
    from convlens.style import run_transfer

    # before any work: no output over an input (the photo!), none into a missing folder; the
    # library checks the GIF and frames folder the same way for Python callers
    inputs = [args.content, *args.style, args.vgg_weights]
    cli_options.check_outputs([args.output, args.gif], inputs)
    result = run_transfer(args.content, args.style, **options_from_args(args))
    try:
        result.image.save(args.output)
    except OSError as e:
        raise ConvlensError(f"{args.output}: cannot write ({e})") from None
    w, h = result.image.size
    if args.json:
        row = {"output": str(args.output), "width": w, "height": h, "seconds": result.seconds}
        print(json.dumps(row))
    else:
        print(f"wrote {args.output} ({w}x{h}, {result.seconds:.1f} s)")
    return 0
