"""Training loop for face encoders: triplet loss or Siamese pairs on P x K batches.

- AdamW or SGD (momentum, Nesterov), linear warm-up then cosine decay, gradient clipping.
- On CUDA: AMP (bf16 where supported, else fp16 with a gradient scaler) and channels_last.
- Repeatable: the seed fixes the initial weights, every batch, augmentation and mining draw
  (each a pure function of seed and step), so a resumed run equals an uninterrupted one.
- A checkpoint after every epoch (atomic); `resume` continues from one.
- After every epoch (and once before training) verification on the validation people:
  TAR at FAR 1e-2 and 1e-3 and EER of Euclidean embedding distances (convlens.metrics).
- Logs: <out>.epochs.csv, <out>.steps.csv and a PNG of the curves, <out>.png. Siamese
  training also writes its pair classifier as <out>.verifier.pt (a convlens.faces.verifier
  file tied to the new encoder's model_id).
- DistributedDataParallel when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on
  CUDA; each rank draws its own P x K batch and mines triplets within it; rank 0 evaluates,
  logs and writes files.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.devices import resolve_device
from convlens.models.files import load_torch_file, save_torch_file
from convlens.train.data import ChipSet, PKSampler
from convlens.train.losses import HEADS, MININGS, siamese_head, siamese_loss, triplet_loss

CHECKPOINT_FORMAT = "convlens-train-checkpoint"


@dataclass
class TrainConfig:
    loss: str = "triplet"  # "triplet" or "siamese"
    mining: str = "semi-hard"  # triplet mining, see convlens.train.losses
    margin: float = 0.2
    head: str = "abs"  # siamese head: "abs" (|f(a)-f(b)|) or "chi2"
    init: str = "pretrained"  # "pretrained" (fine-tune dlib's ResNet) or "scratch"
    embedding_dim: int = 128  # scratch only; the pretrained encoder is 128-d
    small_input: int = 64  # scratch: SmallConvNet's internal resolution
    small_width: int = 16  # scratch: SmallConvNet's first-stage channels
    train_from: str | None = None  # freeze every submodule before this one
    epochs: int = 10
    steps: int | None = None  # steps per epoch; default: about one pass over the chips
    batch_p: int = 8  # people per batch
    batch_k: int = 4  # chips per person
    lr: float | None = None  # default 1e-3 from scratch, 1e-5 fine-tuning (AdamW; SGD x10)
    optimizer: str = "adamw"  # "adamw" or "sgd"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup: float = 0.05  # fraction of the steps with linearly rising lr
    schedule: str = "cosine"  # "cosine" or "constant" (after warm-up)
    grad_clip: float = 5.0  # max gradient norm; 0 = off
    augment: bool = True  # horizontal flip and a few pixels' shift
    jitter: int = 6  # max shift in pixels
    seed: int = 0
    amp: bool | None = None  # None: on for CUDA, off for CPU (CPU AMP is bf16)
    device: str = "auto"

    # Fields that may change when resuming without changing what is computed.
    RUNTIME = ("device", "amp", "epochs")

    @property
    def arch(self) -> str:
        return "dlib_resnet" if self.init == "pretrained" else "small_convnet"

    def model_config(self) -> dict:
        if self.init == "pretrained":
            return {}
        return {
            "embedding_dim": self.embedding_dim,
            "input_size": self.small_input,
            "width": self.small_width,
        }

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        base = 1e-3 if self.init == "scratch" else 1e-5
        return base * (10.0 if self.optimizer == "sgd" else 1.0)

    def check(self) -> None:
        if self.loss not in ("triplet", "siamese"):
            raise ConvlensError(f"unknown loss {self.loss!r}; choose triplet or siamese")
        if self.mining not in MININGS:
            raise ConvlensError(f"unknown mining {self.mining!r}; choose from {list(MININGS)}")
        if self.head not in HEADS:
            raise ConvlensError(f"unknown siamese head {self.head!r}; choose from {list(HEADS)}")
        if self.init not in ("pretrained", "scratch"):
            raise ConvlensError(f"--init must be pretrained or scratch, not {self.init!r}")
        if self.init == "pretrained" and self.embedding_dim != 128:
            raise ConvlensError("the pretrained encoder gives 128-d embeddings; use --init scratch")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConvlensError(f"unknown optimizer {self.optimizer!r}; choose adamw or sgd")
        if self.schedule not in ("cosine", "constant"):
            raise ConvlensError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.batch_p < 2 or self.batch_k < 2:
            raise ConvlensError("a batch needs at least 2 people (--batch-p) x 2 chips (--batch-k)")
        if self.epochs < 1 or (self.steps is not None and self.steps < 1):
            raise ConvlensError("--epochs and --steps must be at least 1")


def build_encoder(cfg: TrainConfig) -> nn.Module:
    from convlens.models.face_models import build_architecture, load_face_model

    if cfg.init == "pretrained":
        return load_face_model(None)
    return build_architecture(cfg.arch, cfg.model_config())


def freeze_before(model: nn.Module, name: str | None) -> list[str]:
    """Freeze every top-level submodule registered before `name`; returns the frozen names."""
    if not name:
        return []
    names = [n for n, _ in model.named_children()]
    if name not in names:
        raise ConvlensError(f"--train-from {name!r}: no such layer; layers: {', '.join(names)}")
    frozen = names[: names.index(name)]
    for n in frozen:
        for p in getattr(model, n).parameters():
            p.requires_grad_(False)
    return frozen


def weights_id(model: nn.Module, arch: str) -> str:
    """A model_id naming these exact weights: arch plus a short hash of the state dict."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return f"{arch}-{h.hexdigest()[:12]}"


