"""`convlens train triplet|siamese DIR -o OUT.pt`: train a face encoder on a folder of people."""

from __future__ import annotations

import argparse
import json
import sys

from convlens.cli_options import (
    add_command,
    add_device,
    add_group,
    add_json,
    add_quiet,
    check_outputs,
    existing_path,
    float_range,
    int_range,
    name_list,
    output_file,
    show_progress,
)
from convlens.train.config import FLOAT_LIMITS, INT_LIMITS


def _int(name: str):
    return int_range(*INT_LIMITS[name])


def _float(name: str):
    lo, hi, lo_open, hi_open = FLOAT_LIMITS[name]
    return float_range(lo, hi, lo_open=lo_open, hi_open=hi_open)


def register(subparsers) -> None:
    sub = add_group(
        subparsers,
        "train",
        help="train a face encoder (triplet loss or Siamese pairs)",
        description="Train a face encoder on DIR/PERSON/photo.jpg; writes a model file that "
        "`convlens faces ... --model OUT.pt` loads.",
        metavar="LOSS",
    )
    triplet = add_command(sub, "triplet", _run_triplet)
    _common(triplet)
    triplet.add_argument(
        "--mining",
        choices=["semi-hard", "hard", "all", "random"],
        default="semi-hard",
        help="triplet mining within each P x K batch (default semi-hard)",
    )
    triplet.add_argument(
        "--margin",
        type=_float("margin"),
        default=0.2,
        help="triplet margin, in (0, 10] (0.2)",
    )
    triplet.set_defaults(loss="triplet", head="abs")
    siamese = add_command(sub, "siamese", _run_siamese)
    _common(siamese)
    siamese.add_argument(
        "--head",
        choices=["abs", "chi2"],
        default="abs",
        help="pair feature for the logistic head: |f(a)-f(b)| or signed chi-squared (default abs)",
    )
    siamese.set_defaults(loss="siamese", mining="semi-hard", margin=0.2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir",
        metavar="DIR",
        type=existing_path("dir"),
        help="folder with one subfolder of photos (or audio clips) per person",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.pt", type=output_file(".pt"),
        help="model file to write (logs and checkpoint beside it)",
    )  # fmt: skip
    _model_options(p)
    _optimisation_options(p)
    _run_options(p)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--init",
        choices=["pretrained", "scratch"],
        default="pretrained",
        help="fine-tune the model's pretrained weights, or train it from scratch",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="encoder from `convlens models --task face-encoder` or `--task speaker-encoder` "
        "(default dlib-resnet with --init pretrained, small-convnet with --init scratch; "
        "speaker-cnn reads DIR/SPEAKER/clip.wav)",
    )
    p.add_argument(
        "--train-from",
        metavar="LAYER",
        help="freeze every layer before LAYER (a top-level submodule name, e.g. a stage)",
    )
    p.add_argument(
        "--embedding-dim", type=_int("embedding_dim"), default=128, help="small-convnet only (128)"
    )


def _optimisation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_int("epochs"), default=10, help="1..100000 (10)")
    p.add_argument(
        "--steps",
        type=_int("steps"),
        help="steps per epoch (default: one pass over the chips)",
    )
    p.add_argument("--batch-p", type=_int("batch_p"), default=8, help="people per batch (8)")
    p.add_argument(
        "--batch-k", type=_int("batch_k"), default=4, help="photos per person per batch (4)"
    )
    p.add_argument(
        "--lr",
        type=_float("lr"),
        help="peak learning rate, in (0, 10] (default 1e-3 scratch, 1e-5 fine-tuning)",
    )
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--weight-decay", type=_float("weight_decay"), default=1e-4, help="0..1 (1e-4)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument(
        "--grad-clip",
        type=_float("grad_clip"),
        default=5.0,
        help="max gradient norm (5; 0: off)",
    )
    p.add_argument("--no-augment", action="store_true", help="no flips or shifts")
    p.add_argument("--seed", type=_int("seed"), default=0)


def _run_options(p: argparse.ArgumentParser) -> None:
    from convlens.faces.detect import DEFAULT_DETECTOR, DETECTORS

    p.add_argument(
        "--resume", metavar="CKPT", type=existing_path("file"), help="continue from a checkpoint"
    )
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint path (default OUT.ckpt)")
    val = p.add_mutually_exclusive_group()
    val.add_argument(
        "--val-people",
        metavar="N|NAMES",
        type=_val_people,
        help="hold out N random people, or the comma-separated named ones, for validation",
    )
    val.add_argument(
        "--val-split",
        type=float_range(0, 1, lo_open=True, hi_open=True),
        help="hold out this fraction of people, in (0, 1) (default 0.2)",
    )
    add_device(p)
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (default: on for CUDA, off for CPU; CPU uses bf16)",
    )
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default=DEFAULT_DETECTOR,
        help=f"face detector (default {DEFAULT_DETECTOR}; auto: HOG, then HOG upsampled, then "
        "the CNN); chips are cached",
    )
    p.add_argument("--upsample", type=int_range(0, 3), default=1, help="detector upsampling (1)")
    p.add_argument("--cache-dir", metavar="DIR", help="where aligned chips are cached")
    add_quiet(p)
    add_json(p)


