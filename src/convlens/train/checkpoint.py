"""Checkpoints: everything a run needs to continue exactly where it stopped (written
atomically after every epoch), and the check that a resumed run has the same settings."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from convlens.errors import ConvlensError
from convlens.models.files import load_torch_file, save_torch_file
from convlens.train.config import TrainConfig

if TYPE_CHECKING:
    from convlens.train.trainer import Trainer

CHECKPOINT_FORMAT = "convlens-train-checkpoint"


def save_checkpoint(trainer: Trainer, path: str | os.PathLike) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": trainer.cfg.settings(),
        "step": trainer.step,
        "model": trainer.objective.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "history": trainer.curves.history,
        "step_log": trainer.curves.step_log,
        "people": trainer.train_set.people,
    }
    save_torch_file(payload, path)


def settings_changed(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings (other than runtime ones) that differ from a checkpoint's, as
    "name (old -> new)"; settings the checkpoint predates are not compared."""
    mine = cfg.settings()
    return [
        f"{k} ({v} -> {mine.get(k)})"
        for k, v in saved.items()
        if k not in TrainConfig.RUNTIME and mine.get(k) != v
    ]


def load_checkpoint(trainer: Trainer, path: str | os.PathLike) -> None:
    """Restore weights, optimizer, schedule, step and logs into `trainer`."""
    ckpt = load_torch_file(path, CHECKPOINT_FORMAT, "training checkpoint")
    changed = settings_changed(ckpt["config"], trainer.cfg)
    if changed:
        raise ConvlensError(f"{path}: checkpoint was trained with other settings: {changed}")
    if ckpt["people"] != trainer.train_set.people:
        raise ConvlensError(f"{path}: checkpoint was trained on other people")
    trainer.objective.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.step = int(ckpt["step"])
    trainer.curves.restore(ckpt["history"], ckpt["step_log"])
