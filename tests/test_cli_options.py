"""cli_options.add_command: a command's help is the docstring of the function that runs it."""

from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

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


def test_inspect_needs_a_model_before_any_work():
    # --model is required by argparse itself: the usage error names it, exit 2
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        build_parser().parse_args(["inspect", "layers"])
    assert e.value.code == 2
    assert "the following arguments are required: --model" in err.getvalue()
