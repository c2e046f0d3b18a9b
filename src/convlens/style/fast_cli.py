"""`convlens stylize` and `convlens stylize-train`: feed-forward style transfer.

    convlens stylize photo.jpg starry_night.jpg -o out.png [--strength 0.7] [--size 1024]
    convlens stylize photos/ wave.jpg scream.jpg --style-weights 0.7,0.3 -o painted/
    convlens stylize clip.mp4 starry_night.jpg -o clip_starry.mp4 [--smooth 0.7]
    convlens stylize-train starry_night.jpg --photos photos/ -o starry.pt
    convlens stylize photo.jpg starry.pt -o out.png          # the trained network

Two top-level commands rather than `convlens style fast ...`: `convlens style CONTENT
STYLE...` takes a photo as its first word, so a `fast` subcommand there would be a photo
named "fast" or a guess; separate commands keep both parsers plain argparse, and each is
fuzzed like every other command.
"""

from __future__ import annotations

import json
from pathlib import Path

from convlens import cli_options
from convlens.errors import ConvlensError
from convlens.style.options import IMAGE_SUFFIXES

VIDEO_OUT = (".mp4", ".webm", ".mkv", ".gif")


def register(subparsers) -> None:
    p = cli_options.add_command(subparsers, "stylize", run)
    p.add_argument("photo", type=cli_options.existing_path("any"), help="image, folder or video")
    p.add_argument("style", nargs="+", type=cli_options.existing_path("file"),
                   help="painting(s), or a trained .pt network")  # fmt: skip
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="image (.png/.jpg), folder for a folder of photos, or video")  # fmt: skip
    p.add_argument("--strength", type=cli_options.float_range(0, 1), default=1.0,
                   help="0: the photo's own style, 1: the painting (default 1)")  # fmt: skip
    p.add_argument("--size", type=cli_options.int_range(32, 8192), default=512,
                   help="long side of the output, px (default 512; range [32, 8192])")  # fmt: skip
    p.add_argument("--style-weights", type=cli_options.number_list(0, 1e6),
                   help="blend weights, one per painting")  # fmt: skip
    p.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    p.add_argument("--smooth", type=cli_options.float_range(0, 1, hi_open=True), default=0.7,
                   help="video: temporal stabilisation in [0, 1) (default 0.7; 0 off)")  # fmt: skip
    p.add_argument("--flow", action="store_true",
                   help="video: warp the previous output by optical flow, then blend")  # fmt: skip
    p.add_argument("--max-frames", type=cli_options.int_range(1, 10**7), help="video: stop after")
    p.add_argument("--batch", type=cli_options.int_range(1, 64), default=4,
                   help="photos per network pass (default 4)")  # fmt: skip
    cli_options.add_device(p)
    cli_options.add_quiet(p)
    cli_options.add_json(p)

    t = cli_options.add_command(subparsers, "stylize-train", run_train)
    t.add_argument("style", type=cli_options.existing_path("file"), help="the painting")
    t.add_argument("--photos", dest="folder", required=True, type=cli_options.existing_path("dir"),
                   help="folder of photos to crop (recursively)")  # fmt: skip
    t.add_argument("-o", "--output", required=True, type=cli_options.output_file(".pt"))
    t.add_argument("--steps", type=cli_options.int_range(1, 10**6), default=400)
    t.add_argument("--batch", type=cli_options.int_range(1, 256), default=4)
    t.add_argument("--crop", type=cli_options.int_range(32, 2048), default=192)
    t.add_argument("--width", type=cli_options.int_range(4, 128), default=16)
    t.add_argument("--lr", type=cli_options.float_range(0, 1, lo_open=True), default=1e-3)
    t.add_argument("--style-weight", type=cli_options.float_range(0, 1e9), default=4.0)
    t.add_argument("--tv", type=cli_options.float_range(0, 1e9), default=10.0)
    t.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    t.add_argument("--threads", type=cli_options.int_range(1, 1024))
    cli_options.add_quiet(t)
    cli_options.add_json(t)


def _kind(path: Path) -> str:
    from convlens.video import is_video

    return "folder" if path.is_dir() else "video" if is_video(path) else "image"


