"""`convlens faces` gallery commands: enroll, identify, verify, people, forget, rename.
Registered into the `faces` group by faces/cli.py (calibrate and train-verifier: see
calibrate_cli.py).

Each command is a thin shell over convlens.faces.gallery.Gallery. Errors are one line each;
a batch (identify over many photos) goes on past a bad photo and exits 1 at the end.
`verify` exits 0 on a match and 1 on no match, like `cmp`.
"""

from __future__ import annotations

import sys

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.faces.cli_common import (
    add_db,
    add_encoder,
    add_verifier,
    emit,
    open_gallery,
    photo_arguments,
)
from convlens.faces.video import cli as video_cli

MAX_CANDIDATES = 1000


def register(faces_subparsers) -> None:
    sub = faces_subparsers

    p = opt.add_command(sub, "enroll", cmd_enroll)
    p.add_argument("name")
    # Checked before the gallery is opened: a missing photo must not create an empty gallery.
    p.add_argument("photos", nargs="+", metavar="PHOTO", type=opt.existing_path("file"))
    p.add_argument(
        "--largest", action="store_true", help="use the largest face of a photo with several"
    )
    _common(p, quiet=False)

    p = opt.add_command(sub, "identify", cmd_identify)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos, or folders of photos")
    p.add_argument(
        "-k",
        type=opt.int_range(1, MAX_CANDIDATES),
        default=1,
        help=f"candidates per face (default 1, at most {MAX_CANDIDATES})",
    )
    _common(p, verifier=True, batch=True)

    p = opt.add_command(sub, "verify", cmd_verify)
    p.add_argument("photo", metavar="PHOTO", type=opt.existing_path("file"), nargs="?")
    p.add_argument("--as", dest="name", required=True, metavar="NAME")
    _common(p, verifier=True, quiet=False)
    video_cli.add_live_options(p)  # verify --live SOURCE (faces/video/cli.py)

    p = opt.add_command(sub, "people", cmd_people)
    _common(p, encoder=False)

    p = opt.add_command(sub, "forget", cmd_forget)
    p.add_argument("name")
    _common(p, encoder=False)

    p = opt.add_command(sub, "rename", cmd_rename)
    p.add_argument("old")
    p.add_argument("new")
    _common(p, encoder=False)


def _common(p, encoder=True, verifier=False, batch=False, quiet=True) -> None:
    add_db(p)
    opt.add_json(p)
    if encoder:
        add_encoder(p, batch=batch)
        if quiet:
            opt.add_quiet(p)
    if verifier:
        add_verifier(p)


# -- commands ------------------------------------------------------------------------------


def cmd_enroll(args) -> int:
    """add photos of a person to the gallery"""
    with open_gallery(args, create=True) as g:
        r = g.enroll(args.name, args.photos, largest_face=args.largest)
        report_enrolment(args, g, r)
    return 0


def report_enrolment(args, g, r, what: str = "photo") -> None:
    """The enrol answer (text or --json) for faces and voices alike."""
    total = next(p.photos for p in g.people() if p.name == r.name)
    if args.json:
        emit({"db": str(g.path), "name": r.name, "added": len(r.added),
              "skipped": list(r.skipped), f"{what}s": total})  # fmt: skip
        return
    msg = f"enrolled {r.name}: {len(r.added)} {what}(s) added, {total} in all ({g.path})"
    if r.skipped:
        msg += f"; {len(r.skipped)} already enrolled, skipped"
    print(msg)


def report_error(path, e) -> None:
    print(
        f"convlens: error: {e}" if str(path) in str(e) else f"convlens: error: {path}: {e}",
        file=sys.stderr,
    )


def report_failure(
    args, path, error: ConvlensError, results: str = "faces", say=report_error
) -> None:
    """One input of a batch could not be read, and the batch goes on: with --json a line with
    no `results` and the error, else `say(path, error)`."""
    if args.json:
        emit({"path": str(path), results: [], "error": str(error)})
    else:
        say(path, error)


def cmd_identify(args) -> int:
    """who is in these photos (1:K)"""
    failures = 0
    with open_gallery(args) as g:
        if not g.people():
            raise ConvlensError(f"{g.path}: the gallery is empty; enrol someone first")
        tau = g.decision_threshold()
        if not args.json and not tau.calibrated:
            print(f"note: {_tau_note(g.threshold_info)}", file=sys.stderr)
        photos = photo_arguments(args.photos)
        stream = g.identify_many(
            photos,
            k=args.k,
            batch_size=args.batch_size,
            progress=len(photos) > 1 and opt.show_progress(args) and sys.stderr.isatty(),
        )
        for path, result in stream:
            if isinstance(result, ConvlensError):
                failures += 1
                report_failure(args, path, result)
                continue
            if args.json:
                faces = [m.to_json() for m in result]
                emit(
                    {
                        "path": str(path),
                        "faces": faces,
                        "threshold": tau.value,
                        "calibrated": tau.calibrated,
                        "error": None,
                    }
                )
            else:
                print(describe_matches(path, result), flush=True)
    return 1 if failures else 0