def _val_people(text: str) -> int | list[str]:
    """A number of people (0..100000), or comma-separated names."""
    if text.strip().isdigit():
        return int_range(0, 100_000)(text)
    return name_list(text)


def _config(args: argparse.Namespace):
    from convlens.train.config import TrainConfig

    return TrainConfig(
        loss=args.loss,
        mining=args.mining,
        margin=args.margin,
        head=args.head,
        init=args.init,
        model=args.model,
        embedding_dim=args.embedding_dim,
        train_from=args.train_from,
        epochs=args.epochs,
        steps=args.steps,
        batch_p=args.batch_p,
        batch_k=args.batch_k,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        grad_clip=args.grad_clip,
        augment=not args.no_augment,
        seed=args.seed,
        amp=args.amp,
        device=args.device,
    )


def _check_files(args: argparse.Namespace):
    """Every file the run writes: writable, none of them an input, before any work."""
    from convlens.train.logs import TrainPaths

    paths = TrainPaths.for_output(args.output, args.checkpoint)
    # The checkpoint may be the one resumed from (it is read first, then rewritten), but no
    # other output may be it or the resumed one.
    check_outputs(paths.written(args.loss), [args.resume, paths.checkpoint])
    check_outputs([paths.checkpoint])
    return paths


def _run_triplet(args: argparse.Namespace) -> int:
    """triplet loss with in-batch mining"""
    return _run(args)


def _run_siamese(args: argparse.Namespace) -> int:
    """Siamese same/different binary classification"""
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Train with the loss the command set (args.loss); both commands share all the rest."""
    from convlens.train.distributed import barrier, distributed_from_env

    cfg = _config(args)
    cfg.check()
    paths = _check_files(args)
    ddp = distributed_from_env()
    if not ddp.main:
        barrier(ddp)  # rank 0 aligns the photos and fills the cache; the others then read it
    try:
        train, val = _load_data(args, ddp.main and show_progress(args), ddp.main)
    finally:
        if ddp.main:
            barrier(ddp)
    trainer = _trainer(args, cfg, train, val, paths, ddp.main)
    if args.resume:
        trainer.resume(args.resume)
    trainer.fit()
    if trainer.dist.main:
        _report_done(args, trainer)
    return 0


def _load_data(args: argparse.Namespace, progress: bool, main: bool):
    from convlens.models import registry
    from convlens.train.data import load_audio_folder, load_face_folder, split_people

    entry = registry.get_encoder(_config(args).model_name)
    if registry.modality(entry) == "audio":  # DIR/SPEAKER/clip.wav
        data = load_audio_folder(args.dir, entry.extras["rate"], progress=progress)
    else:
        data = load_face_folder(
            args.dir, args.cache_dir, args.detector, args.upsample, progress=progress
        )
    if main:
        print(data.report(), file=sys.stderr)
    train_people, val_people = split_people(data.people, args.val_people, args.val_split, args.seed)
    train, val = data.subset(train_people), data.subset(val_people)
    if main:
        print(
            f"training on {len(train_people)} people ({len(train)} chips), "
            f"validating on {len(val_people)} ({len(val)} chips)",
            file=sys.stderr,
        )
    return train, val


def _trainer(args, cfg, train, val, paths, main: bool):
    from convlens.train.trainer import Trainer

    callback = _print_epoch_json if args.json and main else None
    trainer = Trainer(
        cfg,
        train,
        val,
        paths.model,
        paths.checkpoint,
        progress=main and show_progress(args),
        callback=callback,
    )
    if trainer.frozen and main:
        print(f"frozen: {', '.join(trainer.frozen)}", file=sys.stderr)
    if trainer.val_set is None and main:
        print("no validation: it needs 2+ people, one of them with 2+ chips", file=sys.stderr)
    return trainer


def _print_epoch_json(event) -> None:
    from convlens.train.events import EpochEvent

    if isinstance(event, EpochEvent):
        print(json.dumps({"event": "epoch", **event.row()}), flush=True)


def _report_done(args: argparse.Namespace, trainer) -> None:
    paths = trainer.paths
    model_id = trainer.objective.encoder.model_id
    verifier = paths.verifier if trainer.cfg.loss == "siamese" else None
    if args.json:
        done = {
            "event": "done",
            "model": str(paths.model),
            "model_id": model_id,
            "checkpoint": str(paths.checkpoint),
            "epochs_csv": str(paths.epochs_csv),
            "steps_csv": str(paths.steps_csv),
            "png": str(paths.plot_png),
            "verifier": None if verifier is None else str(verifier),
        }
        print(json.dumps(done), flush=True)
        return
    print(f"wrote {paths.model} (model_id {model_id}); logs {paths.epochs_csv}, {paths.plot_png}")
    if verifier is not None:
        print(f"wrote {verifier} (the pair classifier, for --verifier)")
