"""`convlens` command line: one subcommand group per capability, errors as one line.

Every group follows convlens.cli_options (the shared flags, validation before work, output
checks). Exit status: 0 success, 1 a documented negative answer or some items failed,
2 a usage or input error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from convlens.errors import ConvlensError

# Subcommand groups; each module has `register(subparsers) -> None`, which declares its group and
# commands with cli_options.add_group / add_command (they set `func`).
GROUPS = {
    "faces": "convlens.faces.cli",
    "train": "convlens.train.cli",
    "style": "convlens.style.cli",
    "stylize": "convlens.style.fast_cli",
    "inspect": "convlens.inspection.cli",
    "models": "convlens.models.cli",
    "serve": "convlens.service.serve_cli",
    "keys": "convlens.service.keys_cli",
    "texture": "convlens.texture_cli",
    "voices": "convlens.audio.voices_cli",
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


def _quiet_broken_pipe() -> None:
    # `convlens faces people | head -1`: the reader left; stop quietly, as cat does.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()
    except ConvlensError as e:
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except MemoryError:
        print("convlens: error: out of memory", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
