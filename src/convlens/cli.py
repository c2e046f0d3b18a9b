"""`convlens` command line: one subcommand group per capability, errors as one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from convlens.errors import ConvlensError

# Subcommand groups; each module has `register(subparsers) -> None` and sets `func` on its parsers.
GROUPS = {
    "faces": "convlens.faces.cli",
    "train": "convlens.train.cli",
    "style": "convlens.style.cli",
    "inspect": "convlens.inspect.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlens",
        description="Face verification and recognition, neural style transfer, ConvNet inspection.",
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for module_name in GROUPS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # capability not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ConvlensError as e:
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
