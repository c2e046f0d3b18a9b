"""`make demo`: enrol people from one photo each, then recognise every face in a folder.

    python -m convlens.demo [PHOTO_OR_FOLDER ...] [--enroll NAME=PHOTO ...] [-o OUT_DIR]

Without --enroll, the shared demo photos obama.jpg and biden.jpg are enrolled (one-shot). Each
photo's faces are identified against that gallery, printed as a table, and drawn (box + name +
distance) into OUT_DIR so the result can be looked at.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

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
        if any(len(p) != 2 for p in pairs):
            raise ConvlensError("--enroll takes NAME=PHOTO")
        return {name: Path(photo) for name, photo in pairs}
    by_name = {p.name: p for p in photos}
    if all(f in by_name for f in DEFAULT_PEOPLE.values()):
        return {name: by_name[f] for name, f in DEFAULT_PEOPLE.items()}
    raise ConvlensError("no obama.jpg/biden.jpg among the photos: name people with NAME=PHOTO")


def _draw(path: Path, matches, out_dir: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(load_image(path))
    draw = ImageDraw.Draw(img)
    width = max(2, img.width // 250)
    font = ImageFont.load_default(size=max(12, img.height // 40))
    for m in matches:
        colour = (40, 200, 80) if m.name else (230, 60, 60)
        draw.rectangle(m.box, outline=colour, width=width)
        label = f"{m.name or 'unknown'} {m.distance:.2f}"
        x0, y0 = m.box[0], max(0, m.box[1] - font.size - 4)
        draw.rectangle(draw.textbbox((x0, y0), label, font=font), fill=colour)
        draw.text((x0, y0), label, fill=(255, 255, 255), font=font)
    out = out_dir / f"{path.stem}.png"
    img.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convlens.demo", description=__doc__)
    parser.add_argument("photos", nargs="*", default=["../shared/data/faces/photos"])
    parser.add_argument("--enroll", action="append", metavar="NAME=PHOTO")
    parser.add_argument("-o", "--out", default="out/demo", help="folder for annotated photos")
    args = parser.parse_args(argv)
    console = Console()
    try:
        import convlens.faces as faces

        photos = _photos(args.photos)
        if not photos:
            raise ConvlensError(f"no photos in {' '.join(args.photos)}")
        people = _enrolments(args, photos)
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp, faces.Gallery(Path(tmp) / "demo.db") as g:
            for name, photo in people.items():
                g.enroll(name, [photo], largest_face=True)
                console.print(f"enrolled [bold]{name}[/] from {photo} (one photo)")
            table = Table("photo", "faces", "recognised (distance)", "annotated")
            for photo in photos:
                try:
                    matches = g.identify(photo)
                except ConvlensError as e:
                    table.add_row(photo.name, "-", f"[red]{e}", "")
                    continue
                names = ", ".join(f"{m.name or 'unknown'} ({m.distance:.2f})" for m in matches)
                drawn = _draw(photo, matches, out_dir) if matches else ""
                table.add_row(photo.name, str(len(matches)), names or "no face", str(drawn))
            console.print(table)
            console.print(f"threshold τ = {g.threshold:.2f} (Euclidean distance, dlib convention)")
    except ConvlensError as e:
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
