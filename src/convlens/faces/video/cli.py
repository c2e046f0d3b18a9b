"""`convlens faces watch SOURCE` and `convlens faces verify --live SOURCE --as NAME`.

    convlens faces watch door.mp4 --db staff.db            # one JSON line per track event
    convlens faces watch --camera 0 -o annotated.mp4 --challenge blink,turn-left
    convlens faces verify --live door.mp4 --as alice       # exit 0 only for live alice

Registered into the `faces` group by faces/cli.py; `verify --live` is routed here by
gallery_cli.cmd_verify. Ctrl-C stops a watch cleanly: the annotated video so far is kept,
and every open track gets its `left` event.
"""

from __future__ import annotations

import sys

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.faces.cli_common import add_db, emit, open_gallery
from convlens.faces.liveness.challenge import ACTIONS

MAX_EVERY = 1000
MAX_FRAMES = 10_000_000  # about 4.6 days at 25 fps


def _actions(text: str) -> tuple[str, ...]:
    import argparse

    names = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in names if a not in ACTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"challenge actions: comma-separated {', '.join(ACTIONS)}")
    return names


def add_stream_options(p, encoder: bool = True) -> None:
    """How a video is read and tracked (watch and verify --live)."""
    for flag, default, what in (
        ("--detect-every", 5, "run the face detector on every Nth frame"),
        ("--encode-every", 10, "encode a track at most every N frames"),
    ):
        p.add_argument(
            flag,
            type=opt.int_range(1, MAX_EVERY),
            default=default,
            metavar="N",
            help=f"{what} (default {default})",
        )
    p.add_argument(
        "--challenge",
        type=_actions,
        default=None,
        metavar="ACTIONS",
        help=f"active liveness: ask for these, in random order ({', '.join(ACTIONS)})",
    )
    p.add_argument(
        "--timeout",
        type=opt.float_range(0.1, 600),
        default=10.0,
        metavar="S",
        help="seconds to wait for a stream before giving up (default 10)",
    )
    p.add_argument("--max-frames", type=opt.int_range(1, MAX_FRAMES), default=None, metavar="N")
    if encoder:
        opt.add_model(p, "face encoder", default=None)
        opt.add_device(p)


def add_live_options(verify_parser) -> None:
    """`verify --live SOURCE`: the options verify gains (it already has the encoder's)."""
    verify_parser.add_argument(
        "--live",
        metavar="SOURCE",
        default=None,
        help="verify from this video, camera number or stream, and "
        "require a live person (exit 0 only for live NAME)",
    )
    add_stream_options(verify_parser, encoder=False)


def register(faces_subparsers) -> None:
    p = opt.add_command(faces_subparsers, "watch", cmd_watch)
    p.add_argument(
        "source", nargs="?", metavar="SOURCE", help="video file, or rtsp:// / http:// stream URL"
    )
    p.add_argument(
        "--camera",
        type=opt.int_range(0, 63),
        default=None,
        metavar="N",
        help="read webcam N instead of SOURCE",
    )
    p.add_argument(
        "-o",
        "--output",
        type=opt.output_file(".mp4", ".webm", ".mkv", ".gif"),
        default=None,
        help="write an annotated video (boxes, names, liveness)",
    )
    p.add_argument("--no-liveness", action="store_true", help="skip the liveness cues")
    add_db(p)
    add_stream_options(p)
    opt.add_quiet(p)
    opt.add_json(p)  # watch always prints JSON lines; accepted for the shared convention


def _source(args):
    if (args.source is None) == (args.camera is None):
        raise ConvlensError("give a video SOURCE or a camera number, not both or neither")
    return args.camera if args.camera is not None else args.source


def _stream_options(args) -> dict:
    """The WatchOptions that add_stream_options declares, from the parsed arguments."""
    names = ("detect_every", "encode_every", "challenge", "max_frames", "timeout")
    return {name: getattr(args, name) for name in names}


def _options(args, liveness: bool):
    from convlens.faces.video import WatchOptions

    return WatchOptions(
        liveness=liveness, model=args.model, device=args.device, **_stream_options(args)
    )


def _gallery(args):
    if args.db is None:
        from convlens.faces.cli_common import default_db

        if not default_db().exists():
            return None  # tracks and liveness without names
    return open_gallery(args)


def cmd_watch(args) -> int:
    """faces in a video: tracks, names, liveness"""
    from convlens.faces.video import Watcher

    source = _source(args)
    opt.check_outputs([args.output], [source if isinstance(source, str) else None])
    gallery = _gallery(args)
    try:
        with Watcher(source, gallery, _options(args, not args.no_liveness)) as w:
            _run(w, args)
    finally:
        if gallery is not None:
            gallery.close()
    return 0


def _run(w, args) -> None:
    from convlens.faces.video.annotate import draw
    from convlens.progress import ProgressBar
    from convlens.video import VideoWriter

    writer = VideoWriter(args.output, fps=w.fps) if args.output else None
    total = w.reader.frame_count
    show = opt.show_progress(args) and sys.stderr.isatty() and total is not None
    frames = w.frames()
    try:
        with ProgressBar("watching", total, unit="frame", disable=not show) as bar:
            for frame, tracks, events in frames:
                for e in events:
                    emit(e.to_json())
                if frame is not None:
                    if writer is not None:
                        writer.write(draw(frame.rgb, tracks))
                    bar.advance(1)
    except KeyboardInterrupt:
        # Stop cleanly: close every track (its `left` event) and keep the video so far.
        for t in list(w.tracker.tracks):
            emit(w._left(t, None).to_json())
        if writer is not None:
            writer.close()
        raise
    if writer is not None:
        writer.close()


def cmd_verify_live(args) -> int:
    """`verify --live SOURCE --as NAME`: exit 0 only for a live face that matches NAME."""
    from convlens.faces.video.live import verify_live

    source = int(args.live) if args.live.isdigit() else args.live
    if args.photo is not None:
        raise ConvlensError("give a PHOTO or --live SOURCE, not both")
    with open_gallery(args) as g:
        d = verify_live(g, source, args.name, **_stream_options(args))
    if args.json:
        emit({"source": str(source), **d.to_json()})
    else:
        live = d.liveness
        why = ", ".join(live.reasons)
        print(
            f"{source}: {'open' if d.open else 'closed'} for {d.name} (distance "
            f"{d.distance:.3f} vs τ {d.threshold:.3f}; liveness {live.verdict} "
            f"{live.score:.2f}: {why})"
        )
    return 0 if d.open else 1
