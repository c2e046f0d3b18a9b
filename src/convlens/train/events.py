"""Training progress as events: a callback receives a StepEvent after every step and an
EpochEvent after every epoch (and one, epoch 0, for the validation before training).

    def show(event):
        if isinstance(event, EpochEvent):
            print(event.epoch, event.train_loss, event.validation.get("val_eer"))

    Trainer(cfg, train, val, "enc.pt", callback=show).fit()

The progress bar (ProgressSubscriber) and the CSV and PNG logs (convlens.train.logs.CurveLog)
are subscribers like any other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepEvent:
    step: int  # steps done so far (1 after the first)
    epoch: int
    epochs: int
    steps_per_epoch: int
    loss: float
    active_fraction: float  # triplets with a positive loss, or wrongly classified pairs
    lr: float


@dataclass(frozen=True)
class EpochEvent:
    epoch: int  # 0: before training (validation only)
    step: int
    lr: float
    train_loss: float | None = None  # None for epoch 0
    active_fraction: float | None = None
    steps_per_s: float | None = None
    seconds: float | None = None
    validation: dict = field(default_factory=dict)  # val_tar_far_1e-2, val_tar_far_1e-3, ...

    def row(self) -> dict:
        """The epoch's log row: the fields that have values, validation metrics flattened."""
        row = {"epoch": self.epoch, "step": self.step, "lr": self.lr}
        if self.train_loss is not None:
            row.update(
                train_loss=self.train_loss,
                active_fraction=self.active_fraction,
                steps_per_s=self.steps_per_s,
                seconds=self.seconds,
            )
        return {**row, **self.validation}


TrainEvent = StepEvent | EpochEvent
Callback = Callable[[TrainEvent], None]


def epoch_summary(event: EpochEvent, loss: str) -> str:
    """One line: training loss and active fraction, speed, validation TAR and EER."""
    parts = [f"epoch {event.epoch}"]
    if event.train_loss is not None:
        what = "wrong pairs" if loss == "siamese" else "active triplets"
        parts.append(f"loss {event.train_loss:.4f}, {what} {event.active_fraction:.1%}")
        parts.append(f"{event.steps_per_s:.2f} steps/s")
    v = event.validation
    if "val_eer" in v:
        parts.append(
            f"val TAR@FAR=1e-2 {v['val_tar_far_1e-2']:.2%}, "
            f"TAR@FAR=1e-3 {v['val_tar_far_1e-3']:.2%}, EER {v['val_eer']:.2%}"
        )
    return "; ".join(parts)


def print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ProgressSubscriber:
    """A rich progress bar per epoch, and the epoch summary line through `log`."""

    def __init__(self, loss: str, bar: bool = True, log: Callable[[str], None] | None = None):
        self.loss = loss
        self.bar_enabled = bar
        self.log = log
        self._bar = None
        self._bar_epoch = None

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, StepEvent):
            self._advance(event)
        else:
            self.close()
            if self.log is not None:
                self.log(epoch_summary(event, self.loss))

    def _advance(self, event: StepEvent) -> None:
        if not self.bar_enabled:
            return
        if self._bar is None or self._bar_epoch != event.epoch:
            from convlens.progress import ProgressBar

            self.close()
            desc = f"epoch {event.epoch}/{event.epochs}"
            self._bar = ProgressBar(desc, event.steps_per_epoch, "step").__enter__()
            self._bar_epoch = event.epoch
        what = "wrong" if self.loss == "siamese" else "active"
        self._bar.advance(1, f"loss {event.loss:.4f} {what} {event.active_fraction:.0%}")

    def close(self) -> None:
        """Stop the bar (at the end of an epoch, or when training stops early)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
