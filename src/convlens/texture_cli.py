"""`convlens texture audio|solid|volume`: Gram-matrix textures beyond 2-D images.

    convlens texture audio [CONTENT.wav] STYLE.wav -o out.wav --seconds 5
    convlens texture solid EXEMPLAR.png -o cube.npz --size 64
    convlens texture volume CONTENT.npz STYLE.png -o styled.npz

A group of its own rather than subcommands of `convlens style`: that command's first
positional is the content image, so `convlens style audio ...` would be ambiguous with a
photo called "audio". Thin shells over convlens.audio.texture, convlens.volumes.solid and
convlens.volumes.transfer;
pictures are written beside every result (a spectrogram PNG; slice PNGs and a GIF).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convlens import cli_options
from convlens.cli_options import float_range, int_range
from convlens.errors import ConvlensError

AUDIO_OUT = (".wav", ".flac", ".ogg")


def register(subparsers) -> None:
    """Texture synthesis beyond images: a sound's texture from a recording, or a solid (volume)
    texture from a 2-D image."""
    sub = cli_options.add_group(
        subparsers,
        "texture",
        help="Gram-matrix textures of sounds (1-D) and solids (3-D)",
        description=cli_options.docstring(register),  # what `convlens texture --help` says
        metavar="KIND",
    )
    _audio_parser(sub)
    _solid_parser(sub)
    _volume_parser(sub)


def _steps(p: argparse.ArgumentParser, default: int, what: str) -> None:
    p.add_argument(
        "--steps", type=int_range(1, 100_000), default=default, help=f"{what} ({default})"
    )


def _lr(p: argparse.ArgumentParser) -> None:
    """Solid and volume textures: Adam over the voxels, whose values lie in 0..1."""
    p.add_argument(
        "--lr",
        type=float_range(0, 10, lo_open=True),
        default=0.02,
        help="Adam step size, 0..1 scale (0.02)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="random seed (0)")
    cli_options.add_quiet(p)
    cli_options.add_json(p)


def _audio_parser(sub) -> None:
    p = cli_options.add_command(sub, "audio", _run_audio)
    p.add_argument("inputs", nargs="+", metavar="[CONTENT] STYLE", help="audio files")
    p.add_argument("-o", "--output", required=True, type=Path, help="output .wav/.flac/.ogg")
    p.add_argument("--seconds", type=float_range(0.1, 120), default=5.0,
                   help="length without a content clip, 0.1..120 (5)")  # fmt: skip
    _steps(p, 150, "L-BFGS evaluations")
    p.add_argument("--channels", type=int_range(8, 16_384), default=1024,
                   help="random filters (1024)")  # fmt: skip
    p.add_argument("--content-weight", type=float_range(0, 1e6, lo_open=True), default=1e-2,
                   help="content cost weight with a content clip (0.01)")  # fmt: skip
    _common(p)


def _solid_parser(sub) -> None:
    p = cli_options.add_command(sub, "solid", _run_solid)
    # dest "style": the exemplar plays the role of the style image
    p.add_argument("style", metavar="EXEMPLAR", type=cli_options.existing_path("file"))
    p.add_argument("-o", "--output", required=True, type=Path, help="output .npz")
    p.add_argument("--size", type=int_range(8, 512), default=64, help="cube side, 8..512 (64)")
    _steps(p, 200, "gradient steps")
    p.add_argument("--per-axis", type=int_range(1, 64), default=2,
                   help="random slices per axis per step (2)")  # fmt: skip
    _lr(p)
    p.add_argument("--zoom", type=float_range(0.25, 16), default=2.0,
                   help="exemplar's shorter side = ZOOM x SIZE pixels: larger ZOOM, larger "
                   "texture elements in the cube, 0.25..16 (2)")  # fmt: skip
    _common(p)


def _volume_parser(sub) -> None:
    from convlens.volumes.inspect_cli import add_volume_options

    p = cli_options.add_command(sub, "volume", _run_volume)
    p.add_argument("content", metavar="CONTENT", type=cli_options.existing_path("any"))
    p.add_argument("style", metavar="STYLE", type=cli_options.existing_path("any"),
                   help="a 2-D image, or a volume file")  # fmt: skip
    p.add_argument("-o", "--output", required=True, type=Path, help="output .npz")
    add_volume_options(p, "content", (24, 48, 48))
    _steps(p, 60, "Adam steps")
    _lr(p)
    p.add_argument("--style-weight", type=float_range(0, 1e6, lo_open=True), default=10.0,
                   help="style cost weight against the content cost (10)")  # fmt: skip
    cli_options.add_quiet(p)  # no --seed: the run starts from the content, nothing is drawn
    cli_options.add_json(p)


def _progress(args, total: int, what: str):
    from convlens.progress import ProgressBar

    return ProgressBar(what, total, unit="step", disable=not cli_options.show_progress(args))


def _run_audio(args: argparse.Namespace) -> int:
    """synthesise a sound texture (or put it on a content clip)

    Match the Gram matrices of a random wide 1-D ConvNet over the log-magnitude STFT
    (Ulyanov & Lebedev 2016); phase by Griffin-Lim. With two inputs the first is the content
    clip. Writes OUT and OUT's stem + .png (spectrograms)."""
    from convlens.audio.io import write_audio
    from convlens.audio.stats import save_spectrograms
    from convlens.audio.texture import RATE, synthesize

    if len(args.inputs) > 2:
        raise ConvlensError(
            f"give at most two audio files ([CONTENT] STYLE), not {len(args.inputs)}"
        )
    if args.output.suffix.lower() not in AUDIO_OUT:
        raise ConvlensError(f"{args.output}: the file name must end in {', '.join(AUDIO_OUT)}")
    *content, style = args.inputs
    picture = args.output.with_suffix(".png")
    cli_options.check_outputs([args.output, picture], args.inputs)
    with _progress(args, args.steps, "audio texture") as bar:
        result = synthesize(
            style, content[0] if content else None, seconds=args.seconds, steps=args.steps,
            channels=args.channels, content_weight=args.content_weight, seed=args.seed,
            callback=lambda step, loss: bar.advance(1, f"loss {loss:.4g}"),
        )  # fmt: skip
    write_audio(args.output, result.samples, result.rate)
    save_spectrograms({"synthesis": result.samples}, RATE, picture)
    return _report(args, result, output=str(args.output), spectrogram=str(picture))


