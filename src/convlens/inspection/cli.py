"""`convlens inspect layers|units`: list a network's layers; grid of each unit's top patches."""

from __future__ import annotations

import argparse

from convlens.errors import ConvlensError
from convlens.inspection.models import MODELS


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use 224 or 224x192") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use 224 or 224x192")
    return (parts[0], parts[-1])


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "inspect",
        help="look inside a ConvNet: layers, and the image patches that excite units most",
        description="Look inside a ConvNet (Zeiler & Fergus): for units of a layer, the image "
        "patches (receptive-field boxes) that excite them most over a folder of images.",
    )
    sub = group.add_subparsers(dest="inspect_command", metavar="COMMAND", required=True)
    models = ", ".join(MODELS)

    p = sub.add_parser(
        "layers",
        help="list named layers with output shape and receptive field",
        description="Named layers of a network, with output shape and receptive field "
        "(size and stride in input pixels) for the given input size.",
    )
    p.add_argument("--model", required=True, help=f"network: {models}")
    p.add_argument("--weights", help="weights file instead of the model's pretrained default")
    p.add_argument("--input-size", type=_size, help="input H[xW] (default: the model's own)")
    p.set_defaults(func=_layers)

    p = sub.add_parser(
        "units",
        help="grid of each unit's top image patches",
        description="One streaming pass over the images; for each unit, the patches of its "
        "top activations, one grid PNG per layer plus a JSON with the same data.",
    )
    p.add_argument("--model", required=True, help=f"network: {models}")
    p.add_argument(
        "--weights",
        help="weights file instead of the model's pretrained default (face: a trained encoder)",
    )
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        help="layer name from `convlens inspect layers` (repeat for several)",
    )
    p.add_argument(
        "--images",
        action="append",
        required=True,
        help="folder of images, searched recursively (repeat for several)",
    )
    p.add_argument("--units", default="0:16", help="units: 0:16, 3,7,12 or all (default 0:16)")
    p.add_argument("--top", type=int, default=9, help="patches per unit (default 9)")
    p.add_argument(
        "--gradient", action="store_true", help="add the patches weighted by |d unit / d input|"
    )
    p.add_argument("--per-position", action="store_true", help="allow several patches per image")
    p.add_argument("--input-size", type=_size, help="input H[xW] (default: the model's own)")
    p.add_argument("--patch", type=int, default=64, help="patch size in the grid (default 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("-o", "--output", required=True, help="grid PNG (one per layer if several)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_units)


def _layers(args) -> int:
    from convlens.inspection import format_layers, list_layers, resolve_model

    model, spec, _ = resolve_model(args.model, args.input_size, weights=args.weights)
    print(format_layers(list_layers(model, spec.size), spec.size))
    return 0


def _units(args) -> int:
    from convlens.inspection import inspect_units

    if args.patch < 8:
        raise ConvlensError(f"--patch must be at least 8 pixels (got {args.patch})")
    from convlens.inspection.units import resolve_sources

    images = [p for folder in args.images for p in resolve_sources(folder)]
    report = inspect_units(
        args.model,
        images,
        args.layer,
        args.units,
        args.top,
        input_size=args.input_size,
        weights=args.weights,
        gradient=args.gradient,
        out=args.output,
        patch=args.patch,
        batch_size=args.batch_size,
        device=args.device,
        per_image=not args.per_position,
        progress=not args.quiet,
    )
    r = report.result
    print(
        f"{r.images} images, {r.items} network inputs in {r.seconds:.1f} s "
        f"({r.items / max(r.seconds, 1e-9):.1f} inputs/s)"
        + (f"; {len(r.skipped)} skipped" if r.skipped else "")
    )
    for layer, path in report.paths.items():
        top = r.layers[layer]
        dead = top.dead
        note = f"; {len(dead)} of {len(top.units)} units never active: {dead}" if dead else ""
        print(f"{layer}: field {report.fields[layer].describe()} -> {path}{note}")
    print(f"data: {report.json_path}")
    return 0
