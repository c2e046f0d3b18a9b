"""`convlens faces` gallery commands: enroll, identify, verify, people, forget, rename,
calibrate, train-verifier. Registered into the `faces` group by faces/cli.py.

The gallery file is --db, else $CONVLENS_DB, else <user data dir>/convlens/gallery.db.
Errors are one line each; a batch (identify over many photos) goes on past a bad photo and
exits 1 at the end. `verify` exits 0 on a match and 1 on no match, like `cmp`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from convlens.errors import ConvlensError


def default_db() -> Path:
    env = os.environ.get("CONVLENS_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("convlens")) / "gallery.db"


def _common(p: argparse.ArgumentParser, db=True, encoder=True, verifier=False) -> None:
    if db:
        p.add_argument(
            "--db",
            type=Path,
            default=None,
            help="gallery file (default: $CONVLENS_DB or the user data dir's gallery.db)",
        )
    if encoder:
        p.add_argument("--model", default=None, help="face encoder file (default: dlib ResNet)")
        p.add_argument(
            "--detector",
            default=None,
            help="hog, cnn or auto (default auto: HOG, then more upsampling, then the CNN)",
        )
        p.add_argument("--upsample", type=int, default=None, help="detector upsampling")
        p.add_argument(
            "--flip", action="store_true", help="average with the mirrored face's embedding"
        )
    if verifier:
        p.add_argument(
            "--verifier",
            type=Path,
            default=None,
            help="trained verifier (train-verifier) to score pairs instead of raw distance",
        )


def _encode_options(args) -> dict:
    opts = {}
    if getattr(args, "detector", None) is not None:
        opts["detector"] = args.detector
    if getattr(args, "upsample", None) is not None:
        opts["upsample"] = args.upsample
    if getattr(args, "flip", False):
        opts["flip"] = True
    return opts


def _open(args, create: bool = False):
    from convlens.faces.gallery import Gallery

    path = args.db or default_db()
    return Gallery(
        path,
        getattr(args, "model", None),
        verifier=getattr(args, "verifier", None),
        encode_options=_encode_options(args),
        create=create,
    )


def register(faces_subparsers) -> None:
    sub = faces_subparsers

    p = sub.add_parser("enroll", help="add photos of a person to the gallery")
    p.add_argument("name")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument(
        "--largest", action="store_true", help="use the largest face of a photo with several"
    )
    _common(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="who is in these photos (1:K)")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("-k", type=int, default=1, help="candidates per face (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object per photo per line")
    _common(p, verifier=True)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("verify", help="is the face in this photo NAME (1:1); exit 0 if so")
    p.add_argument("photo", metavar="PHOTO")
    p.add_argument("--as", dest="name", required=True, metavar="NAME")
    p.add_argument("--json", action="store_true")
    _common(p, verifier=True)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("people", help="list the people in the gallery")
    p.add_argument("--json", action="store_true")
    _common(p, encoder=False)
    p.set_defaults(func=cmd_people)

    p = sub.add_parser("forget", help="erase a person and all their embeddings")
    p.add_argument("name")
    _common(p, encoder=False)
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("rename", help="rename a person")
    p.add_argument("old")
    p.add_argument("new")
    _common(p, encoder=False)
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser(
        "calibrate", help="thresholds from a labelled folder (one subfolder per person)"
    )
    p.add_argument("folder", type=Path, metavar="DIR")
    p.add_argument(
        "--far", type=float, default=None, help="store τ for this false accept rate in the gallery"
    )
    p.add_argument(
        "--plot",
        type=lambda s: Path(s) if s else None,
        default=Path("roc.png"),
        help="ROC/DET PNG (roc.png; an empty value writes none)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-impostors", type=int, default=None, help="sample impostor pairs")
    _common(p, verifier=True)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "train-verifier", help="train a pair verifier on a labelled folder (subfolder per person)"
    )
    p.add_argument("folder", type=Path, metavar="DIR")
    p.add_argument("-o", "--output", type=Path, default=Path("verifier.pt"))
    p.add_argument("--kind", choices=["abs", "chi2"], default="abs", help="pair features")
    p.add_argument("--epochs", type=int, default=300)
    _common(p, db=False)
    p.set_defaults(func=cmd_train_verifier)


# -- commands ------------------------------------------------------------------------------


def cmd_enroll(args) -> int:
    with _open(args, create=True) as g:
        r = g.enroll(args.name, args.photos, largest_face=args.largest)
        total = next(p.photos for p in g.people() if p.name == r.name)
        msg = f"enrolled {r.name}: {len(r.added)} photo(s) added, {total} in all ({g.path})"
        if r.skipped:
            msg += f"; {len(r.skipped)} already enrolled, skipped"
        print(msg)
    return 0


def _err(path, e) -> None:
    print(
        f"convlens: error: {e}" if str(path) in str(e) else f"convlens: error: {path}: {e}",
        file=sys.stderr,
    )


def cmd_identify(args) -> int:
    import numpy as np

    from convlens import faces

    if args.k < 1:
        raise ConvlensError("-k must be at least 1")
    failures = 0
    with _open(args) as g:
        if not g.people():
            raise ConvlensError(f"{g.path}: the gallery is empty; enrol someone first")
        stream = faces.encode_many(
            [str(p) for p in args.photos],
            model=g.encoder,
            progress=len(args.photos) > 1 and sys.stderr.isatty(),
            **_encode_options(args),
        )
        for path, result in stream:
            if isinstance(result, Exception):
                failures += 1
                if args.json:
                    print(json.dumps({"path": str(path), "faces": [], "error": str(result)}))
                else:
                    _err(path, result)
                continue
            matches = []
            if result:
                g._check_model(g.encoder_model_id())
                embs = np.stack([f.embedding for f in result])
                boxes = [tuple(int(v) for v in f.box) for f in result]
                matches = g.identify_embeddings(embs, k=args.k, boxes=boxes)
            if args.json:
                print(
                    json.dumps(
                        {
                            "path": str(path),
                            "faces": [m.to_json() for m in matches],
                            "threshold": g._tau()[0],
                            "error": None,
                        }
                    ),
                    flush=True,
                )
            else:
                print(_describe(path, matches), flush=True)
    return 1 if failures else 0


def _describe(path, matches) -> str:
    if not matches:
        return f"{path}: no face found"
    parts = []
    for m in matches:
        box = ",".join(str(v) for v in m.box) if m.box else "?"
        if m.name is not None:
            head = f"{m.name} ({m.distance:.3f} ≤ τ {m.threshold:.3f})"
        elif m.distance is None:
            head = "unknown (empty gallery)"
        else:
            head = f"unknown (nearest {m.candidates[0].name} at {m.distance:.3f} > τ "
            head += f"{m.threshold:.3f})"
        if len(m.candidates) > 1:
            head += "; then " + ", ".join(f"{c.name} {c.distance:.3f}" for c in m.candidates[1:])
        parts.append(f"[{box}] {head}")
    return f"{path}: " + " | ".join(parts)


def cmd_verify(args) -> int:
    with _open(args) as g:
        v = g.verify(args.photo, args.name)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(args.photo),
                    "name": v.name,
                    "match": v.match,
                    "distance": v.distance,
                    "threshold": v.threshold,
                    "scorer": v.scorer,
                    "box": list(v.box) if v.box else None,
                }
            )
        )
    else:
        rel = "≤" if v.match else ">"
        verdict = "match" if v.match else "no match"
        score = "distance" if v.scorer == "distance" else "1 − p(same)"
        print(
            f"{args.photo}: {verdict} for {v.name} ({score} {v.distance:.3f} {rel} τ "
            f"{v.threshold:.3f})"
        )
    return 0 if v.match else 1


def cmd_people(args) -> int:
    with _open(args) as g:
        people = g.people()
        info = g.threshold_info
        if args.json:
            print(
                json.dumps(
                    {
                        "db": str(g.path),
                        "model_id": g.model_id,
                        "threshold": info,
                        "people": [
                            {"name": p.name, "photos": p.photos, "created": p.created}
                            for p in people
                        ],
                    }
                )
            )
            return 0
        print(
            f"{g.path}: {len(people)} people, encoder {g.model_id or '(none yet)'}, "
            f"τ {info['threshold']:.4f} ({info.get('source', 'calibrated')})"
        )
        for p in people:
            print(f"  {p.name}\t{p.photos} photo(s)\tsince {p.created}")
    return 0


def cmd_forget(args) -> int:
    with _open(args) as g:
        n = g.forget(args.name)
    print(f"forgot {args.name}: {n} embedding(s) erased")
    return 0


def cmd_rename(args) -> int:
    with _open(args) as g:
        g.rename(args.old, args.new)
    print(f"renamed {args.old} to {args.new}")
    return 0


def cmd_calibrate(args) -> int:
    from convlens import metrics
    from convlens.faces import calibrate

    data = calibrate.encode_labelled(args.folder, args.model, **_encode_options(args))
    scorer = None
    if args.verifier is not None:
        from convlens.faces.verifier import load_verifier

        scorer = load_verifier(args.verifier)
        if scorer.model_id and data.model_id and scorer.model_id != data.model_id:
            raise ConvlensError(
                f"verifier was trained on {scorer.model_id!r} embeddings, not {data.model_id!r}"
            )
    kw = {} if args.max_impostors is None else {"max_impostors": args.max_impostors}
    d, same = calibrate.pair_scores(data.embeddings, data.labels, scorer=scorer, **kw)
    report = calibrate.calibration_report(d, same)
    report["scorer"] = "verifier" if scorer is not None else "distance"
    report["model_id"] = data.model_id
    report["photos"] = len(data.labels)
    report["people"] = int(len(set(data.labels.tolist())))
    report["without_face"] = [str(p) for p, _ in data.failed]
    if args.plot:
        label = "verifier 1 − p" if scorer is not None else "Euclidean distance"
        metrics.plot_roc({label: (d, same)}, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(calibrate.format_report(report, len(data.labels), report["people"], len(data.failed)))
        if args.plot:
            print(f"ROC/DET curves written to {args.plot}")
    if args.far is not None:
        if scorer is not None:
            raise ConvlensError("--far stores a distance threshold; drop --verifier to set it")
        tau = calibrate.choose_threshold(report, args.far)
        entry = report["tar_at_far"][f"{args.far:g}"]
        with _open(args, create=True) as g:
            g.set_threshold(
                tau,
                {
                    "source": f"calibrated on {args.folder}",
                    "far": args.far,
                    "tar": entry["tar"],
                    "model_id": data.model_id,
                    "genuine_pairs": report["genuine_pairs"],
                    "impostor_pairs": report["impostor_pairs"],
                },
            )
            print(f"stored τ = {tau:.4f} (FAR {args.far:g}, TAR {entry['tar']:.3%}) in {g.path}")
    return 0


def cmd_train_verifier(args) -> int:
    from convlens import metrics
    from convlens.faces import calibrate
    from convlens.faces.verifier import save_verifier, train_verifier

    data = calibrate.encode_labelled(args.folder, args.model, **_encode_options(args))
    model = train_verifier(
        data.embeddings,
        data.labels,
        kind=args.kind,
        model_id=data.model_id,
        epochs=args.epochs,
        progress=True,
    )
    save_verifier(model, args.output)
    d, same = calibrate.pair_scores(data.embeddings, data.labels, scorer=model)
    eer, _ = metrics.equal_error_rate(d, same)
    print(
        f"trained a {args.kind} verifier on {len(data.labels)} photos of "
        f"{len(set(data.labels.tolist()))} people; training-pair EER {eer:.3%} (measure it on "
        f"other people with `calibrate DIR --verifier {args.output}`); saved {args.output}"
    )
    return 0
