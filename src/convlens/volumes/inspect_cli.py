"""`convlens inspect volume-units VOLUME --layer L -o OUT.png`: the top sub-volumes of units
of a 3-D network (default vgg19-3d, VGG19 inflated), with exact 3-D receptive fields, drawn
as orthogonal slice triplets. A subcommand of `inspect` (registered by inspection/cli.py);
the image command `inspect units` scans folders of images, this one scans one volume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convlens import cli_options as opts
from convlens.errors import ConvlensError

MAX_SIDE = 256


def shape_arg(text: str) -> tuple[int, int, int]:
    """D,H,W: the volume is resampled to this shape before the network (each 8..256)."""
    parts = text.replace("x", ",").split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: use D,H,W such as 36,64,64")
    side = opts.int_range(8, MAX_SIDE)
    return tuple(side(p) for p in parts)  # type: ignore[return-value]


shape_arg.__name__ = "shape"


def window_arg(text: str) -> tuple[float, float]:
    """LO,HI: two finite numbers, LO < HI."""
    values = opts.number_list()(text)
    if len(values) != 2 or not values[0] < values[1]:
        raise argparse.ArgumentTypeError(f"bad window {text!r}: give LO,HI with LO < HI")
    return values[0], values[1]


window_arg.__name__ = "window"


def add_volume_options(p: argparse.ArgumentParser, what: str, shape: tuple[int, int, int]) -> None:
    """--shape and --window: how a volume file becomes a network input (prepare_volume)."""
    shown = ",".join(str(side) for side in shape)
    p.add_argument(
        "--shape",
        type=shape_arg,
        default=shape,
        help=f"resample the {what} to D,H,W first ({shown})",
    )
    p.add_argument(
        "--window",
        type=window_arg,
        default=None,
        help="LO,HI values mapped to 0..1 (default: CT -1000,1500 HU when the volume holds "
        "negative values, else its 1st..99th percentile)",
    )


def register_volume_units(sub) -> None:
    p = opts.add_command(sub, "volume-units", _run)
    p.add_argument("volume", metavar="VOLUME", type=opts.existing_path("any"))
    p.add_argument("--layer", default="features.relu2_1", help="layer (features.relu2_1)")
    p.add_argument("--units", default="0:8", help="units: 0:8 (default), 3,5,9 or all")
    p.add_argument("--top", type=opts.int_range(1, 64), default=9, help="places per unit (9)")
    add_volume_options(p, "volume", (36, 64, 64))
    p.add_argument("-o", "--output", required=True, type=Path, help="picture (.png)")
    opts.add_json(p)


def _run(args: argparse.Namespace) -> int:
    """top sub-volumes of units of a 3-D network, as orthogonal slice triplets

    Run a 3-D network (default vgg19-3d: VGG19 inflated) over one volume
    (.npy/.npz/.nii/.nii.gz/DICOM); for each unit of LAYER, its strongest places with their
    exact 3-D receptive fields, drawn as slice triplets."""
    from convlens.inspection import parse_unit_spec
    from convlens.models import registry
    from convlens.volumes import prepare_volume
    from convlens.volumes.units import render_units, volume_units

    if args.output.suffix.lower() != ".png":
        raise ConvlensError(f"{args.output}: the picture must be a .png")
    opts.check_outputs([args.output], [args.volume])
    spec = parse_unit_spec(args.units)
    volume = prepare_volume(args.volume, args.shape, args.window)
    model = registry.get("vgg19-3d", task="volume-backbone").load()
    result = volume_units(model, volume, args.layer, units=spec, top=args.top)
    render_units(result, args.output)
    rows = [{"unit": u.unit, "values": u.values, "bounds": u.bounds} for u in result.units]
    if args.json:
        print(json.dumps({"layer": result.layer, "field": result.field, "units": rows}))
    else:
        print(f"{result.layer}: field {result.field}; wrote {args.output}")
    return 0
