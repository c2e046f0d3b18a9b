"""Training benchmark on the ORL faces: people s1-s30 train, s31-s40 held out.

    python benchmarks/train_orl.py [--orl ../shared/data/faces/orl] [--steps 300] [--parts ...]

Parts (all by default):
  scratch   SmallConvNet from scratch (semi-hard triplets) vs the same net untrained.
  mining    random / semi-hard / hard / batch-all triplets and Siamese pairs at the same steps,
            from the same initial weights and the same batches: active fraction and held-out TAR.
  finetune  the pretrained dlib ResNet fine-tuned on s1-s30 (last stage only; lr 1e-5 and 1e-4)
            vs the untouched encoder, on s31-s40.
  speed     training steps/s on this CPU (timed under flock /tmp/convlens-bench.lock).

Held-out verification: all pairs of the 100 chips of s31-s40 (450 genuine, 4500 impostor),
TAR at FAR 1e-2 / 1e-3 and EER (convlens.metrics). Writes benchmarks/results/train.json and
train.md, and curve PNGs under docs/train/. The runs and measurements are in train_orl_runs.py,
the markdown in train_orl_report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from train_orl_report import write_markdown  # noqa: E402
from train_orl_runs import (  # noqa: E402
    final,
    initial,
    plot_mining,
    run,
    scratch_cfg,
    siamese_head_scores,
    steps_per_second,
)

from convlens.faces.pipeline import embed_chips  # noqa: E402
from convlens.train.data import load_face_folder  # noqa: E402
from convlens.train.trainer import TrainConfig, verify  # noqa: E402

TRAIN = [f"s{i}" for i in range(1, 31)]
HELD_OUT = [f"s{i}" for i in range(31, 41)]


def log(line: str) -> None:
    print(f"  {line}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--orl", default=str(ROOT.parent / "shared/data/faces/orl"))
    p.add_argument("--steps", type=int, default=300, help="training steps per scratch run")
    p.add_argument("--epochs", type=int, default=15, help="evaluations per run")
    p.add_argument("--finetune-steps", type=int, default=500)
    p.add_argument("--finetune-lr", default="1e-5,1e-4", help="the first is the headline")
    p.add_argument("--finetune-from", default=None, help="layer (default: the last stage)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minings", default="random,hard,all", help="compared with semi-hard")
    p.add_argument("--siamese", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--speed-steps", type=int, default=20)
    p.add_argument("--extra-seeds", default="", help="repeat the triplet minings, e.g. 1,2")
    p.add_argument("--parts", default="scratch,mining,finetune,speed")
    p.add_argument("--work", default=str(ROOT / "out/train_orl"))
    p.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    p.add_argument("--docs", default=str(ROOT / "docs/train"))
    return p.parse_args()


def main() -> int:
    args = parse_args()
    parts = set(args.parts.split(","))
    work, results, docs = Path(args.work), Path(args.results), Path(args.docs)
    for d in (work, results, docs):
        d.mkdir(parents=True, exist_ok=True)
    out_json = results / "train.json"
    report = json.loads(out_json.read_text()) if out_json.exists() else {}
    report["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }

    t0 = time.perf_counter()
    data = load_face_folder(args.orl, detector="auto", upsample=1)
    print(data.report())
    train, val = data.subset(TRAIN), data.subset(HELD_OUT)
    report["data"] = {
        "chips": len(data),
        "train_chips": len(train),
        "held_out_chips": len(val),
        "skipped": data.skipped,
        "align_seconds": time.perf_counter() - t0,
    }
    print(f"train {len(train)} chips of {len(TRAIN)} people, held out {len(val)} chips")

    def save():
        out_json.write_text(json.dumps(report, indent=1, default=str))
        write_markdown(report, results / "train.md")

    if "scratch" in parts or "mining" in parts:
        report.update(scratch_and_mining(args, parts, train, val, work, docs))
        save()
    if "finetune" in parts:
        report["finetune"] = finetune(args, train, val, work, docs)
        save()
    if "speed" in parts:
        report["speed"] = speed(args, train, work)
        save()
    save()
    return 0


def scratch_and_mining(args, parts: set[str], train, val, work: Path, docs: Path) -> dict:
    """SmallConvNet from scratch with semi-hard triplets, and with "mining", the other
    minings (and Siamese pairs) from the same init: the report's scratch/mining sections."""
    report, runs = {}, {}
    minings = ["semi-hard"] + (args.minings.split(",") if "mining" in parts else [])
    for m in minings:
        print(f"scratch, triplet {m}:")
        runs[m] = run(f"scratch-{m}", scratch_cfg(args, mining=m), train, val, work, log)
    if "mining" in parts and args.siamese:
        print("scratch, siamese abs:")
        cfg = scratch_cfg(args, loss="siamese", head="abs")
        runs["siamese"] = run("scratch-siamese", cfg, train, val, work, log)
        report["siamese_head"] = siamese_head_scores(work / "scratch-siamese", val)
    shutil.copy(runs["semi-hard"]["png"], docs / "scratch_semi_hard.png")
    report["scratch"] = {
        "untrained": initial(runs["semi-hard"]),
        "trained": final(runs["semi-hard"]),
        "steps": args.steps,
        "seconds": runs["semi-hard"]["seconds"],
    }
    report["mining"] = {
        k: {
            "final": final(r),
            "best_tar_far_1e-2": max(h["val_tar_far_1e-2"] for h in r["history"]),
            "active_first_epoch": r["history"][1]["active_fraction"],
            "active_last_epoch": final(r)["active_fraction"],
            "seconds": r["seconds"],
        }
        for k, r in runs.items()
    }
    if "mining" in parts:
        plot_mining(list(runs.values()), docs / "mining.png")
        seeds = {args.seed: {k: final(r) for k, r in runs.items() if k != "siamese"}}
        for seed in (int(x) for x in args.extra_seeds.split(",") if x):
            print(f"repeat with seed {seed}:")
            sub = work / f"seed{seed}"
            sub.mkdir(exist_ok=True)
            seeds[seed] = {
                m: final(
                    run(
                        f"scratch-{m}",
                        scratch_cfg(args, mining=m, seed=seed),
                        train,
                        val,
                        sub,
                        log,
                    )
                )
                for m in minings
            }
        report["mining_seeds"] = seeds
    return report


