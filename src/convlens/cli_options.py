"""The one CLI convention every `convlens` group follows.

* Every command that runs a network takes `--device` (default auto: CUDA when present),
  every command with a progress bar `--quiet`, every command with results `--json` (one
  object per line), and `--model NAME|PATH` resolved through the model registry.
* Every option is validated, with its limits, by argparse before any work starts: a bad
  value is one usage error and exit status 2 (the `type=` helpers below).
* Output paths are checked writable, and never one of the command's own inputs, before any
  work starts (`check_outputs`).
* Library errors (ConvlensError) name the offending value or path, never a flag: the flags
  belong to this layer.
* Commands are declared with `add_command` and groups with `add_group`, and in no other way:
  a command's help is the docstring of the function that runs it, a lowercase summary line
  for the list of commands, then the description that --help shows.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from convlens.errors import ConvlensError

# -- option types: argparse turns their ArgumentTypeError into "usage ... error", exit 2 -----


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer lo <= n <= hi (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range ({_bounds(lo, hi)})")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[str], float]:
    """A finite number in [lo, hi] (or open at either end); NaN and infinities refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(
                f"{value:g} is out of range ({_bounds(lo, hi, lo_open, hi_open)})"
            )
        return value

    parse.__name__ = "number"
    return parse


def _bounds(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    def num(v) -> str:
        return f"{v:,}" if isinstance(v, int) else f"{v:g}"

    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '≥'} {num(lo)}"
    return f"{'<' if hi_open else '≤'} {num(hi)}"


def number_list(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[[str], list[float]]:
    """Comma-separated finite numbers, each within the bounds."""
    one = float_range(lo, hi, lo_open=lo_open)

    def parse(text: str) -> list[float]:
        values = [one(v) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
        return values

    parse.__name__ = "numbers"
    return parse


def name_list(text: str) -> list[str]:
    """Comma-separated names (layers, people)."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def existing_path(kind: str = "file") -> Callable[[str], Path]:
    """An input that must exist now: kind "file", "dir" or "any"."""

    def parse(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such {kind if kind != 'any' else 'path'}")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a folder, not a file")
        if kind == "dir" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: not a folder")
        return path

    parse.__name__ = kind
    return parse


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """An output file name, optionally with one of `suffixes` (e.g. ".png", ".jpg")."""

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError("empty output file name")
        path = Path(text)
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text}: the file name must end in {' or '.join(suffixes)}"
            )
        return path

    parse.__name__ = "output file"
    return parse


# -- the shared options ----------------------------------------------------------------------


def add_group(
    subparsers, name: str, help: str, description: str | None = None, metavar: str = "COMMAND"
):
    """A command group (`convlens NAME SUBCOMMAND ...`); returns its subcommand adder.

    Its commands are added with `add_command`.
    """
    group = subparsers.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def add_command(
    subparsers, name: str, run: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A command NAME that `run(args)` carries out; returns its parser, for its options.

    `run`'s docstring is the command's help: its first paragraph the line in the list of
    commands (lowercase, as they all are), the rest the description under --help. What a
    command says it does is written once, on the function that does it. Where one function
    serves two commands, each command gets a small function of its own that says what it
    does and calls the shared one.
    """
    summary, _, details = docstring(run).partition("\n\n")
    p = subparsers.add_parser(name, help=summary or None, description=details or None)
    p.set_defaults(func=run)
    return p


def docstring(func: Callable) -> str:
    """`func`'s docstring, cleaned as inspect.getdoc does; "" if it has none.

    `python -OO` (or PYTHONOPTIMIZE=2) compiles docstrings away, and with them every
    command's help: they are then read back from the source file, which an installed
    package ships beside its bytecode.
    """
    doc = inspect.getdoc(func)
    if doc is None and sys.flags.optimize >= 2:
        doc = _source_docstring(func)
    return doc or ""


def _source_docstring(func: Callable) -> str | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):  # no source shipped (a frozen app): no help
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return None
    return ast.get_docstring(node)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (default: CUDA when present), cpu, cuda or cuda:N",
    )


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def add_model(
    p: argparse.ArgumentParser, task: str, default: str | None = None, required: bool = False
) -> None:
    """--model NAME|PATH: a registry name (`convlens models`) or a weights file."""
    shown = f" (default {default})" if default else ""
    p.add_argument(
        "--model",
        default=default,
        required=required,
        metavar="NAME|PATH",
        help=f"{task} from `convlens models`, or a weights file{shown}",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --quiet or --json (stdout then carries results, stderr stays calm)."""
    return not getattr(args, "quiet", False) and not getattr(args, "json", False)


# -- checks before work starts -----------------------------------------------------------------


def usage_error(parser: argparse.ArgumentParser | None, message: str) -> None:
    """A usage error (exit 2) for problems argparse cannot see, e.g. between two options."""
    if parser is not None:
        parser.error(message)
    print(f"convlens: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_outputs(
    outputs: Iterable[str | os.PathLike | None],
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    overwrite: bool = True,
) -> None:
    """Refuse, before any work, an output that is an input, a folder, or can't be written.

    Raises ConvlensError naming the path. The check creates nothing: a missing folder is an
    error, not made for the user.
    """
    ins = {_same_key(p) for p in inputs if p is not None}
    for out in outputs:
        if out is None:
            continue
        path = Path(out)
        if _same_key(path) in ins:
            raise ConvlensError(f"{path}: is also an input; refusing to write over it")
        if path.is_dir():
            raise ConvlensError(f"{path}: is a folder; give a file name")
        if path.exists() and not overwrite:
            raise ConvlensError(f"{path}: already exists; refusing to write over it")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ConvlensError(f"{folder}: no such folder for {path.name}")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConvlensError(f"{path}: not writable")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConvlensError(f"{folder}: folder not writable")


def _same_key(path: str | os.PathLike) -> tuple:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return ("path", str(p.resolve()))
    return ("inode", st.st_dev, st.st_ino)
