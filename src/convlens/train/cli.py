"""`convlens train triplet|siamese DIR -o OUT.pt`: train a face encoder on a folder of people."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convlens.errors import ConvlensError


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "train",
        help="train a face encoder (triplet loss or Siamese pairs)",
        description="Train a face encoder on DIR/PERSON/photo.jpg; writes a model file that "
        "`convlens faces ... --model OUT.pt` loads.",
    )
    sub = group.add_subparsers(dest="train_command", metavar="LOSS", required=True)
    triplet = sub.add_parser("triplet", help="triplet loss with in-batch mining")
    _common(triplet)
    triplet.add_argument(
        "--mining",
        choices=["semi-hard", "hard", "all", "random"],
        default="semi-hard",
        help="triplet mining within each P x K batch (default semi-hard)",
    )
    triplet.add_argument("--margin", type=float, default=0.2, help="triplet margin (0.2)")
    triplet.set_defaults(func=_run, loss="triplet", head="abs")
    siamese = sub.add_parser("siamese", help="Siamese same/different binary classification")
    _common(siamese)
    siamese.add_argument(
        "--head",
        choices=["abs", "chi2"],
        default="abs",
        help="pair feature for the logistic head: |f(a)-f(b)| or signed chi-squared (default abs)",
    )
    siamese.set_defaults(func=_run, loss="siamese", mining="semi-hard", margin=0.2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder with one subfolder of photos per person")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="model file to write")
    p.add_argument(
        "--init",
        choices=["pretrained", "scratch"],
        default="pretrained",
        help="fine-tune dlib's pretrained ResNet, or train a SmallConvNet from scratch",
    )
    p.add_argument(
        "--train-from",
        metavar="LAYER",
        help="freeze every layer before LAYER (a top-level submodule name, e.g. a stage)",
    )
    p.add_argument("--embedding-dim", type=int, default=128, help="scratch only (128)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, help="steps per epoch (default: one pass over the chips)")
    p.add_argument("--batch-p", type=int, default=8, help="people per batch (8)")
    p.add_argument("--batch-k", type=int, default=4, help="photos per person per batch (4)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 scratch, 1e-5 tune)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument("--grad-clip", type=float, default=5.0, help="max gradient norm (0: off)")
    p.add_argument("--no-augment", action="store_true", help="no flips or shifts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint")
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint path (default OUT.ckpt)")
    val = p.add_mutually_exclusive_group()
    val.add_argument(
        "--val-people",
        metavar="N|NAMES",
        help="hold out N random people, or the comma-separated named ones, for validation",
    )
    val.add_argument(
        "--val-split", type=float, help="hold out this fraction of people (default 0.2)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (default: on for CUDA, off for CPU; CPU uses bf16)",
    )
    p.add_argument(
        "--detector",
        choices=["hog", "cnn", "auto"],
        default="auto",
        help="auto (default): HOG, then HOG upsampled, then the CNN; chips are cached",
    )
    p.add_argument("--upsample", type=int, default=1, help="detector upsampling (1)")
    p.add_argument("--cache-dir", metavar="DIR", help="where aligned chips are cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _val_people(text: str | None) -> int | list[str] | None:
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    return [t.strip() for t in text.split(",") if t.strip()]


def _run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from convlens.train.data import load_face_folder, split_people
    from convlens.train.trainer import TrainConfig, Trainer, distributed_from_env

    out = Path(args.output)
    if out.suffix != ".pt":
        raise ConvlensError(f"{out}: the model file name must end in .pt")
    if not out.parent.is_dir():
        raise ConvlensError(f"{out.parent}: no such folder for the model file")
    cfg = TrainConfig(
        loss=args.loss,
        mining=args.mining,
        margin=args.margin,
        head=args.head,
        init=args.init,
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
    cfg.check()
    ddp = distributed_from_env()
    if ddp.world > 1 and not ddp.main:
        dist.barrier()  # rank 0 aligns the photos and fills the cache; the others then read it
    try:
        progress = ddp.main and not args.quiet
        data = load_face_folder(
            args.dir, args.cache_dir, args.detector, args.upsample, progress=progress
        )
    finally:
        if ddp.world > 1 and ddp.main:
            dist.barrier()
    if ddp.main:
        print(data.report(), file=sys.stderr)
    train_people, val_people = split_people(
        data.people, _val_people(args.val_people), args.val_split, args.seed
    )
    train, val = data.subset(train_people), data.subset(val_people)
    if ddp.main:
        print(
            f"training on {len(train_people)} people ({len(train)} chips), "
            f"validating on {len(val_people)} ({len(val)} chips)",
            file=sys.stderr,
        )
    trainer = Trainer(cfg, train, val, out, args.checkpoint, progress=ddp.main and not args.quiet)
    if trainer.frozen and ddp.main:
        print(f"frozen: {', '.join(trainer.frozen)}", file=sys.stderr)
    if trainer.val_set is None and ddp.main:
        print("no validation: it needs 2+ people, one of them with 2+ chips", file=sys.stderr)
    if args.resume:
        trainer.resume(args.resume)
    trainer.fit()
    if trainer.dist.main:
        model_id = trainer.objective.encoder.model_id
        print(f"wrote {out} (model_id {model_id}); logs {trainer.epochs_csv}, {trainer.plot_png}")
        if cfg.loss == "siamese":
            print(f"wrote {trainer.verifier_path} (the pair classifier, for --verifier)")
    return 0
