"""`convlens serve`: the HTTP service and its web page (thin shell over service.app)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from convlens import cli_options as opt


def register(subparsers) -> None:
    p = opt.add_command(subparsers, "serve", cmd_serve)
    p.add_argument(
        "--db",
        default=None,
        help="gallery file or postgresql://user@host/db URL "
        "(default: $CONVLENS_DB or the user data dir's gallery.db)",
    )
    p.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="API key file (default: $CONVLENS_KEYS or the user data dir's keys.db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=opt.int_range(0, 65535),
        default=8000,
        help="port (default 8000; 0 picks a free one and prints it)",
    )
    p.add_argument(
        "--workers", type=opt.int_range(1, 64), default=1, help="encoder worker threads (default 1)"
    )
    p.add_argument(
        "--queue",
        type=opt.int_range(0, 10_000),
        default=8,
        help="requests that may wait for a worker; more get 503 (default 8)",
    )
    p.add_argument(
        "--max-body-mb",
        type=opt.float_range(0.01, 1024),
        default=10.0,
        help="request body limit in MB (default 10)",
    )
    p.add_argument(
        "--max-megapixels",
        type=opt.float_range(0.01, 100),
        default=40.0,
        help="pixels per image, read before decoding (default 40)",
    )
    p.add_argument(
        "--max-clip-mb",
        type=opt.float_range(0.01, 1024),
        default=8.0,
        help="liveness clip size limit in MB (default 8; the body limit applies too)",
    )
    p.add_argument(
        "--max-clip-seconds",
        type=opt.float_range(0.1, 600),
        default=10.0,
        help="liveness clip duration limit, read before decoding (default 10)",
    )
    p.add_argument(
        "--max-clip-frames",
        type=opt.int_range(1, 100_000),
        default=300,
        help="liveness clip frame limit, read before decoding (default 300)",
    )
    p.add_argument(
        "--max-clip-megapixels",
        type=opt.float_range(0.01, 40),
        default=2.1,
        help="pixels per clip frame, read before decoding (default 2.1: 1920x1088)",
    )
    p.add_argument(
        "--rate",
        type=opt.float_range(0, 1e6),
        default=20.0,
        help="requests per second per key (default 20; 0: no limit)",
    )
    p.add_argument(
        "--burst",
        type=opt.int_range(1, 1_000_000),
        default=40,
        help="requests a key may send at once before --rate applies (default 40)",
    )
    p.add_argument(
        "--timeout",
        type=opt.float_range(0.1, 600),
        default=10.0,
        help="seconds a client may take to send headers, or between body pieces (default 10)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; none by default)",
    )
    opt.add_model(p, "face encoder", default=None)
    opt.add_device(p)


def config_from(args: argparse.Namespace):
    from convlens.faces.cli_common import default_db
    from convlens.service.config import ServiceConfig, default_keys_path

    return ServiceConfig(
        db=args.db or default_db(),
        keys=args.keys or default_keys_path(),
        model=args.model,
        device=None if args.device == "auto" else args.device,
        workers=args.workers,
        queue=args.queue,
        max_body=int(args.max_body_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1_000_000),
        clip_max_bytes=int(args.max_clip_mb * 1024 * 1024),
        clip_max_seconds=args.max_clip_seconds,
        clip_max_frames=args.max_clip_frames,
        clip_max_pixels=int(args.max_clip_megapixels * 1_000_000),
        rate=args.rate,
        burst=args.burst,
        header_timeout=args.timeout,
        body_timeout=args.timeout,
        cors_origins=tuple(args.cors_origin),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """face recognition and style transfer over HTTP, with API keys and a web page

    Serve the gallery over HTTP: REST API under /api/v1 (OpenAPI at /docs), the web page at
    /app/. Every endpoint but /health needs an API key (`convlens keys create`)."""
    import uvicorn

    from convlens.service.app import create_app
    from convlens.service.guard import guarded_protocol

    config = config_from(args)
    app = create_app(config)
    # Fail now, not on the first request: the gallery opens and holds this encoder's work.
    app.state.service.open_gallery().close()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            http=guarded_protocol(config.header_timeout),
            access_log=False,  # RequestGuard logs instead, without query strings
            log_level="info",
            timeout_keep_alive=5,
            limit_concurrency=1000,
        )
    )
    announce(server, config)
    server.run()
    return 0


def announce(server, config) -> None:
    """Print the address once the socket is bound (with --port 0, the port chosen)."""
    started = server.startup

    async def startup(sockets=None):
        await started(sockets)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                print(
                    f"convlens serve: http://{host}:{port}/app/ (gallery {_shown(config.db)})",
                    file=sys.stderr,
                    flush=True,
                )

    server.startup = startup


def _shown(db) -> str:
    """The gallery for the log: a database URL without its password."""
    from convlens.faces.gallery.postgres import is_database_url, shown_url

    return shown_url(db) if is_database_url(db) else os.fspath(db)
