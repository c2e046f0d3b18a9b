"""`convlens inspect layers|units`: list a network's layers; grid of each unit's top patches.

Thin shells over convlens.inspection, following convlens.cli_options: every option checked
with its limits by argparse, outputs checked writable (and not an input) before any work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from contextlib import contextmanager
from pathlib import Path

from convlens import cli_options as opts
from convlens.errors import ConvlensError

# Each side of --input-size: the layer analysis holds every layer's output for one input at
# once, and the scan a batch of them; 2048 keeps VGG19's analysis to a few GB.
MAX_SIDE = 2048
_side = opts.int_range(1, MAX_SIDE)


def _size(text: str) -> tuple[int, int]:
    """224 or 224x192, each side 1..MAX_SIDE."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use 224 or 224x192")
    sides = [_side(p) for p in parts]
    return (sides[0], sides[-1])


_size.__name__ = "size"


def _units(text: str):
    from convlens.inspection import parse_unit_spec

    try:
        return parse_unit_spec(text)
    except ConvlensError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_units.__name__ = "units"


def _add_network(p: argparse.ArgumentParser) -> None:
    opts.add_model(
        p,
        "inspectable network (e.g. face, efficientnet-lite0) or face encoder file",
        required=True,
    )
    p.add_argument(
        "--weights",
        type=opts.existing_path("file"),
        help="weights file instead of the model's pretrained default (face: a trained encoder)",
    )
    p.add_argument(
        "--input-size",
        type=_size,
        help=f"input H[xW], each side at most {MAX_SIDE} (default: the model's own)",
    )
    opts.add_device(p)


def register(subparsers) -> None:
    """Look inside a ConvNet (Zeiler & Fergus): for units of a layer, the image patches
    (receptive-field boxes) that excite them most over a folder of images."""
    sub = opts.add_group(
        subparsers,
        "inspect",
        help="look inside a ConvNet: layers, and the image patches that excite units most",
        description=opts.docstring(register),  # what `convlens inspect --help` says
    )
    _register_layers(sub)
    _register_units(sub)
    from convlens.volumes.inspect_cli import register_volume_units

    register_volume_units(sub)  # the same question on a 3-D volume


def _register_layers(sub) -> None:
    p = opts.add_command(sub, "layers", _layers)
    _add_network(p)
    opts.add_json(p)


def _register_units(sub) -> None:
    p = opts.add_command(sub, "units", _units_command)
    _add_network(p)
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
        type=opts.existing_path("any"),
        help="folder of images (searched recursively) or one image file; repeat for several",
    )
    p.add_argument(
        "--units", type=_units, default="0:16", help="units: 0:16, 3,7,12 or all (default 0:16)"
    )
    p.add_argument(
        "--gradient", action="store_true", help="add the patches weighted by |d unit / d input|"
    )
    p.add_argument("--per-position", action="store_true", help="allow several patches per image")
    # The scan's whole numbers: patches kept per unit, their size in the grid, inputs per batch.
    for flag, limits, default, text in (
        ("--top", (1, 100), 9, "patches per unit, 1..100 (default 9)"),
        ("--patch", (8, 512), 64, "patch size in the grid, 8..512 pixels (default 64)"),
        ("--batch-size", (1, 4096), 32, "1..4096 (default 32)"),
    ):
        p.add_argument(flag, type=opts.int_range(*limits), default=default, help=text)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=opts.output_file(),
        help="grid PNG (grid-<layer>.png for each of several layers; the JSON beside it)",
    )
    opts.add_quiet(p)
    opts.add_json(p)


def _refuse_volumes(args) -> None:
    """A 3-D network or a volume file here gets a pointer to `inspect volume-units`: this scan
    streams folders of images (views, flips, faces, one patch per image), the volume scan
    takes its top places spread over one volume; they share the receptive-field tracer and
    the unit syntax, not the image pipeline."""
    from convlens.models import registry
    from convlens.volumes.io import VOLUME_SUFFIXES

    hint = "use `convlens inspect volume-units VOLUME --layer L -o OUT.png`"
    if not registry.looks_like_path(args.model):
        with contextlib.suppress(ConvlensError):
            if "volume-backbone" in registry.get(args.model).tasks:
                raise ConvlensError(f"{args.model} is a 3-D network: {hint}")
    for path in args.images:
        if str(path).lower().endswith(VOLUME_SUFFIXES):
            raise ConvlensError(f"{path}: a volume, not images: {hint}")


def _layers(args) -> int:
    """list named layers with output shape and receptive field

    Named layers of a network, with output shape and receptive field (size and stride in
    input pixels) for the given input size."""
    from convlens.inspection import format_layers, layers_json, list_layers, resolve_model
    from convlens.models.devices import resolve_device

    device = resolve_device(args.device)
    model, spec, _ = resolve_model(args.model, args.input_size, weights=args.weights)
    layers = list_layers(model, spec.size, device=device)
    if args.json:
        for record in layers_json(layers, spec.size):
            print(json.dumps(record))
    else:
        print(format_layers(layers, spec.size))
    return 0


@contextmanager
def _progress_bar(args, total: int):
    """A ScanProgress subscriber drawing the rich bar; None with --quiet or --json."""
    if not opts.show_progress(args):
        yield None
        return
    from convlens.progress import ProgressBar

    with ProgressBar("inspect", total=total, unit="img") as bar:
        shown = [0]

        def update(event) -> None:
            bar.advance(event.images_done - shown[0], info=f"{event.inputs} inputs")
            shown[0] = event.images_done

        yield update


def _units_command(args) -> int:
    """grid of each unit's top image patches

    One streaming pass over the images; for each unit, the patches of its top activations,
    one grid PNG per layer plus a JSON with the same data."""
    from convlens.inspection import inspect_units
    from convlens.inspection.inputs import resolve_sources
    from convlens.inspection.render import output_paths
    from convlens.models import registry
    from convlens.models.devices import resolve_device

    _refuse_volumes(args)
    device = resolve_device(args.device)
    images = [p for folder in args.images for p in resolve_sources(folder)]
    grids, data = output_paths(args.output, args.layer)
    model_file = Path(args.model) if registry.looks_like_path(args.model) else None
    # -o itself too: a folder given as -o is refused, not turned into "<folder>.png" beside it.
    outputs = [args.output, *grids.values(), data]
    opts.check_outputs(outputs, [*images, model_file, args.weights])
    with _progress_bar(args, len(images)) as callback:
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
            device=device,
            per_image=not args.per_position,
            callback=callback,
        )
    _print_summary(report, args.json)
    return 0


def _print_summary(report, as_json: bool) -> None:
    r = report.result
    if as_json:
        layers = {
            layer: {
                "grid": str(path),
                "field": report.fields[layer].describe(),
                "units": len(r.layers[layer].units),
                "dead_units": r.layers[layer].dead,
            }
            for layer, path in report.paths.items()
        }
        summary = {"images": r.images, "inputs": r.items, "skipped": len(r.skipped),
                   "seconds": round(r.seconds, 3), "layers": layers,
                   "data": str(report.json_path)}  # fmt: skip
        print(json.dumps({"model": report.data["model"], **summary}))
        return
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
