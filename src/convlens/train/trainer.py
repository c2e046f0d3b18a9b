"""Training loop for face encoders: triplet loss or Siamese pairs on P x K batches.

- AdamW or SGD (momentum, Nesterov), linear warm-up then cosine decay, gradient clipping.
- On CUDA: AMP (bf16 where supported, else fp16 with a gradient scaler) and channels_last.
- Repeatable: the seed fixes the initial weights, every batch, augmentation and mining draw
  (each a pure function of seed and step), so a resumed run equals an uninterrupted one.
- A checkpoint after every epoch (atomic, convlens.train.checkpoint); `resume` continues.
- After every epoch (and once before training) verification on the validation people:
  TAR at FAR 1e-2 and 1e-3 and EER of Euclidean embedding distances (convlens.metrics).
- Progress as events to subscribers (convlens.train.events): the progress bar, the CSV and
  PNG logs (convlens.train.logs) and the caller's `callback`. Siamese training also writes
  its pair classifier as <out>.verifier.pt (tied to the new encoder's model_id).
- DistributedDataParallel when launched by torchrun (convlens.train.distributed): each rank
  draws its own P x K batch and mines triplets within it; rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from operator import attrgetter

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.train.checkpoint import load_checkpoint, save_checkpoint
from convlens.train.config import TrainConfig
from convlens.train.data import ChipSet, PKSampler
from convlens.train.distributed import (
    barrier,
    distributed_from_env,
    mean_over_ranks,
    pick_device,
)
from convlens.train.events import (
    Callback,
    EpochEvent,
    ProgressSubscriber,
    StepEvent,
    TrainEvent,
    print_stderr,
)
from convlens.train.logs import CurveLog, TrainPaths
from convlens.train.modality import modality_of
from convlens.train.objective import (
    Objective,
    build_encoder,
    freeze_before,
    lr_factor,
    make_optimizer,
    weights_id,
)

__all__ = ["TrainConfig", "Trainer", "distributed_from_env", "validation_subset", "verify"]

MAX_VAL_CHIPS = 2000  # all pairs of 2000 chips: 2 M distances per evaluation
GPU_CHIP_BYTES = 2 << 30


def verify(emb: np.ndarray, labels: np.ndarray) -> dict:
    """TAR at FAR 1e-2 / 1e-3 and EER of all pairs of the validation chips."""
    from convlens.metrics import all_pairs, verification_report

    d, same = all_pairs(emb, labels)
    r = verification_report(d, same, fars=(1e-2, 1e-3))
    return {
        "val_tar_far_1e-2": r["tar_at_far"]["0.01"]["tar"],
        "val_tar_far_1e-3": r["tar_at_far"]["0.001"]["tar"],
        "val_eer": r["eer"],
        "val_pairs": f"{r['genuine_pairs']}+{r['impostor_pairs']}",
    }


def validation_subset(val: ChipSet | None, limit: int, seed: int) -> ChipSet | None:
    """The validation chips (at most `limit`, a seeded sample), or None when they cannot give
    both genuine and impostor pairs."""
    if val is None or len(val) == 0:
        return None
    if len(val) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(val), limit, replace=False))
        val = ChipSet(
            val.chips[keep],
            val.labels[keep],
            val.people,
            [val.paths[k] for k in keep],
            modality=val.modality,
        )
    counts = np.bincount(val.labels)
    if (counts >= 2).sum() == 0 or (counts > 0).sum() < 2:
        return None
    return val


def _check_modality(cfg: TrainConfig, train: ChipSet) -> None:
    from convlens.models import registry

    want = registry.modality(registry.get_encoder(cfg.model_name))
    if want != train.modality:
        raise ConvlensError(
            f"model {cfg.model_name!r} embeds {want} data; the training set holds {train.modality}"
        )


class Trainer:
    """Train `cfg`'s encoder on `train`, validate on `val`, write `out` (and its logs).

    progress: show a progress bar per epoch; log: where epoch summary lines go (default
    stderr when progress is on, nowhere otherwise); callback: receives every StepEvent and
    EpochEvent (convlens.train.events).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        train: ChipSet,
        val: ChipSet | None,
        out: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        callback: Callback | None = None,
    ) -> None:
        cfg.check()
        _check_modality(cfg, train)
        self.cfg = cfg
        self.train_set = train
        self.val_set = validation_subset(val, MAX_VAL_CHIPS, cfg.seed)
        self.paths = TrainPaths.for_output(out, checkpoint)
        self.dist = distributed_from_env()
        self.device = pick_device(cfg.device, self.dist)
        self.amp_dtype = self._amp_dtype()
        per_batch = cfg.batch_p * cfg.batch_k
        self.steps_per_epoch = cfg.steps or max(1, math.ceil(len(train) / per_batch))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self._build_model()
        self.sampler = PKSampler(train.labels, cfg.batch_p, cfg.batch_k, cfg.seed, self.dist.rank)
        # Chips stay as stored ((N, 3, H, W) uint8 faces, (N, samples) audio), on the GPU when
        # they fit in GPU_CHIP_BYTES (then batches are gathered and augmented there);
        # otherwise on the host, moved per batch.
        self.modality = modality_of(train.modality)
        self.chips = self.modality.to_tensor(train.chips)
        if self.device.type == "cuda" and train.chips.nbytes <= GPU_CHIP_BYTES:
            self.chips = self.chips.to(self.device)
        self.labels = torch.from_numpy(train.labels)
        self.step = 0
        # The curve log comes first: the checkpoint written after an epoch holds its rows.
        self.curves = CurveLog(cfg, self.paths if self.dist.main else None)
        if log is None:
            log = print_stderr if progress else None
        self.progress = ProgressSubscriber(cfg.loss, bar=progress, log=log)
        self.callback = callback

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.amp if self.cfg.amp is not None else self.device.type == "cuda"
        if not amp:
            return None
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        use_bf16 = self.device.type != "cuda" or cuda_bf16
        return torch.bfloat16 if use_bf16 else torch.float16

    def _build_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg)
        self.frozen = freeze_before(encoder, cfg.train_from)
        self.objective = Objective(encoder, cfg, cfg.embedding_dim).to(self.device)
        if self.device.type == "cuda":
            self.objective.to(memory_format=torch.channels_last)
        params = [p for p in self.objective.parameters() if p.requires_grad]
        if not params:
            raise ConvlensError(f"nothing to train: layers before {cfg.train_from!r} hold it all")
        self.optimizer = make_optimizer(params, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, self.total_steps, cfg.warmup, cfg.schedule)
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.model = self.objective
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)

    # --- files and logs, where earlier code and benchmarks look for them ------------------
    # (read-only names for self.paths.* and self.curves.*)
    out = property(attrgetter("paths.model"))
    checkpoint = property(attrgetter("paths.checkpoint"))
    epochs_csv = property(attrgetter("paths.epochs_csv"))
    steps_csv = property(attrgetter("paths.steps_csv"))
    plot_png = property(attrgetter("paths.plot_png"))
    verifier_path = property(attrgetter("paths.verifier"))
    history = property(attrgetter("curves.history"), doc="One row per epoch (list[dict]).")
    step_log = property(
        attrgetter("curves.step_log"), doc="(step, loss, active fraction, lr) per logged step."
    )

    def train_mode(self) -> None:
        """Training mode, except frozen layers, which keep their batch-norm statistics."""
        self.objective.train()
        for name in self.frozen:
            getattr(self.objective.encoder, name).eval()

    # --- one step ---------------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        """One optimizer step; returns (loss, active fraction), averaged over ranks."""
        cfg = self.cfg
        idx = self.sampler.batch(self.step)
        rng = np.random.default_rng([cfg.seed, self.step, self.dist.rank, 1])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = self.chips[torch.from_numpy(idx).to(self.chips.device)].float()
        if cfg.augment:
            x = self.modality.augment(x, rng, cfg.jitter)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = self.labels[idx].to(self.device)
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=amp):
            loss, active = self.model(x, labels, gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(
                [p for p in self.objective.parameters() if p.requires_grad], cfg.grad_clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        values = mean_over_ranks(torch.stack([loss.detach().float(), active]), self.dist)
        return float(values[0]), float(values[1])

    # --- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        if self.val_set is None:
            return {}
        emb = self.modality.embed(self.val_set.chips, self.objective.encoder, self.device)
        self.train_mode()  # embedding put the encoder in eval mode
        return verify(emb, self.val_set.labels)

    # --- checkpoint -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        save_checkpoint(self, self.paths.checkpoint)

    def resume(self, path: str | os.PathLike) -> None:
        load_checkpoint(self, path)

    # --- the loop ---------------------------------------------------------------------
    def fit(self, until_epoch: int | None = None) -> dict:
        """Train to cfg.epochs (or stop after `until_epoch`, as if interrupted); returns the
        last epoch's log row."""
        last_epoch = self.cfg.epochs if until_epoch is None else min(until_epoch, self.cfg.epochs)
        try:
            if self.step == 0 and not self.history and self.dist.main:
                self._emit(EpochEvent(epoch=0, step=0, lr=0.0, validation=self.evaluate()))
            self.train_mode()
            for epoch in range(self.step // self.steps_per_epoch + 1, last_epoch + 1):
                self._train_epoch(epoch)
                barrier(self.dist)
        finally:
            self.progress.close()
        if self.step >= self.total_steps and self.dist.main:
            self.save_model()
        return self.history[-1] if self.history else {}

    def _train_epoch(self, epoch: int) -> None:
        losses, actives = [], []
        start = time.perf_counter()
        while self.step < epoch * self.steps_per_epoch:
            loss, active = self.train_step()
            if not math.isfinite(loss):
                raise ConvlensError(
                    f"training diverged at step {self.step} (loss {loss}); "
                    f"lower the learning rate ({self.cfg.learning_rate():g})"
                )
            losses.append(loss)
            actives.append(active)
            lr = self.scheduler.get_last_lr()[0]
            self._emit(
                StepEvent(self.step, epoch, self.cfg.epochs, self.steps_per_epoch, loss, active, lr)
            )
        seconds = time.perf_counter() - start
        if not self.dist.main:
            return
        event = EpochEvent(
            epoch=epoch,
            step=self.step,
            lr=self.scheduler.get_last_lr()[0],
            train_loss=float(np.mean(losses)),
            active_fraction=float(np.mean(actives)),
            steps_per_s=len(losses) / seconds,
            seconds=seconds,
            validation=self.evaluate(),
        )
        self._emit(event)

    def _emit(self, event: TrainEvent) -> None:
        """The curve log first, then (after an epoch) the checkpoint, then the other
        subscribers: a callback that fails never leaves the files behind the checkpoint."""
        self.curves(event)
        if isinstance(event, EpochEvent) and event.epoch > 0:
            self.save_checkpoint()
        self.progress(event)
        if self.callback is not None:
            self.callback(event)

    # --- outputs ----------------------------------------------------------------------
    def save_model(self) -> str:
        from convlens.models.face_models import save_face_model

        encoder = self.objective.encoder
        encoder.model_id = weights_id(encoder, self.cfg.arch)
        save_face_model(encoder, self.paths.model, self.cfg.arch, self.cfg.model_config())
        head = self.objective.head
        if head is not None:  # usable as `--verifier` with this encoder's embeddings
            from convlens.faces.verifier import save_verifier

            head.model_id = encoder.model_id
            save_verifier(head, self.paths.verifier)
        return encoder.model_id