class Objective(nn.Module):
    """Encoder plus loss in one forward, so DistributedDataParallel sees every parameter."""

    def __init__(self, encoder: nn.Module, cfg: TrainConfig, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        self.head = siamese_head(dim, cfg.head) if cfg.loss == "siamese" else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        emb = self.encoder(x).float()
        if self.head is not None:
            r = siamese_loss(emb, labels, self.head, generator)
        else:
            r = triplet_loss(emb, labels, self.cfg.margin, self.cfg.mining, generator)
        return r.loss, torch.tensor(r.active_fraction, device=emb.device)


def augment_batch(x: torch.Tensor, rng: np.random.Generator, jitter: int) -> torch.Tensor:
    """Random horizontal flip and shift by up to `jitter` pixels (edge-replicated), per chip."""
    n, _, h, w = x.shape
    flip = rng.random(n) < 0.5
    shifts = rng.integers(-jitter, jitter + 1, size=(n, 2)) if jitter else np.zeros((n, 2), int)
    out = torch.empty_like(x)
    padded = F.pad(x.float(), (jitter,) * 4, mode="replicate") if jitter else x.float()
    for i in range(n):
        dy, dx = int(shifts[i, 0]) + jitter, int(shifts[i, 1]) + jitter
        chip = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = chip.flip(-1) if flip[i] else chip
    return out


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> DistInfo:
    """torchrun's WORLD_SIZE/RANK/LOCAL_RANK; starts the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return info


def pick_device(name: str, info: DistInfo) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


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


EPOCH_FIELDS = [
    "epoch", "step", "lr", "train_loss", "active_fraction", "steps_per_s", "seconds",
    "val_tar_far_1e-2", "val_tar_far_1e-3", "val_eer", "val_pairs",
]  # fmt: skip


MAX_VAL_CHIPS = 2000  # all pairs of 2000 chips: 2 M distances per evaluation
GPU_CHIP_BYTES = 2 << 30


def validation_subset(val: ChipSet | None, limit: int, seed: int) -> ChipSet | None:
    """The validation chips (at most `limit`, a seeded sample), or None when they cannot give
    both genuine and impostor pairs."""
    if val is None or len(val) == 0:
        return None
    if len(val) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(val), limit, replace=False))
        val = ChipSet(val.chips[keep], val.labels[keep], val.people, [val.paths[k] for k in keep])
    counts = np.bincount(val.labels)
    if (counts >= 2).sum() == 0 or (counts > 0).sum() < 2:
        return None
    return val


def print_nothing(line: str) -> None:
    pass


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        train: ChipSet,
        val: ChipSet | None,
        out: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        cfg.check()
        self.cfg = cfg
        self.train_set = train
        self.val_set = validation_subset(val, MAX_VAL_CHIPS, cfg.seed)
        self.out = Path(out)
        stem = self.out.with_suffix("")
        self.checkpoint = Path(checkpoint) if checkpoint else stem.with_suffix(".ckpt")
        self.epochs_csv = Path(f"{stem}.epochs.csv")
        self.steps_csv = Path(f"{stem}.steps.csv")
        self.plot_png = Path(f"{stem}.png")
        self.verifier_path = Path(f"{stem}.verifier.pt")
        self.progress = progress
        self.dist = distributed_from_env()
        if log is None:  # epoch summaries: on stderr with the bars, or given to `log`
            log = (lambda s: print(s, file=sys.stderr, flush=True)) if progress else print_nothing
        self._log = log
        self.device = pick_device(cfg.device, self.dist)
        amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.amp_dtype = None
        if amp:
            cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            use_bf16 = self.device.type != "cuda" or cuda_bf16
            self.amp_dtype = torch.bfloat16 if use_bf16 else torch.float16
        per_batch = cfg.batch_p * cfg.batch_k
        self.steps_per_epoch = cfg.steps or max(1, math.ceil(len(train) / per_batch))
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg)
        self.frozen = freeze_before(encoder, cfg.train_from)
        dim = cfg.embedding_dim
        self.objective = Objective(encoder, cfg, dim).to(self.device)
        if self.device.type == "cuda":
            self.objective.to(memory_format=torch.channels_last)
        params = [p for p in self.objective.parameters() if p.requires_grad]
        if not params:
            raise ConvlensError("nothing to train: --train-from froze every layer")
        lr = cfg.learning_rate()
        if cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                params, lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
            )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.model = self.objective
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        self.sampler = PKSampler(train.labels, cfg.batch_p, cfg.batch_k, cfg.seed, self.dist.rank)
        # Chips stay uint8 as (N, 3, H, W), on the GPU when they fit in GPU_CHIP_BYTES (then
        # batches are gathered and augmented there); otherwise on the host, moved per batch.
        self.chips = torch.from_numpy(np.ascontiguousarray(train.chips)).permute(0, 3, 1, 2)
        if self.device.type == "cuda" and train.chips.nbytes <= GPU_CHIP_BYTES:
            self.chips = self.chips.to(self.device)
        self.labels = torch.from_numpy(train.labels)
        self.step = 0
        self.history: list[dict] = []
        self.step_log: list[tuple[int, float, float, float]] = []

    # --- schedule ---------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        warm = max(1, int(self.cfg.warmup * self.total_steps))
        if step < warm:
            return (step + 1) / warm
        if self.cfg.schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, self.total_steps - warm)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    def _train_mode(self) -> None:
        self.objective.train()
        for name in self.frozen:  # frozen layers keep their batch-norm statistics
            getattr(self.objective.encoder, name).eval()

    # --- one step ---------------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        cfg = self.cfg
        idx = self.sampler.batch(self.step)
        rng = np.random.default_rng([cfg.seed, self.step, self.dist.rank, 1])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = self.chips[torch.from_numpy(idx).to(self.chips.device)].float()
        if cfg.augment:
            x = augment_batch(x, rng, cfg.jitter)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
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
        values = torch.stack([loss.detach().float(), active])
        if self.dist.world > 1:
            dist.all_reduce(values)
            values /= self.dist.world
        return float(values[0]), float(values[1])

    # --- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        if self.val_set is None:
            return {}
        from convlens.faces.pipeline import embed_chips

        emb = embed_chips(self.val_set.chips, self.objective.encoder, device=self.device)
        self._train_mode()  # embed_chips put the encoder in eval mode
        return verify(emb, self.val_set.labels)

    # --- checkpoint -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg)},
            "step": self.step,
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "step_log": self.step_log,
            "people": self.train_set.people,
        }
        save_torch_file(payload, self.checkpoint)

    def resume(self, path: str | os.PathLike) -> None:
        ckpt = load_torch_file(path, CHECKPOINT_FORMAT, "training checkpoint")
        mine = asdict(self.cfg)
        changed = [
            f"{k} ({v} -> {mine.get(k)})"
            for k, v in ckpt["config"].items()
            if k not in TrainConfig.RUNTIME and mine.get(k) != v
        ]
        if changed:
            raise ConvlensError(f"{path}: checkpoint was trained with other settings: {changed}")
        if ckpt["people"] != self.train_set.people:
            raise ConvlensError(f"{path}: checkpoint was trained on other people")
        self.objective.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.history = list(ckpt["history"])
        self.step_log = [tuple(r) for r in ckpt["step_log"]]

    # --- the loop ---------------------------------------------------------------------
    def fit(self, until_epoch: int | None = None) -> dict:
        """Train to cfg.epochs (or stop after `until_epoch`, as if interrupted); returns the
        last epoch's log row."""
        from convlens.progress import ProgressBar

        cfg = self.cfg
        last_epoch = cfg.epochs if until_epoch is None else min(until_epoch, cfg.epochs)
        if self.step == 0 and not self.history and self.dist.main:
            row = {"epoch": 0, "step": 0, "lr": 0.0, **self.evaluate()}
            self.history.append(row)
            self._report(row)
        self._train_mode()
        first = self.step // self.steps_per_epoch + 1
        for epoch in range(first, last_epoch + 1):
            losses, actives = [], []
            start = time.perf_counter()
            desc = f"epoch {epoch}/{cfg.epochs}"
            with ProgressBar(desc, self.steps_per_epoch, "step", not self.progress) as bar:
                while self.step < epoch * self.steps_per_epoch:
                    loss, active = self.train_step()
                    if not math.isfinite(loss):
                        raise ConvlensError(
                            f"training diverged at step {self.step} (loss {loss}); lower --lr"
                        )
                    losses.append(loss)
                    actives.append(active)
                    self.step_log.append((self.step, loss, active, self.scheduler.get_last_lr()[0]))
                    what = "wrong" if cfg.loss == "siamese" else "active"
                    bar.advance(1, f"loss {loss:.4f} {what} {active:.0%}")
            seconds = time.perf_counter() - start
            row = {
                "epoch": epoch,
                "step": self.step,
                "lr": self.scheduler.get_last_lr()[0],
                "train_loss": float(np.mean(losses)),
                "active_fraction": float(np.mean(actives)),
                "steps_per_s": len(losses) / seconds,
                "seconds": seconds,
            }
            if self.dist.main:
                row.update(self.evaluate())
                self.history.append(row)
                self.save_checkpoint()
                self.write_logs()
                self._report(row)
            if self.dist.world > 1:
                dist.barrier()
        if self.step >= self.total_steps and self.dist.main:
            self.save_model()
        return self.history[-1] if self.history else {}

    def _report(self, row: dict) -> None:
        parts = [f"epoch {row['epoch']}"]
        if "train_loss" in row:
            what = "wrong pairs" if self.cfg.loss == "siamese" else "active triplets"
            parts.append(f"loss {row['train_loss']:.4f}, {what} {row['active_fraction']:.1%}")
            parts.append(f"{row['steps_per_s']:.2f} steps/s")
        if "val_eer" in row:
            parts.append(
                f"val TAR@FAR=1e-2 {row['val_tar_far_1e-2']:.2%}, "
                f"TAR@FAR=1e-3 {row['val_tar_far_1e-3']:.2%}, EER {row['val_eer']:.2%}"
            )
        self._log("; ".join(parts))

    # --- outputs ----------------------------------------------------------------------
    def save_model(self) -> str:
        from convlens.models.face_models import save_face_model

        encoder = self.objective.encoder
        encoder.model_id = weights_id(encoder, self.cfg.arch)
        save_face_model(encoder, self.out, self.cfg.arch, self.cfg.model_config())
        head = self.objective.head
        if head is not None:  # usable as `--verifier` with this encoder's embeddings
            from convlens.faces.verifier import save_verifier

            head.model_id = encoder.model_id
            save_verifier(head, self.verifier_path)
        return encoder.model_id

    def write_logs(self) -> None:
        with open(self.epochs_csv, "w", newline="") as f:
            w = csv.DictWriter(f, EPOCH_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.history)
        with open(self.steps_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "active_fraction", "lr"])
            w.writerows(self.step_log)
        plot_curves(self.step_log, self.history, self.plot_png, self.cfg)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) < n or n < 2:
        return y
    return np.convolve(y, np.ones(n) / n, mode="valid")


def plot_curves(step_log, history, path: Path, cfg: TrainConfig) -> None:
    """Loss and active fraction per step (smoothed), validation TAR/EER per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if step_log:
        s = np.asarray(step_log, dtype=np.float64)
        n = max(1, len(s) // 50)
        ax_loss.plot(s[n - 1 :, 0], _smooth(s[:, 1], n), color="C0", label="train loss")
        ax_loss.set(xlabel="step", ylabel="loss")
        ax2 = ax_loss.twinx()
        what = "wrong pairs" if cfg.loss == "siamese" else "active triplets"
        ax2.plot(s[n - 1 :, 0], _smooth(s[:, 2], n), color="C1", label=what)
        ax2.set(ylabel=f"fraction of {what}", ylim=(0, 1))
        ax_loss.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
    title = cfg.loss + (f" ({cfg.mining})" if cfg.loss == "triplet" else f" ({cfg.head})")
    ax_loss.set_title(f"{title}, {cfg.init}")
    rows = [r for r in history if "val_eer" in r]
    if rows:
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
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