def finetune(args, train, val, work: Path, docs: Path) -> dict:
    """The pretrained dlib ResNet fine-tuned from its last stage at each --finetune-lr, against
    the untouched encoder on the held-out people."""
    from convlens.models.face_models import load_face_model

    pre = load_face_model("dlib-resnet")  # the encoder TrainConfig(init="pretrained") tunes
    stages = [n for n, _ in pre.named_children()]
    train_from = args.finetune_from or [n for n in stages if n.startswith("stage")][-1]
    print(f"fine-tune pretrained from {train_from} (layers {stages}):")
    base = embed_chips(val.chips, pre, device="cpu")
    untouched = verify(base, val.labels)
    runs_ft = []
    for lr in (float(x) for x in args.finetune_lr.split(",")):
        cfg = TrainConfig(
            init="pretrained",
            train_from=train_from,
            epochs=5,
            steps=max(1, args.finetune_steps // 5),
            batch_p=8,
            batch_k=4,
            lr=lr,
            seed=args.seed,
            device="cpu",
        )
        name = f"finetune-{train_from}-lr{lr:g}-{cfg.steps * cfg.epochs}"
        print(f"  lr {lr:g}:")
        r = run(name, cfg, train, val, work, log)
        tuned = load_face_model(work / f"{name}.pt")
        after = verify(embed_chips(val.chips, tuned, device="cpu"), val.labels)
        runs_ft.append(
            {
                "lr": lr,
                "steps": cfg.steps * cfg.epochs,
                "fine_tuned": after,
                "history": r["history"],
                "fine_tuned_id": tuned.model_id,
                "seconds": r["seconds"],
            }
        )
        if len(runs_ft) == 1:
            shutil.copy(r["png"], docs / "finetune.png")
    return {
        "train_from": train_from,
        "frozen": r["frozen"],
        "untouched": untouched,
        "pretrained_id": pre.model_id,
        "runs": runs_ft,
    }


def speed(args, train, work: Path) -> dict:
    """Training steps/s of the scratch net (fp32, bf16) and the dlib ResNet (last stage, all)."""
    runs = {}
    last = args.finetune_from or "stage5"
    for name, cfg in (
        ("SmallConvNet from scratch, fp32", scratch_cfg(args, amp=False)),
        ("SmallConvNet from scratch, bf16 autocast", scratch_cfg(args, amp=True)),
        (
            f"dlib ResNet, fine-tune from {last}, fp32",
            TrainConfig(init="pretrained", train_from=last, amp=False, device="cpu"),
        ),
        (
            "dlib ResNet, fine-tune all layers, fp32",
            TrainConfig(init="pretrained", amp=False, device="cpu"),
        ),
    ):
        runs[name] = steps_per_second(cfg, train, work, args.speed_steps)
        r = runs[name]
        print(
            f"{name}: {r['steps_per_s']:.2f} steps/s, {r['chips_per_s']:.0f} chips/s "
            f"(batch 32, load {r['load_avg_1min']:.1f})"
        )
    return {"batch": 32, "threads": torch.get_num_threads(), "runs": runs}


if __name__ == "__main__":
    sys.exit(main())
