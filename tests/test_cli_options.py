"""cli_options.add_command: a command's help is the docstring of the function that runs it."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import convlens
from convlens.cli import build_parser
from convlens.cli_options import add_command


def _run(args: argparse.Namespace) -> int:
    """do the thing

    The long story: what the command
    reads and writes."""
    return 0


def test_docstring_is_the_help_line_and_the_description():
    parser = argparse.ArgumentParser(prog="x")
    p = add_command(parser.add_subparsers(dest="command"), "thing", _run)
    assert re.search(r"thing\s+do the thing\n", parser.format_help())
    assert "The long story: what the command reads and writes." in p.format_help()
    assert "do the thing" not in p.format_help()  # the summary is the list's, not --help's
    assert parser.parse_args(["thing"]).func is _run


def test_a_command_without_a_docstring_is_listed_by_name_only():
    def bare(args: argparse.Namespace) -> int:
        return 0

    parser = argparse.ArgumentParser(prog="x")
    p = add_command(parser.add_subparsers(dest="command", metavar="COMMAND"), "bare", bare)
    assert re.search(r"\n\s+bare\n", parser.format_help())
    assert p.description is None


# The root list, a group described by its register() docstring, and commands that share one
# run function through a small function each (train triplet|siamese, voices people|forget).
_HELPS = """
from convlens.cli import build_parser
root = build_parser()
groups = root._subparsers._group_actions[0].choices
print(root.format_help(), groups["voices"].format_help(), groups["train"].format_help())
"""


def test_help_survives_python_OO():
    # -OO compiles docstrings away: without the fallback to the source every command's help
    # line and every docstring description vanished, silently.
    env = {**os.environ, "COLUMNS": "100", "PYTHONDONTWRITEBYTECODE": "1"}
    here = str(Path(convlens.__file__).parents[1])  # the convlens these tests import
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))

    def helps(*flags: str) -> str:
        argv = [sys.executable, *flags, "-c", _HELPS]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout

    plain, stripped = helps(), helps("-OO")
    assert "list the speakers" in plain and "Enrol speakers from speech clips" in plain
    assert stripped == plain


def test_inspect_needs_a_model_before_any_work():
    # --model is required by argparse itself: the usage error names it, exit 2
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        build_parser().parse_args(["inspect", "layers"])
    assert e.value.code == 2
    assert "the following arguments are required: --model" in err.getvalue()
