"""`make demo`: enrol people from one photo each, then recognise every face in a folder.

    python -m convlens.demo [PHOTO_OR_FOLDER ...] [--enroll NAME=PHOTO ...] [-o OUT_DIR]

Without --enroll, the shared demo photos obama.jpg and biden.jpg are enrolled (one-shot). Each
photo's faces are identified against that gallery, printed as a table (or one JSON object per
photo with --json), and drawn (box + name + distance) into OUT_DIR so the result can be
looked at.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.images import IMAGE_SUFFIXES, load_image

DEFAULT_PEOPLE = {"obama": "obama.jpg", "biden": "biden.jpg"}


def _photos(sources: list[str]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if not p.exists():
            raise ConvlensError(f"{p}: no such file or folder")
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _enrolments(args: argparse.Namespace, photos: list[Path]) -> dict[str, Path]:
    if args.enroll:
        pairs = [e.split("=", 1) for e in args.enroll]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            opt.usage_error(None, "--enroll takes NAME=PHOTO")
        return {name: Path(photo) for name, photo in pairs}
    by_name = {p.name: p for p in photos}
    if all(f in by_name for f in DEFAULT_PEOPLE.values()):
        return {name: by_name[f] for name, f in DEFAULT_PEOPLE.items()}
    raise ConvlensError("no obama.jpg/biden.jpg among the photos: name people with NAME=PHOTO")


def check_out_dir(out_dir: Path, photos: list[Path]) -> None:
    """The output folder: an existing folder, or a new one (parents included) under an
    existing writable folder; no annotated file may land on one of the input photos."""
    if out_dir.is_dir():
        opt.check_outputs([out_dir / f"{p.stem}.png" for p in photos], photos)
        return
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConvlensError(f"{existing}: exists and is not a folder; cannot make {out_dir}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConvlensError(f"{existing}: folder not writable; cannot make {out_dir}")


def _draw(path: Path, matches, out_dir: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(load_image(path))
    draw = ImageDraw.Draw(img)
    width = max(2, img.width // 250)
    font = ImageFont.load_default(size=max(12, img.height // 40))
    for m in matches:
        colour = (40, 200, 80) if m.name else (230, 60, 60)
        # Box corners are exclusive; PIL's rectangle includes its second corner.
        draw.rectangle(m.box.to_dlib(), outline=colour, width=width)
        label = f"{m.name or 'unknown'} {m.distance:.2f}"
        x0, y0 = m.box.x0, max(0, m.box.y0 - font.size - 4)
        draw.rectangle(draw.textbbox((x0, y0), label, font=font), fill=colour)
        draw.text((x0, y0), label, fill=(255, 255, 255), font=font)
    out = out_dir / f"{path.stem}.png"
    img.save(out)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m convlens.demo", description=__doc__)
    parser.add_argument("photos", nargs="*", default=["../shared/data/faces/photos"])
    parser.add_argument("--enroll", action="append", metavar="NAME=PHOTO")
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("out/demo"), help="folder for annotated photos"
    )
    opt.add_model(parser, "face encoder", default=None)
    opt.add_device(parser)
    opt.add_json(parser)
    opt.add_quiet(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    import convlens.faces as faces

    photos = _photos(args.photos)
    if not photos:
        raise ConvlensError(f"no photos in {' '.join(args.photos)}")
    people = _enrolments(args, photos)
    check_out_dir(args.out, photos)
    args.out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.json or args.quiet else _console().print
    with (
        tempfile.TemporaryDirectory() as tmp,
        faces.Gallery(Path(tmp) / "demo.db", args.model, device=args.device) as g,
    ):
        for name, photo in people.items():
            g.enroll(name, [photo], largest_face=True)
            say(f"enrolled [bold]{name}[/] from {photo} (one photo)")
        rows = []
        for photo, result in g.identify_many(photos, progress=opt.show_progress(args)):
            if isinstance(result, ConvlensError):
                rows.append((photo, None, str(result), ""))
                continue
            drawn = str(_draw(photo, result, args.out)) if result else ""
            rows.append((photo, result, None, drawn))
        _report(args, rows, g.decision_threshold().value)


def _console():
    from rich.console import Console

    return Console()


def _report(args: argparse.Namespace, rows: list, tau: float) -> None:
    if args.json:
        for photo, matches, error, drawn in rows:
            faces = [m.to_json() for m in matches or []]
            print(json.dumps({"path": str(photo), "faces": faces, "annotated": drawn or None,
                              "error": error}), flush=True)  # fmt: skip
        return
    from rich.table import Table

    table = Table("photo", "faces", "recognised (distance)", "annotated")
    for photo, matches, error, drawn in rows:
        if error is not None:
            table.add_row(photo.name, "-", f"[red]{error}", "")
            continue
        names = ", ".join(f"{m.name or 'unknown'} ({m.distance:.2f})" for m in matches)
        table.add_row(photo.name, str(len(matches)), names or "no face", drawn)
    console = _console()
    console.print(table)
    console.print(f"threshold τ = {tau:.2f} (Euclidean distance, dlib convention)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except ConvlensError as e:
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
