"""`convlens keys create|list|revoke`: the service's API keys (shown once, stored hashed)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convlens import cli_options as opt
from convlens.service.keys import SCOPES


def register(subparsers) -> None:
    sub = opt.add_group(subparsers, "keys", help="API keys for `convlens serve`")

    c = opt.add_command(sub, "create", cmd_create)
    c.add_argument("--name", required=True, help="who or what the key is for")
    c.add_argument(
        "--scope",
        choices=SCOPES,
        required=True,
        help="read < recognize < enroll < admin (each allows the ones before)",
    )

    ls = opt.add_command(sub, "list", cmd_list)

    r = opt.add_command(sub, "revoke", cmd_revoke)
    r.add_argument("key", help="key id (as `keys list` shows) or name")

    for q in (c, ls, r):
        q.add_argument(
            "--keys",
            type=Path,
            default=None,
            help="key file (default: $CONVLENS_KEYS or the user data dir's keys.db)",
        )
        opt.add_json(q)


def _store(args: argparse.Namespace):
    from convlens.service.config import default_keys_path
    from convlens.service.keys import KeyStore

    return KeyStore(args.keys or default_keys_path())


def cmd_create(args: argparse.Namespace) -> int:
    """create a key and print it (once: only a hash is kept)"""
    record, key = _store(args).create(args.name, args.scope)
    if args.json:
        print(json.dumps({**record.to_json(), "key": key}))
    else:
        print(key)
        print(
            f"key {record.id} ({record.scope}) for {record.name!r}: shown once, store it now",
            file=sys.stderr,
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """keys with scope, creation and revocation (no secrets)"""
    for k in _store(args).list():
        if args.json:
            print(json.dumps(k.to_json()))
        else:
            state = f"revoked {k.revoked}" if k.revoked else "live"
            print(f"{k.id}  {k.scope:9s} {k.created}  {state:30s} {k.name}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """revoke a key by id, or every live key with a name"""
    for k in _store(args).revoke(args.key):
        print(json.dumps(k.to_json()) if args.json else f"revoked {k.id} ({k.name})")
    return 0
