"""The training runs and measurements of benchmarks/train_orl.py: configurations, one training
run (reusing a finished checkpoint), held-out scores by the Siamese head, the mining curves, and
training steps/s under the benchmark lock."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from convlens.faces.pipeline import embed_chips
from convlens.train.trainer import TrainConfig, Trainer

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
