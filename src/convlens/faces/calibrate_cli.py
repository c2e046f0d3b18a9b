"""`convlens faces calibrate` and `train-verifier`: learn from a labelled folder (one
subfolder per person). Registered into the `faces` group by faces/cli.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convlens import cli_options as opt
from convlens.errors import ConvlensError
from convlens.faces.cli_common import add_db, add_encoder, add_verifier, emit, open_gallery

MAX_EPOCHS = 100_000
MAX_IMPOSTORS = 100_000_000  # 8 bytes of pair index and 8 of score each: 1.6 GB at most


def _plot_file(text: str) -> Path | None:
    """--plot: a .png file name, or an empty value for no plot."""
    return None if text == "" else opt.output_file(".png")(text)


def register(sub) -> None:
    p = opt.add_command(sub, "calibrate", cmd_calibrate)
    p.add_argument("folder", type=opt.existing_path("dir"), metavar="DIR")
    p.add_argument(
        "--far",
        type=opt.float_range(0, 1, lo_open=True, hi_open=True),
        default=None,
        help="store τ for this false accept rate (0 < FAR < 1) in the gallery",
    )
    p.add_argument(
        "--fpir",
        type=opt.float_range(0, 1, lo_open=True, hi_open=True),
        default=None,
        help="store τ for this open-set false positive identification rate (share of "
        "strangers given a name, 0 < FPIR < 1; one-shot protocol) in the gallery",
    )
    p.add_argument(
        "--plot",
        type=_plot_file,
        default=Path("roc.png"),
        help="ROC/DET PNG (roc.png; an empty value writes none)",
    )
    p.add_argument(
        "--max-impostors",
        type=opt.int_range(1, MAX_IMPOSTORS),
        default=None,
        help="sample at most this many impostor pairs (default 5,000,000)",
    )
    add_db(p)
    add_encoder(p, batch=True)
    add_verifier(p)
    opt.add_json(p)
    opt.add_quiet(p)

    p = opt.add_command(sub, "train-verifier", cmd_train_verifier)
    p.add_argument("folder", type=opt.existing_path("dir"), metavar="DIR")
    p.add_argument("-o", "--output", type=opt.output_file(".pt"), default=Path("verifier.pt"))
    p.add_argument("--kind", choices=["abs", "chi2"], default="abs", help="pair features")
    p.add_argument(
        "--epochs",
        type=opt.int_range(1, MAX_EPOCHS),
        default=300,
        help=f"full-batch training steps (default 300, at most {MAX_EPOCHS})",
    )
    add_encoder(p, batch=True)
    opt.add_json(p)
    opt.add_quiet(p)


def _encode(args: argparse.Namespace):
    from convlens.faces import calibrate
    from convlens.faces.cli_common import encode_options

    return calibrate.encode_labelled(
        args.folder,
        args.model,
        progress=opt.show_progress(args),
        batch_size=args.batch_size,
        device=args.device,
        **encode_options(args),
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    """thresholds from a labelled folder (one subfolder per person)"""
    from convlens import metrics
    from convlens.faces import calibrate

    if args.far is not None and args.fpir is not None:
        opt.usage_error(None, "--far and --fpir each store a τ: choose one")
    if (args.far is not None or args.fpir is not None) and args.verifier is not None:
        opt.usage_error(None, "--far/--fpir store a distance threshold; drop --verifier")
    opt.check_outputs([args.plot], [args.folder])
    scorer = None
    if args.verifier is not None:
        from convlens.faces.verifier import load_verifier

        scorer = load_verifier(args.verifier)
    data = _encode(args)
    if scorer is not None and scorer.model_id and data.model_id != scorer.model_id:
        raise ConvlensError(
            f"verifier was trained on {scorer.model_id!r} embeddings, not {data.model_id!r}"
        )
    kw = {} if args.max_impostors is None else {"max_impostors": args.max_impostors}
    d, same = calibrate.pair_scores(data.embeddings, data.labels, scorer=scorer, **kw)
    fars = calibrate.FARS if args.far is None else (*calibrate.FARS, args.far)
    report = calibrate.calibration_report(d, same, fars)
    report["scorer"] = "verifier" if scorer is not None else "distance"
    report["model_id"] = data.model_id
    report["photos"] = len(data.labels)
    report["people"] = int(len(set(data.labels.tolist())))
    report["without_face"] = [str(p) for p, _ in data.failed]
    if scorer is None:  # open set scores by distance to the nearest enrolled photo
        fpirs = calibrate.FPIRS if args.fpir is None else (*calibrate.FPIRS, args.fpir)
        report["open_set"] = calibrate.open_set(data, fpirs)
    # Refuse an unmeasurable FAR or FPIR before writing anything.
    tau = calibrate.choose_threshold(report, args.far) if args.far is not None else None
    if args.fpir is not None:
        tau = calibrate.choose_open_set_threshold(report["open_set"], args.fpir)
    if args.plot:
        label = "verifier 1 − p" if scorer is not None else "Euclidean distance"
        metrics.plot_roc({label: (d, same)}, args.plot)
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(calibrate.format_report(report, len(data.labels), report["people"], len(data.failed)))
        if args.plot:
            print(f"ROC/DET curves written to {args.plot}")
    if tau is not None:
        _store_threshold(args, report, data, tau)
    return 0


def _store_threshold(args, report: dict, data, tau: float) -> None:
    info = {
        "source": f"calibrated on {args.folder}",
        "model_id": data.model_id,
        "genuine_pairs": report["genuine_pairs"],
        "impostor_pairs": report["impostor_pairs"],
    }
    if args.far is not None:
        entry = report["tar_at_far"][f"{args.far:g}"]
        info.update(far=args.far, tar=entry["tar"])
        what = f"FAR {args.far:g}, TAR {entry['tar']:.3%}"
    else:
        o = report["open_set"]
        entry = o["at_fpir"][f"{args.fpir:g}"]
        info.update(fpir=args.fpir, dir=entry["dir"], protocol="one-shot open set",
                    enrolled=o["enrolled"], non_mated_probes=o["non_mated_probes"])  # fmt: skip
        what = f"FPIR {args.fpir:g}, DIR {entry['dir']:.3%}"
    with open_gallery(args, create=True) as g:
        g.set_threshold(tau, info)
        if not args.json:
            print(f"stored τ = {tau:.4f} ({what}) in {g.path}")


def cmd_train_verifier(args: argparse.Namespace) -> int:
    """train a pair verifier on a labelled folder (subfolder per person)"""
    from convlens import metrics
    from convlens.faces import calibrate
    from convlens.faces.verifier import save_verifier, train_verifier

    opt.check_outputs([args.output], [args.folder])
    data = _encode(args)
    model = train_verifier(
        data.embeddings,
        data.labels,
        kind=args.kind,
        model_id=data.model_id,
        epochs=args.epochs,
        progress=opt.show_progress(args),
    )
    save_verifier(model, args.output)
    d, same = calibrate.pair_scores(data.embeddings, data.labels, scorer=model)
    eer, _ = metrics.equal_error_rate(d, same)
    people = len(set(data.labels.tolist()))
    if args.json:
        emit(
            {
                "output": str(args.output),
                "kind": args.kind,
                "photos": len(data.labels),
                "people": people,
                "training_eer": eer,
            }
        )
        return 0
    print(
        f"trained a {args.kind} verifier on {len(data.labels)} photos of {people} people; "
        f"training-pair EER {eer:.3%} (measure it on other people with `calibrate DIR "
        f"--verifier {args.output}`); saved {args.output}"
    )
    return 0
