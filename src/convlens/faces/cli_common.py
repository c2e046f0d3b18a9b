"""Options shared by the `convlens faces` commands (on top of convlens.cli_options).

The gallery file is --db, else $CONVLENS_DB, else <user data dir>/convlens/gallery.db.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from convlens import cli_options as opt
from convlens.faces.detect import DEFAULT_DETECTOR, DETECTORS, MAX_UPSAMPLE
from convlens.faces.pipeline import MAX_BATCH_SIZE


def default_db() -> Path:
    env = os.environ.get("CONVLENS_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("convlens")) / "gallery.db"


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="gallery file (default: $CONVLENS_DB or the user data dir's gallery.db)",
    )


def add_encoder(p: argparse.ArgumentParser, batch: bool = False) -> None:
    """--model, --device, --detector, --upsample, --flip (and --batch-size): how photos are
    encoded, for every command that runs the face encoder."""
    opt.add_model(p, "face encoder", default=None)
    opt.add_device(p)
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default=DEFAULT_DETECTOR,
        help=f"yunet (OpenCV Zoo's YuNet, 5 landmarks), hog, cnn (dlib MMOD, slow on CPU) "
        f"or auto (HOG, then more upsampling, then the CNN); default {DEFAULT_DETECTOR}",
    )
    p.add_argument(
        "--upsample",
        type=opt.int_range(0, MAX_UPSAMPLE),
        default=1,
        help=f"upsample before detecting: finds smaller faces (default 1, at most "
        f"{MAX_UPSAMPLE}: each step doubles both sides of the searched image)",
    )
    p.add_argument("--flip", action="store_true", help="average with the mirrored face")
    if batch:
        p.add_argument(
            "--batch-size",
            type=opt.int_range(1, MAX_BATCH_SIZE),
            default=64,
            help="face chips per encoder batch (default 64)",
        )


def add_verifier(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verifier",
        type=opt.existing_path("file"),
        default=None,
        help="trained verifier (train-verifier) to score pairs instead of raw distance",
    )


def encode_options(args: argparse.Namespace) -> dict:
    """The faces.encode_many keyword arguments the options asked for."""
    opts = {"detector": args.detector, "upsample": args.upsample}
    if args.flip:
        opts["flip"] = True
    return opts


def open_gallery(args: argparse.Namespace, create: bool = False):
    from convlens.faces.gallery import Gallery

    return Gallery(
        args.db or default_db(),
        getattr(args, "model", None),
        verifier=getattr(args, "verifier", None),
        encode_options=encode_options(args) if hasattr(args, "detector") else None,
        create=create,
        device=getattr(args, "device", None),
    )


def photo_arguments(sources: list[str]) -> list:
    """Each argument a photo, or a folder standing for the images in it (sorted)."""
    from convlens.faces.pipeline import photo_items

    return [item for s in sources for item in photo_items(s)]


def emit(obj: dict) -> None:
    """One JSON object per line, flushed (a reader sees each result as it comes)."""
    print(json.dumps(obj), flush=True)