def _outputs(args, kind: str) -> list[Path] | None:
    """Check the output before work; for a folder of photos, the output file per photo."""
    out = args.output
    if kind == "folder":
        if out.exists() and not out.is_dir():
            raise ConvlensError(f"{out}: exists and is not a folder")
        if not out.parent.is_dir():
            raise ConvlensError(f"{out.parent}: no such folder for {out.name}")
        photos = sorted(p for p in args.photo.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise ConvlensError(f"{args.photo}: no images in it")
        return photos
    allowed = VIDEO_OUT if kind == "video" else IMAGE_SUFFIXES
    if out.suffix.lower() not in allowed:
        raise ConvlensError(f"{out}: the output of a {kind} must end in {' or '.join(allowed)}")
    cli_options.check_outputs([out], [args.photo, *args.style])
    return None


def run(args) -> int:
    """fast style transfer: any painting in one network pass (photos, folders, video)

    Paint PHOTO (an image, a folder of images, or a video) with STYLE: one or more
    paintings (Magenta's arbitrary-style networks, Ghiasi et al. 2017), or one network trained
    by `convlens stylize-train` (a .pt file)."""
    from convlens.style.fast import FastStylizer

    kind = _kind(args.photo)
    photos = _outputs(args, kind)
    johnson = any(s.suffix == ".pt" for s in args.style)
    if johnson and len(args.style) > 1:
        raise ConvlensError("a trained network (.pt) paints its own style: give it alone")
    network, styles = (args.style[0], []) if johnson else (None, args.style)
    if kind != "video":  # a video is opened (and refused) before the networks load
        st = FastStylizer(network, device=args.device)
    common = dict(strength=args.strength, size=args.size, preserve_colors=args.preserve_colors,
                  style_weights=args.style_weights)  # fmt: skip
    if kind == "video":
        return _video(args, network, styles, common)
    if kind == "image":
        st.stylize(args.photo, styles, **common).save(args.output)
        return _say(args, {"output": str(args.output)})
    args.output.mkdir(exist_ok=True)
    images = st.stylize_many(photos, styles, batch=args.batch, **common)
    for photo, img in zip(photos, images, strict=True):
        img.save(args.output / (photo.stem + ".png"))
        _say(args, {"output": str(args.output / (photo.stem + ".png"))})
    return 0


def _video(args, network, styles, common) -> int:
    from convlens.progress import ProgressBar
    from convlens.style.fast import FastStylizer
    from convlens.style.fast_video import stylize_video
    from convlens.video import FrameReader

    FrameReader(args.photo).close()  # undecodable: refused before the networks load
    st = FastStylizer(network, device=args.device)
    show = cli_options.show_progress(args)
    with ProgressBar("stylize", args.max_frames, unit="frame", disable=not show) as bar:
        report = stylize_video(args.photo, args.output, styles, stylizer=st, smooth=args.smooth,
                               flow=args.flow,
                               max_frames=args.max_frames, callback=lambda n, total: bar.advance(1),
                               **common)  # fmt: skip
    row = {"output": str(args.output), "frames": report.frames, "fps": round(report.fps, 2),
           "flicker_ratio": round(report.flicker_ratio, 3)}  # fmt: skip
    return _say(args, row)


def _say(args, row: dict) -> int:
    if args.json:
        print(json.dumps(row))
    else:
        print(
            "wrote "
            + row["output"]
            + "".join(f", {k} {v}" for k, v in row.items() if k != "output")
        )
    return 0


def run_train(args) -> int:
    """train one fast network for one painting (Johnson et al. 2016)

    Train a feed-forward network on random crops of PHOTOS with the VGG19 perceptual loss
    (content + Gram style + TV); checkpoints beside OUT, a loss curve OUT.loss.png; --resume
    continues."""
    from convlens.progress import ProgressBar
    from convlens.style.train_fast import train_fast

    cli_options.check_outputs([args.output], [args.style])
    show = cli_options.show_progress(args)
    with ProgressBar("train", args.steps, unit="step", disable=not show) as bar:
        result = train_fast(
            args.style, args.folder, args.output, resume=args.resume,
            callback=lambda step, total, row: bar.advance(1, f"loss {row['total']:.3g}"),
            steps=args.steps, batch=args.batch, crop=args.crop, width=args.width, lr=args.lr,
            style_weight=args.style_weight, tv_weight=args.tv, threads=args.threads,
        )  # fmt: skip
    return _say(args, {"output": str(result.path), "steps": result.steps,
                       "seconds": round(result.seconds, 1)})  # fmt: skip