def _run_solid(args: argparse.Namespace) -> int:
    """a solid (3-D) texture whose slices look like a 2-D exemplar

    Optimise a SIZE^3 RGB volume so that slices along all three axes match the exemplar's
    VGG19 Gram matrices. Writes OUT.npz (uint8 volume), OUT_axis0/1/2.png, OUT_slices.png and
    OUT_sweep.gif."""
    from convlens.volumes.solid import output_paths, save_solid, solid_texture

    if args.output.suffix.lower() != ".npz":
        raise ConvlensError(f"{args.output}: the file name must end in .npz")
    outputs = output_paths(args.output)
    cli_options.check_outputs(outputs, [args.style])
    with _progress(args, args.steps, f"solid texture {args.size}^3") as bar:
        result = solid_texture(
            args.style, size=args.size, steps=args.steps, per_axis=args.per_axis,
            lr=args.lr, zoom=args.zoom, seed=args.seed,
            callback=lambda step, loss: bar.advance(1, f"loss {loss:.4g}"),
        )  # fmt: skip
    written = save_solid(result, args.output)
    return _report(args, result, outputs=[str(p) for p in written], seconds=result.seconds)


def _run_volume(args: argparse.Namespace) -> int:
    """style transfer onto a volume with VGG19 inflated to 3-D

    Give a content volume (.npy/.npz/.nii/.nii.gz/DICOM) the style of a 2-D image (Grams of
    its 2-D VGG19 features, as luminance) or of another volume, with vgg19-3d. Writes OUT.npz
    (float volume 0..1), OUT_slices.png (content above result) and OUT_sweep.gif."""
    from convlens.volumes import prepare_volume
    from convlens.volumes.transfer import output_paths, save_transfer, style_volume

    if args.output.suffix.lower() != ".npz":
        raise ConvlensError(f"{args.output}: the file name must end in .npz")
    cli_options.check_outputs(output_paths(args.output), [args.content, args.style])
    content = prepare_volume(args.content, args.shape, args.window)
    with _progress(args, args.steps, "volume style") as bar:
        result = style_volume(
            content, args.style, steps=args.steps, lr=args.lr, style_weight=args.style_weight,
            callback=lambda step, loss: bar.advance(1, f"loss {loss:.4g}"),
        )  # fmt: skip
    written = save_transfer(result, args.output)
    return _report(args, result, outputs=[str(p) for p in written], seconds=result.seconds)


def _report(args: argparse.Namespace, result, **row) -> int:
    """The closing answer: what was written, and the loss at the first and last step."""
    row.update(loss_first=result.losses[0], loss_last=result.losses[-1])
    if args.json:
        print(json.dumps({"event": "done", **row}), flush=True)
    else:
        for key, value in row.items():
            print(f"{key}: {value}")
    return 0
