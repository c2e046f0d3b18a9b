"""The run's curves: every step's loss and every epoch's row, kept for the checkpoint and
written as <out>.epochs.csv, <out>.steps.csv and a PNG of the curves, <out>.png."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.train.config import TrainConfig
from convlens.train.events import EpochEvent, StepEvent, TrainEvent

EPOCH_FIELDS = [
    "epoch", "step", "lr", "train_loss", "active_fraction", "steps_per_s", "seconds",
    "val_tar_far_1e-2", "val_tar_far_1e-3", "val_eer", "val_pairs",
]  # fmt: skip


@dataclass(frozen=True)
class TrainPaths:
    """Every file a run writes, derived from the model file name."""

    model: Path
    checkpoint: Path
    epochs_csv: Path
    steps_csv: Path
    plot_png: Path
    verifier: Path  # Siamese runs only: the pair classifier

    @classmethod
    def for_output(
        cls, out: str | os.PathLike, checkpoint: str | os.PathLike | None = None
    ) -> TrainPaths:
        out = Path(out)
        stem = out.with_suffix("")
        return cls(
            model=out,
            checkpoint=Path(checkpoint) if checkpoint else stem.with_suffix(".ckpt"),
            epochs_csv=Path(f"{stem}.epochs.csv"),
            steps_csv=Path(f"{stem}.steps.csv"),
            plot_png=Path(f"{stem}.png"),
            verifier=Path(f"{stem}.verifier.pt"),
        )

    def written(self, loss: str) -> list[Path]:
        """The files a run with this loss writes (the checkpoint aside)."""
        files = [self.model, self.epochs_csv, self.steps_csv, self.plot_png]
        return files + ([self.verifier] if loss == "siamese" else [])


class CurveLog:
    """Subscriber recording (step, loss, active fraction, lr) per step and a row per epoch;
    with `paths`, it rewrites the CSV files and the PNG after every epoch."""

    def __init__(self, cfg: TrainConfig, paths: TrainPaths | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self.history: list[dict] = []
        self.step_log: list[tuple[int, float, float, float]] = []

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, StepEvent):
            self.step_log.append((event.step, event.loss, event.active_fraction, event.lr))
        elif isinstance(event, EpochEvent):
            self.history.append(event.row())
            if self.paths is not None and event.epoch > 0:
                self.write()

    def restore(self, history: list[dict], step_log: list) -> None:
        self.history = list(history)
        self.step_log = [tuple(r) for r in step_log]

    def write(self) -> None:
        with open(self.paths.epochs_csv, "w", newline="") as f:
            w = csv.DictWriter(f, EPOCH_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.history)
        with open(self.paths.steps_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "active_fraction", "lr"])
            w.writerows(self.step_log)
        plot_curves(self.step_log, self.history, self.paths.plot_png, self.cfg)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) < n or n < 2:
        return y
    return np.convolve(y, np.ones(n) / n, mode="valid")


def plot_curves(step_log, history, path: Path, cfg: TrainConfig) -> None:
    """Loss and active fraction per step (smoothed), validation TAR/EER per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if step_log:
        _plot_steps(ax_loss, np.asarray(step_log, dtype=np.float64), cfg)
    title = cfg.loss + (f" ({cfg.mining})" if cfg.loss == "triplet" else f" ({cfg.head})")
    ax_loss.set_title(f"{title}, {cfg.init}")
    rows = [r for r in history if "val_eer" in r]
    if rows:
        _plot_validation(ax_val, rows)
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_steps(ax_loss, s: np.ndarray, cfg: TrainConfig) -> None:
    n = max(1, len(s) // 50)
    ax_loss.plot(s[n - 1 :, 0], _smooth(s[:, 1], n), color="C0", label="train loss")
    ax_loss.set(xlabel="step", ylabel="loss")
    ax2 = ax_loss.twinx()
    what = "wrong pairs" if cfg.loss == "siamese" else "active triplets"
    ax2.plot(s[n - 1 :, 0], _smooth(s[:, 2], n), color="C1", label=what)
    ax2.set(ylabel=f"fraction of {what}", ylim=(0, 1))
    ax_loss.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)


def _plot_validation(ax_val, rows: list[dict]) -> None:
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in rows]
    for key, label in (
        ("val_tar_far_1e-2", "TAR @ FAR=1e-2"),
        ("val_tar_far_1e-3", "TAR @ FAR=1e-3"),
        ("val_eer", "EER"),
    ):
        ax_val.plot(ep, [r[key] for r in rows], marker="o", label=label)
    ax_val.set(xlabel="epoch", ylim=(0, 1.02), title="validation people (held out)")
    ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_val.legend(fontsize=8)
