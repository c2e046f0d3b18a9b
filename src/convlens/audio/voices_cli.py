"""`convlens voices enroll|identify|verify|people|forget`: speakers in a convlens gallery.

    convlens voices enroll alice a1.wav a2.flac --model spk.pt --db voices.db
    convlens voices identify clip.wav --model spk.pt --db voices.db
    convlens voices verify clip.wav --as alice --model spk.pt --db voices.db   # exit 0 = match

The faces commands' twins for speech: the same Gallery (enroll_embeddings /
identify_embeddings / verify_embedding; the gallery's model_id keeps a speaker encoder's
embeddings apart from a face encoder's), and the same answers, exit codes and --json lines
(faces/gallery_cli.py's report helpers; `people` and `forget` are its commands as they are).
The threshold τ is the gallery's (`faces calibrate` sets it for faces; until one is stored it
is dlib's 0.6, which is not a speaker threshold: set one with --threshold on enroll).
"""

from __future__ import annotations

import argparse

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.faces import gallery_cli
from convlens.faces.cli_common import add_db, default_db, emit


def register(subparsers) -> None:
    """Enrol speakers from speech clips and identify or verify clips, with a speaker encoder
    trained by `convlens train triplet VOICES --model speaker-cnn`."""
    sub = opt.add_group(
        subparsers,
        "voices",
        help="speaker enrolment, identification and verification (a gallery of voices)",
        description=opt.docstring(register),  # what `convlens voices --help` says
    )
    p = opt.add_command(sub, "enroll", cmd_enroll)
    p.add_argument("name")
    p.add_argument("clips", nargs="+", metavar="CLIP", type=opt.existing_path("file"))
    p.add_argument("--threshold", type=opt.float_range(0, 2, lo_open=True), default=None,
                   help="store this distance threshold τ in the gallery (0 < τ ≤ 2)")  # fmt: skip
    _common(p)

    p = opt.add_command(sub, "identify", cmd_identify)
    p.add_argument("clips", nargs="+", metavar="CLIP", type=opt.existing_path("file"))
    p.add_argument("-k", type=opt.int_range(1, gallery_cli.MAX_CANDIDATES), default=1,
                   help="candidates per clip (1)")  # fmt: skip
    _common(p)

    p = opt.add_command(sub, "verify", cmd_verify)
    p.add_argument("clip", metavar="CLIP", type=opt.existing_path("file"))
    p.add_argument("--as", dest="name", required=True, metavar="NAME")
    _common(p)

    for name, func in (("people", cmd_people), ("forget", cmd_forget)):
        p = opt.add_command(sub, name, func)
        if name == "forget":
            p.add_argument("name")
        add_db(p)
        opt.add_json(p)


def _common(p: argparse.ArgumentParser) -> None:
    add_db(p)
    opt.add_model(p, "speaker encoder (a trained speaker-cnn .pt file)")
    opt.add_device(p)
    opt.add_json(p)


def _open(args: argparse.Namespace, create: bool = False):
    """The speaker encoder and the gallery opened for its model_id (a face gallery refuses)."""
    from convlens.audio.speakers import load_speaker_model
    from convlens.faces.gallery import Gallery

    if args.model is None:
        raise ConvlensError("a speaker encoder is needed: --model spk.pt (see convlens train)")
    model = load_speaker_model(args.model, args.device)
    return model, Gallery(args.db or default_db(), model_id=model.model_id, create=create)


def cmd_enroll(args: argparse.Namespace) -> int:
    """add speech clips of a speaker to the gallery"""
    from pathlib import Path

    from convlens.audio.speakers import embed_clips
    from convlens.faces.gallery.enrolment import file_hash

    model, gallery = _open(args, create=True)
    embeddings = embed_clips(model, args.clips)  # every clip read before anything is stored
    with gallery as g:
        r = g.enroll_embeddings(
            args.name, embeddings, sources=[str(Path(c).resolve()) for c in args.clips],
            hashes=[file_hash(c) for c in args.clips],
        )  # fmt: skip
        if args.threshold is not None:
            g.set_threshold(args.threshold, {"source": "voices enroll --threshold"})
        gallery_cli.report_enrolment(args, g, r, what="clip")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    """who is speaking in these clips (1:K)"""
    from convlens.audio.speakers import embed_waves, load_clip

    model, gallery = _open(args)
    failures = 0
    with gallery as g:
        if not g.people():
            raise ConvlensError(f"{g.path}: the gallery is empty; enrol someone first")
        for path in args.clips:  # a bad clip is reported and the batch goes on (exit 1)
            try:
                wave = load_clip(path, model.rate)
            except ConvlensError as e:
                failures += 1
                gallery_cli.report_failure(args, path, e, results="matches")
                continue
            matches = g.identify_embeddings(embed_waves(model, [wave]), k=args.k)
            if args.json:
                emit({"path": str(path), "matches": [m.to_json() for m in matches],
                      "threshold": matches[0].threshold, "error": None})  # fmt: skip
            else:
                print(gallery_cli.describe_matches(path, matches), flush=True)
    return 1 if failures else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """is this clip NAME speaking (1:1); exit 0 if so"""
    from convlens.audio.speakers import embed_clips

    model, gallery = _open(args)
    with gallery as g:
        v = g.verify_embedding(embed_clips(model, [args.clip]), args.name)
    return gallery_cli.report_verdict(args, args.clip, v)


# `people` and `forget` are the faces commands as they are; only what they say differs.


def cmd_people(args: argparse.Namespace) -> int:
    """list the speakers"""
    return gallery_cli.cmd_people(args)


def cmd_forget(args: argparse.Namespace) -> int:
    """erase a speaker"""
    return gallery_cli.cmd_forget(args)
