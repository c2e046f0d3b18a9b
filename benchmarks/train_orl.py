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
train.md, and curve PNGs under docs/train/.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from convlens.faces.pipeline import embed_chips  # noqa: E402
from convlens.train.data import load_face_folder  # noqa: E402
from convlens.train.trainer import TrainConfig, Trainer, verify  # noqa: E402

TRAIN = [f"s{i}" for i in range(1, 31)]
HELD_OUT = [f"s{i}" for i in range(31, 41)]
LOCK = "/tmp/convlens-bench.lock"


@contextmanager
def bench_lock():
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def scratch_cfg(args, **kw) -> TrainConfig:
    base = dict(
        init="scratch",
        epochs=args.epochs,
        steps=args.steps // args.epochs,
        batch_p=8,
        batch_k=4,
        lr=2e-3,
        seed=args.seed,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def run(name, cfg, train, val, work: Path, log) -> dict:
    """Train (or, with a finished checkpoint of the same settings in `work`, reuse it)."""
    trainer = Trainer(cfg, train, val, work / f"{name}.pt", progress=False, log=log)
    done = trainer.checkpoint.exists() and (work / f"{name}.pt").exists()
    if done:
        ckpt = torch.load(trainer.checkpoint, weights_only=True)
        done = ckpt["step"] == trainer.total_steps and ckpt["config"] == cfg.settings()
    if done:
        print(f"  reusing the finished run in {trainer.checkpoint}")
        trainer.resume(trainer.checkpoint)
        trainer.objective.encoder.model_id = ckpt_model_id(work / f"{name}.pt")
    else:
        trainer.fit()
    return {
        "name": name,
        "config": {k: v for k, v in vars(cfg).items()},
        "frozen": trainer.frozen,
        "history": trainer.history,
        "steps": [list(r) for r in trainer.step_log],
        "seconds": sum(h.get("seconds", 0.0) for h in trainer.history),  # training, no evals
        "model_id": trainer.objective.encoder.model_id,
        "png": str(trainer.plot_png),
    }


def ckpt_model_id(path: Path) -> str:
    return torch.load(path, weights_only=True)["model_id"]


def siamese_head_scores(stem: Path, val) -> dict:
    """Held-out verification scored by the trained pair classifier (1 - p(same)) rather
    than by the Euclidean distance of the embeddings."""
    from convlens.faces.verifier import load_verifier
    from convlens.metrics import verification_report

    emb = embed_chips(val.chips, Path(f"{stem}.pt"), device="cpu")
    head = load_verifier(f"{stem}.verifier.pt")
    i, j = np.triu_indices(len(emb), k=1)
    r = verification_report(head.distance(emb[i], emb[j]), val.labels[i] == val.labels[j])
    return {
        "val_tar_far_1e-2": r["tar_at_far"]["0.01"]["tar"],
        "val_tar_far_1e-3": r["tar_at_far"]["0.001"]["tar"],
        "val_eer": r["eer"],
    }


def final(r: dict) -> dict:
    return r["history"][-1]


def initial(r: dict) -> dict:
    return r["history"][0]


def plot_mining(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in runs:
        s = np.asarray(r["steps"], dtype=np.float64)
        n = max(1, len(s) // 30)
        smooth = np.convolve(s[:, 2], np.ones(n) / n, mode="valid")
        axes[0].plot(s[n - 1 :, 0], smooth, label=r["name"])
        loss = np.convolve(s[:, 1], np.ones(n) / n, mode="valid")
        axes[1].plot(s[n - 1 :, 0], loss, label=r["name"])
        h = r["history"]
        axes[2].plot([x["step"] for x in h], [x["val_tar_far_1e-2"] for x in h], "o-", ms=3)
    axes[0].set(xlabel="step", ylabel="active fraction", title="active triplets (wrong pairs)")
    axes[1].set(xlabel="step", ylabel="training loss", title="loss (scales differ by mining)")
    axes[2].set(xlabel="step", ylabel="TAR @ FAR=1e-2", title="held-out s31-s40", ylim=(0, 1))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def steps_per_second(cfg: TrainConfig, train, work: Path, steps: int) -> dict:
    """Training steps/s: 1 / the median step time over `steps` timed steps (after 3 warm-up
    steps), under the benchmark lock; with the 1-minute load average, since the CPU is shared
    with processes that do not take the lock."""
    trainer = Trainer(cfg, train, None, work / "speed.pt", progress=False)
    trainer.train_mode()
    for _ in range(3):
        trainer.train_step()
    times = []
    with bench_lock():
        load = os.getloadavg()[0]
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - t0)
    return {
        "steps_per_s": 1.0 / float(np.median(times)),
        "chips_per_s": cfg.batch_p * cfg.batch_k / float(np.median(times)),
        "mean_steps_per_s": len(times) / float(np.sum(times)),
        "load_avg_1min": load,
    }


def main() -> int:
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
    args = p.parse_args()
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

    def log(line: str) -> None:
        print(f"  {line}", flush=True)

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

    runs = {}
    if "scratch" in parts or "mining" in parts:
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
        save()

    if "finetune" in parts:
        from convlens.models.face_models import load_face_model

        pre = load_face_model(None)
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
        report["finetune"] = {
            "train_from": train_from,
            "frozen": r["frozen"],
            "untouched": untouched,
            "pretrained_id": pre.model_id,
            "runs": runs_ft,
        }
        save()

    if "speed" in parts:
        speed = {}
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
            speed[name] = steps_per_second(cfg, train, work, args.speed_steps)
            r = speed[name]
            print(
                f"{name}: {r['steps_per_s']:.2f} steps/s, {r['chips_per_s']:.0f} chips/s "
                f"(batch 32, load {r['load_avg_1min']:.1f})"
            )
        report["speed"] = {"batch": 32, "threads": torch.get_num_threads(), "runs": speed}
        save()
    save()
    return 0


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# Training on ORL (s1-s30 train, s31-s40 held out)", ""]
    m = report.get("machine", {})
    lines.append(
        f"Machine: {m.get('cores')} CPU cores, torch {m.get('torch')} "
        f"({m.get('torch_threads')} threads), CUDA: {m.get('cuda')}. "
        "Command: `python benchmarks/train_orl.py`."
    )
    d = report.get("data")
    if d:
        lines += [
            "",
            f"Chips: {d['chips']} of 400 photos aligned ({len(d['skipped'])} skipped); "
            f"train {d['train_chips']}, held out {d['held_out_chips']}.",
        ]
    s = report.get("scratch")
    if s:
        u, t = s["untrained"], s["trained"]
        lines += [
            "",
            f"## SmallConvNet from scratch, semi-hard triplets, {s['steps']} steps",
            "",
            "| | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER |",
            "|---|---|---|---|",
            f"| untrained (same init) | {pct(u['val_tar_far_1e-2'])} | "
            f"{pct(u['val_tar_far_1e-3'])} | {pct(u['val_eer'])} |",
            f"| trained | {pct(t['val_tar_far_1e-2'])} | {pct(t['val_tar_far_1e-3'])} "
            f"| {pct(t['val_eer'])} |",
            "",
            "Curves: docs/train/scratch_semi_hard.png",
        ]
    mi = report.get("mining")
    if mi and len(mi) > 1:
        lines += [
            "",
            "## Mining at the same steps (same init, same batches)",
            "",
            "| mining | active ep. 1 | active last | TAR@1e-2 | TAR@1e-3 | EER | best TAR@1e-2 |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, r in mi.items():
            f = r["final"]
            lines.append(
                f"| {k} | {pct(r['active_first_epoch'])} | {pct(r['active_last_epoch'])} | "
                f"{pct(f['val_tar_far_1e-2'])} | {pct(f['val_tar_far_1e-3'])} | "
                f"{pct(f['val_eer'])} | {pct(r['best_tar_far_1e-2'])} |"
            )
        sh = report.get("siamese_head")
        if sh:
            lines += [
                f"| siamese, scored by its head (1 - p) | | | {pct(sh['val_tar_far_1e-2'])} | "
                f"{pct(sh['val_tar_far_1e-3'])} | {pct(sh['val_eer'])} | |"
            ]
        lines += [
            "",
            "(for siamese, 'active' is the fraction of training pairs the head gets wrong)",
            "Curves: docs/train/mining.png",
        ]
    ms = report.get("mining_seeds")
    if ms and len(ms) > 1:
        names = list(next(iter(ms.values())))
        lines += [
            "",
            "Held-out TAR@FAR=1e-2 / EER after the same steps, per seed (init and batches differ):",
            "",
            "| mining | " + " | ".join(f"seed {s}" for s in ms) + " | mean TAR@1e-2 | mean EER |",
            "|---|" + "---|" * (len(ms) + 2),
        ]
        for m in names:
            cells = [
                f"{pct(ms[s][m]['val_tar_far_1e-2'])} / {pct(ms[s][m]['val_eer'])}" for s in ms
            ]
            tar = np.mean([ms[s][m]["val_tar_far_1e-2"] for s in ms])
            eer = np.mean([ms[s][m]["val_eer"] for s in ms])
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {pct(tar)} | {pct(eer)} |")
    ft = report.get("finetune")
    if ft and "runs" in ft:
        u = ft["untouched"]
        lines += [
            "",
            f"## Fine-tuning the pretrained encoder from `{ft['train_from']}` "
            f"(frozen: {', '.join(ft['frozen'])}; semi-hard triplets, AdamW, cosine)",
            "",
            "| encoder | steps | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER | model_id |",
            "|---|---|---|---|---|---|",
            f"| pretrained, untouched | 0 | {pct(u['val_tar_far_1e-2'])} | "
            f"{pct(u['val_tar_far_1e-3'])} | {pct(u['val_eer'])} | {ft['pretrained_id']} |",
        ]
        for r in ft["runs"]:
            a = r["fine_tuned"]
            lines.append(
                f"| fine-tuned, lr {r['lr']:g} | {r['steps']} | {pct(a['val_tar_far_1e-2'])} | "
                f"{pct(a['val_tar_far_1e-3'])} | {pct(a['val_eer'])} | {r['fine_tuned_id']} |"
            )
        lines += [
            "",
            "One genuine pair of the 450 is 0.22 points of TAR. Curves (first lr): "
            "docs/train/finetune.png",
        ]
    sp = report.get("speed")
    if sp and "runs" in sp:
        lines += [
            "",
            f"## Training speed on this CPU (batch {sp['batch']}, {sp['threads']} threads, "
            "no GPU in this session)",
            "",
            "Median step time under flock /tmp/convlens-bench.lock; the CPU is shared with "
            "processes that do not take the lock, so the 1-minute load average is given.",
            "",
            "| run | steps/s | chips/s | mean steps/s | load |",
            "|---|---|---|---|---|",
        ]
        for k, r in sp["runs"].items():
            lines.append(
                f"| {k} | {r['steps_per_s']:.2f} | {r['chips_per_s']:.0f} | "
                f"{r['mean_steps_per_s']:.2f} | {r['load_avg_1min']:.1f} |"
            )
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
