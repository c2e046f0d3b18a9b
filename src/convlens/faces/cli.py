"""`convlens faces ...`: encode photos, export the encoder, and the gallery commands.

    convlens faces encode IMG... [--detector hog|cnn|auto] [--upsample N] [--json] [--model PATH]
    convlens faces export-onnx OUT.onnx [--model PATH]

`encode` goes on past unreadable files (an "error" per file) and exits 1 if any file could
not be read, else 0; a photo with no face is not an error ("faces": []).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convlens.errors import ConvlensError


def register(subparsers) -> None:
    group = subparsers.add_parser("faces", help="face encoding, verification and recognition")
    sub = group.add_subparsers(dest="faces_command", metavar="COMMAND", required=True)

    p = sub.add_parser("encode", help="detect and encode the faces in photos")
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--detector", choices=["hog", "cnn", "auto"], default="hog",
                   help="hog (default, fast), cnn (dlib MMOD, slower on CPU), auto "
                        "(hog, then more upsampling, then cnn)")  # fmt: skip
    p.add_argument("--upsample", type=int, default=1,
                   help="upsample before detecting: finds smaller faces (default 1)")  # fmt: skip
    min_face_help = (
        "detect on big photos at the lowest resolution that still finds faces this fraction "
        "of the shorter side (e.g. 0.1; default: full resolution)"
    )
    p.add_argument("--min-face", type=float, default=None, metavar="FRACTION", help=min_face_help)
    p.add_argument("--landmarks", type=int, choices=[5, 68], default=5)
    p.add_argument("--model", default=None, help="encoder file (.dat or .pt; default dlib ResNet)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--flip", action="store_true", help="average with the mirrored face")
    p.add_argument("--jitter", type=int, default=0, help="average N jittered copies")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("export-onnx", help="export the face encoder to ONNX")
    p.add_argument("output", type=Path, metavar="OUT.onnx")
    p.add_argument("--model", default=None, help="encoder file (default dlib ResNet)")
    p.set_defaults(func=cmd_export_onnx)

    # Gallery commands (enroll, identify, verify, ...) live in their own module.
    try:
        from convlens.faces import gallery_cli
    except ModuleNotFoundError as e:
        if e.name != "convlens.faces.gallery_cli":
            raise
    else:
        gallery_cli.register(sub)


def cmd_encode(args: argparse.Namespace) -> int:
    from convlens import faces

    model = faces.resolve_model(args.model, args.device)
    stream = faces.encode_many(
        args.images,
        batch_size=args.batch_size,
        detector=args.detector,
        upsample=args.upsample,
        landmarks=args.landmarks,
        model=model,
        flip=args.flip,
        jitter=args.jitter,
        min_face=args.min_face,
        progress=not args.json and sys.stderr.isatty(),
    )
    failed = 0
    width = min(max(len(str(p)) for p in args.images), 60)
    if not args.json:
        box = "box (x0, y0, x1, y1)"
        print(f"{'image':{width}s} {'face':>4s}  {box:28s} {'score':>6s}  embedding")
    for path, result in stream:
        if isinstance(result, ConvlensError):
            failed += 1
            if args.json:
                print(json.dumps({"path": str(path), "faces": [], "error": str(result)}))
            else:
                print(f"{str(path):{width}s}    -  error: {result}")
            continue
        if args.json:
            found = [f.to_json() for f in result]
            print(json.dumps({"path": str(path), "faces": found, "error": None}))
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
    from convlens.models.face_models import load_face_model
    from convlens.models.onnx_export import export_onnx

    model = load_face_model(args.model)
    export_onnx(model, args.output)
    print(f"wrote {args.output}")
    return 0
