"""`convlens faces ...`: encode photos, export the encoder, and the gallery commands.

    convlens faces encode IMG|DIR... [--detector hog|cnn|auto] [--upsample N] [--json]
    convlens faces export-onnx OUT.onnx [--model NAME|PATH]

`encode` goes on past unreadable files (an "error" per file) and exits 1 if any file could
not be read, else 0; a photo with no face is not an error ("faces": []).
"""

from __future__ import annotations

import argparse
import sys

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.faces.cli_common import add_encoder, emit, encode_options, photo_arguments
from convlens.faces.gallery_cli import report_failure
from convlens.faces.pipeline import MAX_JITTER


def register(subparsers) -> None:
    sub = opt.add_group(subparsers, "faces", help="face encoding, verification and recognition")

    p = opt.add_command(sub, "encode", cmd_encode)
    p.add_argument("images", nargs="+", metavar="IMG", help="photos, or folders of photos")
    add_encoder(p, batch=True)
    min_face_help = (
        "detect on big photos at the lowest resolution that still finds faces this fraction "
        "of the shorter side (0 < FRACTION ≤ 1, e.g. 0.1; default: full resolution)"
    )
    p.add_argument(
        "--min-face",
        type=opt.float_range(0, 1, lo_open=True),
        default=None,
        metavar="FRACTION",
        help=min_face_help,
    )
    p.add_argument("--landmarks", type=int, choices=[5, 68], default=5)
    p.add_argument(
        "--jitter",
        type=opt.int_range(0, MAX_JITTER),
        default=0,
        help=f"average N jittered copies (0..{MAX_JITTER}; each costs one more forward pass)",
    )
    opt.add_json(p)
    opt.add_quiet(p)

    p = opt.add_command(sub, "export-onnx", cmd_export_onnx)
    p.add_argument("output", type=opt.output_file(".onnx"), metavar="OUT.onnx")
    opt.add_model(p, "face encoder", default=None)
    opt.add_device(p)
    opt.add_json(p)

    # Gallery commands (enroll, identify, verify, ...) and learning from labelled folders.
    from convlens.faces import calibrate_cli, gallery_cli

    gallery_cli.register(sub)
    calibrate_cli.register(sub)
    from convlens.faces.video import cli as video_cli  # watch; verify --live

    video_cli.register(sub)


def cmd_encode(args: argparse.Namespace) -> int:
    """detect and encode the faces in photos"""
    from convlens import faces

    model = faces.resolve_model(args.model, args.device)
    items = photo_arguments(args.images)
    stream = faces.encode_many(
        items,
        batch_size=args.batch_size,
        landmarks=args.landmarks,
        model=model,
        jitter=args.jitter,
        min_face=args.min_face,
        progress=opt.show_progress(args) and sys.stderr.isatty(),
        **encode_options(args),
    )
    failed = 0
    width = min(max((len(str(p)) for p in items), default=5), 60)
    if not args.json:
        box = "box (x0, y0, x1, y1)"
        print(f"{'image':{width}s} {'face':>4s}  {box:28s} {'score':>6s}  embedding")
    for path, result in stream:
        if isinstance(result, ConvlensError):
            failed += 1
            report_failure(
                args, path, result, say=lambda p, e: print(f"{p!s:{width}s}    -  error: {e}")
            )
            continue
        if args.json:
            emit({"path": str(path), "faces": [f.to_json() for f in result], "error": None})
            continue
        if not result:
            print(f"{str(path):{width}s}    0  no face found")
        for i, f in enumerate(result):
            head = " ".join(f"{v:+.3f}" for v in f.embedding[:4])
            name = str(path) if i == 0 else ""
            box = ", ".join(str(v) for v in f.box)
            print(f"{name:{width}s} {i + 1:4d}  ({box}){'':{max(0, 26 - len(box))}s} "
                  f"{f.score:6.2f}  [{head} ...] ({len(f.embedding)}-d)")  # fmt: skip
        sys.stdout.flush()
    return 1 if failed else 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """export the face encoder to ONNX"""
    from convlens import faces
    from convlens.models import registry
    from convlens.models.onnx_export import export_onnx

    # A model file is an input: never write the export over it.
    model_file = args.model if args.model and registry.looks_like_path(args.model) else None
    opt.check_outputs([args.output], [model_file])
    model = faces.resolve_model(args.model, args.device)
    export_onnx(model, args.output, chip_size=faces.encoder_extras(model)["chip_size"])
    if args.json:
        emit({"output": str(args.output), "model_id": str(getattr(model, "model_id", ""))})
    else:
        print(f"wrote {args.output}")
    return 0