def describe_matches(path, matches) -> str:
    if not matches:
        return f"{path}: no face found"
    parts = []
    for m in matches:
        if m.name is not None:
            head = f"{m.name} ({m.distance:.3f} ≤ τ {m.threshold:.3f})"
        elif m.distance is None:
            head = "unknown (empty gallery)"
        elif m.threshold is None:
            head = f"unknown (uncalibrated: no τ; nearest {m.candidates[0].name} at "
            head += f"{m.distance:.3f})"
        else:
            head = f"unknown (nearest {m.candidates[0].name} at {m.distance:.3f} > τ "
            head += f"{m.threshold:.3f})"
        if len(m.candidates) > 1:
            head += "; then " + ", ".join(f"{c.name} {c.distance:.3f}" for c in m.candidates[1:])
        # a face has a box; a voice clip (convlens voices) has none
        parts.append(f"[{','.join(str(v) for v in m.box)}] {head}" if m.box else head)
    return f"{path}: " + " | ".join(parts)


def _tau_note(info: dict) -> str:
    """One line on where τ comes from, for output that must say when it is not calibrated."""
    if info["threshold"] is None:
        return f"uncalibrated: {info['source']}"
    if info.get("calibrated"):
        return f"τ {info['threshold']:.4f} calibrated ({info.get('source', 'set by hand')})"
    where = ", ".join(f"{k} {info[k]}" for k in ("set", "fpir", "far") if k in info)
    return f"τ {info['threshold']:.4f}: uncalibrated gallery, {info['source']}" + (
        f" ({where})" if where else ""
    )


def cmd_verify(args) -> int:
    """is the face in this photo NAME (1:1); exit 0 if so"""
    if args.live is not None:
        return video_cli.cmd_verify_live(args)
    if args.photo is None:
        raise ConvlensError("give a PHOTO, or --live SOURCE for a video")
    with open_gallery(args) as g:
        v = g.verify(args.photo, args.name)
        note = _tau_note(g.threshold_info) if v.scorer == "distance" else ""
    return report_verdict(args, args.photo, v, note)


def report_verdict(args, path, v, note: str = "") -> int:
    """The 1:1 answer (text or --json); exit 0 on a match, 1 on none, like `cmp`."""
    if args.json:
        emit({"path": str(path), "name": v.name, "match": v.match, "distance": v.distance,
              "threshold": v.threshold, "scorer": v.scorer, "calibrated": v.calibrated,
              "box": list(v.box) if v.box else None, "faces": v.faces})  # fmt: skip
    else:
        rel = "≤" if v.match else ">"
        verdict = "match" if v.match else "no match"
        score = "distance" if v.scorer == "distance" else "1 − p(same)"
        where = ""
        if v.box is not None:  # a face; a voice clip has no box
            box = ",".join(str(c) for c in v.box)
            where = (
                f"; {v.faces} faces compared, closest [{box}]" if v.faces > 1 else f"; face [{box}]"
            )
        print(f"{path}: {verdict} for {v.name} ({score} {v.distance:.3f} {rel} τ "
              f"{v.threshold:.3f}{where})")  # fmt: skip
        if not v.calibrated and note:
            print(f"note: {note}", file=sys.stderr)
    return 0 if v.match else 1


def cmd_people(args) -> int:
    """list the people in the gallery"""
    with open_gallery(args) as g:
        people = g.people()
        info = g.threshold_info
        if args.json:
            emit(
                {
                    "db": str(g.path),
                    "model_id": g.model_id,
                    "threshold": info,
                    "people": [
                        {"name": p.name, "photos": p.photos, "created": p.created} for p in people
                    ],
                }
            )
            return 0
        print(f"{g.path}: {len(people)} people, encoder {g.model_id or '(none yet)'}")
        print(f"  {_tau_note(info)}")
        for p in people:
            print(f"  {p.name}\t{p.photos} photo(s)\tsince {p.created}")
    return 0


def cmd_forget(args) -> int:
    """erase a person and all their embeddings"""
    with open_gallery(args) as g:
        n = g.forget(args.name)
    if args.json:
        emit({"forgot": args.name, "embeddings": n})
    elif n == 0:  # a second call that finished an erasure a reader had held up
        print(f"forgot {args.name}: erasure finished")
    else:
        print(f"forgot {args.name}: {n} embedding(s) erased")
    return 0


def cmd_rename(args) -> int:
    """rename a person"""
    with open_gallery(args) as g:
        g.rename(args.old, args.new)
    if args.json:
        emit({"renamed": args.old, "to": args.new})
    else:
        print(f"renamed {args.old} to {args.new}")
    return 0
